/**
 * Plain-number cells the data path bumps, read by prom-client only at scrape time.
 *
 * prom-client's own `labels(...).inc()` re-hashes the label set into a string and re-validates it
 * on every call; on a proxy's hot path that is an allocation per request. Here a label set is
 * resolved to a cell once, when a listener starts, and every later event is `cell.value += n`.
 * The metric's `collect()` (or `get()` for the histogram) turns cells into samples when scraped.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** One series' current value. The data path only ever adds to it (or, for a gauge, sets it). */
export interface Cell {
  value: number;
}

/** A label set and the cell that holds its value. */
export interface Series<L extends string, C> {
  readonly labels: Readonly<Record<L, string>>;
  readonly cell: C;
}

/**
 * The label sets of one metric. `bind` is called at start-up (or on a rare slow path) and returns
 * the same cell for the same label values, so binding twice never splits a series.
 */
export class CellFamily<L extends string, C = Cell> {
  private readonly byKey = new Map<string, Series<L, C>>();

  constructor(
    private readonly labelNames: readonly L[],
    private readonly create: () => C,
  ) {}

  bind(labels: Readonly<Record<L, string>>): C {
    const key = this.key(labels);
    let s = this.byKey.get(key);
    if (!s) {
      s = { labels: { ...labels }, cell: this.create() };
      this.byKey.set(key, s);
    }
    return s.cell;
  }

  /** The cell of a label set bound earlier, without binding it. */
  find(labels: Readonly<Record<L, string>>): C | undefined {
    return this.byKey.get(this.key(labels))?.cell;
  }

  series(): IterableIterator<Series<L, C>> {
    return this.byKey.values();
  }

  private key(labels: Readonly<Record<L, string>>): string {
    return this.labelNames.map((n) => labels[n]).join('\u0000');
  }
}

/**
 * The one class of cells. Not an object literal: V8 shares the hidden class of every `{ value }`
 * literal in the process, so once any code (a loader hook, a library) stores an object in such a
 * `value`, the field holds any value, and each `+=` past 2^31 (two GiB of bytes, say) allocates a
 * fresh heap number. A class of its own keeps `value` a number field, updated in place.
 */
class NumberCell implements Cell {
  value = 0;
}

export const newCell = (): Cell => new NumberCell();

interface MetricSpec<L extends string> {
  registry: Registry;
  name: string;
  help: string;
  labelNames: readonly L[];
}

/**
 * A prom-client counter whose samples are the family's cells at scrape time. Every bound series
 * is exported, zeros included, so `rate()` has a starting point before the first event.
 */
export function cellCounter<L extends string>(spec: MetricSpec<L>, family: CellFamily<L>): Counter<L> {
  return new Counter<L>({
    name: spec.name,
    help: spec.help,
    labelNames: spec.labelNames,
    registers: [spec.registry],
    collect() {
      this.reset();
      for (const s of family.series()) this.inc(s.labels, s.cell.value);
    },
  });
}

/** A prom-client gauge whose samples are the family's cells at scrape time. */
export function cellGauge<L extends string>(spec: MetricSpec<L>, family: CellFamily<L>): Gauge<L> {
  return new Gauge<L>({
    name: spec.name,
    help: spec.help,
    labelNames: spec.labelNames,
    registers: [spec.registry],
    collect() {
      this.reset();
      for (const s of family.series()) this.set(s.labels, s.cell.value);
    },
  });
}

/** Bucket counts of one histogram series; `observe` is a bounds scan and three additions. */
export class HistogramCell {
  /** Non-cumulative counts per bucket; the last slot is everything above the largest bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    // NaN and negative durations come from clock steps, not from real requests; count them as 0.
    if (!(v > 0)) v = 0;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += v;
    this.count++;
  }
}

/** Histogram label sets bound to cells sharing one bucket layout. */
export function histogramFamily<L extends string>(
  labelNames: readonly L[],
  buckets: readonly number[],
): CellFamily<L, HistogramCell> {
  const bounds = Float64Array.from(buckets);
  return new CellFamily<L, HistogramCell>(labelNames, () => new HistogramCell(bounds));
}

type HistogramSample = { value: number; labels: Record<string, string | number>; metricName: string };

/**
 * A prom-client histogram (so the registry, its type and the exposition format stay stock) whose
 * samples come from cells. prom-client has no way to add a pre-counted bucket, so the two read
 * methods the registry calls, `get()` (JSON) and `getForPromString()` (text), are overridden;
 * `observe()` on this object is never used. The exposition test pins the output.
 */
export class CellHistogram<L extends string> extends Histogram<L> {
  private readonly spec: MetricSpec<L> & { buckets: readonly number[] };
  private readonly family: CellFamily<L, HistogramCell>;

  constructor(spec: MetricSpec<L> & { buckets: readonly number[] }, family: CellFamily<L, HistogramCell>) {
    super({
      name: spec.name,
      help: spec.help,
      labelNames: spec.labelNames,
      buckets: [...spec.buckets],
      registers: [spec.registry],
    });
    this.spec = spec;
    this.family = family;
  }

  /** Text exposition reads this when present (prom-client 15); same samples as `get()`. */
  getForPromString(): ReturnType<Histogram<L>['get']> {
    return this.get();
  }

  override get(): ReturnType<Histogram<L>['get']> {
    const { name, help, buckets } = this.spec;
    const bucketName = `${name}_bucket`;
    const values: HistogramSample[] = [];
    for (const { labels, cell } of this.family.series()) {
      let acc = 0;
      buckets.forEach((le, i) => {
        acc += cell.counts[i] as number;
        values.push({ labels: { ...labels, le }, value: acc, metricName: bucketName });
      });
      values.push({ labels: { ...labels, le: '+Inf' }, value: cell.count, metricName: bucketName });
      values.push({ labels: { ...labels }, value: cell.sum, metricName: `${name}_sum` });
      values.push({ labels: { ...labels }, value: cell.count, metricName: `${name}_count` });
    }
    return Promise.resolve({
      name,
      help,
      type: 'histogram',
      aggregator: 'sum',
      values,
    } as unknown as Awaited<ReturnType<Histogram<L>['get']>>);
  }
}
