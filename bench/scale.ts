/**
 * `npm run bench:scale`: does `workers: 2` buy throughput? The sidecar with one process and with
 * two data-plane workers (node:cluster, round-robin and kernel-balanced accepts), in front of the
 * same upstream, loaded by the same Go generator as `npm run bench`, in alternating rounds.
 *
 * This machine has 2 cores, so there is no idle core to scale onto: the upstream is pinned to
 * CPU 0, the generator to CPU 1, and every sidecar variant may use both CPUs (so one process and
 * two workers are measured under the same rules). What matters is therefore read from the proxy's
 * CPU per request and its share of the machine as much as from req/s; see docs/performance.md.
 *
 * Options (env): BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_WARMUP (1), BENCH_CONNECTIONS (16),
 * BENCH_SCALE_MODES (http,conn), BENCH_SCALE_VARIANTS (w1,w2-rr,w2-none), BENCH_NO_INSTALL=1.
 */
import { appendFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { envNumber } from './env.js';
import { measure, type LoadOptions, type Mode, type Sample } from './loadgen.js';
import { cpuSeconds } from './procfs.js';
import { canPin, pinSelf, sleep, start, stop, stopAll, type Proc } from './procs.js';
import {
  benchLicenses,
  CLI,
  freePort,
  makePki,
  writeBundle,
  writeSidecarConfig,
  type BenchPki,
} from './setup.js';
import { fmt, summarize, type Summary } from './stats.js';
import {
  checkIdentities,
  LOAD_CPU,
  PROXY_CPU,
  startUpstream,
  type Target,
  type Upstream,
} from './targets.js';
import { ensureTools } from './tools.js';

interface Variant {
  name: string;
  workers: number;
  /** node:cluster scheduling (NODE_CLUSTER_SCHED_POLICY); null for one process. */
  scheduling: 'rr' | 'none' | null;
}

const VARIANTS: readonly Variant[] = [
  { name: 'w1', workers: 1, scheduling: null },
  { name: 'w2-rr', workers: 2, scheduling: 'rr' },
  { name: 'w2-none', workers: 2, scheduling: 'none' },
];
const SCALE_MODES: readonly Mode[] = ['http', 'conn'];

function pick<T>(name: string, all: readonly T[], key: (t: T) => string): T[] {
  const v = process.env[name];
  if (!v) return [...all];
  const want = v.split(',').map((s) => s.trim());
  for (const w of want)
    if (!all.some((a) => key(a) === w))
      throw new Error(`${name}: unknown "${w}" (known: ${all.map(key).join(', ')})`);
  return all.filter((a) => want.includes(key(a)));
}

const O: LoadOptions & { rounds: number } = {
  seconds: envNumber('BENCH_SECONDS', 5),
  rounds: Math.round(envNumber('BENCH_ROUNDS', 3)),
  warmup: envNumber('BENCH_WARMUP', 1),
  connections: Math.round(envNumber('BENCH_CONNECTIONS', 16)),
  rate: 2000,
  probeMs: 100,
};
const WANT_VARIANTS = pick('BENCH_SCALE_VARIANTS', VARIANTS, (v) => v.name);
const WANT_MODES = pick('BENCH_SCALE_MODES', SCALE_MODES, (m) => m);

const log = (line: string): boolean => process.stderr.write(`${line}\n`);

interface Running {
  variant: Variant;
  target: Target;
  proc: Proc;
}

/** The real CLI with `workers:` appended to the bench's sidecar config, allowed on every CPU. */
async function startVariant(v: Variant, pki: BenchPki, up: Upstream): Promise<Running> {
  const bundle = writeBundle(pki, `scale-${v.name}-bundle.json`, benchLicenses(2));
  const ports = {
    http: await freePort(),
    tcp: await freePort(),
    admin: await freePort(),
    upHttp: up.http,
    upTcp: up.tcp,
  };
  const config = writeSidecarConfig(pki, `scale-${v.name}`, bundle, ports);
  if (v.workers > 1) appendFileSync(config, `workers: ${v.workers}\n`);
  const env = { ...process.env };
  if (v.scheduling !== null) env.NODE_CLUSTER_SCHED_POLICY = v.scheduling;
  // procs.start pins to one CPU; an inner taskset widens it to both, the same for every variant.
  const all = `0-${cpus().length - 1}`;
  const argv = [process.execPath, CLI, 'sidecar', '--config', config];
  const proc = start(`sidecar ${v.name}`, PROXY_CPU, canPin ? ['taskset', '-c', all, ...argv] : argv, env);
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${ports.admin}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (proc.child.exitCode !== null || Date.now() > deadline)
      throw new Error(`sidecar ${v.name} did not become ready: ${proc.stderrTail}`);
    await sleep(100);
  }
  const target: Target = {
    name: 'portlicense',
    httpPort: ports.http,
    tcpPort: ports.tcp,
    tls: true,
    proc,
    identityCheck: 'SPIFFE ID from the one URI SAN, license lookup',
  };
  await checkIdentities(target, pki);
  return { variant: v, target, proc };
}

interface Row {
  round: number;
  variant: string;
  mode: Mode;
  rate: number;
  p99Ms: number;
  /** CPU per request (or per new connection) of the whole sidecar tree, µs. */
  cpuUsPerOp: number;
  /** CPU of the sidecar tree over the run, in cores (1.0 = one CPU busy all the time). */
  proxyCores: number;
  /** Part of that spent in the control-plane process (accepts under round-robin), µs per op. */
  primaryUsPerOp: number;
  genCpuShare: number;
  failures: number;
  leaked: number;
}

function toRow(s: Sample, variant: string, primaryCpuS: number, wallS: number): Row {
  const work = Math.max(1, s.work);
  return {
    round: s.round,
    variant,
    mode: s.mode,
    rate: s.gen.rate,
    p99Ms: (s.gen.latencyUs?.p99 ?? 0) / 1000,
    cpuUsPerOp: ((s.proxyCpuS ?? 0) * 1e6) / work,
    proxyCores: (s.proxyCpuS ?? 0) / wallS,
    primaryUsPerOp: (primaryCpuS * 1e6) / work,
    genCpuShare: s.gen.genCpuShare,
    failures: s.gen.bad + s.gen.errors,
    leaked: s.gen.deny?.leaked ?? 0,
  };
}

function table(rows: readonly Row[]): string {
  const out = [
    '| mode | variant | req or conn/s | vs w1 | proxy CPU µs/op | vs w1 | proxy cores used | control-plane µs/op | p99 ms | generator CPU |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const s = (xs: number[]): Summary => summarize(xs);
  const f = (x: Summary): string =>
    x.values.length > 1 ? `${fmt(x.median)} [${fmt(x.min)}–${fmt(x.max)}]` : fmt(x.median);
  for (const mode of WANT_MODES) {
    for (const v of WANT_VARIANTS) {
      const mine = rows.filter((r) => r.mode === mode && r.variant === v.name);
      if (mine.length === 0) continue;
      // Ratios are paired within a round: both ran minutes apart at most, on the same machine state.
      const ratio = (get: (r: Row) => number): string => {
        const xs = mine.flatMap((r) => {
          const base = rows.find((b) => b.mode === mode && b.variant === 'w1' && b.round === r.round);
          return base ? [get(r) / get(base)] : [];
        });
        return xs.length === 0 ? '–' : `${s(xs).median.toFixed(2)}×`;
      };
      out.push(
        `| ${mode} | ${v.name} | ${f(s(mine.map((r) => r.rate)))} | ${ratio((r) => r.rate)} | ` +
          `${f(s(mine.map((r) => r.cpuUsPerOp)))} | ${ratio((r) => r.cpuUsPerOp)} | ` +
          `${f(s(mine.map((r) => r.proxyCores)))} | ${v.workers > 1 ? fmt(s(mine.map((r) => r.primaryUsPerOp)).median) : '–'} | ` +
          `${fmt(s(mine.map((r) => r.p99Ms)).median)} | ${(s(mine.map((r) => r.genCpuShare)).median * 100).toFixed(0)}% |`,
      );
    }
  }
  return out.join('\n');
}

async function main(): Promise<number> {
  if (!existsSync(CLI))
    throw new Error('dist/ is missing: run `npm run build` first (npm run bench:scale does)');
  pinSelf(LOAD_CPU);
  const tools = ensureTools();
  for (const n of tools.notes) log(`bench:scale: ${n}`);
  if (tools.loadgen === null) throw new Error('no load generator (Go missing): nothing to measure');
  const pki = makePki();
  const rows: Row[] = [];
  const failures: string[] = [];
  try {
    const up = await startUpstream(tools.loadgen);
    const running: Running[] = [];
    for (const v of WANT_VARIANTS) running.push(await startVariant(v, pki, up));
    log(
      `bench:scale: ${running.map((r) => r.variant.name).join(', ')}; modes ${WANT_MODES.join(', ')}; ` +
        `${O.rounds} rounds of ${O.seconds}s (+${O.warmup}s warm-up), ${O.connections} connections; ` +
        (canPin
          ? `upstream on CPU ${PROXY_CPU}, generator on CPU ${LOAD_CPU}, sidecars on all CPUs`
          : 'unpinned'),
    );
    for (let round = 1; round <= O.rounds; round++) {
      const order = running.map((_, i) => running[(i + round - 1) % running.length]!);
      for (const mode of WANT_MODES)
        for (const r of order) {
          try {
            const primary0 = cpuSeconds([r.proc.pid]);
            const t0 = Date.now();
            const sample = await measure(tools.loadgen, mode, r.target, up, pki, O, round);
            const row = toRow(
              sample,
              r.variant.name,
              cpuSeconds([r.proc.pid]) - primary0,
              (Date.now() - t0) / 1000,
            );
            rows.push(row);
            log(
              `round ${round}/${O.rounds}  ${mode.padEnd(4)}  ${r.variant.name.padEnd(8)}  ${fmt(row.rate)}/s  ` +
                `proxy ${fmt(row.cpuUsPerOp)} µs/op on ${row.proxyCores.toFixed(2)} cores  p99 ${fmt(row.p99Ms)} ms  ` +
                `gen ${(row.genCpuShare * 100).toFixed(0)}%` +
                (row.failures > 0 ? `  ALLOWED NOT SERVED ×${row.failures}` : '') +
                (row.leaked > 0 ? `  DENIED SERVED ×${row.leaked}` : ''),
            );
            if (row.failures > 0 || row.leaked > 0)
              failures.push(
                `${r.variant.name} ${mode} round ${round}: ${row.failures} failed, ${row.leaked} leaked`,
              );
          } catch (err) {
            const msg = `${r.variant.name} ${mode} round ${round}: ${(err as Error).message}`;
            failures.push(msg);
            log(msg);
          }
        }
    }
    for (const r of running) await stop(r.proc);
  } finally {
    await stopAll();
    rmSync(pki.dir, { recursive: true, force: true });
  }
  const md = table(rows);
  const report = {
    finishedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, kernel: release() },
    versions: tools.versions,
    settings: { ...O, modes: WANT_MODES, variants: WANT_VARIANTS },
    rows,
    failures,
    table: md,
  };
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL('scale.json', dir), JSON.stringify(report, null, 2) + '\n');
  console.log(
    [
      '',
      `machine: ${report.machine.cpus} × ${report.machine.model ?? '?'}, Linux ${report.machine.kernel}; node ${process.version}`,
      'Median [min–max] over rounds; "vs w1" is the median of per-round ratios to one process.',
      '',
      md,
      '',
      failures.length === 0
        ? 'correctness: allowed identity served every time, denied identity never served'
        : `FAILURES:\n  ${failures.join('\n  ')}`,
      'wrote bench/results/scale.json',
    ].join('\n'),
  );
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
