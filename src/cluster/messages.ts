/**
 * The messages between the control-plane process and its data-plane workers (`workers: N`), over
 * node:cluster's IPC channel. Every message carries `pl: 1` so nothing else that travels on the
 * channel is mistaken for one, and is checked on arrival: a worker is another process, and a
 * malformed message is dropped with a log line rather than trusted.
 *
 * The policy travels as the licenses' wire form (what the signed bundle held), never as compiled
 * objects: each worker compiles its own snapshot with the same code the single process uses.
 */
import type { HostPort, SidecarConfig } from '../config/types.js';
import { buildSnapshot, buildSnapshotAsync, emptySnapshot } from '../policy/snapshot.js';
import type { BundlePayload, LicenseWire, PolicySnapshot } from '../policy/types.js';
import type { TelemetryBatch } from './telemetry-export.js';

/** The policy as sent to workers: enough to rebuild the primary's snapshot exactly. */
export interface PolicyPayload {
  readonly version: number;
  /** RFC 3339; the snapshot keeps epoch ms. */
  readonly issuedAt: string;
  readonly node: string;
  readonly licenses: readonly LicenseWire[];
}

/** Control plane -> worker. */
export type ToWorker =
  | {
      pl: 1;
      t: 'init';
      config: SidecarConfig;
      policy: PolicyPayload;
      /**
       * TLS session-ticket keys (48 bytes, base64) shared by every worker, so a client resumes
       * its session whichever worker its next connection lands on.
       */
      ticketKeys: string;
    }
  | { pl: 1; t: 'policy'; policy: PolicyPayload }
  | { pl: 1; t: 'reload-tls' }
  /** Heartbeat: answer `pong` (a worker whose event loop is blocked cannot). */
  | { pl: 1; t: 'ping' }
  /** Stop accepting, finish open work until `deadline` (epoch ms), flush telemetry, exit 0. */
  | { pl: 1; t: 'drain'; deadline: number };

/** Where a worker's listener ended up (the real port when the config said 0). */
export interface BoundListener {
  /** `service/port` of a port, or the name of an outbound entry. */
  readonly key: string;
  readonly at: HostPort;
}

/** Worker -> control plane. */
export type ToPrimary =
  /** Handlers are attached: send `init`. */
  | { pl: 1; t: 'hello' }
  | {
      pl: 1;
      t: 'listening';
      ports: BoundListener[];
      outbound: BoundListener[];
      version: number;
    }
  | { pl: 1; t: 'policy-applied'; version: number }
  | { pl: 1; t: 'policy-rejected'; version: number; error: string }
  | { pl: 1; t: 'telemetry'; batch: TelemetryBatch }
  /** The worker cannot run (a listener cannot be bound...); it exits 1 right after. */
  | { pl: 1; t: 'fatal'; code: string; error: string }
  | { pl: 1; t: 'drained' }
  | { pl: 1; t: 'pong' };

const TO_WORKER = new Set<string>(['init', 'policy', 'reload-tls', 'drain', 'ping']);
const TO_PRIMARY = new Set<string>([
  'hello',
  'listening',
  'policy-applied',
  'policy-rejected',
  'telemetry',
  'fatal',
  'drained',
  'pong',
]);

function tagged(msg: unknown, kinds: Set<string>): msg is { pl: 1; t: string } {
  if (typeof msg !== 'object' || msg === null) return false;
  const m = msg as { pl?: unknown; t?: unknown };
  return m.pl === 1 && typeof m.t === 'string' && kinds.has(m.t);
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

function isPolicyPayload(v: unknown): v is PolicyPayload {
  return (
    isRecord(v) &&
    typeof v.version === 'number' &&
    typeof v.issuedAt === 'string' &&
    typeof v.node === 'string' &&
    Array.isArray(v.licenses)
  );
}

function isBound(v: unknown): v is BoundListener[] {
  return (
    Array.isArray(v) &&
    v.every(
      (b) =>
        isRecord(b) &&
        typeof b.key === 'string' &&
        isRecord(b.at) &&
        typeof b.at.host === 'string' &&
        typeof b.at.port === 'number',
    )
  );
}

/**
 * The shape of a telemetry batch: every list a list, the folded counts a record. Items are checked
 * where they land (SidecarMetrics.addCount, UsageTracker.absorb), which skip what they cannot place.
 */
function isBatch(v: unknown): v is TelemetryBatch {
  return isRecord(v) && BATCH_LISTS.every((k) => Array.isArray(v[k])) && isRecord(v.merged);
}

const BATCH_LISTS = [
  'counters',
  'gauges',
  'histograms',
  'usage',
  'denials',
  'recentDenials',
  'outbound',
] as const satisfies ReadonlyArray<keyof TelemetryBatch>;

/** A message for a worker, or null when `msg` is not one (or is malformed). */
export function asToWorker(msg: unknown): ToWorker | null {
  if (!tagged(msg, TO_WORKER)) return null;
  const m = msg as Record<string, unknown>;
  switch (m.t) {
    case 'init':
      return isRecord(m.config) && isPolicyPayload(m.policy) && typeof m.ticketKeys === 'string'
        ? (msg as ToWorker)
        : null;
    case 'policy':
      return isPolicyPayload(m.policy) ? (msg as ToWorker) : null;
    case 'drain':
      return typeof m.deadline === 'number' ? (msg as ToWorker) : null;
    default:
      return msg as ToWorker;
  }
}

/** A message from a worker, or null when `msg` is not one (or is malformed). */
export function asToPrimary(msg: unknown): ToPrimary | null {
  if (!tagged(msg, TO_PRIMARY)) return null;
  const m = msg as Record<string, unknown>;
  switch (m.t) {
    case 'listening':
      return isBound(m.ports) && isBound(m.outbound) && typeof m.version === 'number'
        ? (msg as ToPrimary)
        : null;
    case 'policy-applied':
      return typeof m.version === 'number' ? (msg as ToPrimary) : null;
    case 'policy-rejected':
      return typeof m.version === 'number' && typeof m.error === 'string' ? (msg as ToPrimary) : null;
    case 'telemetry':
      return isBatch(m.batch) ? (msg as ToPrimary) : null;
    case 'fatal':
      return typeof m.code === 'string' && typeof m.error === 'string' ? (msg as ToPrimary) : null;
    default:
      return msg as ToPrimary;
  }
}

/** The payload that rebuilds `snapshot` in a worker. */
export function policyPayload(snapshot: PolicySnapshot): PolicyPayload {
  return {
    version: snapshot.version,
    issuedAt: new Date(snapshot.issuedAt).toISOString(),
    node: snapshot.node,
    licenses: snapshot.licenses.map((l) => l.wire),
  };
}

/**
 * Compile a payload into the worker's snapshot. Version 0 is the empty policy (deny everything),
 * as in a process that has no bundle yet. Throws PortlicenseError('BUNDLE_INVALID') like
 * buildSnapshot.
 */
export function snapshotFromPayload(p: PolicyPayload): PolicySnapshot {
  if (p.version === 0 && p.licenses.length === 0) return emptySnapshot();
  return buildSnapshot(bundlePayload(p));
}

/** The same, compiled in slices so a worker that is serving keeps serving (see policy/slice.ts). */
export async function snapshotFromPayloadAsync(p: PolicyPayload): Promise<PolicySnapshot> {
  if (p.version === 0 && p.licenses.length === 0) return emptySnapshot();
  return buildSnapshotAsync(bundlePayload(p));
}

function bundlePayload(p: PolicyPayload): BundlePayload {
  return {
    version: p.version,
    issuedAt: p.issuedAt,
    node: p.node,
    services: [],
    licenses: p.licenses as LicenseWire[],
  };
}
