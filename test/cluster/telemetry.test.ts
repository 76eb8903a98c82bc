/**
 * Worker telemetry to the control plane: two in-process "workers" (each with its own metric cells
 * and usage tracker, bumped through the same PortTelemetry the listeners use) export batches that
 * travel as JSON and merge into one registry. The merged exposition must equal the sum, with the
 * single process's names and labels; gauges follow live workers only; nothing is counted twice.
 */
import { describe, expect, it } from 'vitest';
import { TelemetryExporter, type TelemetryBatch } from '../../src/cluster/telemetry-export.js';
import { TelemetryMerger } from '../../src/cluster/telemetry-merge.js';
import { ManualClock } from '../../src/clock.js';
import type { OutboundStats } from '../../src/dataplane/outbound.js';
import { createAccessLogger } from '../../src/telemetry/access-log.js';
import { createSidecarMetrics, OUTBOUND_RESULTS, type OutboundResult } from '../../src/telemetry/metrics.js';
import { createPortTelemetry } from '../../src/telemetry/port-telemetry.js';
import type { PortTelemetry } from '../../src/telemetry/types.js';
import { UsageTracker } from '../../src/telemetry/usage.js';
import { handSnapshot, parseExposition, TestPolicyView } from '../telemetry/helpers.js';
import { telemetryBatch } from '../helpers/worker.js';

const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';
const INTRUDER = 'spiffe://example.org/ns/default/sa/intruder';
const HTTP = { service: 'orders', name: 'http', protocol: 'http' as const };
const DB = { service: 'orders', name: 'db', protocol: 'tcp' as const };
const quiet = createAccessLogger({ write: () => {} });

const policy = new TestPolicyView(
  handSnapshot(7, '2026-11-28T10:00:00Z', [
    {
      id: 'lic_1',
      subject: FRONTEND,
      service: 'orders',
      port: 'http',
      notBefore: '2026-11-28T00:00:00Z',
      expiresAt: '2026-11-29T00:00:00Z',
    },
  ]),
);

function results(over: Partial<Record<OutboundResult, number>> = {}): Record<OutboundResult, number> {
  const r = Object.fromEntries(OUTBOUND_RESULTS.map((k) => [k, 0])) as Record<OutboundResult, number>;
  return { ...r, ...over };
}

/** A worker's telemetry: its own cells, tracker and exporter; `outbound` is what its listener reports. */
function worker(clock: ManualClock) {
  const usage = new UsageTracker({ policy });
  const metrics = createSidecarMetrics({ policy, usage, clock, defaultMetrics: false });
  const http = createPortTelemetry(metrics, HTTP, { usage, accessLog: quiet });
  const db = createPortTelemetry(metrics, DB, { usage, accessLog: quiet });
  const out: { stats: OutboundStats } = {
    stats: { results: results(), activeConnections: 0, lastError: null },
  };
  const exporter = new TelemetryExporter({
    families: metrics.families,
    usage,
    outbound: () => [{ name: 'payments', stats: () => out.stats }],
  });
  /** The next batch as the control plane receives it (JSON over IPC). */
  const take = (): TelemetryBatch | null => {
    const b = exporter.take(clock.now());
    return b === null ? null : (JSON.parse(JSON.stringify(b)) as TelemetryBatch);
  };
  return { http, db, out, take };
}

function controlPlane(clock: ManualClock) {
  const usage = new UsageTracker({ policy });
  const metrics = createSidecarMetrics({ policy, usage, clock, defaultMetrics: false });
  createPortTelemetry(metrics, HTTP, { usage, accessLog: quiet });
  createPortTelemetry(metrics, DB, { usage, accessLog: quiet });
  metrics.outbound('payments');
  const merger = new TelemetryMerger({ metrics, usage });
  const samples = async () => parseExposition(await metrics.registry.metrics());
  return { usage, metrics, merger, samples };
}

const allow = 'portlicense_decisions_total{service="orders",port="http",decision="allow",reason="none"}';
const denied =
  'portlicense_decisions_total{service="orders",port="http",decision="deny",reason="no_license"}';
const active = 'portlicense_active_connections{service="orders",port="db"}';

function serve(t: PortTelemetry, clock: ManualClock, n: number, seconds: number): void {
  for (let i = 0; i < n; i++) {
    t.decision('allow', null);
    t.requestDuration(seconds);
    const e = t.usage('lic_1', FRONTEND, '10.0.0.1');
    e.at = clock.now();
    e.count++;
  }
}

describe('worker telemetry merged in the control plane', () => {
  it('sums counters, histograms and usage of two workers, with the labels of one process', async () => {
    const clock = new ManualClock();
    const [w1, w2] = [worker(clock), worker(clock)];
    const cp = controlPlane(clock);
    serve(w1.http, clock, 3, 0.002);
    w1.http.decision('deny', 'no_license');
    w1.http.denial(INTRUDER, 'no_license', '10.0.0.9', clock.now());
    clock.advance(1_000);
    serve(w2.http, clock, 5, 0.2);
    w2.http.bytes('in', 100);
    w2.db.terminated('revoked');

    cp.merger.apply(1, w1.take()!);
    cp.merger.apply(2, w2.take()!);
    const s = await cp.samples();
    expect(s.get(allow)).toBe(8);
    expect(s.get(denied)).toBe(1);
    expect(s.get('portlicense_proxied_bytes_total{service="orders",port="http",direction="in"}')).toBe(100);
    expect(
      s.get('portlicense_connections_terminated_total{service="orders",port="db",reason="revoked"}'),
    ).toBe(1);
    expect(s.get('portlicense_request_duration_seconds_count{service="orders",port="http"}')).toBe(8);
    expect(
      s.get('portlicense_request_duration_seconds_bucket{service="orders",port="http",le="0.0025"}'),
    ).toBe(3);
    expect(s.get('portlicense_request_duration_seconds_sum{service="orders",port="http"}')).toBeCloseTo(
      1.006,
      6,
    );
    // Every series of one process is there, zeros included.
    expect(
      s.get('portlicense_tls_handshake_errors_total{service="orders",port="db",reason="no_client_cert"}'),
    ).toBe(0);

    // Usage: one node-wide entry, the latest access, and the sum of counts in the next report.
    expect(cp.usage.lastAccess('lic_1')).toMatchObject({
      identity: FRONTEND,
      origin: '10.0.0.1',
      count: 8,
      at: clock.now(),
    });
    const report = cp.usage.takeReport(clock.now());
    expect(report.usage).toEqual([
      { licenseId: 'lic_1', identity: FRONTEND, origin: '10.0.0.1', lastAccess: clock.now(), count: 8 },
    ]);
    expect(report.denials).toEqual([{ identity: INTRUDER, reason: 'no_license', count: 1 }]);
    expect(cp.usage.recentDenials()).toMatchObject([
      { identity: INTRUDER, port: 'orders/http', origin: '10.0.0.9' },
    ]);
    expect(cp.usage.takeReport(clock.now())).toMatchObject({ usage: [], denials: [] });
  });

  it('sends only what changed: a second batch adds deltas, an idle worker sends nothing', async () => {
    const clock = new ManualClock();
    const w = worker(clock);
    const cp = controlPlane(clock);
    serve(w.http, clock, 2, 0.001);
    cp.merger.apply(1, w.take()!);
    expect(w.take()).toBeNull();
    serve(w.http, clock, 1, 0.001);
    const second = w.take()!;
    expect(second.counters).toEqual([
      {
        f: 'decisions',
        l: { service: 'orders', port: 'http', decision: 'allow', reason: 'none' },
        d: 1,
      },
    ]);
    cp.merger.apply(1, second);
    expect((await cp.samples()).get(allow)).toBe(3);
    expect(cp.usage.takeReport(clock.now()).usage[0]?.count).toBe(3);
  });

  it('counts a gauge per live worker: an exited worker takes its open connections with it', async () => {
    const clock = new ManualClock();
    const [w1, w2] = [worker(clock), worker(clock)];
    const cp = controlPlane(clock);
    for (let i = 0; i < 3; i++) w1.db.connectionOpened();
    w2.db.connectionOpened();
    cp.merger.apply(1, w1.take()!);
    cp.merger.apply(2, w2.take()!);
    expect((await cp.samples()).get(active)).toBe(4);
    expect(cp.metrics.activeConnections('orders', 'db')).toBe(4);
    w1.db.connectionClosed();
    cp.merger.apply(1, w1.take()!);
    expect((await cp.samples()).get(active)).toBe(3);
    cp.merger.forget(1);
    expect((await cp.samples()).get(active)).toBe(1);
    cp.merger.forget(1);
    expect(cp.metrics.activeConnections('orders', 'db')).toBe(1);
  });

  it('merges outbound stats; counts of an exited worker stay counted', async () => {
    const clock = new ManualClock();
    const [w1, w2] = [worker(clock), worker(clock)];
    const cp = controlPlane(clock);
    w1.out.stats = {
      results: results({ ok: 2, dial_error: 1 }),
      activeConnections: 1,
      lastError: { at: 5, result: 'dial_error', detail: 'ECONNREFUSED', presented: null },
    };
    w2.out.stats = {
      results: results({ ok: 3 }),
      activeConnections: 2,
      lastError: { at: 9, result: 'server_id_mismatch', detail: 'not payments', presented: null },
    };
    cp.merger.apply(1, w1.take()!);
    cp.merger.apply(2, w2.take()!);
    expect(cp.merger.outboundStats('payments')).toMatchObject({
      activeConnections: 3,
      results: { ok: 5, dial_error: 1 },
      lastError: { at: 9, result: 'server_id_mismatch' },
    });
    const ok = 'portlicense_outbound_connections_total{name="payments",result="ok"}';
    expect((await cp.samples()).get(ok)).toBe(5);
    w1.out.stats = { ...w1.out.stats, results: results({ ok: 4, dial_error: 1 }) };
    cp.merger.apply(1, w1.take()!);
    expect((await cp.samples()).get(ok)).toBe(7);
    cp.merger.forget(1);
    expect(cp.merger.outboundStats('payments')).toMatchObject({ activeConnections: 2, results: { ok: 7 } });
    expect((await cp.samples()).get(ok)).toBe(7);
  });

  it('ignores what it cannot place instead of failing the control plane', async () => {
    const clock = new ManualClock();
    const cp = controlPlane(clock);
    const batch = telemetryBatch({
      counters: [
        { f: 'nonsense', l: {}, d: 3 },
        { f: 'decisions', l: { service: 'orders', port: 'http', decision: 'allow', reason: 'none' }, d: -2 },
      ],
    });
    cp.merger.apply(1, batch);
    expect((await cp.samples()).get(allow)).toBe(0);
  });

  it('skips gauge and histogram items it cannot trust, and applies the rest of the batch', async () => {
    const clock = new ManualClock();
    const cp = controlPlane(clock);
    const db = { service: 'orders', port: 'db' };
    const http = { service: 'orders', port: 'http' };
    const buckets = (n: number) => Array.from({ length: 16 }, (_, i) => (i === 0 ? n : 0));
    const batch = telemetryBatch({
      counters: [{ f: 'decisions', l: { ...http, decision: 'allow', reason: 'none' }, d: 2 }],
      gauges: [
        { f: 'activeConnections', l: db, v: Number.NaN },
        { f: 'activeConnections', l: { ...db, extra: 'x' }, v: 3 },
        { f: 'activeConnections', l: db, v: 2 },
      ],
      histograms: [
        { f: 'requestDuration', l: http, c: 'lots', s: 1, n: 1 },
        { f: 'requestDuration', l: http, c: buckets(1), s: Number.POSITIVE_INFINITY, n: 1 },
        { f: 'requestDuration', l: { service: 'orders' }, c: buckets(1), s: 1, n: 1 },
        { f: 'requestDuration', l: http, c: buckets(2), s: 0.0004, n: 2 },
      ],
    });
    cp.merger.apply(1, batch);
    const s = await cp.samples();
    expect(s.get(allow)).toBe(2);
    expect(s.get(active)).toBe(2);
    expect(s.get('portlicense_request_duration_seconds_count{service="orders",port="http"}')).toBe(2);
    expect(s.get('portlicense_request_duration_seconds_sum{service="orders",port="http"}')).toBeCloseTo(
      0.0004,
      9,
    );
    expect([...s.keys()].filter((k) => k.includes('extra'))).toEqual([]);
  });
});

describe("the control plane's UsageTracker absorbing worker deltas", () => {
  it('keeps the newest recent denials of all workers, at most its ring size', () => {
    const t = new UsageTracker({ recentDenials: 3 });
    const d = (at: number, identity: string) => ({
      at,
      port: 'orders/http',
      identity,
      origin: '10.0.0.1',
      reason: 'no_license' as const,
    });
    const base = { usage: [], denials: [], merged: { usage: 0, denials: 0 } };
    t.absorb({ ...base, recentDenials: [d(5, 'a'), d(1, 'b')] });
    t.absorb({ ...base, recentDenials: [d(4, 'c'), d(2, 'd')] });
    expect(t.recentDenials().map((x) => x.at)).toEqual([5, 4, 2]);
    expect(t.snapshot().recentDenials.map((x) => x.identity)).toEqual(['a', 'c', 'd']);
  });

  it('adds workers denial counts and folded lookups to the next report only', () => {
    const t = new UsageTracker();
    t.absorb({
      usage: [],
      denials: [
        { identity: null, reason: 'bad_identity', count: 2 },
        { identity: 'x', reason: 'expired', count: 1 },
      ],
      recentDenials: [],
      merged: { usage: 1, denials: 0 },
    });
    t.absorb({
      usage: [],
      denials: [{ identity: null, reason: 'bad_identity', count: 3 }],
      recentDenials: [],
      merged: { usage: 2, denials: 1 },
    });
    const r = t.takeReport(1);
    expect(r.denials).toEqual([
      { identity: null, reason: 'bad_identity', count: 5 },
      { identity: 'x', reason: 'expired', count: 1 },
    ]);
    expect(r.merged).toEqual({ usage: 3, denials: 1 });
    expect(t.takeReport(2)).toMatchObject({ denials: [], merged: { usage: 0, denials: 0 } });
    expect(t.snapshot().merged).toEqual({ usage: 3, denials: 1 });
  });
});

describe("a worker's UsageTracker handing over with takeDelta", () => {
  it('hands out each recorded denial once, newest first', () => {
    const t = new UsageTracker({ recentDenials: 2 });
    expect(t.takeDelta(0).recentDenials).toEqual([]);
    t.recordDenial('orders/http', 'a', 'no_license', 'o', 1);
    t.recordDenial('orders/http', 'b', 'revoked', 'o', 2);
    t.recordDenial('orders/http', 'c', 'expired', 'o', 3);
    expect(t.takeDelta(3).recentDenials.map((d) => d.identity)).toEqual(['c', 'b']);
    expect(t.takeDelta(3).recentDenials).toEqual([]);
    t.recordDenial('orders/http', null, 'bad_identity', 'o', 4);
    expect(t.takeDelta(4).recentDenials).toMatchObject([{ identity: null, at: 4 }]);
  });
});
