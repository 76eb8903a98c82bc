/**
 * `npm run bench:tls-floor`: what node itself costs, next to the sidecar and haproxy, in the same
 * run, so that the sidecar's figures can be split into node's share and its own. Two modes
 * (BENCH_MODE):
 *
 * - `conn` (the default): new mTLS connections. The floor is a minimal `tls.createServer` with the
 *   sidecar's certificate, key, CA, client-certificate request, socket options and OpenSSL
 *   settings, answering each request head with a fixed 200 itself: no proxying, no policy. The Go
 *   generator's `conn` mode (full TLS 1.3 handshake + 1 request per connection).
 * - `open`: the open loop at BENCH_RATE (2,000) requests/s on 16 kept connections, as in
 *   `npm run bench`. The floor is the least a node proxy can do there: a TLS server that pipes
 *   each caller connection to a connection of its own to the upstream (`pipe` both ways), with
 *   the sidecar's TLS and socket settings and allocator. No HTTP parsing, no policy, no fields
 *   added; it is not a product, only node's share of each request. (A server answering the open
 *   loop itself is not a floor for a proxy: it wakes once per request instead of twice.) The
 *   sidecar's tcp port, spliced to the same upstream, runs too (`portlicense-tcp`): the same
 *   process as the http port, with its heap, timers and metrics, but no HTTP work, so the steps
 *   from the floor to the sidecar can be told apart.
 *
 * Each target is pinned like `npm run bench`, gets one unmeasured run first, and the order
 * rotates each round. Between the floor
 * and the sidecar is the sidecar's own work; haproxy (when installed: `npm run bench` installs it)
 * is the reference. No denied-identity probes here: the floors admit any certificate of the CA.
 *
 * Options (env): BENCH_MODE (conn), BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_RATE (2000).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { cpuSeconds, processTree } from './procfs.js';
import { start, stopAll, waitForStdout, type Proc } from './procs.js';
import { freePort, makePki, OPENSSL_CNF } from './setup.js';
import { fmt, fmtSummary, median, summarize } from './stats.js';
import {
  LOAD_CPU,
  nodeFlagsFrom,
  PROXY_CPU,
  startHaproxy,
  startPortlicense,
  startUpstream,
} from './targets.js';
import { ensureTools } from './tools.js';

const MODE = process.env.BENCH_MODE ?? 'conn';
if (MODE !== 'conn' && MODE !== 'open') {
  process.stderr.write(`bench:tls-floor: BENCH_MODE must be conn or open, not ${MODE}\n`);
  process.exit(2);
}
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const RATE = Number(process.env.BENCH_RATE ?? 2000);
/** Seconds of load before the generator starts counting. */
const WARMUP = 1;
/**
 * The `conn` floor: node's TLS server and nothing else (run as `node -e`, pinned like the
 * proxies), with the sidecar's socket options (`noDelay`: without it, an answer written right
 * after the session ticket waits for the caller's delayed ACK, as the sidecar's did before it set
 * it).
 */
const FLOOR = `
const { createServer } = require('node:tls');
const { readFileSync } = require('node:fs');
const [port, ca, cert, key] = process.argv.slice(1);
const body = '{"ok":true}\\n';
const answer = 'HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: ' + body.length + '\\r\\n\\r\\n' + body;
createServer({ ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), requestCert: true, rejectUnauthorized: false, noDelay: true }, (s) => {
  s.on('error', () => {});
  if (!s.authorized || s.getPeerX509Certificate() === undefined) return s.destroy();
  s.on('data', (d) => { if (d.includes('\\r\\n\\r\\n')) s.write(answer); });
}).listen(Number(port), '127.0.0.1', () => console.log('ready'));
`;
/** The `open` floor: each verified caller connection piped to its own upstream connection. */
const PIPE = `
const { createServer } = require('node:tls');
const { connect } = require('node:net');
const { readFileSync } = require('node:fs');
const [port, ca, cert, key, up] = process.argv.slice(1);
createServer({ ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), requestCert: true, rejectUnauthorized: true, noDelay: true }, (s) => {
  const u = connect({ port: Number(up), host: '127.0.0.1', noDelay: true });
  s.on('error', () => u.destroy());
  u.on('error', () => s.destroy());
  s.pipe(u);
  u.pipe(s);
}).listen(Number(port), '127.0.0.1', () => console.log('ready'));
`;

const tools = ensureTools();
if (tools.loadgen === null) {
  process.stderr.write(`bench:tls-floor needs the Go load generator: ${tools.notes.join('; ')}\n`);
  process.exit(1);
}
const loadgen = tools.loadgen;
const pki = makePki();

/** One run: `rate` is connections/s (conn) or requests/s served (open); CPU µs per one of them. */
interface Figures {
  rate: number;
  cpuUs: number;
  p50Ms: number;
  p99Ms: number;
}
type Name = 'floor' | 'portlicense' | 'portlicense-tcp' | 'haproxy';

/**
 * The floor's allocator settings, by bin/portlicense's rules (an operator's LD_PRELOAD wins,
 * PORTLICENSE_MALLOC=system keeps the C library's allocator), so that both run on the same one.
 */
function allocatorEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env, MALLOC_TRIM_THRESHOLD_: process.env.MALLOC_TRIM_THRESHOLD_ || '67108864' };
  if (process.env.LD_PRELOAD || process.env.PORTLICENSE_MALLOC === 'system') return env;
  const lib = tcmalloc();
  return lib === undefined ? env : { ...env, LD_PRELOAD: lib };
}

/** tcmalloc where bin/portlicense looks for it. */
function tcmalloc(): string | undefined {
  const dirs = ['/usr/lib64', '/usr/lib'];
  try {
    for (const d of readdirSync('/usr/lib')) if (d.endsWith('-linux-gnu')) dirs.unshift(`/usr/lib/${d}`);
  } catch {
    // no /usr/lib: no tcmalloc either
  }
  return dirs.map((d) => `${d}/libtcmalloc_minimal.so.4`).find((f) => existsSync(f));
}

try {
  const up = await startUpstream(loadgen);
  // In the open mode its tcp port splices to the http upstream: the open loop runs over it too.
  const sidecar = await startPortlicense(pki, MODE === 'open' ? { http: up.http, tcp: up.http } : up, {
    nodeFlags: nodeFlagsFrom('BENCH_NODE_FLAGS'),
  });
  const floorPort = await freePort();
  // With the sidecar's OpenSSL settings (one session ticket per handshake) and allocator, so that
  // the difference is the sidecar's own work.
  const floor = start(
    MODE === 'conn' ? 'node-tls-floor' : 'node-pipe-floor',
    PROXY_CPU,
    [
      process.execPath,
      `--openssl-config=${OPENSSL_CNF}`,
      '-e',
      MODE === 'conn' ? FLOOR : PIPE,
      String(floorPort),
      pki.ca,
      pki.server.cert,
      pki.server.key,
      String(up.http),
    ],
    allocatorEnv(),
  );
  await waitForStdout(floor, /ready/);
  const haproxy = tools.haproxy === null ? null : await startHaproxy(tools.haproxy, pki, up);
  if (haproxy === null) process.stderr.write(`haproxy skipped: ${tools.notes.join('; ')}\n`);
  const targets: Array<[Name, number, Proc]> = [
    ['floor', floorPort, floor],
    ['portlicense', sidecar.httpPort, sidecar.proc!],
  ];
  if (MODE === 'open') targets.push(['portlicense-tcp', sidecar.tcpPort!, sidecar.proc!]);
  if (haproxy !== null) targets.push(['haproxy', haproxy.httpPort, haproxy.proc!]);

  /** One run against `port`, with the CPU of `proc`'s tree over it (warm-up included). */
  const run = (port: number, proc: Proc): Figures => {
    const pids = processTree(proc.pid);
    const c0 = cpuSeconds(pids);
    const r = spawnSync(
      'taskset',
      [
        '-c',
        String(LOAD_CPU),
        loadgen,
        MODE,
        ...(MODE === 'open' ? ['-rate', String(RATE)] : []),
        '-addr',
        `127.0.0.1:${port}`,
        '-duration',
        `${SECONDS}s`,
        '-conns',
        '16',
        '-warmup',
        `${WARMUP}s`,
        '-tls',
        '-ca',
        pki.ca,
        '-cert',
        pki.client.cert,
        '-key',
        pki.client.key,
        '-servername',
        'localhost',
      ],
      { encoding: 'utf8' },
    );
    const cpu = cpuSeconds(pids) - c0;
    if (r.status !== 0) throw new Error(`load generator failed: ${r.stderr}`);
    const g = JSON.parse(r.stdout) as {
      rate: number;
      ok: number;
      bad: number;
      errors: number;
      latencyUs?: { p50: number; p99: number };
    };
    if (g.bad + g.errors > 0) throw new Error(`requests not served: ${r.stdout}`);
    // conn: the CPU covers the warm-up, and so does `ok` (every connection answered in the run).
    // open: `ok` counts the measured seconds only; the warm-up second ran at the same rate.
    const served = MODE === 'conn' ? g.ok : (g.ok * (SECONDS + WARMUP)) / SECONDS;
    return {
      rate: g.rate,
      cpuUs: (cpu * 1e6) / Math.max(1, served),
      p50Ms: (g.latencyUs?.p50 ?? NaN) / 1000,
      p99Ms: (g.latencyUs?.p99 ?? NaN) / 1000,
    };
  };

  // One unmeasured run each first: node's JIT (the sidecar's and the floor's) warms up on it.
  for (const [, port, proc] of targets) run(port, proc);
  const rows = new Map<Name, Figures[]>(targets.map(([n]) => [n, []]));
  for (let round = 1; round <= ROUNDS; round++) {
    // Rotate the order each round, so slow drift of the machine is spread over the targets.
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const [name, port, proc] of order) {
      const r = run(port, proc);
      rows.get(name)!.push(r);
      process.stderr.write(
        MODE === 'conn'
          ? `round ${round}/${ROUNDS}  ${name.padEnd(11)}  ${fmt(r.rate)} conn/s  ${fmt(r.cpuUs)} µs CPU/conn\n`
          : `round ${round}/${ROUNDS}  ${name.padEnd(15)}  p50 ${fmt(r.p50Ms)} ms  p99 ${fmt(r.p99Ms)} ms  ${fmt(r.cpuUs)} µs CPU/request\n`,
      );
    }
  }
  process.stdout.write(report(rows));
} finally {
  await stopAll();
}
process.exit(0);

/** Medians [min–max] per target, and medians of per-round ratios. */
function report(rows: Map<Name, Figures[]>): string {
  const names = [...rows.keys()];
  const pairs: Array<[Name, Name]> = [['portlicense', 'floor']];
  if (rows.has('portlicense-tcp')) pairs.push(['portlicense-tcp', 'floor']);
  if (rows.has('haproxy')) pairs.push(['floor', 'haproxy'], ['portlicense', 'haproxy']);
  const lines: Array<[string, keyof Figures]> =
    MODE === 'conn'
      ? [
          ['connections/s', 'rate'],
          ['CPU per connection, µs', 'cpuUs'],
        ]
      : [
          [`p50 at ${fmt(RATE)} req/s, ms`, 'p50Ms'],
          [`p99 at ${fmt(RATE)} req/s, ms`, 'p99Ms'],
          ['CPU per request, µs', 'cpuUs'],
        ];
  const title =
    MODE === 'conn'
      ? 'new mTLS connections (full handshake + 1 request)'
      : `open loop, ${fmt(RATE)} req/s on 16 kept connections (floor: a node TLS pipe)`;
  let out = `\n| ${title} | ${names.join(' | ')} | ${pairs.map(([a, b]) => `${a} ÷ ${b}`).join(' | ')} |\n`;
  out += `|---|${names.map(() => '---:').join('|')}|${pairs.map(() => '---:').join('|')}|\n`;
  for (const [label, key] of lines) {
    const cells = names.map((n) => fmtSummary(summarize(rows.get(n)!.map((r) => r[key]))));
    const ratios = pairs.map(([a, b]) => {
      const xs = rows.get(a)!;
      const ys = rows.get(b)!;
      return `${median(xs.map((x, i) => x[key] / ys[i]![key])).toFixed(2)}×`;
    });
    out += `| ${label} | ${cells.join(' | ')} | ${ratios.join(' | ')} |\n`;
  }
  return out;
}
