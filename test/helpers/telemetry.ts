/**
 * A PortTelemetry that remembers every call, for data-plane tests that assert what was counted
 * and logged. Cheap helpers count by label so assertions read like the metric they stand for.
 * Usage entries are real objects, so a proxy's cached-entry fast path is observable.
 */
import type {
  Decision,
  DenyReason,
  HandshakeErrorReason,
  TerminationReason,
} from '../../src/policy/types.js';
import type { AccessRecord, PortTelemetry, UsageEntry } from '../../src/telemetry/types.js';

export interface RecordedDenial {
  identity: string | null;
  reason: DenyReason;
  origin: string;
  at: number;
}

export class RecordingTelemetry implements PortTelemetry {
  readonly decisions: Array<{ decision: Decision; reason: DenyReason | null }> = [];
  readonly handshakeErrors: HandshakeErrorReason[] = [];
  readonly terminations: TerminationReason[] = [];
  readonly denials: RecordedDenial[] = [];
  readonly access: AccessRecord[] = [];
  readonly durations: number[] = [];
  readonly usageEntries = new Map<string, UsageEntry>();
  /** How often `usage()` was asked (the http proxy caches the entry per connection). */
  usageLookups = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Connections opened and closed so far. */
  opened = 0;
  closed = 0;
  /** Highest value the active-connections gauge reached. */
  maxActive = 0;

  constructor(readonly logAllowedHttp = false) {}

  decision(decision: Decision, reason: DenyReason | null): void {
    this.decisions.push({ decision, reason });
  }
  /** The active-connections gauge. */
  get active(): number {
    return this.opened - this.closed;
  }
  connectionOpened(): void {
    this.opened++;
    this.maxActive = Math.max(this.maxActive, this.active);
  }
  connectionClosed(): void {
    this.closed++;
  }
  terminated(reason: TerminationReason): void {
    this.terminations.push(reason);
  }
  bytes(direction: 'in' | 'out', n: number): void {
    if (direction === 'in') this.bytesIn += n;
    else this.bytesOut += n;
  }
  requestDuration(seconds: number): void {
    this.durations.push(seconds);
  }
  handshakeError(reason: HandshakeErrorReason): void {
    this.handshakeErrors.push(reason);
  }
  usage(licenseId: string, identity: string, origin: string): UsageEntry {
    this.usageLookups++;
    const key = `${licenseId} ${identity} ${origin}`;
    let e = this.usageEntries.get(key);
    if (e === undefined) {
      e = { licenseId, identity, origin, at: 0, count: 0 };
      this.usageEntries.set(key, e);
    }
    return e;
  }
  denial(identity: string | null, reason: DenyReason, origin: string, now: number): void {
    this.denials.push({ identity, reason, origin, at: now });
  }
  accessLog(record: AccessRecord): void {
    this.access.push(record);
  }

  /** Decisions as `decision:reason` strings, e.g. `allow:-`, `deny:expired`. */
  decisionList(): string[] {
    return this.decisions.map((d) => `${d.decision}:${d.reason ?? '-'}`);
  }
  /** How many decisions of this kind (and reason, when given) were counted. */
  countDecisions(decision: Decision, reason?: DenyReason | null): number {
    return this.decisions.filter(
      (d) => d.decision === decision && (reason === undefined || d.reason === reason),
    ).length;
  }
  countHandshakeErrors(reason: HandshakeErrorReason): number {
    return this.handshakeErrors.filter((r) => r === reason).length;
  }
  countTerminations(reason: TerminationReason): number {
    return this.terminations.filter((r) => r === reason).length;
  }
  /** The usage entry of (license, identity, origin), if one was created. */
  usageOf(licenseId: string, identity: string, origin = '127.0.0.1'): UsageEntry | undefined {
    return this.usageEntries.get(`${licenseId} ${identity} ${origin}`);
  }
}
