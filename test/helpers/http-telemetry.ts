/**
 * A PortTelemetry that remembers every call, for asserting what the http proxy counted and logged.
 * Usage entries are real objects, so the proxy's cached-entry fast path is observable.
 */
import type {
  Decision,
  DenyReason,
  HandshakeErrorReason,
  TerminationReason,
} from '../../src/policy/types.js';
import type { AccessRecord, PortTelemetry, UsageEntry } from '../../src/telemetry/types.js';

export class RecordingTelemetry implements PortTelemetry {
  readonly decisions: Array<{ decision: Decision; reason: DenyReason | null }> = [];
  readonly denials: Array<{ identity: string | null; reason: DenyReason; origin: string; at: number }> = [];
  readonly access: AccessRecord[] = [];
  readonly terminations: TerminationReason[] = [];
  readonly handshakeErrors: HandshakeErrorReason[] = [];
  readonly durations: number[] = [];
  readonly entries = new Map<string, UsageEntry>();
  /** How often `usage()` was asked (the proxy caches the entry per connection). */
  usageLookups = 0;
  bytesIn = 0;
  bytesOut = 0;
  opened = 0;
  closed = 0;

  constructor(readonly logAllowedHttp = false) {}

  decision(decision: Decision, reason: DenyReason | null): void {
    this.decisions.push({ decision, reason });
  }
  connectionOpened(): void {
    this.opened++;
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
    const key = `${licenseId}|${identity}|${origin}`;
    let e = this.entries.get(key);
    if (!e) this.entries.set(key, (e = { licenseId, identity, origin, at: 0, count: 0 }));
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
}
