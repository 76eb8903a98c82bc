/**
 * The sidecar as an operator runs it: certificates from `ca init`/`cert issue`, a bundle from
 * `bundle sign`, `config validate`, then `portlicense sidecar` as a child process, driven only
 * through TLS, HTTP, files and signals.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTcpEcho, tlsConnect, roundTrip, closed, type TestServer } from '../helpers/net.js';
import { bundleSign, credsOf, ordersSidecarYaml, pickPorts, sidecarStarted } from '../helpers/deployment.js';
import { httpsGet } from '../helpers/http-client.js';
import { startUpstream, type TestUpstream } from '../helpers/http.js';
import { expectedAllocator, runCli, startCli, tcmallocLibrary, type CliProcess } from '../helpers/proc.js';
import type { SignedBundle } from '../../src/policy/types.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';
const INTRUDER = 'spiffe://example.org/ns/default/sa/intruder';

function licenses(withDb: boolean): string {
  return `services:
  - name: orders
    ports: [ { name: http, protocol: http }, { name: db, protocol: tcp } ]
licenses:
  - { subject: ${FRONTEND}, service: orders, port: http, ttl: 1h, methods: [GET], paths: ["/api/*"] }
${withDb ? `  - { subject: ${FRONTEND}, service: orders, port: db, ttl: 1h }\n` : ''}`;
}

/** `ca init` in `dir`, into certs/. */
const caInit = (dir: string) =>
  runCli(['ca', 'init', '--dir', 'certs', '--trust-domain', 'example.org'], { cwd: dir });

/** `cert issue` of `certs/<name>` for `id` from the CA in certs/. */
const issue = (dir: string, name: string, id: string, ...extra: string[]) =>
  runCli(['cert', 'issue', '--ca-dir', 'certs', '--spiffe-id', id, '--out', `certs/${name}`, ...extra], {
    cwd: dir,
  });

describe('portlicense sidecar (child process)', () => {
  let dir: string;
  let httpUp: TestUpstream;
  let tcpUp: TestServer;
  let httpPort: number;
  let tcpPort: number;
  let adminPort: number;
  let sidecar: CliProcess;
  const creds = (who: string) => credsOf(dir, who);
  const get = (who: string, path: string, headers: Record<string, string> = {}) =>
    httpsGet({ host: '127.0.0.1', port: httpPort }, creds(who), path, headers);

  beforeAll(async () => {
    dir = tempDir('pl-e2e-sidecar-');
    expect((await caInit(dir)).code).toBe(0);
    for (const [name, id] of [
      ['orders', 'spiffe://example.org/ns/default/sa/orders'],
      ['frontend', FRONTEND],
      ['intruder', INTRUDER],
    ]) {
      const r = await issue(dir, name!, id!, '--dns', 'localhost', '--ip', '127.0.0.1');
      expect(r.code, r.stderr).toBe(0);
    }
    writeFileSync(join(dir, 'licenses.yaml'), licenses(true));
    const s = await bundleSign(dir);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toMatch(/bundle version 1, 2 license\(s\)/);
    httpUp = await startUpstream();
    tcpUp = await startTcpEcho();
    const ports = { http: 0, tcp: 0, admin: 0 };
    await pickPorts(ports);
    [httpPort, tcpPort, adminPort] = [ports.http, ports.tcp, ports.admin];
    writeFileSync(
      join(dir, 'sidecar.yaml'),
      ordersSidecarYaml({
        node: 'node-a',
        authority: 'authority: { bundleFile: bundle.json, signingPublicKey: certs/bundle-signing.pub.pem }',
        http: httpPort,
        httpUpstream: httpUp.address.port,
        tcp: tcpPort,
        tcpUpstream: tcpUp.port,
        admin: adminPort,
        drainTimeout: '3s',
      }),
    );
    const v = await runCli(['config', 'validate', 'sidecar.yaml'], { cwd: dir });
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/valid sidecar config/);
    sidecar = startCli(['sidecar', '--config', 'sidecar.yaml'], { cwd: dir });
    await sidecar.waitForLog(sidecarStarted);
  });

  afterAll(async () => {
    sidecar?.kill();
    await httpUp?.close();
    await tcpUp?.close();
    removeDir(dir);
  });

  it('shows as portlicense in ps and pgrep, with its command line', () => {
    // The launcher execs node: the same pid.
    const cmdline = readFileSync(`/proc/${sidecar.child.pid}/cmdline`, 'utf8');
    expect(cmdline.replace(/\0+$/, '')).toBe('portlicense sidecar --config sidecar.yaml');
    expect(readFileSync(`/proc/${sidecar.child.pid}/comm`, 'utf8').trim()).toBe('portlicense sid');
  });

  it('allows a licensed caller, adds identity and license headers and strips spoofed ones', async () => {
    const r = await get('frontend', '/api/orders', {
      'x-portlicense-identity': 'spiffe://example.org/admin',
    });
    expect(r.status).toBe(200);
    const seen = httpUp.requests.at(-1)!;
    expect(seen.headers['x-portlicense-identity']).toBe(FRONTEND);
    expect(seen.headers['x-portlicense-license']).toMatch(/^lic_/);
  });

  it('denies with the most specific reason and never reaches the upstream', async () => {
    const before = httpUp.requests.length;
    const a = await get('intruder', '/api/orders');
    expect(a.status).toBe(403);
    expect(JSON.parse(a.body)).toEqual({ error: 'forbidden', reason: 'no_license', port: 'orders/http' });
    expect(a.headers['x-portlicense-deny-reason']).toBe('no_license');
    const b = await get('frontend', '/api/../admin');
    expect(b.status).toBe(403);
    expect(JSON.parse(b.body).reason).toBe('path_not_allowed');
    expect(httpUp.requests.length).toBe(before);
  });

  it('runs on tcmalloc when the system has it (bin/portlicense), and says so when it starts', () => {
    expect(sidecar.logs().find(sidecarStarted)?.allocator).toBe(expectedAllocator());
    const maps = readFileSync(`/proc/${sidecar.child.pid}/maps`, 'utf8');
    expect(maps.includes('libtcmalloc'), maps.slice(0, 200)).toBe(tcmallocLibrary() !== null);
  });

  it('sends one TLS 1.3 session ticket per full handshake (bin/openssl.cnf), and it resumes', async () => {
    const base = { ...creds('frontend'), host: '127.0.0.1', port: httpPort, servername: 'localhost' };
    /** One request on a new connection offering `session`: tickets received before the answer. */
    const once = (session?: Buffer) =>
      new Promise<{ tickets: Buffer[]; reused: boolean }>((resolve, reject) => {
        const tickets: Buffer[] = [];
        const s = connectTls({ ...base, ...(session ? { session } : {}) });
        s.on('session', (t: Buffer) => tickets.push(t));
        s.once('error', reject);
        s.once('secureConnect', () => s.write('GET /api/orders HTTP/1.1\r\nHost: orders\r\n\r\n'));
        let text = '';
        s.on('data', (d: Buffer) => {
          text += d.toString('latin1');
          // The tickets precede the answer on the wire: all are in once the answer is.
          if (!/\r\n\r\n[\s\S]*\n$/.test(text)) return;
          resolve({ tickets, reused: s.isSessionReused() });
          s.destroy();
        });
      });
    const first = await once();
    expect(first.reused).toBe(false);
    expect(first.tickets).toHaveLength(1); // OpenSSL's default is 2
    // The ticket resumes, and again: a stateless ticket stays good until it expires, so a resumed
    // connection is sent no new one.
    for (let i = 0; i < 2; i++) expect(await once(first.tickets[0])).toEqual({ tickets: [], reused: true });
  });

  it('serves /metrics, /readyz and /status on the admin port', async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metrics).toMatch(
      /portlicense_decisions_total\{service="orders",port="http",decision="deny",reason="no_license"\} [1-9]/,
    );
    expect(metrics).toMatch(/portlicense_bundle_version 1/);
    expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(200);
    const status = await runCli(['status', '--admin', `http://127.0.0.1:${adminPort}`]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/bundle version 1/);
    expect(status.stdout).toMatch(/no_license/);
  });

  it('sleeps while idle: its event loop wakes a few times a second, not a hundred', async () => {
    // Every time the main thread blocks in epoll and is woken again is one voluntary context
    // switch. prom-client's event-loop delay sampler alone used to wake it every 10 ms.
    const switches = () =>
      Number(
        /voluntary_ctxt_switches:\s+(\d+)/.exec(
          readFileSync(`/proc/${sidecar.child.pid}/task/${sidecar.child.pid}/status`, 'utf8'),
        )![1],
      );
    const before = switches();
    await new Promise((r) => setTimeout(r, 1_500));
    expect(switches() - before).toBeLessThan(45);
  });

  it('keeps the last good bundle when a tampered one is written', async () => {
    const doc = JSON.parse(readFileSync(join(dir, 'bundle.json'), 'utf8')) as SignedBundle;
    doc.payload.version = 99;
    doc.payload.licenses.push({ ...doc.payload.licenses[0]!, id: 'lic_forged', subject: INTRUDER });
    writeFileSync(join(dir, 'bundle.json'), JSON.stringify(doc));
    await sidecar.waitForLog((l) => l.level === 'warn' && /signature/.test(JSON.stringify(l)));
    expect((await get('intruder', '/api/orders')).status).toBe(403);
    expect((await get('frontend', '/api/orders')).status).toBe(200);
    // Restore a good, newer bundle for the next tests.
    writeFileSync(join(dir, 'bundle.json'), '{}');
    await sidecar.waitForLog(
      (l) => l.level === 'warn' && /invalid|payload/.test(JSON.stringify(l)) && l !== undefined,
    );
    expect((await bundleSign(dir, '--version', '2')).code).toBe(0);
    await sidecar.waitForLog((l) => l.msg === 'bundle loaded' && l.version === 2);
  });

  it('closes an open TCP flow when a new bundle no longer licenses it', async () => {
    const sock = await tlsConnect({ port: tcpPort, ...creds('frontend') });
    expect(await roundTrip(sock, 'ping\n')).toBe('ping\n');
    writeFileSync(join(dir, 'licenses.yaml'), licenses(false));
    expect((await bundleSign(dir)).code).toBe(0);
    await closed(sock, 10_000);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metrics).toMatch(
      /portlicense_connections_terminated_total\{service="orders",port="db",reason="license_removed"\} 1/,
    );
    // A new connection is refused now: closed before any byte reaches the upstream.
    const again = await tlsConnect({ port: tcpPort, ...creds('frontend') });
    await closed(again, 5_000);
  });

  it('reloads certificates on SIGHUP and drains on SIGTERM with exit 0', async () => {
    sidecar.child.kill('SIGHUP');
    await sidecar.waitForLog((l) => /reload/i.test(String(l.msg)));
    sidecar.child.kill('SIGTERM');
    expect(await sidecar.exited).toEqual({ code: 0, signal: null });
    expect(sidecar.logs().some((l) => l.msg === 'sidecar stopped')).toBe(true);
  });
});

describe('portlicense sidecar start-up failures', () => {
  let dir: string;
  let blocker: Server;
  beforeAll(async () => {
    dir = tempDir('pl-e2e-fail-');
    await caInit(dir);
    await issue(dir, 'orders', 'spiffe://example.org/sa/orders');
    writeFileSync(join(dir, 'licenses.yaml'), 'licenses: []\n');
    await bundleSign(dir);
    blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  });
  afterAll(() => {
    blocker.close();
    removeDir(dir);
  });
  const config = (listen: string, protocol = 'tcp') => `node: n
trustDomains: [example.org]
tls: { ca: certs/ca.pem, cert: certs/orders.pem, key: certs/orders-key.pem }
authority: { bundleFile: bundle.json, signingPublicKey: certs/bundle-signing.pub.pem }
ports:
  - { name: db, service: orders, protocol: ${protocol}, listen: ${listen}, upstream: 127.0.0.1:5432 }
admin: { listen: 127.0.0.1:0 }
`;

  it('exits 1 naming the port when it cannot be bound', async () => {
    const busy = (blocker.address() as { port: number }).port;
    writeFileSync(join(dir, 'busy.yaml'), config(`127.0.0.1:${busy}`));
    const r = await runCli(['sidecar', '--config', 'busy.yaml'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`orders/db.*127\\.0\\.0\\.1:${busy}`));
  });

  it('exits 2 on a bad config, with file, line and key path, and starts nothing', async () => {
    writeFileSync(join(dir, 'bad.yaml'), config('127.0.0.1:0', 'udp'));
    const r = await runCli(['sidecar', '--config', 'bad.yaml'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.yaml:6: ports\[0\]\.protocol: must be "tcp" or "http"/);
    const v = await runCli(['config', 'validate', 'bad.yaml'], { cwd: dir });
    expect(v.code).toBe(2);
  });

  it('exits 2 on a key or a signing key that does not fit, as config validate says beforehand', async () => {
    const bad = config('127.0.0.1:0')
      .replace('key: certs/orders-key.pem', 'key: certs/ca-key.pem')
      .replace('signingPublicKey: certs/bundle-signing.pub.pem', 'signingPublicKey: certs/ca.pem');
    writeFileSync(join(dir, 'misfit.yaml'), bad);
    const v = await runCli(['config', 'validate', 'misfit.yaml'], { cwd: dir });
    const r = await runCli(['sidecar', '--config', 'misfit.yaml'], { cwd: dir });
    for (const out of [v, r]) {
      expect(out.code).toBe(2);
      expect(out.stderr).toMatch(/misfit\.yaml:3: tls\.key: \S*ca-key\.pem: .*does not match/);
      expect(out.stderr).toMatch(
        /misfit\.yaml:4: authority\.signingPublicKey: \S*ca\.pem: is not an SPKI PEM public key/,
      );
    }
    expect(r.stdout + r.stderr).not.toMatch(/sidecar started/);
  });

  it('bundle sign and cert issue exit 2 on a bad key, a version sidecars would refuse, or no CA', async () => {
    const rsa = await bundleSign(dir, '--key', 'certs/ca-key.pem'); // a later --key wins
    expect(rsa.code).toBe(2);
    expect(rsa.stderr).toMatch(
      /bundle sign: --key \S*ca-key\.pem: holds a \w+ key, but bundle signing needs Ed25519/,
    );
    const now = JSON.parse(readFileSync(join(dir, 'bundle.json'), 'utf8')) as SignedBundle;
    const old = await bundleSign(dir, '--version', String(now.payload.version));
    expect(old.code).toBe(2);
    expect(old.stderr).toMatch(
      new RegExp(
        `--version ${now.payload.version} is not above the version of bundle\\.json \\(${now.payload.version}\\)`,
      ),
    );
    expect(JSON.parse(readFileSync(join(dir, 'bundle.json'), 'utf8'))).toEqual(now);
    const noCa = await runCli(
      ['cert', 'issue', '--ca-dir', 'nowhere', '--spiffe-id', 'spiffe://example.org/x', '--out', 'x'],
      { cwd: dir },
    );
    expect(noCa.code).toBe(2);
    expect(noCa.stderr).toMatch(/cert issue: --ca-dir: CA folder nowhere: not found/);
  });

  it('exits 2 on unknown commands and flags', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(2);
    const r = await runCli(['sidecar', '--confg', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--confg/);
  });
});
