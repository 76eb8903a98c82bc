/**
 * `npm run bench`: portlicense side by side with a direct connection, haproxy and nginx doing the
 * same job, in one run. The proxies and the upstream share CPU 0; the Go load generator runs on
 * CPU 1. Targets alternate within each round, rounds repeat, and the report gives medians,
 * spreads (min–max over rounds) and ratios paired within rounds. Correctness is checked inside
 * every run: the allowed identity is always served, the denied one never.
 *
 * Options (env): BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_WARMUP (1), BENCH_CONNECTIONS (16),
 * BENCH_RATE (2000), BENCH_PROBE_MS (100), BENCH_LICENSES (10000), BENCH_TARGETS and BENCH_MODES
 * (comma lists to run a subset), BENCH_NO_INSTALL=1, BENCH_CPU_PROF=1, BENCH_SLOW_LOG=1,
 * BENCH_NODE_FLAGS, and for an A/B run BENCH_VARIANT_NODE_FLAGS and/or BENCH_VARIANT_LAUNCHER. See
 * docs/performance.md.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { envNumber } from './env.js';
import {
  applies,
  isConnMode,
  measure,
  MODES,
  SLOW_LOG,
  SLOW_LOG_DIR,
  SLOW_OVER_MS,
  type LoadOptions,
  type Sample,
} from './loadgen.js';
import { measureLicenseMemory, type MemoryResult } from './memory.js';
import { canPin, pinSelf, stopAll } from './procs.js';
import { checkCorrectness, markdownTable, memoryLine, summarizeSamples } from './report.js';
import { CLI, freePort, makePki, type BenchPki } from './setup.js';
import { fmt } from './stats.js';
import {
  checkIdentities,
  directTarget,
  LOAD_CPU,
  nodeFlagsFrom,
  PROXY_CPU,
  startHaproxy,
  startNginx,
  startPortlicense,
  startUpstream,
  stopTarget,
  type Target,
  type TargetName,
  type Upstream,
} from './targets.js';
import { ensureTools, type Tools } from './tools.js';

function list<T extends string>(name: string, all: readonly T[]): T[] {
  const v = process.env[name];
  if (!v) return [...all];
  const want = v.split(',').map((s) => s.trim());
  for (const w of want)
    if (!all.includes(w as T)) throw new Error(`${name}: unknown "${w}" (known: ${all.join(', ')})`);
  return all.filter((x) => want.includes(x));
}

const ALL_TARGETS: readonly TargetName[] = ['direct', 'portlicense', 'variant', 'haproxy', 'nginx'];
/** An A/B run: a second sidecar, the variant, with other node flags or from another checkout. */
const VARIANT = {
  nodeFlags: nodeFlagsFrom('BENCH_VARIANT_NODE_FLAGS'),
  launcher: process.env.BENCH_VARIANT_LAUNCHER || undefined,
};
const WANT_VARIANT =
  (process.env.BENCH_VARIANT_NODE_FLAGS ?? '').trim() !== '' || VARIANT.launcher !== undefined;
const O: LoadOptions & { rounds: number; licenses: number } = {
  seconds: envNumber('BENCH_SECONDS', 5),
  rounds: Math.round(envNumber('BENCH_ROUNDS', 3)),
  warmup: envNumber('BENCH_WARMUP', 1),
  connections: Math.round(envNumber('BENCH_CONNECTIONS', 16)),
  rate: envNumber('BENCH_RATE', 2000),
  probeMs: envNumber('BENCH_PROBE_MS', 100),
  licenses: Math.max(2, Math.round(envNumber('BENCH_LICENSES', 10_000))),
};
const WANT_TARGETS = list('BENCH_TARGETS', ALL_TARGETS);
const WANT_MODES = list('BENCH_MODES', MODES);

const log = (line: string): boolean => process.stderr.write(`${line}\n`);

/** Start a comparison proxy; a failure skips it with a line instead of ending the run. */
async function optional(
  name: TargetName,
  notes: string[],
  startIt: () => Promise<Target>,
  pki: BenchPki,
): Promise<Target | null> {
  let t: Target | null = null;
  try {
    t = await startIt();
    await checkIdentities(t, pki);
    return t;
  } catch (err) {
    notes.push(`SKIPPED ${name}: ${(err as Error).message}`);
    if (t !== null) await stopTarget(t);
    return null;
  }
}

async function startTargets(tools: Tools, pki: BenchPki, up: Upstream, notes: string[]): Promise<Target[]> {
  const out: Target[] = [];
  if (WANT_TARGETS.includes('direct')) out.push(directTarget(up));
  if (WANT_TARGETS.includes('portlicense')) {
    const pl = await startPortlicense(pki, up, { nodeFlags: nodeFlagsFrom('BENCH_NODE_FLAGS') });
    await checkIdentities(pl, pki);
    out.push(pl);
  }
  if (WANT_VARIANT && WANT_TARGETS.includes('variant')) {
    const v = await startPortlicense(pki, up, { ...VARIANT, as: 'variant' });
    await checkIdentities(v, pki);
    out.push(v);
  }
  if (WANT_TARGETS.includes('haproxy') && tools.haproxy !== null) {
    const t = await optional('haproxy', notes, () => startHaproxy(tools.haproxy!, pki, up), pki);
    if (t) out.push(t);
  }
  if (WANT_TARGETS.includes('nginx') && tools.nginx !== null) {
    const t = await optional('nginx', notes, () => startNginx(tools.nginx!, tools.nginxStream, pki, up), pki);
    if (t) out.push(t);
  }
  return out;
}

function progress(s: Sample): string {
  const g = s.gen;
  const parts = [`round ${s.round}/${O.rounds}`, s.mode.padEnd(9), s.target.padEnd(11)];
  const unit = s.mode.startsWith('bulk') ? 'MiB' : isConnMode(s.mode) ? 'conn' : 'req';
  if (s.mode.startsWith('bulk')) parts.push(`${fmt(g.mbps ?? 0)} MB/s`);
  else parts.push(`${fmt(g.rate)} ${unit}/s`, `p99 ${fmt((g.latencyUs?.p99 ?? 0) / 1000)} ms`);
  if (s.proxyCpuS !== null) parts.push(`proxy ${fmt((s.proxyCpuS * 1e6) / Math.max(1, s.work))} µs/${unit}`);
  if (s.mode === 'resume') parts.push(`${fmt((100 * (g.resumed ?? 0)) / Math.max(1, g.count))}% resumed`);
  parts.push(`gen ${(g.genCpuShare * 100).toFixed(0)}% CPU`);
  if (g.bad + g.errors > 0) parts.push(`ALLOWED NOT SERVED ×${g.bad + g.errors}`);
  if ((g.deny?.leaked ?? 0) > 0) parts.push(`DENIED SERVED ×${g.deny!.leaked}`);
  return parts.join('  ');
}

/** The generator's own CPU, so a reader can see it was not what limited a proxy's numbers. */
function generatorLine(samples: readonly Sample[]): string {
  const share = (xs: readonly Sample[]): number => Math.max(0, ...xs.map((s) => s.gen.genCpuShare));
  const proxies = share(samples.filter((s) => s.target !== 'direct'));
  const direct = share(samples.filter((s) => s.target === 'direct'));
  const lags = samples.flatMap((s) => (s.gen.timerLagUs ? [s.gen.timerLagUs.p99 / 1000] : []));
  const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
  return (
    `load generator CPU: at most ${pct(proxies)} of its core against the proxies, ${pct(direct)} against direct` +
    (Math.max(proxies, direct) > 0.9 ? ' — above 90%, it may have limited those runs' : '') +
    (lags.length > 0 ? `; open-loop send lateness p99 ≤ ${fmt(Math.max(...lags))} ms` : '')
  );
}

async function main(): Promise<number> {
  const began = Date.now();
  if (!existsSync(CLI)) throw new Error('dist/ is missing: run `npm run build` first (npm run bench does)');
  const pinnedSelf = pinSelf(LOAD_CPU);
  const tools = ensureTools();
  const notes = [...tools.notes];
  if (!canPin) notes.push('NOT PINNED: taskset or a second CPU is missing; proxy and load share the CPUs');
  if (SLOW_LOG && WANT_MODES.includes('open')) {
    mkdirSync(SLOW_LOG_DIR, { recursive: true });
    notes.push(`slow-request logs of the open loop (over ${SLOW_OVER_MS} ms) in ${SLOW_LOG_DIR}`);
  }
  for (const n of notes) log(`bench: ${n}`);
  const loadAvgStart = loadavg();
  const pki = makePki();
  const samples: Sample[] = [];
  const runFailures: string[] = [];
  let memory: MemoryResult | null = null;
  let targets: Target[] = [];
  try {
    let up: Upstream | null = null;
    if (tools.loadgen !== null) {
      up = await startUpstream(tools.loadgen);
      targets = await startTargets(tools, pki, up, notes);
      const runs = WANT_MODES.reduce((n, m) => n + targets.filter((t) => applies(m, t)).length, 0);
      const perRound = WANT_MODES.reduce(
        (sec, m) =>
          sec +
          targets.filter((t) => applies(m, t)).length *
            (O.seconds + (m.startsWith('bulk') ? 0 : O.warmup) + 0.5),
        0,
      );
      log(`bench: ${runs} runs per round, about ${Math.ceil((perRound * O.rounds) / 60)} min of load`);
      log(
        `bench: targets ${targets.map((t) => t.name).join(', ')}; modes ${WANT_MODES.join(', ')}; ${O.rounds} rounds of ${O.seconds}s (+${O.warmup}s warm-up)`,
      );
      for (let round = 1; round <= O.rounds; round++) {
        // Rotate the order every round so no target always runs right after the same one.
        const order = targets.map((_, i) => targets[(i + round - 1) % targets.length]!);
        for (const mode of WANT_MODES) {
          for (const t of order) {
            if (!applies(mode, t)) continue;
            try {
              const s = await measure(tools.loadgen, mode, t, up, pki, O, round);
              samples.push(s);
              log(progress(s));
            } catch (err) {
              // One failed run (a proxy that died, a transfer cut short) is reported, not fatal.
              const msg = `${t.name} ${mode} round ${round}: the run failed: ${(err as Error).message}`;
              runFailures.push(msg);
              log(msg);
            }
          }
        }
      }
    }
    if (WANT_TARGETS.includes('portlicense')) {
      log(`bench: sidecar memory with 1 and ${fmt(O.licenses)} licenses…`);
      memory = await measureLicenseMemory(
        pki,
        up ?? { http: await freePort(), tcp: await freePort() },
        O.rounds,
        O.licenses,
      );
    }
  } finally {
    await stopAll();
    rmSync(pki.dir, { recursive: true, force: true });
  }

  const { results, ratios } = summarizeSamples(samples);
  const correctness = checkCorrectness(samples);
  correctness.failures.push(...runFailures);
  const names = targets.map((t) => t.name);
  const table = samples.length > 0 ? markdownTable(results, ratios, names, O) : '';
  const report = {
    finishedAt: new Date().toISOString(),
    wallSeconds: Math.round((Date.now() - began) / 1000),
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model,
      memGiB: Math.round(totalmem() / 2 ** 30),
      kernel: release(),
      loadAvgStart,
      loadAvgEnd: loadavg(),
    },
    versions: tools.versions,
    pinning: canPin
      ? { proxyAndUpstreamCpu: PROXY_CPU, loadGeneratorCpu: LOAD_CPU, benchProcessPinned: pinnedSelf }
      : null,
    settings: { ...O, targets: WANT_TARGETS, modes: WANT_MODES },
    notes,
    identityChecks: Object.fromEntries(targets.map((t) => [t.name, t.identityCheck])),
    tls: Object.fromEntries(
      targets.map((t) => [t.name, samples.find((s) => s.target === t.name && s.gen.tls)?.gen.tls ?? null]),
    ),
    results,
    ratios,
    memory,
    correctness,
    table,
    samples,
  };
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL('latest.json', dir), JSON.stringify(report, null, 2) + '\n');

  const out: string[] = [''];
  out.push(
    `machine: ${report.machine.cpus} × ${report.machine.model ?? '?'}, ${report.machine.memGiB} GiB, Linux ${report.machine.kernel}; ` +
      `load average ${loadAvgStart.map((x) => x.toFixed(1)).join(' ')} at start`,
  );
  out.push(
    `versions: ${Object.entries(tools.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(' · ')}`,
  );
  out.push(
    `settings: ${O.rounds} rounds × ${O.seconds}s (+${O.warmup}s warm-up), ${O.connections} connections; ` +
      (canPin ? `proxy + upstream on CPU ${PROXY_CPU}, load generator on CPU ${LOAD_CPU}` : 'unpinned'),
  );
  out.push('');
  if (table) {
    out.push(
      'Median [min–max] over rounds; ratios are medians of per-round ratios (for latency and CPU, lower is better).',
    );
    out.push('');
    out.push(table);
    out.push('');
    out.push(generatorLine(samples));
  }
  if (memory) out.push(memoryLine(memory));
  for (const t of targets) out.push(`identity check, ${t.name}: ${t.identityCheck}`);
  for (const n of notes) out.push(`note: ${n}`);
  const plFailures = correctness.failures.filter((f) => /^(portlicense|variant) /.test(f));
  if (samples.length > 0) {
    const c = correctness.targets;
    out.push(
      correctness.failures.length === 0
        ? `correctness: allowed identity served every time, denied identity never served (` +
            Object.entries(c)
              .map(
                ([t, v]) =>
                  `${t}: ${fmt(v.allowedOk)} served` +
                  (t === 'direct' ? '' : `, ${fmt(v.deniedProbes)} probes denied`),
              )
              .join('; ') +
            ')'
        : `CORRECTNESS FAILURES:\n  ${correctness.failures.join('\n  ')}`,
    );
  }
  out.push(`wrote bench/results/latest.json (${report.wallSeconds}s)`);
  console.log(out.join('\n'));
  return plFailures.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
