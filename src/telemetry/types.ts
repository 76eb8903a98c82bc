/**
 * What the data plane may tell telemetry. It is passed in (ghostunnel-style), with a no-op
 * implementation for tests; every method is a counter bump or a timestamp write, nothing more.
 */
import type { Decision, DenyReason, HandshakeErrorReason, TerminationReason } from '../policy/types.js';

/** Mutable last-access record for one (license, identity, origin). The hot path writes two fields. */
export interface UsageEntry {
  readonly licenseId: string;
  readonly identity: string;
  readonly origin: string;
  /** Epoch ms of the last access. */
  at: number;
  /** Accesses since the sidecar started (reports send deltas). */
  count: number;
}

/** One access-log line (SPEC issue 2 §10). */
export interface AccessRecord {
  kind: 'tcp' | 'http';
  decision: Decision;
  reason: DenyReason | null;
  identity: string | null;
  origin: string;
  license: string | null;
  /** http only */
  method?: string;
  path?: string;
  status?: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  /** tcp: why the flow ended (client/upstream close, terminated reason, error). */
  closeReason?: string;
}

/** Per-listener telemetry with label sets bound once at start-up. */
export interface PortTelemetry {
  decision(decision: Decision, reason: DenyReason | null): void;
  connectionOpened(): void;
  connectionClosed(): void;
  terminated(reason: TerminationReason): void;
  /** `in`: bytes from the caller to the upstream; `out`: upstream to caller. */
  bytes(direction: 'in' | 'out', n: number): void;
  requestDuration(seconds: number): void;
  handshakeError(reason: HandshakeErrorReason): void;
  /** The usage entry for (license, identity, origin), created on first use; callers keep it and write at/count. */
  usage(licenseId: string, identity: string, origin: string): UsageEntry;
  /** Record a denial for usage reports and /status. */
  denial(identity: string | null, reason: DenyReason, origin: string, now: number): void;
  accessLog(record: AccessRecord): void;
  /** Whether allowed HTTP requests get an access-log line. */
  readonly logAllowedHttp: boolean;
}
