/**
 * The PortTelemetry a listener is given. Every label set of the port is resolved to a cell when
 * the listener is created, so each call on the data path is one property read and one addition:
 * no label strings, no hashing, no allocation (an access-log line is the one exception, and it
 * is written only when the listener decides to log).
 */
import {
  DENY_REASONS,
  type Decision,
  type DenyReason,
  type HandshakeErrorReason,
  type PortProtocol,
  type TerminationReason,
} from '../policy/types.js';
import type { AccessLogger } from './access-log.js';
import type { Cell, CellFamily, HistogramCell } from './cells.js';
import { ALLOW_REASON, type SidecarMetrics } from './metrics.js';
import type { AccessRecord, PortTelemetry, UsageEntry } from './types.js';
import { UsageTracker } from './usage.js';

const TERMINATION_REASONS: readonly TerminationReason[] = [
  'expired',
  'revoked',
  'license_removed',
  'idle_timeout',
  'shutdown',
];

const HANDSHAKE_ERROR_REASONS: readonly HandshakeErrorReason[] = [
  'no_client_cert',
  'untrusted_cert',
  'expired_cert',
  'handshake_timeout',
  'tls_error',
];

export interface PortIdentity {
  readonly service: string;
  readonly name: string;
  /** Request durations are exported for http ports only. Default http. */
  readonly protocol?: PortProtocol;
}

export interface PortTelemetryDeps {
  readonly accessLog: AccessLogger;
  /** Defaults to the tracker the metrics were built with. */
  readonly usage?: UsageTracker;
  readonly logAllowedHttp?: boolean;
}

/** Label set -> cell, for a label whose values are known when the port starts. */
type CellTable<K extends string> = Record<K, Cell>;

function table<K extends string>(keys: readonly K[], bind: (k: K) => Cell): CellTable<K> {
  const t = {} as CellTable<K>;
  for (const k of keys) t[k] = bind(k);
  return t;
}

/** Create the telemetry of one listener, binding all of its series now. */
export function createPortTelemetry(
  metrics: SidecarMetrics,
  port: PortIdentity,
  deps: PortTelemetryDeps,
): PortTelemetry {
  const f = metrics.families;
  const service = port.service;
  const portName = port.name;
  const key = `${service}/${portName}`;
  const usage = deps.usage ?? metrics.usage;
  const writeAccess = deps.accessLog.forPort(key);

  const decisionCell = (decision: Decision, reason: string): Cell =>
    f.decisions.bind({ service, port: portName, decision, reason });
  const allow = decisionCell('allow', ALLOW_REASON);
  const deny = table(DENY_REASONS, (r) => decisionCell('deny', r));
  const auditDeny = table(DENY_REASONS, (r) => decisionCell('audit_deny', r));
  const terminated = table(TERMINATION_REASONS, (reason) =>
    f.terminated.bind({ service, port: portName, reason }),
  );
  const handshake = table(HANDSHAKE_ERROR_REASONS, (reason) =>
    f.handshakeErrors.bind({ service, port: portName, reason }),
  );
  const active = f.activeConnections.bind({ service, port: portName });
  const bytesIn = f.bytes.bind({ service, port: portName, direction: 'in' });
  const bytesOut = f.bytes.bind({ service, port: portName, direction: 'out' });
  // A tcp port has no request durations; binding its series would export an always-empty histogram.
  const duration: HistogramCell | null =
    (port.protocol ?? 'http') === 'http' ? f.requestDuration.bind({ service, port: portName }) : null;

  // A value outside the typed vocabulary is a bug elsewhere; count it under its own label rather than crash.
  const late = (family: CellFamily<'service' | 'port' | 'reason'>, reason: string): Cell =>
    family.bind({ service, port: portName, reason });

  return {
    logAllowedHttp: deps.logAllowedHttp ?? false,
    decision(decision: Decision, reason: DenyReason | null): void {
      if (decision === 'allow') {
        allow.value++;
        return;
      }
      const t = decision === 'deny' ? deny : auditDeny;
      // A deny always has a reason; if a caller omits it, count it as default-deny.
      const r = reason ?? 'no_license';
      (t[r] ?? decisionCell(decision, r)).value++;
    },
    connectionOpened(): void {
      active.value++;
    },
    connectionClosed(): void {
      if (active.value > 0) active.value--;
    },
    terminated(reason: TerminationReason): void {
      (terminated[reason] ?? late(f.terminated, reason)).value++;
    },
    bytes(direction: 'in' | 'out', n: number): void {
      (direction === 'in' ? bytesIn : bytesOut).value += n;
    },
    requestDuration(seconds: number): void {
      duration?.observe(seconds);
    },
    handshakeError(reason: HandshakeErrorReason): void {
      (handshake[reason] ?? late(f.handshakeErrors, reason)).value++;
    },
    usage(licenseId: string, identity: string, origin: string): UsageEntry {
      return usage.entry(licenseId, identity, origin);
    },
    denial(identity: string | null, reason: DenyReason, origin: string, now: number): void {
      usage.recordDenial(key, identity, reason, origin, now);
    },
    accessLog(record: AccessRecord): void {
      writeAccess(record);
    },
  };
}

/**
 * Telemetry that records nothing, for tests of the data plane. `usage()` still hands out working
 * entries (from a private tracker), so code that writes `at`/`count` runs unchanged.
 */
export function createNoopPortTelemetry(opts: { logAllowedHttp?: boolean } = {}): PortTelemetry {
  const usage = new UsageTracker();
  const nothing = (): void => {};
  return {
    logAllowedHttp: opts.logAllowedHttp ?? false,
    decision: nothing,
    connectionOpened: nothing,
    connectionClosed: nothing,
    terminated: nothing,
    bytes: nothing,
    requestDuration: nothing,
    handshakeError: nothing,
    usage: (licenseId, identity, origin) => usage.entry(licenseId, identity, origin),
    denial: nothing,
    accessLog: nothing,
  };
}

/** A shared no-op telemetry (allowed HTTP requests not logged), like `silentLogger`. */
export const noopPortTelemetry: PortTelemetry = createNoopPortTelemetry();
