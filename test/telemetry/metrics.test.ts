import { afterEach, describe, expect, it } from 'vitest';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { ManualClock } from '../../src/clock.js';
import { MemorySink, silentLogger } from '../../src/log.js';
import type { DenyReason, TerminationReason } from '../../src/policy/types.js';
import { createAccessLogger } from '../../src/telemetry/access-log.js';
import { startAdminServer, type AdminServer } from '../../src/telemetry/admin-server.js';
import {
  AUTHORITY_METRICS,
  createSidecarMetrics,
  REQUEST_DURATION_BUCKETS,
  SIDECAR_METRICS,
  type SidecarMetrics,
} from '../../src/telemetry/metrics.js';
import { createPortTelemetry } from '../../src/telemetry/port-telemetry.js';
import { UsageTracker } from '../../src/telemetry/usage.js';
import { handSnapshot, parseExposition, samplesOf, TestPolicyView } from './helpers.js';

const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';
const BATCH = 'spiffe://example.org/ns/jobs/sa/batch';

let admin: AdminServer | undefined;
afterEach(async () => {
  await admin?.close();
  admin = undefined;
});

function setup(opts: { defaultMetrics?: boolean } = {}) {
  const clock = new ManualClock('2026-11-28T10:00:00Z');
  const policy = new TestPolicyView();
  const usage = new UsageTracker({ policy });
  const metrics = createSidecarMetrics({ policy, usage, clock, ...opts });
  const accessLog = createAccessLogger(new MemorySink(), clock);
  const http = createPortTelemetry(
    metrics,
    { service: 'orders', name: 'http', protocol: 'http' },
    { accessLog },
  );
  const tcp = createPortTelemetry(metrics, { service: 'orders', name: 'db', protocol: 'tcp' }, { accessLog });
  return { clock, policy, usage, metrics, http, tcp };
}

async function scrape(
  metrics: SidecarMetrics,
): Promise<{ samples: Map<string, number>; text: string; type: string }> {
  admin ??= await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    registry: metrics.registry,
    ready: () => ({ ok: true, reasons: [] }),
    log: silentLogger,
  });
  const res = await fetch(`http://127.0.0.1:${admin.address.port}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  return { samples: parseExposition(text), text, type: res.headers.get('content-type') ?? '' };
}

describe('metric names', () => {
  it('match SPEC §5 exactly', () => {
    expect(Object.values(SIDECAR_METRICS).sort()).toEqual(
      [
        'portlicense_active_connections',
        'portlicense_bundle_last_success_timestamp_seconds',
        'portlicense_bundle_version',
        'portlicense_connections_terminated_total',
        'portlicense_decisions_total',
        'portlicense_license_expiry_timestamp_seconds',
        'portlicense_license_last_access_timestamp_seconds',
        'portlicense_outbound_connections_total',
        'portlicense_proxied_bytes_total',
        'portlicense_request_duration_seconds',
        'portlicense_sync_failures_total',
        'portlicense_tls_handshake_errors_total',
        'portlicense_usage_reports_dropped_total',
      ].sort(),
    );
    expect(Object.values(AUTHORITY_METRICS).sort()).toEqual(
      [
        'portlicense_authority_bundle_requests_total',
        'portlicense_authority_expiring_licenses',
        'portlicense_authority_licenses',
        'portlicense_authority_renewals_total',
        'portlicense_authority_revocations_total',
        'portlicense_authority_sidecars',
      ].sort(),
    );
  });
});

describe('sidecar metrics over /metrics', () => {
  it('exports every SPEC metric with HELP/TYPE, the default process metrics and the Prometheus content type', async () => {
    const { metrics } = setup();
    const { text, type } = await scrape(metrics);
    expect(type).toBe('text/plain; version=0.0.4; charset=utf-8');
    for (const name of Object.values(SIDECAR_METRICS)) expect(text).toContain(`# TYPE ${name} `);
    expect(text).toContain('# TYPE portlicense_request_duration_seconds histogram');
    expect(text).toContain('# TYPE portlicense_active_connections gauge');
    expect(text).toContain('# TYPE portlicense_decisions_total counter');
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
  });

  it("registers every one of prom-client's default metrics but the GC histogram (no GC observer)", () => {
    const all = new Registry();
    collectDefaultMetrics({ register: all });
    const names = (r: Registry): string[] =>
      r
        .getMetricsAsArray()
        .map((m) => m.name)
        .filter((n) => !n.startsWith('portlicense_'))
        .sort();
    const { metrics } = setup();
    expect(names(all)).toContain('nodejs_gc_duration_seconds');
    expect(names(metrics.registry)).toEqual(names(all).filter((n) => n !== 'nodejs_gc_duration_seconds'));
  });

  it('builds independent registries (tests and restarts create many)', () => {
    const a = setup();
    const b = setup();
    expect(a.metrics.registry).not.toBe(b.metrics.registry);
  });

  it('counts decisions with reason "none" for allow and pre-initialises every reason at 0', async () => {
    const { metrics, http, tcp } = setup({ defaultMetrics: false });
    http.decision('allow', null);
    http.decision('allow', null);
    http.decision('deny', 'path_not_allowed');
    http.decision('audit_deny', 'expired');
    tcp.decision('deny', 'no_license');
    const { samples } = await scrape(metrics);
    const d = (port: string, decision: string, reason: string): number | undefined =>
      samples.get(
        `portlicense_decisions_total{service="orders",port="${port}",decision="${decision}",reason="${reason}"}`,
      );
    expect(d('http', 'allow', 'none')).toBe(2);
    expect(d('http', 'deny', 'path_not_allowed')).toBe(1);
    expect(d('http', 'audit_deny', 'expired')).toBe(1);
    expect(d('db', 'deny', 'no_license')).toBe(1);
    expect(d('http', 'deny', 'revoked')).toBe(0);
    expect(d('db', 'audit_deny', 'bad_identity')).toBe(0);
    // allow + 7 deny reasons + 7 audit_deny reasons, per port
    expect(samplesOf(samples, SIDECAR_METRICS.decisions)).toHaveLength(2 * 15);
  });

  it('counts a reason outside the vocabulary under its own label instead of throwing', async () => {
    const { metrics, http } = setup({ defaultMetrics: false });
    http.decision('deny', 'weird' as DenyReason);
    http.decision('deny', null);
    http.terminated('gone' as TerminationReason);
    const { samples } = await scrape(metrics);
    expect(
      samples.get('portlicense_decisions_total{service="orders",port="http",decision="deny",reason="weird"}'),
    ).toBe(1);
    expect(
      samples.get(
        'portlicense_decisions_total{service="orders",port="http",decision="deny",reason="no_license"}',
      ),
    ).toBe(1);
    expect(
      samples.get('portlicense_connections_terminated_total{service="orders",port="http",reason="gone"}'),
    ).toBe(1);
  });

  it('tracks connections, terminations, bytes and handshake errors per port', async () => {
    const { metrics, tcp, http } = setup({ defaultMetrics: false });
    tcp.connectionOpened();
    tcp.connectionOpened();
    tcp.connectionOpened();
    tcp.connectionClosed();
    tcp.terminated('revoked');
    tcp.bytes('in', 1000);
    tcp.bytes('in', 24);
    tcp.bytes('out', 4096);
    http.handshakeError('untrusted_cert');
    http.handshakeError('untrusted_cert');
    tcp.handshakeError('no_client_cert');
    const { samples } = await scrape(metrics);
    expect(samples.get('portlicense_active_connections{service="orders",port="db"}')).toBe(2);
    expect(samples.get('portlicense_active_connections{service="orders",port="http"}')).toBe(0);
    expect(metrics.activeConnections('orders', 'db')).toBe(2);
    expect(metrics.activeConnections('orders', 'nope')).toBe(0);
    expect(
      samples.get('portlicense_connections_terminated_total{service="orders",port="db",reason="revoked"}'),
    ).toBe(1);
    expect(
      samples.get('portlicense_connections_terminated_total{service="orders",port="db",reason="expired"}'),
    ).toBe(0);
    expect(samples.get('portlicense_proxied_bytes_total{service="orders",port="db",direction="in"}')).toBe(
      1024,
    );
    expect(samples.get('portlicense_proxied_bytes_total{service="orders",port="db",direction="out"}')).toBe(
      4096,
    );
    expect(
      samples.get(
        'portlicense_tls_handshake_errors_total{service="orders",port="http",reason="untrusted_cert"}',
      ),
    ).toBe(2);
    expect(
      samples.get(
        'portlicense_tls_handshake_errors_total{service="orders",port="db",reason="no_client_cert"}',
      ),
    ).toBe(1);
    expect(
      samples.get('portlicense_tls_handshake_errors_total{service="orders",port="db",reason="expired_cert"}'),
    ).toBe(0);
  });

  it('never lets active connections go below zero', async () => {
    const { metrics, tcp } = setup({ defaultMetrics: false });
    tcp.connectionClosed();
    const { samples } = await scrape(metrics);
    expect(samples.get('portlicense_active_connections{service="orders",port="db"}')).toBe(0);
  });

  it('exports request durations as a cumulative histogram for http ports only', async () => {
    const { metrics, http, tcp } = setup({ defaultMetrics: false });
    http.requestDuration(0.0004);
    http.requestDuration(0.0005);
    http.requestDuration(0.2);
    http.requestDuration(100);
    http.requestDuration(-1); // a clock step: counted as 0
    tcp.requestDuration(1);
    const { samples } = await scrape(metrics);
    const b = (le: string): number | undefined =>
      samples.get(`portlicense_request_duration_seconds_bucket{service="orders",port="http",le="${le}"}`);
    expect(b('0.0005')).toBe(3);
    expect(b('0.001')).toBe(3);
    expect(b('0.1')).toBe(3);
    expect(b('0.25')).toBe(4);
    expect(b('30')).toBe(4);
    expect(b('+Inf')).toBe(5);
    expect(samples.get('portlicense_request_duration_seconds_count{service="orders",port="http"}')).toBe(5);
    expect(samples.get('portlicense_request_duration_seconds_sum{service="orders",port="http"}')).toBeCloseTo(
      100.2009,
      6,
    );
    const series = samplesOf(samples, 'portlicense_request_duration_seconds_bucket');
    expect(series).toHaveLength(REQUEST_DURATION_BUCKETS.length + 1);
    expect(series.some((k) => k.includes('port="db"'))).toBe(false);
    expect(REQUEST_DURATION_BUCKETS[0]).toBe(0.0005);
    expect(REQUEST_DURATION_BUCKETS.at(-1)).toBe(30);
  });

  it('binding the same port twice shares its series', async () => {
    const { metrics, http } = setup({ defaultMetrics: false });
    const again = createPortTelemetry(
      metrics,
      { service: 'orders', name: 'http' },
      { accessLog: createAccessLogger(new MemorySink()) },
    );
    http.decision('allow', null);
    again.decision('allow', null);
    const { samples } = await scrape(metrics);
    expect(
      samples.get('portlicense_decisions_total{service="orders",port="http",decision="allow",reason="none"}'),
    ).toBe(2);
  });

  it('exports bundle, sync, report-drop and outbound metrics set by the control plane', async () => {
    const { metrics, clock } = setup({ defaultMetrics: false });
    let { samples } = await scrape(metrics);
    expect(samples.get('portlicense_bundle_version')).toBe(0);
    expect(samples.get('portlicense_bundle_last_success_timestamp_seconds')).toBe(0);
    expect(samples.get('portlicense_usage_reports_dropped_total')).toBe(0);

    metrics.bundleLoaded(7);
    clock.advance(30_000);
    metrics.syncSucceeded();
    metrics.syncFailed('unreachable');
    metrics.syncFailed('unreachable');
    metrics.syncFailed('bad_signature');
    metrics.reportsDropped(3);
    metrics.reportsDropped(0);
    const out = metrics.outbound('payments');
    out.result('ok');
    out.result('ok');
    metrics.outbound('payments').result('server_id_mismatch');

    ({ samples } = await scrape(metrics));
    expect(samples.get('portlicense_bundle_version')).toBe(7);
    expect(samples.get('portlicense_bundle_last_success_timestamp_seconds')).toBe(
      Date.parse('2026-11-28T10:00:30Z') / 1000,
    );
    expect(samples.get('portlicense_sync_failures_total{reason="unreachable"}')).toBe(2);
    expect(samples.get('portlicense_sync_failures_total{reason="bad_signature"}')).toBe(1);
    expect(samples.get('portlicense_usage_reports_dropped_total')).toBe(3);
    expect(samples.get('portlicense_outbound_connections_total{name="payments",result="ok"}')).toBe(2);
    expect(
      samples.get('portlicense_outbound_connections_total{name="payments",result="server_id_mismatch"}'),
    ).toBe(1);
    expect(samples.get('portlicense_outbound_connections_total{name="payments",result="dial_error"}')).toBe(
      0,
    );

    metrics.bundleLoaded(8, Date.parse('2026-11-28T11:00:00Z'));
    ({ samples } = await scrape(metrics));
    expect(samples.get('portlicense_bundle_version')).toBe(8);
    expect(samples.get('portlicense_bundle_last_success_timestamp_seconds')).toBe(
      Date.parse('2026-11-28T11:00:00Z') / 1000,
    );
  });
});

describe('addCount: a worker count folded into a counter family', () => {
  const allow = 'portlicense_decisions_total{service="orders",port="http",decision="allow",reason="none"}';
  const ok = 'portlicense_outbound_connections_total{name="payments",result="ok"}';

  it('adds to the series of the label set, as if this process had counted it, outbound included', async () => {
    const { metrics, http } = setup({ defaultMetrics: false });
    http.decision('allow', null);
    expect(
      metrics.addCount(
        'decisions',
        { service: 'orders', port: 'http', decision: 'allow', reason: 'none' },
        41,
      ),
    ).toBe(true);
    expect(metrics.addCount('bytes', { service: 'orders', port: 'db', direction: 'out' }, 2048)).toBe(true);
    expect(metrics.addCount('outboundConnections', { name: 'payments', result: 'ok' }, 5)).toBe(true);
    metrics.outbound('payments').result('ok');
    // A series no listener bound yet (a worker's late label) is created, as a listener would.
    expect(metrics.addCount('terminated', { service: 'orders', port: 'db', reason: 'odd' }, 1)).toBe(true);
    const { samples } = await scrape(metrics);
    expect(samples.get(allow)).toBe(42);
    expect(samples.get('portlicense_proxied_bytes_total{service="orders",port="db",direction="out"}')).toBe(
      2048,
    );
    expect(samples.get(ok)).toBe(6);
    expect(
      samples.get('portlicense_connections_terminated_total{service="orders",port="db",reason="odd"}'),
    ).toBe(1);
  });

  it("refuses, changing nothing, an unknown family, labels that are not the family's, a bad delta", async () => {
    const { metrics } = setup({ defaultMetrics: false });
    const labels = { service: 'orders', port: 'http', decision: 'allow', reason: 'none' };
    const refused: Array<[string, unknown, number]> = [
      ['nonsense', labels, 1],
      ['constructor', labels, 1],
      ['activeConnections', { service: 'orders', port: 'http' }, 1],
      ['decisions', { service: 'orders', port: 'http', decision: 'allow' }, 1],
      ['decisions', { ...labels, extra: 'x' }, 1],
      ['decisions', { ...labels, reason: 3 }, 1],
      ['decisions', null, 1],
      ['decisions', labels, 0],
      ['decisions', labels, -2],
      ['decisions', labels, Number.NaN],
      ['decisions', labels, Infinity],
      ['outboundConnections', { name: 'payments' }, 1],
    ];
    const before = await metrics.registry.metrics();
    for (const [family, l, d] of refused)
      expect(
        metrics.addCount(family as 'decisions', l as Record<string, string>, d),
        `${family} ${JSON.stringify(l)} ${d}`,
      ).toBe(false);
    expect(await metrics.registry.metrics()).toBe(before);
  });
});

describe('license gauges at scrape time', () => {
  const lic = (id: string, subject: string, port: string, expiresAt: string, revokedAt?: string) => ({
    id,
    subject,
    service: 'orders',
    port,
    notBefore: '2026-11-28T00:00:00Z',
    expiresAt,
    ...(revokedAt ? { revokedAt } : {}),
  });

  it('reflect the current snapshot and the latest access over identities and origins', async () => {
    const { metrics, policy, http } = setup({ defaultMetrics: false });
    policy.swap(
      handSnapshot(3, '2026-11-28T09:00:00Z', [
        lic('lic_a', 'spiffe://example.org/ns/default/*', 'http', '2026-11-29T10:00:00Z'),
        lic('lic_b', BATCH, 'db', '2026-12-01T00:00:00Z'),
        lic('lic_r', FRONTEND, 'http', '2026-12-01T00:00:00Z', '2026-11-28T09:30:00Z'),
      ]),
    );
    const e1 = http.usage('lic_a', FRONTEND, '10.0.0.1');
    e1.at = Date.parse('2026-11-28T10:00:05Z');
    e1.count++;
    const e2 = http.usage('lic_a', 'spiffe://example.org/ns/default/sa/other', '10.0.0.2');
    e2.at = Date.parse('2026-11-28T10:00:09Z');
    e2.count++;
    const e3 = http.usage('lic_a', FRONTEND, '10.0.0.3');
    e3.at = Date.parse('2026-11-28T10:00:07Z');
    e3.count++;

    let { samples } = await scrape(metrics);
    const labels = (id: string, port: string, subject: string) =>
      `{license="${id}",service="orders",port="${port}",subject="${subject}"}`;
    expect(
      samples.get(
        `portlicense_license_expiry_timestamp_seconds${labels('lic_a', 'http', 'spiffe://example.org/ns/default/*')}`,
      ),
    ).toBe(Date.parse('2026-11-29T10:00:00Z') / 1000);
    expect(samples.get(`portlicense_license_expiry_timestamp_seconds${labels('lic_b', 'db', BATCH)}`)).toBe(
      Date.parse('2026-12-01T00:00:00Z') / 1000,
    );
    // revoked licenses are not exported
    expect(samplesOf(samples, SIDECAR_METRICS.licenseExpiry)).toHaveLength(2);
    expect(
      samples.get(
        `portlicense_license_last_access_timestamp_seconds${labels('lic_a', 'http', 'spiffe://example.org/ns/default/*')}`,
      ),
    ).toBe(Date.parse('2026-11-28T10:00:09Z') / 1000);
    // never used: no last-access series
    expect(samplesOf(samples, SIDECAR_METRICS.licenseLastAccess)).toHaveLength(1);

    // A new bundle drops lic_a and renews lic_b: the next scrape follows, with no call on the data path.
    policy.swap(handSnapshot(4, '2026-11-28T10:01:00Z', [lic('lic_b', BATCH, 'db', '2026-12-02T00:00:00Z')]));
    ({ samples } = await scrape(metrics));
    expect(samplesOf(samples, SIDECAR_METRICS.licenseExpiry)).toEqual([
      `portlicense_license_expiry_timestamp_seconds${labels('lic_b', 'db', BATCH)}`,
    ]);
    expect(samples.get(`portlicense_license_expiry_timestamp_seconds${labels('lic_b', 'db', BATCH)}`)).toBe(
      Date.parse('2026-12-02T00:00:00Z') / 1000,
    );
    expect(samplesOf(samples, SIDECAR_METRICS.licenseLastAccess)).toHaveLength(0);
  });

  it('escapes label values that need it', async () => {
    const { metrics, policy } = setup({ defaultMetrics: false });
    policy.swap(
      handSnapshot(1, '2026-11-28T09:00:00Z', [
        lic('lic_"q"', 'spiffe://example.org/a\\b', 'http', '2026-11-29T00:00:00Z'),
      ]),
    );
    const { text } = await scrape(metrics);
    expect(text).toContain('license="lic_\\"q\\""');
    expect(text).toContain('subject="spiffe://example.org/a\\\\b"');
  });
});
