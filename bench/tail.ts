/**
 * `npm run bench:tail`: what the CPUs were doing while open-loop requests were slow.
 *
 * For each target (the sidecar and haproxy by default) and round: the `open` mode with the
 * generator's slow-request log, while `perf record -e sched:sched_switch -a` runs on the same
 * clock (CLOCK_MONOTONIC). Slow requests close together are one cluster (one stall seen by several
 * requests); each cluster is put down to what held it (see causeOf in tail-analysis.ts): another
 * task on the proxy's core (the VM's agent, a kernel thread, the proxy's own helper threads), a task
 * holding the generator's core while the proxy's sat idle (`load CPU: …`; `bench` is this process),
 * `idle` (a late wake-up), or `proxy` (it and the upstream were busy). Tasks that keep coming back
 * for a millisecond or more are listed with their period. The traces are analysed after the last
 * run, so no large parse runs beside the load.
 *
 * Needs perf and the right to trace scheduler events on every CPU (root). Options: BENCH_TARGETS
 * (portlicense,haproxy), BENCH_ROUNDS (2), BENCH_SECONDS (5), BENCH_RATE (2000),
 * BENCH_CONNECTIONS (16). Writes bench/results/tail.json.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { envNumber } from './env.js';
import { argsFor, type LoadOptions } from './loadgen.js';
import { finish, pinSelf, start, stopAll } from './procs.js';
import { processTree } from './procfs.js';
import { CLI, makePki } from './setup.js';
import { fmt, median } from './stats.js';
import {
  causeOf,
  clusterSlow,
  parseSlowLog,
  parseSwitches,
  visitors,
  type Roles,
  type SchedRun,
} from './tail-analysis.js';
import {
  checkIdentities,
  LOAD_CPU,
  PROXY_CPU,
  startHaproxy,
  startPortlicense,
  startUpstream,
  type Target,
} from './targets.js';
import { ensureTools } from './tools.js';

const RESULTS = new URL('./results/', import.meta.url).pathname;
const O: LoadOptions & { rounds: number } = {
  seconds: envNumber('BENCH_SECONDS', 5),
  rounds: Math.round(envNumber('BENCH_ROUNDS', 2)),
  warmup: 1,
  connections: Math.round(envNumber('BENCH_CONNECTIONS', 16)),
  rate: envNumber('BENCH_RATE', 2000),
  probeMs: 100,
};
const WANT = (process.env.BENCH_TARGETS ?? 'portlicense,haproxy').split(',').map((s) => s.trim());
for (const w of WANT)
  if (w !== 'portlicense' && w !== 'haproxy')
    throw new Error(`BENCH_TARGETS: bench:tail knows portlicense and haproxy, not "${w}"`);
const log = (line: string): boolean => process.stderr.write(`${line}\n`);

/** Thread ids of a process tree. */
function threadsOf(pid: number): number[] {
  const out: number[] = [];
  for (const p of processTree(pid)) {
    try {
      for (const t of readdirSync(`/proc/${p}/task`)) out.push(Number(t));
    } catch {
      // gone
    }
  }
  return out;
}

interface RoundResult {
  target: string;
  round: number;
  p99Ms: number;
  slow: number;
  clusters: number;
  medianRequests: number;
  worstMs: number;
  causes: Record<string, number>;
}

/** One traced run, analysed after every run is done so no big parse runs beside the load. */
interface Trace {
  target: string;
  round: number;
  p99Ms: number;
  data: string;
  slowFile: string;
  roles: Roles;
}

async function traceOne(
  loadgen: string,
  t: Target,
  upstreamPid: number,
  pki: ReturnType<typeof makePki>,
  round: number,
  dir: string,
): Promise<Trace> {
  const data = `${dir}/${t.name}-${round}.data`;
  const slowFile = `${dir}/${t.name}-${round}.slow`;
  const perf = spawn(
    'perf',
    [
      'record',
      '-q',
      '-k',
      'CLOCK_MONOTONIC',
      '-e',
      'sched:sched_switch',
      '-a',
      '-o',
      data,
      '--',
      'sleep',
      String(O.seconds + O.warmup + 2),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let perfErr = '';
  perf.stderr.on('data', (d: Buffer) => (perfErr += d.toString()));
  const perfDone = new Promise<number | null>((r) => perf.on('exit', (code) => r(code)));
  await new Promise((r) => setTimeout(r, 500));
  const gen = start(`loadgen open ${t.name}`, LOAD_CPU, [
    loadgen,
    ...argsFor('open', t, pki, O, round, slowFile),
  ]);
  const code = await finish(gen, (O.seconds + O.warmup + 60) * 1000);
  if (code !== 0) throw new Error(`load generator (open → ${t.name}) failed with ${code}: ${gen.stderrTail}`);
  if ((await perfDone) !== 0) throw new Error(`perf record failed: ${perfErr.trim()}`);
  const threads = threadsOf(t.proc!.pid);
  const g = JSON.parse(gen.stdout) as { latencyUs?: { p99: number } };
  return {
    target: t.name,
    round,
    p99Ms: (g.latencyUs?.p99 ?? 0) / 1000,
    data,
    slowFile,
    roles: {
      proxyCpu: PROXY_CPU,
      loadCpu: LOAD_CPU,
      generatorComm: 'loadgen',
      proxyMain: t.proc!.pid,
      proxyThreads: new Set(threads.filter((x) => x !== t.proc!.pid)),
      upstream: new Set(threadsOf(upstreamPid)),
      bench: new Set(readdirSync('/proc/self/task').map(Number)),
    },
  };
}

function analyse(tr: Trace): { result: RoundResult; runs: SchedRun[] } {
  const script = spawnSync('perf', ['script', '-i', tr.data, '-F', 'cpu,comm,tid,time,event,trace'], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  if (script.status !== 0) throw new Error(`perf script failed: ${script.stderr.trim()}`);
  const runs = parseSwitches(script.stdout);
  const slow = parseSlowLog(existsSync(tr.slowFile) ? readFileSync(tr.slowFile, 'utf8') : '');
  const clusters = clusterSlow(slow);
  const causes: Record<string, number> = {};
  for (const c of clusters) {
    const cause = causeOf(c, runs, tr.roles);
    causes[cause] = (causes[cause] ?? 0) + 1;
  }
  return {
    result: {
      target: tr.target,
      round: tr.round,
      p99Ms: tr.p99Ms,
      slow: slow.length,
      clusters: clusters.length,
      medianRequests: clusters.length === 0 ? 0 : median(clusters.map((c) => c.requests)),
      worstMs: Math.max(0, ...clusters.map((c) => c.worstUs)) / 1000,
      causes,
    },
    runs,
  };
}

async function main(): Promise<number> {
  if (!existsSync(CLI))
    throw new Error('dist/ is missing: run `npm run build` first (npm run bench:tail does)');
  if (spawnSync('perf', ['--version'], { stdio: 'ignore' }).status !== 0 || process.getuid?.() !== 0) {
    log('bench:tail: needs perf (linux-perf) and root, to trace scheduler events on every CPU; nothing run');
    return 2;
  }
  pinSelf(LOAD_CPU);
  const tools = ensureTools();
  if (tools.loadgen === null) {
    log(`bench:tail: the load generator could not be built (${tools.notes.join('; ')}); nothing run`);
    return 2;
  }
  const pki = makePki();
  const dir = `${RESULTS}tail`;
  mkdirSync(dir, { recursive: true });
  const traces: Trace[] = [];
  try {
    const up = await startUpstream(tools.loadgen);
    const targets: Target[] = [];
    if (WANT.includes('portlicense')) targets.push(await startPortlicense(pki, up));
    if (WANT.includes('haproxy')) {
      if (tools.haproxy === null) log('bench:tail: haproxy is not installed; skipped');
      else targets.push(await startHaproxy(tools.haproxy, pki, up));
    }
    for (const t of targets) {
      await checkIdentities(t, pki);
      // Warm up (the sidecar's JIT), as the full bench's earlier modes do: 5 s of keep-alive load,
      // then 3 s of the open loop.
      for (const [mode, seconds] of [
        ['http', 5],
        ['open', 3],
      ] as const) {
        const w = start(`warm-up ${t.name}`, LOAD_CPU, [
          tools.loadgen,
          ...argsFor(mode, t, pki, { ...O, seconds }, 0),
        ]);
        await finish(w, 60_000);
      }
    }
    for (let round = 1; round <= O.rounds; round++) {
      for (let i = 0; i < targets.length; i++) {
        const t = targets[(i + round - 1) % targets.length]!;
        const tr = await traceOne(tools.loadgen, t, up.proc.pid, pki, round, dir);
        traces.push(tr);
        log(`round ${round}/${O.rounds}  ${t.name.padEnd(11)} p99 ${fmt(tr.p99Ms)} ms (traced)`);
      }
    }
  } finally {
    await stopAll();
    rmSync(pki.dir, { recursive: true, force: true });
  }
  log('');
  const results: RoundResult[] = [];
  const seen: { runs: SchedRun[]; roles: Roles }[] = [];
  for (const tr of traces) {
    const { result: r, runs } = analyse(tr);
    results.push(r);
    seen.push({ runs, roles: tr.roles });
    const causes = Object.entries(r.causes)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    log(
      `round ${r.round}  ${r.target.padEnd(11)} p99 ${fmt(r.p99Ms)} ms  slow ${r.slow}  clusters ${r.clusters} (median ${r.medianRequests} requests, worst ${fmt(r.worstMs)} ms)  held by: ${causes || '-'}`,
    );
  }
  // Visitors: tasks outside the benchmark, over every trace.
  const exclude = new Set(['perf', 'loadgen', 'taskset', 'node', 'esbuild', 'sleep']);
  const byComm = new Map<
    string,
    { runs: number; medianMs: number[]; periodMs: number[]; cpus: Set<number> }
  >();
  for (const s of seen)
    for (const v of visitors(s.runs, s.roles, exclude)) {
      const e = byComm.get(v.comm) ?? { runs: 0, medianMs: [], periodMs: [], cpus: new Set<number>() };
      e.runs += v.runs;
      e.medianMs.push(v.medianMs);
      e.periodMs.push(v.periodMs);
      for (const c of v.cpus) e.cpus.add(c);
      byComm.set(v.comm, e);
    }
  const vis = [...byComm].map(([comm, e]) => ({
    comm,
    runs: e.runs,
    medianMs: median(e.medianMs),
    periodMs: median(e.periodMs),
    cpus: [...e.cpus].sort(),
  }));
  log('\ntasks outside the benchmark that ran 1 ms or more at a time, at least 3 times per trace:');
  for (const v of vis)
    log(
      `  ${v.comm.padEnd(18)} ${v.runs} runs, median ${fmt(v.medianMs)} ms, every ${fmt(v.periodMs)} ms, on CPU ${v.cpus.join(', ')}`,
    );
  writeFileSync(
    `${RESULTS}tail.json`,
    `${JSON.stringify({ options: O, results, visitors: vis }, null, 2)}\n`,
  );
  rmSync(dir, { recursive: true, force: true });
  log(`wrote bench/results/tail.json`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    await stopAll();
    log(`bench:tail: ${(err as Error).message}`);
    process.exit(1);
  },
);
