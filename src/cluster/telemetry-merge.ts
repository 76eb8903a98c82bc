/**
 * The control plane's side of worker telemetry: batches from every worker land in the control
 * plane's own metric cells and usage tracker, so /metrics, /status and the usage reports read one
 * node-wide view with the names and labels of the single process. Counters and histograms add
 * the workers' deltas; the connection gauge is the sum of each live worker's last value, so a
 * worker that exits takes its open connections with it; outbound stats are kept per worker and
 * summed when read.
 */
import type { OutboundFailure, OutboundStats } from '../dataplane/outbound.js';
import type { Cell, CellFamily, HistogramCell } from '../telemetry/cells.js';
import {
  OUTBOUND_RESULTS,
  type OutboundResult,
  type OutboundTelemetry,
  type PortFamilies,
} from '../telemetry/metrics.js';
import type { TelemetryBatch } from './telemetry-export.js';
import type { ClusterUsageTracker } from './usage.js';

export interface MergerDeps {
  families: PortFamilies;
  usage: ClusterUsageTracker;
  /** The control plane's `portlicense_outbound_connections_total` series of one entry. */
  outbound: (name: string) => OutboundTelemetry;
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
    const f = this.deps.families;
    for (const c of b.counters) {
      const family = f[c.f];
      // An unknown family name is a version mismatch between processes; skip rather than crash.
      if (family === undefined || !(c.d > 0)) continue;
      (family as CellFamily<string>).bind(c.l).value += c.d;
    }
    let mine = this.gauges.get(worker);
    if (mine === undefined) this.gauges.set(worker, (mine = new Map<Cell, number>()));
    for (const g of b.gauges) {
      const cell = (f.activeConnections as CellFamily<string>).bind(g.l);
      const before = mine.get(cell) ?? 0;
      mine.set(cell, g.v);
      cell.value += g.v - before;
    }
    for (const h of b.histograms) {
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
      const metric = this.deps.outbound(name);
      // Connections are counted per connection (not per request), so adding one at a time is cheap.
      for (const k of OUTBOUND_RESULTS) {
        const d = (stats.results[k] ?? 0) - (before?.results[k] ?? 0);
        for (let i = 0; i < d; i++) metric.result(k);
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

function newer(a: OutboundFailure | null, b: OutboundFailure | null): OutboundFailure | null {
  if (a === null) return b;
  if (b === null) return a;
  return b.at > a.at ? b : a;
}
