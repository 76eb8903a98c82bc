/**
 * `npm run bench:tls-floor`: what node's own TLS stack costs per new mTLS connection, next to the
 * sidecar and haproxy, in the same run. The floor is a minimal `tls.createServer` with the
 * sidecar's certificate, key, CA, client-certificate request, socket options and OpenSSL settings,
 * answering each request head with a fixed 200 itself: no proxying, no policy. The Go generator's
 * `conn` mode (full TLS 1.3 handshake + 1 request per connection) loads each in turn, pinned like
 * `npm run bench`, the order rotating each round. Between the floor and the sidecar is the
 * sidecar's own per-connection work; haproxy (when installed: `npm run bench` installs it) is the
 * reference. No denied-identity probes here: the floor admits any certificate of the CA.
 *
 * Options (env): BENCH_SECONDS (5), BENCH_ROUNDS (3).
 */
import { spawnSync } from 'node:child_process';
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

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/**
 * The floor: node's TLS server and nothing else (run as `node -e`, pinned like the proxies), with
 * the sidecar's socket options (`noDelay`: without it, an answer written right after the session
 * ticket waits for the caller's delayed ACK, as the sidecar's did before it set it).
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

const tools = ensureTools();
if (tools.loadgen === null) {
  process.stderr.write(`bench:tls-floor needs the Go load generator: ${tools.notes.join('; ')}\n`);
  process.exit(1);
}
const loadgen = tools.loadgen;
const pki = makePki();

/** One run: connections/s, and CPU µs per connection. */
interface Figures {
  rate: number;
  cpuUs: number;
}
type Name = 'floor' | 'portlicense' | 'haproxy';

try {
  const up = await startUpstream(loadgen);
  const sidecar = await startPortlicense(pki, up, { nodeFlags: nodeFlagsFrom('BENCH_NODE_FLAGS') });
  const floorPort = await freePort();
  // With the sidecar's OpenSSL settings (one session ticket per handshake), so that the difference
  // is the sidecar's own work.
  const floor = start('node-tls-floor', PROXY_CPU, [
    process.execPath,
    `--openssl-config=${OPENSSL_CNF}`,
    '-e',
    FLOOR,
    String(floorPort),
    pki.ca,
    pki.server.cert,
    pki.server.key,
  ]);
  await waitForStdout(floor, /ready/);
  const haproxy = tools.haproxy === null ? null : await startHaproxy(tools.haproxy, pki, up);
  if (haproxy === null) process.stderr.write(`haproxy skipped: ${tools.notes.join('; ')}\n`);
  const targets: Array<[Name, number, Proc]> = [
    ['floor', floorPort, floor],
    ['portlicense', sidecar.httpPort, sidecar.proc!],
  ];
  if (haproxy !== null) targets.push(['haproxy', haproxy.httpPort, haproxy.proc!]);

  /** One conn-mode run against `port`, with the CPU of `proc`'s tree over it (warm-up included). */
  const run = (port: number, proc: Proc): Figures => {
    const pids = processTree(proc.pid);
    const c0 = cpuSeconds(pids);
    const r = spawnSync(
      'taskset',
      [
        '-c',
        String(LOAD_CPU),
        loadgen,
        'conn',
        '-addr',
        `127.0.0.1:${port}`,
        '-duration',
        `${SECONDS}s`,
        '-conns',
        '16',
        '-warmup',
        '1s',
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
    const g = JSON.parse(r.stdout) as { rate: number; ok: number; bad: number; errors: number };
    if (g.bad + g.errors > 0) throw new Error(`connections not served: ${r.stdout}`);
    // The CPU covers the warm-up; so does `ok` (every connection answered in the run).
    return { rate: g.rate, cpuUs: (cpu * 1e6) / Math.max(1, g.ok) };
  };

  const rows = new Map<Name, Figures[]>(targets.map(([n]) => [n, []]));
  for (let round = 1; round <= ROUNDS; round++) {
    // Rotate the order each round, so slow drift of the machine is spread over the targets.
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const [name, port, proc] of order) {
      const r = run(port, proc);
      rows.get(name)!.push(r);
      process.stderr.write(
        `round ${round}/${ROUNDS}  ${name.padEnd(11)}  ${fmt(r.rate)} conn/s  ${fmt(r.cpuUs)} µs CPU/conn\n`,
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
  if (rows.has('haproxy')) pairs.push(['floor', 'haproxy'], ['portlicense', 'haproxy']);
  const lines: Array<[string, keyof Figures]> = [
    ['connections/s', 'rate'],
    ['CPU per connection, µs', 'cpuUs'],
  ];
  let out = `\n| new mTLS connections (full handshake + 1 request) | ${names.join(' | ')} | ${pairs.map(([a, b]) => `${a} ÷ ${b}`).join(' | ')} |\n`;
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
