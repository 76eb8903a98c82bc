/**
 * A worker's telemetry, sent to the control plane about once a second. The data path in a worker
 * is exactly the single process's: listeners bump the same plain cells (telemetry/cells.ts) and
 * write the same usage entries. Only this exporter, off the data path, reads them and sends what
 * changed since its previous batch: counter and histogram deltas, gauge values, usage and denial
 * deltas, new recent denials and the outbound listeners' stats.
 */
import type { OutboundStats } from '../dataplane/outbound.js';
import type { Cell, HistogramCell } from '../telemetry/cells.js';
import type { CounterFamilyName, PortFamilies } from '../telemetry/metrics.js';
import type { UsageTracker, UsageTrackerDelta } from '../telemetry/usage.js';

/** Port metric families whose cells only grow. */
export const COUNTER_FAMILIES = [
  'decisions',
  'terminated',
  'bytes',
  'handshakeErrors',
] as const satisfies readonly CounterFamilyName[];
export type CounterFamily = (typeof COUNTER_FAMILIES)[number];

type Labels = Record<string, string>;

/** Growth of one counter series since the previous batch. */
export interface CounterDelta {
  f: CounterFamily;
  l: Labels;
  d: number;
}

/** Current value of one `portlicense_active_connections` series in this worker. */
export interface GaugeValue {
  f: 'activeConnections';
  l: Labels;
  v: number;
}

/** Growth of one request-duration series: per-bucket counts (not cumulative), sum and count. */
export interface HistogramDelta {
  f: 'requestDuration';
  l: Labels;
  c: number[];
  s: number;
  n: number;
}

/** An outbound listener's stats in this worker since it started (absolute, not deltas). */
export interface OutboundReport {
  name: string;
  stats: OutboundStats;
}

/**
 * One batch: the metric deltas, and the usage tracker's delta (usage, denials, recent denials,
 * folded lookups) exactly as `UsageTracker.takeDelta` hands it over.
 */
export interface TelemetryBatch extends UsageTrackerDelta {
  counters: CounterDelta[];
  gauges: GaugeValue[];
  histograms: HistogramDelta[];
  outbound: OutboundReport[];
}

export interface ExporterSources {
  families: PortFamilies;
  usage: UsageTracker;
  /** The worker's outbound listeners, by name. */
  outbound: () => ReadonlyArray<{ name: string; stats(): OutboundStats }>;
}

interface HistogramSent {
  counts: Float64Array;
  sum: number;
  count: number;
}

export class TelemetryExporter {
  private readonly sentCounters = new Map<Cell, number>();
  private readonly sentGauges = new Map<Cell, number>();
  private readonly sentHistograms = new Map<HistogramCell, HistogramSent>();
  private sentOutbound = '';

  constructor(private readonly src: ExporterSources) {}

  /** What changed since the previous call, or null when nothing did. */
  take(now: number): TelemetryBatch | null {
    const { families } = this.src;
    const counters: CounterDelta[] = [];
    for (const f of COUNTER_FAMILIES)
      for (const { labels, cell } of families[f].series()) {
        const d = cell.value - (this.sentCounters.get(cell) ?? 0);
        if (d === 0) continue;
        counters.push({ f, l: { ...labels }, d });
        this.sentCounters.set(cell, cell.value);
      }
    const gauges: GaugeValue[] = [];
    for (const { labels, cell } of families.activeConnections.series()) {
      const before = this.sentGauges.get(cell);
      if (before === cell.value) continue;
      // A series never sent is sent once even at 0, so the control plane has every label set.
      gauges.push({ f: 'activeConnections', l: { ...labels }, v: cell.value });
      this.sentGauges.set(cell, cell.value);
    }
    const histograms: HistogramDelta[] = [];
    for (const { labels, cell } of families.requestDuration.series()) {
      let sent = this.sentHistograms.get(cell);
      if (sent === undefined) {
        sent = { counts: new Float64Array(cell.counts.length), sum: 0, count: 0 };
        this.sentHistograms.set(cell, sent);
      }
      if (cell.count === sent.count) continue;
      const c: number[] = [];
      for (let i = 0; i < cell.counts.length; i++) c.push(cell.counts[i]! - sent.counts[i]!);
      histograms.push({
        f: 'requestDuration',
        l: { ...labels },
        c,
        s: cell.sum - sent.sum,
        n: cell.count - sent.count,
      });
      sent.counts.set(cell.counts);
      sent.sum = cell.sum;
      sent.count = cell.count;
    }

    const usage = this.src.usage.takeDelta(now);

    const outbound = this.src.outbound().map((o) => ({ name: o.name, stats: o.stats() }));
    const outboundJson = JSON.stringify(outbound);
    const outboundChanged = outboundJson !== this.sentOutbound;
    this.sentOutbound = outboundJson;

    const batch: TelemetryBatch = {
      counters,
      gauges,
      histograms,
      ...usage,
      outbound: outboundChanged ? outbound : [],
    };
    return isEmpty(batch) ? null : batch;
  }
}

function isEmpty(b: TelemetryBatch): boolean {
  return (
    b.counters.length === 0 &&
    b.gauges.length === 0 &&
    b.histograms.length === 0 &&
    b.usage.length === 0 &&
    b.denials.length === 0 &&
    b.recentDenials.length === 0 &&
    b.merged.usage === 0 &&
    b.merged.denials === 0 &&
    b.outbound.length === 0
  );
}
