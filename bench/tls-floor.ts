/**
 * `npm run bench:tls-floor`: what node's own TLS stack costs per new mTLS connection, next to the
 * sidecar, in the same run: a minimal `tls.createServer` with the sidecar's certificate, key, CA
 * and client-certificate request, answering each request head with a fixed 200 (no proxying, no
 * policy), against `portlicense sidecar` on the bench's usual setup. Both are loaded by the Go
 * generator's `conn` mode (full TLS 1.3 handshake + 1 request per connection), pinned like
 * `npm run bench`; rounds alternate. The difference is the sidecar's own per-connection work.
 *
 * Options (env): BENCH_SECONDS (5), BENCH_ROUNDS (3).
 */
import { spawnSync } from 'node:child_process';
import { cpuSeconds, processTree } from './procfs.js';
import { start, stopAll, waitForStdout, type Proc } from './procs.js';
import { freePort, makePki, OPENSSL_CNF } from './setup.js';
import { fmt, summarize } from './stats.js';
import { LOAD_CPU, nodeFlagsFrom, PROXY_CPU, startPortlicense, startUpstream } from './targets.js';
import { ensureTools } from './tools.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/** The floor: node's TLS server and nothing else (run as `node -e`, pinned like the proxies). */
const FLOOR = `
const { createServer } = require('node:tls');
const { readFileSync } = require('node:fs');
const [port, ca, cert, key] = process.argv.slice(1);
const body = '{"ok":true}\\n';
const answer = 'HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: ' + body.length + '\\r\\n\\r\\n' + body;
createServer({ ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), requestCert: true, rejectUnauthorized: false }, (s) => {
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

  /** One conn-mode run against `port`; connections/s and the CPU µs per connection of `proc`'s tree. */
  const run = (port: number, proc: Proc): { rate: number; cpuUs: number } => {
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
    return { rate: g.rate, cpuUs: (cpu * 1e6) / Math.max(1, g.ok) };
  };

  const rows = {
    floor: [] as { rate: number; cpuUs: number }[],
    portlicense: [] as { rate: number; cpuUs: number }[],
  };
  for (let round = 1; round <= ROUNDS; round++) {
    const order = round % 2 === 1 ? (['floor', 'portlicense'] as const) : (['portlicense', 'floor'] as const);
    for (const name of order) {
      const r = name === 'floor' ? run(floorPort, floor) : run(sidecar.httpPort, sidecar.proc!);
      rows[name].push(r);
      process.stderr.write(
        `round ${round}/${ROUNDS}  ${name.padEnd(11)}  ${fmt(r.rate)} conn/s  ${fmt(r.cpuUs)} µs CPU/conn\n`,
      );
    }
  }
  const med = (xs: number[]): number => summarize(xs).median;
  const f = { rate: med(rows.floor.map((r) => r.rate)), cpu: med(rows.floor.map((r) => r.cpuUs)) };
  const p = {
    rate: med(rows.portlicense.map((r) => r.rate)),
    cpu: med(rows.portlicense.map((r) => r.cpuUs)),
  };
  process.stdout.write(
    `\n| new mTLS connections (full handshake + 1 request) | node TLS floor | portlicense | portlicense ÷ floor |\n|---|---:|---:|---:|\n` +
      `| connections/s | ${fmt(f.rate)} | ${fmt(p.rate)} | ${(p.rate / f.rate).toFixed(2)}× |\n` +
      `| CPU per connection, µs | ${fmt(f.cpu)} | ${fmt(p.cpu)} | ${(p.cpu / f.cpu).toFixed(2)}× |\n`,
  );
} finally {
  await stopAll();
}
process.exit(0);
