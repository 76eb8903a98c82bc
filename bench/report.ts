/**
 * From samples to the report: per mode, target and metric the median and spread over rounds;
 * ratios paired within each round (only ratios measured side by side count on a shared machine);
 * correctness verdicts; and the markdown table printed for the README.
 */
import type { MemoryResult } from './memory.js';
import type { Mode, Sample } from './loadgen.js';
import { fmt, fmtSummary, summarize, type Summary } from './stats.js';
import type { TargetName } from './targets.js';

type Metric =
  | 'rate'
  | 'p50Ms'
  | 'p99Ms'
  | 'p999Ms'
  | 'proxyCpuUs'
  | 'upstreamCpuUs'
  | 'rssMiB'
  | 'genCpuShare'
  | 'timerLagP99Ms'
  | 'resumedPct';

const METRICS: Record<Metric, (s: Sample) => number | null> = {
  rate: (s) => s.gen.rate,
  p50Ms: (s) => (s.gen.latencyUs ? s.gen.latencyUs.p50 / 1000 : null),
  p99Ms: (s) => (s.gen.latencyUs ? s.gen.latencyUs.p99 / 1000 : null),
  p999Ms: (s) => (s.gen.latencyUs ? s.gen.latencyUs.p999 / 1000 : null),
  proxyCpuUs: (s) => (s.proxyCpuS === null || s.work === 0 ? null : (s.proxyCpuS * 1e6) / s.work),
  upstreamCpuUs: (s) => (s.work === 0 ? null : (s.upstreamCpuS * 1e6) / s.work),
  rssMiB: (s) => (s.proxyRssPeak === null ? null : s.proxyRssPeak / 2 ** 20),
  genCpuShare: (s) => s.gen.genCpuShare,
  timerLagP99Ms: (s) => (s.gen.timerLagUs ? s.gen.timerLagUs.p99 / 1000 : null),
  resumedPct: (s) =>
    s.mode === 'resume' && s.gen.count > 0 ? (100 * (s.gen.resumed ?? 0)) / s.gen.count : null,
};

export type Results = Partial<Record<Mode, Partial<Record<TargetName, Partial<Record<Metric, Summary>>>>>>;
export type Ratios = Partial<Record<Mode, Record<string, Partial<Record<Metric, Summary>>>>>;

export const RATIO_PAIRS: readonly (readonly [TargetName, TargetName])[] = [
  ['portlicense', 'haproxy'],
  ['nginx', 'haproxy'],
  ['portlicense', 'direct'],
  ['variant', 'portlicense'],
  ['variant', 'haproxy'],
];

export function summarizeSamples(samples: readonly Sample[]): { results: Results; ratios: Ratios } {
  const results: Results = {};
  const ratios: Ratios = {};
  const modes = [...new Set(samples.map((s) => s.mode))];
  for (const mode of modes) {
    const ofMode = samples.filter((s) => s.mode === mode);
    const byTarget: Partial<Record<TargetName, Partial<Record<Metric, Summary>>>> = {};
    for (const target of new Set(ofMode.map((s) => s.target))) {
      const mine = ofMode.filter((s) => s.target === target);
      const m: Partial<Record<Metric, Summary>> = {};
      for (const [name, get] of Object.entries(METRICS) as [Metric, (s: Sample) => number | null][]) {
        const vals = mine.map(get).filter((v): v is number => v !== null);
        if (vals.length > 0) m[name] = summarize(vals);
      }
      byTarget[target] = m;
    }
    results[mode] = byTarget;
    const r: Record<string, Partial<Record<Metric, Summary>>> = {};
    for (const [a, b] of RATIO_PAIRS) {
      const pair: Partial<Record<Metric, Summary>> = {};
      for (const [name, get] of Object.entries(METRICS) as [Metric, (s: Sample) => number | null][]) {
        const vals: number[] = [];
        for (const sa of ofMode.filter((s) => s.target === a)) {
          const sb = ofMode.find((s) => s.target === b && s.round === sa.round);
          const va = get(sa);
          const vb = sb ? get(sb) : null;
          if (va !== null && vb !== null && vb !== 0) vals.push(va / vb);
        }
        if (vals.length > 0) pair[name] = summarize(vals);
      }
      if (Object.keys(pair).length > 0) r[`${a}/${b}`] = pair;
    }
    ratios[mode] = r;
  }
  return { results, ratios };
}

export interface Correctness {
  /** Per target: responses to the allowed identity, how many were not a 2xx (or failed), probes of the denied one, how many were served. */
  targets: Partial<
    Record<
      TargetName,
      { allowedOk: number; allowedFailed: number; deniedProbes: number; deniedServed: number }
    >
  >;
  failures: string[];
}

export function checkCorrectness(samples: readonly Sample[]): Correctness {
  const out: Correctness = { targets: {}, failures: [] };
  for (const s of samples) {
    const c = (out.targets[s.target] ??= {
      allowedOk: 0,
      allowedFailed: 0,
      deniedProbes: 0,
      deniedServed: 0,
    });
    c.allowedOk += s.gen.ok;
    c.allowedFailed += s.gen.bad + s.gen.errors;
    if (s.gen.bad + s.gen.errors > 0)
      out.failures.push(
        `${s.target} ${s.mode} round ${s.round}: the allowed identity was not served ${s.gen.bad + s.gen.errors} times ` +
          `(statuses ${JSON.stringify(s.gen.statuses ?? {})}, ${s.gen.errors} connection errors)`,
      );
    if (s.target === 'direct') continue;
    c.deniedProbes += s.gen.deny?.attempts ?? 0;
    c.deniedServed += s.gen.deny?.leaked ?? 0;
    if ((s.gen.deny?.attempts ?? 0) === 0)
      out.failures.push(`${s.target} ${s.mode} round ${s.round}: the denied identity was not probed`);
    if ((s.gen.deny?.leaked ?? 0) > 0)
      out.failures.push(
        `${s.target} ${s.mode} round ${s.round}: the DENIED identity was served ${s.gen.deny!.leaked} times`,
      );
  }
  return out;
}

interface Row {
  mode: Mode;
  metric: Metric;
  label: string;
}

function rows(o: { connections: number; rate: number }): Row[] {
  return [
    { mode: 'http', metric: 'rate', label: `keep-alive req/s (${o.connections} conns, closed loop)` },
    { mode: 'http', metric: 'p99Ms', label: 'keep-alive p99 latency, ms' },
    { mode: 'http', metric: 'proxyCpuUs', label: 'proxy CPU per request, µs' },
    { mode: 'http', metric: 'rssMiB', label: 'proxy RSS under load, MiB' },
    { mode: 'open', metric: 'p50Ms', label: `p50 at ${fmt(o.rate)} req/s (open loop), ms` },
    { mode: 'open', metric: 'p99Ms', label: `p99 at ${fmt(o.rate)} req/s (open loop), ms` },
    { mode: 'conn', metric: 'rate', label: 'new mTLS connections/s (full handshake + 1 request)' },
    { mode: 'conn', metric: 'proxyCpuUs', label: 'proxy CPU per new connection, µs' },
    { mode: 'resume', metric: 'rate', label: 'returning mTLS clients/s (resumed session + 1 request)' },
    { mode: 'resume', metric: 'proxyCpuUs', label: 'proxy CPU per resumed connection, µs' },
    { mode: 'resume', metric: 'resumedPct', label: 'connections that resumed, %' },
    { mode: 'bulk-up', metric: 'rate', label: 'TCP bulk MB/s, client → upstream (1 stream)' },
    { mode: 'bulk-down', metric: 'rate', label: 'TCP bulk MB/s, upstream → client (1 stream)' },
    { mode: 'bulk-up', metric: 'proxyCpuUs', label: 'proxy CPU per MiB (upload), µs' },
  ];
}

export function markdownTable(
  results: Results,
  ratios: Ratios,
  targets: readonly TargetName[],
  o: { connections: number; rate: number },
): string {
  const pairs = RATIO_PAIRS.filter(([a, b]) => targets.includes(a) && targets.includes(b)).map(
    ([a, b]) => `${a}/${b}`,
  );
  const head = ['', ...targets, ...pairs.map((p) => `${p.replace('/', ' ÷ ')}`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const r of rows(o)) {
    const byTarget = results[r.mode];
    if (byTarget === undefined) continue;
    const cells = targets.map((t) => fmtSummary(byTarget[t]?.[r.metric]));
    if (cells.every((c) => c === '–')) continue;
    const ratioCells = pairs.map((p) => {
      const s = ratios[r.mode]?.[p]?.[r.metric];
      return s ? `${s.median.toFixed(2)}×` : '–';
    });
    lines.push(`| ${r.label} | ${[...cells, ...ratioCells].join(' | ')} |`);
  }
  return lines.join('\n');
}

export function memoryLine(m: MemoryResult): string {
  const mib = (b: number): string => fmt(b / 2 ** 20);
  return (
    `sidecar RSS (idle, after one request): ${mib(m.small.rssBytes.median)} MiB with 1 license, ` +
    `${mib(m.large.rssBytes.median)} MiB with ${fmt(m.large.licenses)} → ${fmt(m.bytesPerLicense / 1024)} KiB per license`
  );
}
