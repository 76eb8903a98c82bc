/**
 * `npm run bench`: the sidecar against a direct connection to the same upstream, in the same run.
 * Modes: HTTP keep-alive requests per second (closed loop, 16 connections) with latency
 * percentiles, and one-stream TCP bulk throughput. The sidecar and the upstreams share CPU 0; this
 * load generator runs on CPU 1. Targets alternate and each is measured ROUNDS times; medians are
 * reported. Correctness is checked in the run: the allowed identity is served, a stranger never.
 *
 * Options (env): BENCH_SECONDS (default 5), BENCH_ROUNDS (3), BENCH_CONNECTIONS (16), BENCH_MB (256).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { cpus, totalmem } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { Pool } from 'undici';
import {
  CLI,
  freePort,
  makePki,
  spawnPinned,
  waitForOutput,
  writeSidecarConfig,
  type BenchPki,
} from './setup.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const MB = Number(process.env.BENCH_MB ?? 256);

interface HttpResult {
  rps: number;
  p50: number;
  p99: number;
}

async function httpLoad(pool: Pool, seconds: number): Promise<HttpResult> {
  const lat: number[] = [];
  let done = 0;
  const end = performance.now() + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const r = await pool.request({ method: 'GET', path: '/api/items' });
      await r.body.dump();
      if (r.statusCode !== 200) throw new Error(`unexpected status ${r.statusCode}`);
      lat.push(performance.now() - t0);
      done++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]!;
  return { rps: done / elapsed, p50: pct(0.5), p99: pct(0.99) };
}

async function tcpBulk(open: () => import('node:net').Socket, megabytes: number): Promise<number> {
  const sock = open();
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.once(sock.constructor.name === 'TLSSocket' ? 'secureConnect' : 'connect', () => resolve());
  });
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const total = megabytes * 1024 * 1024;
  let reply = '';
  sock.setEncoding('utf8').on('data', (d: string) => (reply += d));
  const t0 = performance.now();
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
  }
  sock.end();
  await new Promise((r) => sock.once('end', r));
  const secs = (performance.now() - t0) / 1000;
  if (Number(reply.trim()) !== total)
    throw new Error(`upstream counted ${reply.trim()} bytes, sent ${total}`);
  return total / 1024 / 1024 / secs;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const spread = (xs: number[]): string => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;

async function checkCorrectness(pki: BenchPki, port: number): Promise<void> {
  for (const [who, want] of [
    [pki.client, 200],
    [pki.stranger, 403],
  ] as const) {
    const p = new Pool(`https://127.0.0.1:${port}`, {
      connect: { ca: pki.ca, cert: who.cert, key: who.key, servername: 'localhost' },
    });
    const r = await p.request({ method: 'GET', path: '/api/items' });
    await r.body.dump();
    await p.close();
    if (r.statusCode !== want) throw new Error(`correctness: expected ${want}, got ${r.statusCode}`);
  }
}

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error('dist/ is missing: run `npm run build` first');
  if (cpus().length > 1) {
    try {
      execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
    } catch {
      // taskset missing: unpinned, noted in the report
    }
  }
  const pki = makePki();
  const ups = spawnPinned(0, [
    process.execPath,
    '--import',
    'tsx',
    new URL('./upstreams.ts', import.meta.url).pathname,
  ]);
  const ready = await waitForOutput(ups, /ready http=(\d+) tcp=(\d+)/);
  const [, httpUp, tcpUp] = /http=(\d+) tcp=(\d+)/.exec(ready)!.map(Number) as [number, number, number];
  const ports = { http: await freePort(), tcp: await freePort(), admin: await freePort(), httpUp, tcpUp };
  const config = writeSidecarConfig(pki, ports);
  const sidecar = spawnPinned(0, [process.execPath, CLI, 'sidecar', '--config', config]);
  await new Promise((r) => setTimeout(r, 300));
  for (let i = 0; i < 50; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${ports.admin}/readyz`)).ok) break;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await checkCorrectness(pki, ports.http);

  const direct = new Pool(`http://127.0.0.1:${httpUp}`, { connections: CONNECTIONS });
  const viaSidecar = new Pool(`https://127.0.0.1:${ports.http}`, {
    connections: CONNECTIONS,
    connect: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key, servername: 'localhost' },
  });
  await httpLoad(direct, 1);
  await httpLoad(viaSidecar, 1);
  const res = {
    direct: [] as HttpResult[],
    sidecar: [] as HttpResult[],
    tcpDirect: [] as number[],
    tcpSidecar: [] as number[],
  };
  for (let i = 0; i < ROUNDS; i++) {
    res.direct.push(await httpLoad(direct, SECONDS));
    res.sidecar.push(await httpLoad(viaSidecar, SECONDS));
    res.tcpDirect.push(await tcpBulk(() => netConnect(tcpUp, '127.0.0.1'), MB));
    res.tcpSidecar.push(
      await tcpBulk(
        () =>
          tlsConnect({
            port: ports.tcp,
            host: '127.0.0.1',
            ca: pki.ca,
            cert: pki.client.cert,
            key: pki.client.key,
            servername: 'localhost',
          }),
        MB,
      ),
    );
    process.stderr.write(`round ${i + 1}/${ROUNDS} done\n`);
  }
  await checkCorrectness(pki, ports.http);
  await direct.close();
  await viaSidecar.close();
  sidecar.kill('SIGTERM');
  ups.kill('SIGTERM');

  const rps = (xs: HttpResult[]): number[] => xs.map((x) => x.rps);
  const report = {
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model,
      memGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
    },
    settings: { seconds: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, megabytes: MB },
    http: {
      direct: {
        rps: median(rps(res.direct)),
        spread: spread(rps(res.direct)),
        p50ms: median(res.direct.map((x) => x.p50)),
        p99ms: median(res.direct.map((x) => x.p99)),
      },
      sidecar: {
        rps: median(rps(res.sidecar)),
        spread: spread(rps(res.sidecar)),
        p50ms: median(res.sidecar.map((x) => x.p50)),
        p99ms: median(res.sidecar.map((x) => x.p99)),
      },
    },
    tcp: {
      directMBps: median(res.tcpDirect),
      sidecarMBps: median(res.tcpSidecar),
      spreadDirect: spread(res.tcpDirect),
      spreadSidecar: spread(res.tcpSidecar),
    },
  };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/latest.json', import.meta.url), JSON.stringify(report, null, 2) + '\n');
  const h = report.http;
  console.log(`
machine: ${report.machine.cpus} × ${report.machine.model}, ${report.machine.memGiB} GiB, node ${report.machine.node}
HTTP keep-alive, ${CONNECTIONS} connections, ${SECONDS}s × ${ROUNDS} rounds (median, [min–max])
  direct (plain HTTP)     ${h.direct.rps.toFixed(0)} req/s [${h.direct.spread}]  p50 ${h.direct.p50ms.toFixed(2)} ms  p99 ${h.direct.p99ms.toFixed(2)} ms
  via sidecar (mTLS)      ${h.sidecar.rps.toFixed(0)} req/s [${h.sidecar.spread}]  p50 ${h.sidecar.p50ms.toFixed(2)} ms  p99 ${h.sidecar.p99ms.toFixed(2)} ms
  ratio sidecar/direct    ${(h.sidecar.rps / h.direct.rps).toFixed(2)}
TCP bulk, one stream, ${MB} MB
  direct                  ${report.tcp.directMBps.toFixed(0)} MB/s [${report.tcp.spreadDirect}]
  via sidecar (mTLS)      ${report.tcp.sidecarMBps.toFixed(0)} MB/s [${report.tcp.spreadSidecar}]
  ratio sidecar/direct    ${(report.tcp.sidecarMBps / report.tcp.directMBps).toFixed(2)}
correctness: allowed identity served, stranger denied (checked before and after the load)
`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
