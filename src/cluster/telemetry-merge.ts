/**
 * The control plane's side of worker telemetry: batches from every worker land in the control
 * plane's own metric cells and usage tracker, so /metrics, /status and the usage reports read one
 * node-wide view with the names and labels of the single process. Counters add the workers'
 * deltas (SidecarMetrics.addCount) and the usage tracker absorbs theirs (UsageTracker.absorb);
 * histograms add per bucket; the connection gauge is the sum of each live worker's last value, so
 * a worker that exits takes its open connections with it; outbound stats are kept per worker,
 * summed when read, and their growth added to the outbound counter.
 */
import type { OutboundFailure, OutboundStats } from '../dataplane/outbound.js';
import type { Cell, CellFamily, HistogramCell } from '../telemetry/cells.js';
import { OUTBOUND_RESULTS, type OutboundResult, type SidecarMetrics } from '../telemetry/metrics.js';
import type { UsageTracker } from '../telemetry/usage.js';
import type { TelemetryBatch } from './telemetry-export.js';

export interface MergerDeps {
  /** The control plane's metrics: its cell families, and `addCount` for counter deltas. */
  metrics: Pick<SidecarMetrics, 'families' | 'addCount'>;
  /** The control plane's usage tracker, the one its reports, /status and gauges read. */
  usage: UsageTracker;
}

/** An outbound listener across all workers, as /status shows it. */
export interface MergedOutboundStats {
  activeConnections: number;
  results: Record<OutboundResult, number>;
  lastError: OutboundFailure | null;
}

const zeroResults = (): Record<OutboundResult, number> =>
  Object.fromEntries(OUTBOUND_RESULTS.map((r) => [r, 0])) as Record<OutboundResult, number>;

export class TelemetryMerger {
  /** worker id -> gauge cell -> that worker's value. */
  private readonly gauges = new Map<number, Map<Cell, number>>();
  /** worker id -> outbound name -> its latest stats. */
  private readonly outbound = new Map<number, Map<string, OutboundStats>>();
  /** Outbound counts and last errors of workers that have exited. */
  private readonly retired = new Map<
    string,
    { results: Record<OutboundResult, number>; lastError: OutboundFailure | null }
  >();

  constructor(private readonly deps: MergerDeps) {}

  apply(worker: number, b: TelemetryBatch): void {
    const { metrics } = this.deps;
    const f = metrics.families;
    // An unknown family or label set is a version mismatch between processes: addCount skips it.
    for (const c of b.counters) metrics.addCount(c.f, c.l, c.d);
    let mine = this.gauges.get(worker);
    if (mine === undefined) this.gauges.set(worker, (mine = new Map<Cell, number>()));
    for (const g of b.gauges) {
      if (!isPortLabels(g.l) || !isCount(g.v)) continue;
      const cell = (f.activeConnections as CellFamily<string>).bind(g.l);
      const before = mine.get(cell) ?? 0;
      mine.set(cell, g.v);
      cell.value += g.v - before;
    }
    for (const h of b.histograms) {
      if (!isPortLabels(h.l) || !isCount(h.s) || !isCount(h.n) || !isCounts(h.c)) continue;
      const cell = (f.requestDuration as CellFamily<string, HistogramCell>).bind(h.l);
      const n = Math.min(cell.counts.length, h.c.length);
      for (let i = 0; i < n; i++) cell.counts[i] = cell.counts[i]! + h.c[i]!;
      cell.sum += h.s;
      cell.count += h.n;
    }
    this.deps.usage.absorb(b);
    if (b.outbound.length > 0) this.applyOutbound(worker, b.outbound);
  }

  /** A worker exited: its open connections are gone; what it counted stays counted. */
  forget(worker: number): void {
    const mine = this.gauges.get(worker);
    if (mine) for (const [cell, v] of mine) cell.value -= v;
    this.gauges.delete(worker);
    const out = this.outbound.get(worker);
    if (out)
      for (const [name, s] of out) {
        const r = this.retiredOf(name);
        for (const k of OUTBOUND_RESULTS) r.results[k] += s.results[k] ?? 0;
        r.lastError = newer(r.lastError, s.lastError);
      }
    this.outbound.delete(worker);
  }

  /** One outbound entry over every worker, live and exited. */
  outboundStats(name: string): MergedOutboundStats {
    const r = this.retired.get(name);
    const results = zeroResults();
    let activeConnections = 0;
    let lastError: OutboundFailure | null = r?.lastError ?? null;
    if (r) for (const k of OUTBOUND_RESULTS) results[k] += r.results[k];
    for (const out of this.outbound.values()) {
      const s = out.get(name);
      if (!s) continue;
      activeConnections += s.activeConnections;
      for (const k of OUTBOUND_RESULTS) results[k] += s.results[k] ?? 0;
      lastError = newer(lastError, s.lastError);
    }
    return { activeConnections, results, lastError };
  }

  private applyOutbound(worker: number, reports: TelemetryBatch['outbound']): void {
    let mine = this.outbound.get(worker);
    if (mine === undefined) this.outbound.set(worker, (mine = new Map<string, OutboundStats>()));
    for (const { name, stats } of reports) {
      const before = mine.get(name);
      for (const result of OUTBOUND_RESULTS) {
        const d = (stats.results[result] ?? 0) - (before?.results[result] ?? 0);
        if (d > 0) this.deps.metrics.addCount('outboundConnections', { name, result }, d);
      }
      mine.set(name, stats);
    }
  }

  private retiredOf(name: string): {
    results: Record<OutboundResult, number>;
    lastError: OutboundFailure | null;
  } {
    let r = this.retired.get(name);
    if (!r) this.retired.set(name, (r = { results: zeroResults(), lastError: null }));
    return r;
  }
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isCounts = (v: unknown): v is number[] => Array.isArray(v) && v.every(isCount);

/** `{service, port}` and nothing else: the labels of the gauge and the histogram. */
function isPortLabels(l: unknown): l is Record<'service' | 'port', string> {
  if (typeof l !== 'object' || l === null) return false;
  const r = l as Record<string, unknown>;
  return Object.keys(r).length === 2 && typeof r.service === 'string' && typeof r.port === 'string';
}

function newer(a: OutboundFailure | null, b: OutboundFailure | null): OutboundFailure | null {
  if (a === null) return b;
  if (b === null) return a;
  return b.at > a.at ? b : a;
}
