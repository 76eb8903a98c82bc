/**
 * The authority's Prometheus metrics (SPEC §5, names in telemetry/metrics.ts). Counters are bumped
 * by the API as changes happen; the license and sidecar gauges are computed from the store when
 * Prometheus scrapes, so they can never drift from what the store holds.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { registerProcessMetrics } from '../telemetry/process-metrics.js';
import type { Clock } from '../clock.js';
import { AUTHORITY_METRICS } from '../telemetry/metrics.js';
import { licenseState, type LicenseRecord, type LicenseState } from './model.js';
import type { NodeState } from './nodes.js';

const STATES: readonly LicenseState[] = ['pending', 'active', 'expired', 'revoked'];

/** `result` of portlicense_authority_bundle_requests_total. */
export type BundleResult = '200' | '304' | 'error' | 'aborted';

export interface AuthorityMetrics {
  readonly registry: Registry;
  renewed(kind: 'auto' | 'manual', n?: number): void;
  revoked(n?: number): void;
  bundleRequest(result: BundleResult): void;
}

/** What the scrape-time gauges read. */
export interface AuthorityMetricsSources {
  clock: Clock;
  licenses(): LicenseRecord[];
  expiringCount(): number;
  sidecarCounts(): Record<NodeState, number>;
  /** Register prom-client's default process metrics (default true). */
  defaultMetrics?: boolean;
}

/** Build a registry of its own (never prom-client's global one). */
export function createAuthorityMetrics(src: AuthorityMetricsSources): AuthorityMetrics {
  const registry = new Registry();
  if (src.defaultMetrics !== false) registerProcessMetrics(registry);
  const m = AUTHORITY_METRICS;

  new Gauge({
    name: m.licenses,
    help: 'Licenses in the store by state (pending, active, expired, revoked).',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const now = src.clock.now();
      const counts: Record<LicenseState, number> = { pending: 0, active: 0, expired: 0, revoked: 0 };
      for (const l of src.licenses()) counts[licenseState(l, now)]++;
      for (const s of STATES) this.set({ state: s }, counts[s]);
    },
  });
  new Gauge({
    name: m.expiringLicenses,
    help: 'Live licenses expiring within defaults.warnBefore that cannot be renewed further (autoRenew off or maximum lifetime reached).',
    registers: [registry],
    collect() {
      this.set(src.expiringCount());
    },
  });
  new Gauge({
    name: m.sidecars,
    help: 'Sidecars seen by the authority, by state: fresh (synced within 2 x limits.maxWait + 30s) or stale.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const c = src.sidecarCounts();
      this.set({ state: 'fresh' }, c.fresh);
      this.set({ state: 'stale' }, c.stale);
    },
  });
  const renewals = new Counter({
    name: m.renewals,
    help: 'License renewals, by kind: auto (driven by usage reports) or manual (API/CLI).',
    labelNames: ['kind'],
    registers: [registry],
  });
  const revocations = new Counter({
    name: m.revocations,
    help: 'Licenses revoked.',
    registers: [registry],
  });
  const bundleRequests = new Counter({
    name: m.bundleRequests,
    help: 'GET /v1/bundle answers, by result: 200 (a bundle), 304 (not modified), error (4xx/5xx), aborted (client left while held).',
    labelNames: ['result'],
    registers: [registry],
  });
  // Zero series exist from the start, so rate() and alerts see them before the first event.
  renewals.inc({ kind: 'auto' }, 0);
  renewals.inc({ kind: 'manual' }, 0);
  for (const r of ['200', '304', 'error', 'aborted']) bundleRequests.inc({ result: r }, 0);

  return {
    registry,
    renewed: (kind, n = 1) => {
      if (n > 0) renewals.inc({ kind }, n);
    },
    revoked: (n = 1) => {
      if (n > 0) revocations.inc(n);
    },
    bundleRequest: (result) => bundleRequests.inc({ result }),
  };
}
