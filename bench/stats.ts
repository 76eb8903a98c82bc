/** Small statistics for repeated rounds: the median as the headline, min–max as the spread. */

export interface Summary {
  median: number;
  min: number;
  max: number;
  values: number[];
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 === 1 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

export function summarize(xs: readonly number[]): Summary {
  const values = xs.filter((x) => Number.isFinite(x));
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), values };
}

/** A number with sensible precision for a table: 31,204 · 812 · 45.1 · 1.23 · 0.042. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (Number.isInteger(x) && a < 1000) return String(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(2);
}

export function fmtSummary(s: Summary | undefined): string {
  if (s === undefined || s.values.length === 0) return '–';
  if (s.values.length === 1) return fmt(s.median);
  return `${fmt(s.median)} [${fmt(s.min)}–${fmt(s.max)}]`;
}
