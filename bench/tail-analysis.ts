/**
 * What the CPUs did while open-loop requests were slow (`npm run bench:tail`): the generator's
 * slow-request log and `perf script` output of `sched:sched_switch`, both on CLOCK_MONOTONIC, laid
 * over each other. Pure functions, so the bench's own parsing is tested (test/bench/).
 */

/** One stretch of one task on one CPU, from one sched_switch to the next on that CPU. */
export interface SchedRun {
  readonly cpu: number;
  readonly start: number;
  readonly end: number;
  readonly comm: string;
  /** 0 is the idle task. */
  readonly tid: number;
}

const SWITCH =
  /^\s*.*?\s+\d+\s+\[(\d+)\]\s+(\d+\.\d+):\s+sched:sched_switch:.*?next_comm=(.*?) next_pid=(\d+)/;

/**
 * The runs in `perf script -F cpu,comm,tid,time,event,trace` output of `sched:sched_switch` events.
 * Other events and lines are ignored. Seconds on the clock perf recorded with.
 */
export function parseSwitches(perfScript: string): SchedRun[] {
  const runs: SchedRun[] = [];
  const current = new Map<number, { start: number; comm: string; tid: number }>();
  for (const line of perfScript.split('\n')) {
    const m = SWITCH.exec(line);
    if (!m) continue;
    const cpu = Number(m[1]);
    const t = Number(m[2]);
    const prev = current.get(cpu);
    if (prev !== undefined && t > prev.start)
      runs.push({ cpu, start: prev.start, end: t, comm: prev.comm, tid: prev.tid });
    current.set(cpu, { start: t, comm: m[3]!, tid: Number(m[4]) });
  }
  return runs;
}

/** One request of the generator's slow log: when it should have been sent (seconds) and its latency. */
export interface SlowRequest {
  readonly at: number;
  readonly latencyUs: number;
}

/** `loadgen open -slow-log` lines: `intended_send_monotonic_s latency_us conn`; `#` lines are comments. */
export function parseSlowLog(text: string): SlowRequest[] {
  const out: SlowRequest[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const [at, lat] = line.trim().split(/\s+/);
    const a = Number(at);
    const l = Number(lat);
    if (!Number.isFinite(a) || !Number.isFinite(l)) throw new Error(`slow log: cannot read line "${line}"`);
    out.push({ at: a, latencyUs: l });
  }
  return out.sort((x, y) => x.at - y.at);
}

/** Slow requests close together in time: one stall seen by several requests. */
export interface Cluster {
  /** Seconds: the first request's intended send time, and the last one's completion. */
  readonly start: number;
  readonly end: number;
  readonly requests: number;
  readonly worstUs: number;
}

/** Group requests whose intended send time is within `gapS` of the previous one's completion. */
export function clusterSlow(slow: readonly SlowRequest[], gapS = 0.0005): Cluster[] {
  const out: { start: number; end: number; requests: number; worstUs: number }[] = [];
  for (const r of slow) {
    const end = r.at + r.latencyUs / 1e6;
    const last = out[out.length - 1];
    if (last !== undefined && r.at <= last.end + gapS) {
      last.end = Math.max(last.end, end);
      last.requests++;
      last.worstUs = Math.max(last.worstUs, r.latencyUs);
    } else out.push({ start: r.at, end, requests: 1, worstUs: r.latencyUs });
  }
  return out;
}

/** Which tasks are whose: the proxy's main thread, its other threads, the upstream's; the two CPUs. */
export interface Roles {
  readonly proxyCpu: number;
  /** The load generator's CPU, where its threads run under `generatorComm`. */
  readonly loadCpu: number;
  readonly generatorComm: string;
  readonly proxyMain: number;
  readonly proxyThreads: ReadonlySet<number>;
  readonly upstream: ReadonlySet<number>;
  /** The benchmark's own process (its threads), shown as `bench`. */
  readonly bench: ReadonlySet<number>;
}

export function roleOf(run: SchedRun, roles: Roles): string {
  if (run.tid === 0) return 'idle';
  if (run.tid === roles.proxyMain) return 'proxy';
  if (roles.proxyThreads.has(run.tid)) return 'proxy threads';
  if (roles.upstream.has(run.tid)) return 'upstream';
  if (roles.bench.has(run.tid)) return 'bench';
  return run.comm;
}

/** Milliseconds per role on one CPU within [start, end]. */
export function timeOn(
  runs: readonly SchedRun[],
  cpu: number,
  start: number,
  end: number,
  roles: Roles,
): Map<string, number> {
  const per = new Map<string, number>();
  for (const r of runs) {
    if (r.cpu !== cpu) continue;
    const overlap = Math.min(r.end, end) - Math.max(r.start, start);
    if (overlap <= 0) continue;
    const role = roleOf(r, roles);
    per.set(role, (per.get(role) ?? 0) + overlap * 1000);
  }
  return per;
}

/** The role other than `skip` with the most time in `per`, and that time. */
function largest(per: Map<string, number>, skip: readonly string[]): [string, number] {
  let best = '';
  let bestMs = 0;
  for (const [role, ms] of per) if (!skip.includes(role) && ms > bestMs) [best, bestMs] = [role, ms];
  return [best, bestMs];
}

/**
 * What most likely held a cluster's requests, in this order:
 * - the task other than the proxy and its upstream that took the largest share of the proxy's CPU
 *   during it, when that share is at least a quarter of the cluster;
 * - when the proxy's CPU sat idle that long, the task other than the generator that took the
 *   largest share of the load CPU, if a quarter or more (`load CPU: <task>`: the requests were late
 *   leaving or their answers late being read), else `idle` (a late wake-up, or a vCPU that did not
 *   run);
 * - otherwise `proxy`: the proxy and the upstream were busy (queueing).
 */
export function causeOf(c: Cluster, runs: readonly SchedRun[], roles: Roles): string {
  const spanMs = (c.end - c.start) * 1000;
  const onProxy = timeOn(runs, roles.proxyCpu, c.start, c.end, roles);
  const [other, otherMs] = largest(onProxy, ['proxy', 'upstream', 'idle']);
  if (otherMs >= spanMs / 4) return other;
  if ((onProxy.get('idle') ?? 0) < spanMs / 4) return 'proxy';
  const onLoad = timeOn(runs, roles.loadCpu, c.start, c.end, roles);
  const [load, loadMs] = largest(onLoad, ['idle', roles.generatorComm]);
  return loadMs >= spanMs / 4 ? `load CPU: ${load}` : 'idle';
}

/** A task that keeps coming back for a millisecond or more: its runs, how long and how often. */
export interface Visitor {
  readonly comm: string;
  readonly runs: number;
  readonly medianMs: number;
  /** Median time between the starts of two consecutive runs. */
  readonly periodMs: number;
  readonly cpus: number[];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.floor(s.length / 2)]!;
};

/**
 * Tasks outside the benchmark (not the proxy's, the upstream's, or `exclude`d comms) with at least
 * `minRuns` runs of `minMs` or longer. Runs of one task less than 0.3 ms apart on one CPU count as one.
 */
export function visitors(
  runs: readonly SchedRun[],
  roles: Roles,
  exclude: ReadonlySet<string>,
  minMs = 1,
  minRuns = 3,
): Visitor[] {
  const merged = new Map<string, { cpu: number; start: number; end: number }[]>();
  for (const r of [...runs].sort((a, b) => a.start - b.start)) {
    const role = roleOf(r, roles);
    if (role === 'idle' || role === 'proxy' || role === 'proxy threads' || role === 'upstream') continue;
    if (exclude.has(r.comm)) continue;
    const list = merged.get(r.comm) ?? [];
    const last = list[list.length - 1];
    if (last !== undefined && last.cpu === r.cpu && r.start - last.end < 0.0003) last.end = r.end;
    else list.push({ cpu: r.cpu, start: r.start, end: r.end });
    merged.set(r.comm, list);
  }
  const out: Visitor[] = [];
  for (const [comm, list] of merged) {
    const long = list.filter((r) => (r.end - r.start) * 1000 >= minMs);
    if (long.length < minRuns) continue;
    const gaps = long.slice(1).map((r, i) => (r.start - long[i]!.start) * 1000);
    out.push({
      comm,
      runs: long.length,
      medianMs: median(long.map((r) => (r.end - r.start) * 1000)),
      periodMs: median(gaps),
      cpus: [...new Set(long.map((r) => r.cpu))].sort(),
    });
  }
  return out.sort((a, b) => b.runs * b.medianMs - a.runs * a.medianMs);
}
