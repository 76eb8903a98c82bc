/**
 * Runs the Go load generator (bench/loadgen) once, pinned to the load CPU, against one target,
 * while reading the target's CPU time and peak RSS from /proc: one Sample per run.
 */
import { fileURLToPath } from 'node:url';
import { cpuSeconds, processTree, rssPeakSampler } from './procfs.js';
import { finish, start } from './procs.js';
import type { BenchPki } from './setup.js';
import { LOAD_CPU, type Target, type TargetName, type Upstream } from './targets.js';

export type Mode = 'http' | 'open' | 'conn' | 'resume' | 'bulk-up' | 'bulk-down';
export const MODES: readonly Mode[] = ['http', 'open', 'conn', 'resume', 'bulk-up', 'bulk-down'];

/** Modes that open a new TLS connection per request. */
export const isConnMode = (m: Mode): boolean => m === 'conn' || m === 'resume';

export interface LoadOptions {
  seconds: number;
  warmup: number;
  connections: number;
  rate: number;
  probeMs: number;
}

/** What bench/loadgen prints (its Result type). Latencies in µs. */
export interface LoadgenResult {
  mode: Mode;
  seconds: number;
  count: number;
  rate: number;
  latencyUs?: {
    count: number;
    mean: number;
    p50: number;
    p90: number;
    p99: number;
    p999: number;
    max: number;
  };
  timerLagUs?: { p50: number; p99: number; max: number };
  ok: number;
  bad: number;
  errors: number;
  /** resume mode: connections in the window that resumed a TLS session. */
  resumed?: number;
  statuses?: Record<string, number>;
  bytes?: number;
  mbps?: number;
  deny?: {
    attempts: number;
    denied: number;
    refused: number;
    leaked: number;
    statuses: Record<string, number>;
  };
  tls?: { version: string; cipher: string };
  genCpuSeconds: number;
  genCpuShare: number;
}

export interface Sample {
  round: number;
  mode: Mode;
  target: TargetName;
  gen: LoadgenResult;
  /** CPU seconds of the proxy's process tree over the whole run (warm-up included); null for direct. */
  proxyCpuS: number | null;
  upstreamCpuS: number;
  /** Peak RSS of the proxy's process tree during the run, bytes. */
  proxyRssPeak: number | null;
  /** What the CPU was spent on over the whole run: requests, connections, or MiB. */
  work: number;
}

/** Whether a mode applies to a target: direct has no TLS handshakes; some targets have no TCP. */
export function applies(mode: Mode, t: Target): boolean {
  if (isConnMode(mode)) return t.tls;
  if (mode === 'bulk-up' || mode === 'bulk-down') return t.tcpPort !== null;
  return true;
}

/**
 * BENCH_SLOW_LOG=1: the open loop logs its requests over SLOW_OVER_MS in SLOW_LOG_DIR, one file per
 * target and round, stamped on CLOCK_MONOTONIC to lay over `perf record -k CLOCK_MONOTONIC`.
 */
export const SLOW_LOG = process.env.BENCH_SLOW_LOG === '1';
export const SLOW_LOG_DIR = fileURLToPath(new URL('./results/slow/', import.meta.url));
export const SLOW_OVER_MS = 1.2;

/** The generator's arguments for one run; `slowLog` overrides where the open loop logs slow requests. */
export function argsFor(
  mode: Mode,
  t: Target,
  pki: BenchPki,
  o: LoadOptions,
  round: number,
  slowLog?: string,
): string[] {
  const port = mode.startsWith('bulk') ? t.tcpPort! : t.httpPort;
  const args = [mode, '-addr', `127.0.0.1:${port}`, '-duration', `${o.seconds}s`];
  if (!mode.startsWith('bulk'))
    args.push('-conns', String(o.connections), '-warmup', `${o.warmup}s`, '-probe', `${o.probeMs}ms`);
  if (mode === 'open') args.push('-rate', String(o.rate));
  if (mode === 'open' && (SLOW_LOG || slowLog !== undefined))
    args.push(
      '-slow-log',
      slowLog ?? `${SLOW_LOG_DIR}open-${t.name}-round${round}.txt`,
      '-slow-over',
      `${SLOW_OVER_MS}ms`,
    );
  if (t.tls)
    args.push(
      '-tls',
      '-ca',
      pki.ca,
      '-cert',
      pki.client.cert,
      '-key',
      pki.client.key,
      '-deny-cert',
      pki.stranger.cert,
      '-deny-key',
      pki.stranger.key,
      '-servername',
      'localhost',
    );
  return args;
}

export async function measure(
  loadgen: string,
  mode: Mode,
  t: Target,
  up: Upstream,
  pki: BenchPki,
  o: LoadOptions,
  round: number,
): Promise<Sample> {
  const proxyPids = t.proc === null ? [] : processTree(t.proc.pid);
  const upPids = [up.proc.pid];
  const proxy0 = cpuSeconds(proxyPids);
  const up0 = cpuSeconds(upPids);
  const rssPeak = proxyPids.length > 0 ? rssPeakSampler(proxyPids) : null;
  const proc = start(`loadgen ${mode} ${t.name}`, LOAD_CPU, [loadgen, ...argsFor(mode, t, pki, o, round)]);
  const code = await finish(proc, (o.seconds + o.warmup + 60) * 1000);
  const rss = rssPeak?.() ?? null;
  const proxyCpuS = t.proc === null ? null : cpuSeconds(proxyPids) - proxy0;
  const upstreamCpuS = cpuSeconds(upPids) - up0;
  if (code !== 0)
    throw new Error(`load generator (${mode} → ${t.name}) failed with ${code}: ${proc.stderrTail}`);
  const gen = JSON.parse(proc.stdout) as LoadgenResult;
  const probes = gen.deny?.attempts ?? 0;
  const work = mode.startsWith('bulk') ? (gen.bytes ?? 0) / 2 ** 20 : gen.ok + gen.bad + probes;
  return { round, mode, target: t.name, gen, proxyCpuS, upstreamCpuS, proxyRssPeak: rss, work };
}
