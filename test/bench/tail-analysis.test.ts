/**
 * bench:tail's analysis (bench/tail-analysis.ts): perf's sched_switch lines and the generator's
 * slow-request log in, clusters and what held them out. Inputs are written the way `perf script`
 * and `loadgen open -slow-log` print them.
 */
import { describe, expect, it } from 'vitest';
import {
  causeOf,
  clusterSlow,
  parseSlowLog,
  parseSwitches,
  visitors,
  type Roles,
  type SchedRun,
} from '../../bench/tail-analysis.js';

/** One `perf script -F cpu,comm,tid,time,event,trace` line of a switch on `cpu` at `t` to `next`. */
function sw(cpu: number, t: number, prev: [string, number], next: [string, number]): string {
  const c = String(cpu).padStart(3, '0');
  return `${prev[0].padStart(16)} ${String(prev[1]).padStart(6)} [${c}] ${t.toFixed(6)}: sched:sched_switch: prev_comm=${prev[0]} prev_pid=${prev[1]} prev_prio=120 prev_state=S ==> next_comm=${next[0]} next_pid=${next[1]} next_prio=120`;
}

const IDLE: [string, number] = ['swapper/0', 0];
const PROXY: [string, number] = ['node', 100];
const HELPER: [string, number] = ['node', 104];
const UP: [string, number] = ['loadgen', 200];
const KD: [string, number] = ['kdamond.0', 77];
const roles: Roles = {
  proxyCpu: 0,
  loadCpu: 1,
  generatorComm: 'loadgen',
  proxyMain: 100,
  proxyThreads: new Set([104]),
  upstream: new Set([200]),
  bench: new Set([500]),
};

describe('parseSwitches', () => {
  it('turns consecutive switches on each CPU into runs, ignoring other events and noise', () => {
    const text = [
      sw(0, 10.0, IDLE, PROXY),
      '            node   100 [000] 10.000100: sched:sched_wakeup: comm=loadgen pid=200 prio=120 target_cpu=000',
      sw(1, 10.0001, IDLE, ['tokio-rt-worker', 75]),
      sw(0, 10.0002, PROXY, UP),
      'garbage line',
      sw(0, 10.0005, UP, IDLE),
      sw(1, 10.005, ['tokio-rt-worker', 75], IDLE),
    ].join('\n');
    const runs = parseSwitches(text);
    const r = (x: SchedRun): [number, string, number, number] => [
      x.cpu,
      x.comm,
      x.tid,
      Math.round((x.end - x.start) * 1e6),
    ];
    expect(runs.map(r)).toEqual([
      [0, 'node', 100, 200],
      [0, 'loadgen', 200, 300],
      [1, 'tokio-rt-worker', 75, 4900],
    ]);
  });

  it('keeps a command name with spaces whole', () => {
    const runs = parseSwitches(
      [sw(0, 1, IDLE, ['kworker/0:1 ev', 9]), sw(0, 1.001, ['kworker/0:1 ev', 9], IDLE)].join('\n'),
    );
    expect(runs).toEqual([{ cpu: 0, start: 1, end: 1.001, comm: 'kworker/0:1 ev', tid: 9 }]);
  });
});

describe('parseSlowLog', () => {
  it('reads requests in time order, skipping comments and blank lines', () => {
    const text = '# intended_send_monotonic_s latency_us conn\n5.002 1500 3\n\n5.001 2400 1\n';
    expect(parseSlowLog(text)).toEqual([
      { at: 5.001, latencyUs: 2400 },
      { at: 5.002, latencyUs: 1500 },
    ]);
  });

  it('names a line it cannot read', () => {
    expect(() => parseSlowLog('5.001 fast 1\n')).toThrow('slow log: cannot read line "5.001 fast 1"');
  });
});

describe('clusterSlow', () => {
  it('groups requests sent while an earlier one was still waiting, or within 0.5 ms of its answer', () => {
    const c = clusterSlow([
      { at: 1.0, latencyUs: 2000 }, // until 1.002
      { at: 1.0015, latencyUs: 1500 }, // overlaps
      { at: 1.0034, latencyUs: 1300 }, // 0.4 ms after the previous answer (1.003)
      { at: 1.01, latencyUs: 1250 }, // alone
    ]);
    expect(c.map((x) => [x.requests, x.worstUs])).toEqual([
      [3, 2000],
      [1, 1250],
    ]);
    expect(c[0]!.start).toBe(1.0);
    expect(c[0]!.end).toBeCloseTo(1.0047, 9);
  });
});

describe('causeOf', () => {
  const cluster = { start: 2.0, end: 2.004, requests: 4, worstUs: 3000 };
  const runsWith = (...xs: [[string, number], number, number][]): SchedRun[] =>
    xs.map(([[comm, tid], s, e]) => ({ cpu: 0, start: s, end: e, comm, tid }));

  it('names another task that took the proxy core for a quarter of the cluster or more', () => {
    const runs = runsWith([PROXY, 2.0, 2.0005], [KD, 2.0005, 2.0025], [PROXY, 2.0025, 2.004]);
    expect(causeOf(cluster, runs, roles)).toBe('kdamond.0');
  });

  it("counts the proxy's own helper threads as such", () => {
    const runs = runsWith([HELPER, 2.0, 2.003], [PROXY, 2.003, 2.004]);
    expect(causeOf(cluster, runs, roles)).toBe('proxy threads');
  });

  it('says idle when the core sat idle while requests waited and the load CPU was free', () => {
    const runs = [
      ...runsWith([IDLE, 2.0, 2.003], [PROXY, 2.003, 2.004]),
      { cpu: 1, start: 2.0, end: 2.004, comm: 'loadgen', tid: 300 },
    ];
    expect(causeOf(cluster, runs, roles)).toBe('idle');
  });

  it('names what held the load CPU when the proxy core sat idle', () => {
    const runs = [
      ...runsWith([IDLE, 2.0, 2.003], [PROXY, 2.003, 2.004]),
      { cpu: 1, start: 2.0, end: 2.0005, comm: 'loadgen', tid: 300 },
      { cpu: 1, start: 2.0005, end: 2.0035, comm: 'node', tid: 400 },
      { cpu: 1, start: 2.0035, end: 2.004, comm: 'loadgen', tid: 300 },
    ];
    expect(causeOf(cluster, runs, roles)).toBe('load CPU: node');
    // The benchmark's own process is named as such.
    const own = runs.map((r) => (r.tid === 400 ? { ...r, tid: 500 } : r));
    expect(causeOf(cluster, own, roles)).toBe('load CPU: bench');
  });

  it('says proxy when the proxy and its upstream were busy, and ignores other CPUs', () => {
    const runs = [
      ...runsWith([PROXY, 2.0, 2.002], [UP, 2.002, 2.0032], [KD, 2.0032, 2.0035], [PROXY, 2.0035, 2.004]),
      { cpu: 1, start: 2.0, end: 2.004, comm: 'kdamond.0', tid: 77 },
    ];
    expect(causeOf(cluster, runs, roles)).toBe('proxy');
  });
});

describe('visitors', () => {
  it('finds a task that comes back for a millisecond or more, with its period, merging split runs', () => {
    const runs: SchedRun[] = [];
    for (let i = 0; i < 4; i++) {
      const t = 10 + i * 0.51;
      // each visit is split in two by a short preemption
      runs.push({ cpu: i % 2, start: t, end: t + 0.0008, comm: 'kdamond.0', tid: 77 });
      runs.push({ cpu: i % 2, start: t + 0.0009, end: t + 0.0016, comm: 'kdamond.0', tid: 77 });
      // short runs of something else, and the proxy's own, are not visitors
      runs.push({ cpu: 0, start: t + 0.1, end: t + 0.1002, comm: 'ksoftirqd/0', tid: 15 });
      runs.push({ cpu: 0, start: t + 0.2, end: t + 0.25, comm: 'node', tid: 100 });
    }
    const v = visitors(runs, roles, new Set());
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ comm: 'kdamond.0', runs: 4, cpus: [0, 1] });
    expect(v[0]!.medianMs).toBeCloseTo(1.6, 6);
    expect(v[0]!.periodMs).toBeCloseTo(510, 6);
  });

  it('leaves out excluded commands and tasks seen fewer than three times', () => {
    const runs: SchedRun[] = [
      { cpu: 0, start: 1, end: 1.002, comm: 'perf', tid: 5 },
      { cpu: 0, start: 2, end: 2.002, comm: 'perf', tid: 5 },
      { cpu: 0, start: 3, end: 3.002, comm: 'perf', tid: 5 },
      { cpu: 0, start: 1.5, end: 1.502, comm: 'rare', tid: 6 },
      { cpu: 0, start: 2.5, end: 2.502, comm: 'rare', tid: 6 },
    ];
    expect(visitors(runs, roles, new Set(['perf']))).toEqual([]);
  });
});
