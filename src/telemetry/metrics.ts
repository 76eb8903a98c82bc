/**
 * Every Prometheus metric name of SPEC §5 in one place (names are public API), and the sidecar's
 * registry. The data path never touches prom-client: listeners bump plain cells bound at start-up
 * (see cells.ts and port-telemetry.ts); license gauges are computed from the current policy
 * snapshot and the usage tracker when Prometheus scrapes, never on a request.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { registerProcessMetrics } from './process-metrics.js';
import type { Clock } from '../clock.js';
import type { PolicyView } from '../policy/types.js';
import {
  CellFamily,
  cellCounter,
  cellGauge,
  CellHistogram,
  histogramFamily,
  newCell,
  type Cell,
  type HistogramCell,
} from './cells.js';
import type { UsageTracker } from './usage.js';

/** Sidecar metric names (SPEC §5). */
export const SIDECAR_METRICS = {
  decisions: 'portlicense_decisions_total',
  activeConnections: 'portlicense_active_connections',
  connectionsTerminated: 'portlicense_connections_terminated_total',
  proxiedBytes: 'portlicense_proxied_bytes_total',
  requestDuration: 'portlicense_request_duration_seconds',
  tlsHandshakeErrors: 'portlicense_tls_handshake_errors_total',
  licenseExpiry: 'portlicense_license_expiry_timestamp_seconds',
  licenseLastAccess: 'portlicense_license_last_access_timestamp_seconds',
  bundleVersion: 'portlicense_bundle_version',
  bundleLastSuccess: 'portlicense_bundle_last_success_timestamp_seconds',
  syncFailures: 'portlicense_sync_failures_total',
  usageReportsDropped: 'portlicense_usage_reports_dropped_total',
  outboundConnections: 'portlicense_outbound_connections_total',
} as const;

/** Authority metric names (SPEC §5); the authority builds its own registry from these. */
export const AUTHORITY_METRICS = {
  licenses: 'portlicense_authority_licenses',
  renewals: 'portlicense_authority_renewals_total',
  revocations: 'portlicense_authority_revocations_total',
  expiringLicenses: 'portlicense_authority_expiring_licenses',
  bundleRequests: 'portlicense_authority_bundle_requests_total',
  sidecars: 'portlicense_authority_sidecars',
} as const;

/**
 * The `reason` label of `portlicense_decisions_total` for an allow. Prometheus treats an empty
 * label value as an absent label, so allows carry an explicit word instead of "".
 */
export const ALLOW_REASON = 'none';

/** Buckets of `portlicense_request_duration_seconds`: 0.5 ms (a local hop) to 30 s (the default upstreamTimeout). */
export const REQUEST_DURATION_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** `result` label of `portlicense_outbound_connections_total`. */
export type OutboundResult =
  | 'ok'
  /** The server's SPIFFE ID is not `serverId` (or has none). */
  | 'server_id_mismatch'
  /** The server's chain does not verify against `tls.ca`. */
  | 'untrusted_server'
  /** TCP connect to the target failed or timed out. */
  | 'dial_error'
  /** Any other TLS failure toward the target. */
  | 'tls_error';

export const OUTBOUND_RESULTS: readonly OutboundResult[] = [
  'ok',
  'server_id_mismatch',
  'untrusted_server',
  'dial_error',
  'tls_error',
];

/** Outbound telemetry of one `outbound` entry, with its label sets bound once. */
export interface OutboundTelemetry {
  result(result: OutboundResult): void;
}

type PortLabels = 'service' | 'port';

/**
 * Counter families by the name `addCount` knows them: the port families that only grow, and
 * `portlicense_outbound_connections_total`.
 */
export type CounterFamilyName =
  'decisions' | 'terminated' | 'bytes' | 'handshakeErrors' | 'outboundConnections';

/** Cell families of the per-port metrics; port-telemetry.ts binds one set per listener. */
export interface PortFamilies {
  readonly decisions: CellFamily<PortLabels | 'decision' | 'reason'>;
  readonly activeConnections: CellFamily<PortLabels>;
  readonly terminated: CellFamily<PortLabels | 'reason'>;
  readonly bytes: CellFamily<PortLabels | 'direction'>;
  readonly requestDuration: CellFamily<PortLabels, HistogramCell>;
  readonly handshakeErrors: CellFamily<PortLabels | 'reason'>;
}

export interface SidecarMetrics {
  /** Scrape this: the sidecar metrics plus the default process metrics. */
  readonly registry: Registry;
  readonly usage: UsageTracker;
  /** For port-telemetry.ts. */
  readonly families: PortFamilies;
  /** Current value of `portlicense_active_connections` for one port, for /status. */
  activeConnections(service: string, port: string): number;
  /** Label sets of `portlicense_outbound_connections_total{name,result}` for one outbound entry. */
  outbound(name: string): OutboundTelemetry;
  /**
   * Add `delta` to one series of a counter family, as if this process had counted it: how the
   * control plane folds in a data-plane worker's counts (`workers: N`). Returns false, changing
   * nothing, for an unknown family, a label set that is not exactly the family's labels, or a
   * delta that is not a positive finite number (the counts come from another process).
   */
  addCount(family: CounterFamilyName, labels: Readonly<Record<string, string>>, delta: number): boolean;
  /** A verified bundle was swapped in. `at` defaults to the clock. */
  bundleLoaded(version: number, at?: number): void;
  /** A sync round succeeded without a new bundle (a 304 counts, SPEC §4). */
  syncSucceeded(at?: number): void;
  /** A sync round failed; `reason` is a short stable word (`connect`, `signature`, `rollback`, ...). */
  syncFailed(reason: string): void;
  /** Usage reports (or report entries) that had to be dropped. */
  reportsDropped(n: number): void;
}

export interface SidecarMetricsOptions {
  policy: PolicyView;
  usage: UsageTracker;
  clock: Clock;
  /** Register prom-client's default process metrics on this registry (default true). */
  defaultMetrics?: boolean;
}

/** Build the sidecar registry. Each call has its own Registry; nothing touches prom-client's global one. */
export function createSidecarMetrics(opts: SidecarMetricsOptions): SidecarMetrics {
  const { policy, usage, clock } = opts;
  const registry = new Registry();
  if (opts.defaultMetrics !== false) registerProcessMetrics(registry);
  const m = SIDECAR_METRICS;

  const families: PortFamilies = {
    decisions: new CellFamily(['service', 'port', 'decision', 'reason'], newCell),
    activeConnections: new CellFamily(['service', 'port'], newCell),
    terminated: new CellFamily(['service', 'port', 'reason'], newCell),
    bytes: new CellFamily(['service', 'port', 'direction'], newCell),
    requestDuration: histogramFamily(['service', 'port'], REQUEST_DURATION_BUCKETS),
    handshakeErrors: new CellFamily(['service', 'port', 'reason'], newCell),
  };
  const outboundFamily = new CellFamily<'name' | 'result'>(['name', 'result'], newCell);

  cellCounter(
    {
      registry,
      name: m.decisions,
      help: `Authorization decisions per port. decision: allow, deny, audit_deny; reason: the deny reason, "${ALLOW_REASON}" for allow.`,
      labelNames: ['service', 'port', 'decision', 'reason'],
    },
    families.decisions,
  );
  cellGauge(
    {
      registry,
      name: m.activeConnections,
      help: 'Open downstream connections per port (after the TLS handshake).',
      labelNames: ['service', 'port'],
    },
    families.activeConnections,
  );
  cellCounter(
    {
      registry,
      name: m.connectionsTerminated,
      help: 'Admitted connections closed by the sidecar, by reason (expired, revoked, license_removed, idle_timeout, shutdown).',
      labelNames: ['service', 'port', 'reason'],
    },
    families.terminated,
  );
  cellCounter(
    {
      registry,
      name: m.proxiedBytes,
      help: 'Bytes proxied per port. direction: in (caller to upstream), out (upstream to caller).',
      labelNames: ['service', 'port', 'direction'],
    },
    families.bytes,
  );
  new CellHistogram(
    {
      registry,
      name: m.requestDuration,
      help: 'HTTP request duration through the sidecar, from request head to end of response, in seconds.',
      labelNames: ['service', 'port'],
      buckets: REQUEST_DURATION_BUCKETS,
    },
    families.requestDuration,
  );
  cellCounter(
    {
      registry,
      name: m.tlsHandshakeErrors,
      help: 'Refused TLS handshakes per port, by reason (no_client_cert, untrusted_cert, expired_cert, handshake_timeout, tls_error).',
      labelNames: ['service', 'port', 'reason'],
    },
    families.handshakeErrors,
  );
  cellCounter(
    {
      registry,
      name: m.outboundConnections,
      help: `Outbound connections per outbound entry, by result (${OUTBOUND_RESULTS.join(', ')}).`,
      labelNames: ['name', 'result'],
    },
    outboundFamily,
  );

  const licenseLabels = ['license', 'service', 'port', 'subject'] as const;
  new Gauge({
    name: m.licenseExpiry,
    help: 'expiresAt of each license in the current bundle, as a Unix timestamp. Revoked licenses are not listed.',
    labelNames: licenseLabels,
    registers: [registry],
    collect() {
      this.reset();
      for (const l of policy.current().licenses) {
        if (l.revokedAt !== null) continue;
        this.set({ license: l.id, service: l.service, port: l.port, subject: l.subject }, l.expiresAt / 1000);
      }
    },
  });
  new Gauge({
    name: m.licenseLastAccess,
    help: 'Last admitted access through each license of the current bundle (latest over identities and origins), as a Unix timestamp. Absent until first use since the sidecar started.',
    labelNames: licenseLabels,
    registers: [registry],
    collect() {
      this.reset();
      for (const l of policy.current().licenses) {
        if (l.revokedAt !== null) continue;
        const last = usage.lastAccess(l.id);
        if (!last) continue;
        this.set({ license: l.id, service: l.service, port: l.port, subject: l.subject }, last.at / 1000);
      }
    },
  });

  const bundleVersion = new Gauge({
    name: m.bundleVersion,
    help: 'Version of the bundle being enforced (0 before the first one).',
    registers: [registry],
  });
  const bundleLastSuccess = new Gauge({
    name: m.bundleLastSuccess,
    help: 'Last successful sync with the authority or bundle file (a 304 counts), as a Unix timestamp; 0 before the first.',
    registers: [registry],
  });
  const syncFailures = new Counter({
    name: m.syncFailures,
    help: 'Failed sync rounds, by reason.',
    labelNames: ['reason'],
    registers: [registry],
  });
  const reportsDropped = new Counter({
    name: m.usageReportsDropped,
    help: 'Usage report entries that did not fit the bounded pending report while the authority was unreachable.',
    registers: [registry],
  });

  const outboundCache = new Map<string, OutboundTelemetry>();
  const counters = new Map<CounterFamilyName, { family: CellFamily<string>; labelNames: readonly string[] }>([
    ['decisions', { family: families.decisions, labelNames: ['service', 'port', 'decision', 'reason'] }],
    ['terminated', { family: families.terminated, labelNames: ['service', 'port', 'reason'] }],
    ['bytes', { family: families.bytes, labelNames: ['service', 'port', 'direction'] }],
    ['handshakeErrors', { family: families.handshakeErrors, labelNames: ['service', 'port', 'reason'] }],
    ['outboundConnections', { family: outboundFamily, labelNames: ['name', 'result'] }],
  ]);

  return {
    registry,
    usage,
    families,
    activeConnections: (service, port) => families.activeConnections.find({ service, port })?.value ?? 0,
    outbound(name) {
      let t = outboundCache.get(name);
      if (!t) {
        const cells = new Map<string, Cell>();
        for (const r of OUTBOUND_RESULTS) cells.set(r, outboundFamily.bind({ name, result: r }));
        t = {
          result(r) {
            const c = cells.get(r) ?? outboundFamily.bind({ name, result: r });
            c.value++;
          },
        };
        outboundCache.set(name, t);
      }
      return t;
    },
    addCount(family, labels, delta) {
      const c = counters.get(family);
      if (c === undefined || !(delta > 0 && Number.isFinite(delta)) || !hasExactly(labels, c.labelNames))
        return false;
      c.family.bind(labels).value += delta;
      return true;
    },
    bundleLoaded(version, at = clock.now()) {
      bundleVersion.set(version);
      bundleLastSuccess.set(at / 1000);
    },
    syncSucceeded(at = clock.now()) {
      bundleLastSuccess.set(at / 1000);
    },
    syncFailed(reason) {
      syncFailures.inc({ reason });
    },
    reportsDropped(n) {
      if (n > 0) reportsDropped.inc(n);
    },
  };
}

function hasExactly(labels: Readonly<Record<string, string>>, names: readonly string[]): boolean {
  if (typeof labels !== 'object' || labels === null || Object.keys(labels).length !== names.length)
    return false;
  return names.every((n) => typeof labels[n] === 'string');
}
