/**
 * `workers: 2`: the sidecar as a control plane and two data-plane workers, as child processes with
 * the authority, driven through TLS, HTTP, the admin port and signals. Both workers serve; a revoke
 * reaches open TCP flows in each; /metrics sums their counters exactly; usage reaches the
 * authority; a killed worker is replaced while the other serves; SIGTERM drains and exits 0.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminCli,
  bundleSign,
  authorityStarted,
  credsOf,
  onOrders,
  pickPorts,
  SERVICES_YAML,
  sidecarStarted,
  TD,
  writeCerts,
  writeOrdersDeployment,
} from '../helpers/deployment.js';
import { httpsGet } from '../helpers/http-client.js';
import { startUpstream, type TestUpstream } from '../helpers/http.js';
import { connect as tlsConnect } from 'node:tls';
import {
  closed,
  roundTrip,
  startTcpEcho,
  tlsConnect as tlsOpen,
  waitFor,
  type TestServer,
} from '../helpers/net.js';
import { expectedAllocator, startCli, type CliProcess } from '../helpers/proc.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const ID = {
  admin: `spiffe://${TD}/admin/ops`,
  orders: `spiffe://${TD}/ns/default/sa/orders`,
  frontend: `spiffe://${TD}/ns/default/sa/frontend`,
  intruder: `spiffe://${TD}/ns/default/sa/intruder`,
};
type Who = keyof typeof ID;

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('sidecar with workers: 2 (child processes)', () => {
  let dir: string;
  let up: TestUpstream;
  let echo: TestServer;
  let authority: CliProcess;
  let sidecar: CliProcess;
  const ports = { api: 0, apiAdmin: 0, http: 0, tcp: 0, admin: 0 };
  /** Answers seen on orders/http, by status and deny reason: /metrics must sum to exactly these. */
  const seen = { allowed: 0, noLicense: 0 };
  const { cli, grant } = adminCli(
    () => dir,
    () => ports.api,
  );
  /** One GET on a new connection. */
  const get = async (who: Who, path = '/api/orders') => {
    const r = await httpsGet({ host: '127.0.0.1', port: ports.http }, credsOf(dir, who), path);
    const reason = r.headers['x-portlicense-deny-reason'] as string | undefined;
    if (r.status === 200) seen.allowed++;
    if (reason === 'no_license') seen.noLicense++;
    return { status: r.status, reason };
  };
  const admin = (path: string) => fetch(`http://127.0.0.1:${ports.admin}${path}`);
  const metrics = async () => (await admin('/metrics')).text();
  const workerLines = () => sidecar.logs().filter((l) => l.msg === 'worker listening');
  let httpLicense = '';

  beforeAll(async () => {
    dir = tempDir('pl-e2e-cluster-');
    writeCerts(dir, ID);
    up = await startUpstream();
    echo = await startTcpEcho();
    await pickPorts(ports);
    writeOrdersDeployment(dir, {
      ports,
      httpUpstream: up.address.port,
      tcpUpstream: echo.port,
      sidecarId: ID.orders,
      // A short hang timeout, so a stopped worker is replaced within the test.
      sidecarExtra: 'workers: 2\nworkerHangTimeout: 2s\n',
    });
    writeFileSync(join(dir, 'services.yaml'), SERVICES_YAML);
    authority = startCli(['authority', '--config', 'authority.yaml'], { cwd: dir });
    await authority.waitForLog(authorityStarted);
    expect(await cli('apply', '-f', 'services.yaml')).toMatch(/created/);
    sidecar = startCli(['sidecar', '--config', 'sidecar.yaml'], { cwd: dir });
    await sidecar.waitForLog(sidecarStarted, 20_000);
    await waitFor(async () => (await admin('/readyz')).status === 200, {
      timeoutMs: 10_000,
      what: 'sidecar ready',
    });
  }, 40_000);

  afterAll(async () => {
    for (const l of sidecar?.logs().filter((x) => x.msg === 'worker listening') ?? []) {
      if (typeof l.pid === 'number' && alive(l.pid)) process.kill(l.pid, 'SIGKILL');
    }
    sidecar?.kill();
    authority?.kill();
    await up?.close();
    await echo?.close();
    removeDir(dir);
  });

  it('starts two workers; allowed callers get 200 and others 403 over many connections', async () => {
    const pids = new Set(workerLines().map((l) => l.pid));
    expect(pids.size).toBe(2);
    expect(sidecar.logs().find(sidecarStarted)).toMatchObject({ workers: 2, allocator: expectedAllocator() });
    // Workers inherit the launcher's allocator with its environment.
    for (const pid of pids)
      expect(readFileSync(`/proc/${pid as number}/maps`, 'utf8').includes('libtcmalloc')).toBe(
        expectedAllocator() === 'tcmalloc',
      );

    expect((await get('frontend')).reason).toBe('no_license');
    httpLicense = await grant(...onOrders(ID.frontend), '--paths', '/api/*', '--reason', 'e2e');
    // The new bundle must reach both workers: every new connection goes to either.
    await waitFor(
      async () => (await get('frontend')).status === 200 && (await get('frontend')).status === 200,
      {
        timeoutMs: 3_000,
        what: 'grant in both workers',
      },
    );
    for (let i = 0; i < 8; i++) {
      expect((await get('frontend')).status).toBe(200);
      expect(await get('intruder')).toEqual({ status: 403, reason: 'no_license' });
    }
    await waitFor(async () => (await admin('/readyz')).status === 200, { what: 'ready at the new version' });
  });

  it('a returning client resumes its TLS session whichever worker it lands on', async () => {
    const creds = {
      ...credsOf(dir, 'frontend'),
      host: '127.0.0.1',
      port: ports.http,
      servername: 'localhost',
    };
    // The first connection gets a ticket (TLS 1.3: after the handshake, with the server's first bytes).
    const ticket = await new Promise<Buffer>((resolve, reject) => {
      const s = tlsConnect(creds);
      s.once('error', reject);
      s.once('secureConnect', () => s.write('GET /api/orders HTTP/1.1\r\nHost: orders\r\n\r\n'));
      s.resume();
      s.once('session', (t: Buffer) => {
        resolve(t);
        s.destroy();
      });
    });
    seen.allowed++;
    /** Whether a new connection offering the ticket resumed. */
    const resumes = () =>
      new Promise<boolean>((resolve, reject) => {
        const s = tlsConnect({ ...creds, session: ticket });
        s.once('error', reject);
        s.once('secureConnect', () => {
          resolve(s.isSessionReused());
          s.destroy();
        });
      });
    // Round-robin spreads consecutive connections over the workers, which share their ticket keys
    // (what a ticket of another listener does without them: test/dataplane/tls-handshake.test.ts).
    const reused: boolean[] = [];
    for (let i = 0; i < 6; i++) reused.push(await resumes());
    expect(reused).toEqual([true, true, true, true, true, true]);
  });

  it('a revoke closes open TCP flows in every worker', async () => {
    const dbLicense = await grant(...onOrders(ID.frontend, 'db'), '--reason', 'e2e');
    const probe = async () => {
      const s = await tlsOpen({ port: ports.tcp, ...credsOf(dir, 'frontend') });
      try {
        return (await roundTrip(s, 'ping\n')) === 'ping\n';
      } catch {
        return false;
      } finally {
        s.destroy();
      }
    };
    await waitFor(async () => (await probe()) && (await probe()), {
      timeoutMs: 3_000,
      what: 'db grant in both workers',
    });
    const flows = await Promise.all(
      Array.from({ length: 6 }, () => tlsOpen({ port: ports.tcp, ...credsOf(dir, 'frontend') })),
    );
    for (const f of flows) expect(await roundTrip(f, 'hello\n')).toBe('hello\n');

    const closedBefore = sidecar.logs().filter((l) => /flow closed/.test(String(l.msg))).length;
    await cli('license', 'revoke', dbLicense, '--reason', 'e2e revoke');
    await Promise.all(flows.map((f) => closed(f, 3_000)));
    const closedLines = sidecar
      .logs()
      .filter((l) => /flow closed/.test(String(l.msg)))
      .slice(closedBefore);
    expect(closedLines).toHaveLength(6);
    // Round-robin: both workers held some of the six flows, and each closed its own.
    expect(new Set(closedLines.map((l) => l.worker)).size).toBe(2);
  });

  it('/metrics sums both workers exactly, with the labels of one process', async () => {
    const allow = (n: number) =>
      new RegExp(
        `portlicense_decisions_total\\{service="orders",port="http",decision="allow",reason="none"\\} ${n}\\n`,
      );
    const deny = (n: number) =>
      new RegExp(
        `portlicense_decisions_total\\{service="orders",port="http",decision="deny",reason="no_license"\\} ${n}\\n`,
      );
    const revoked =
      /portlicense_connections_terminated_total\{service="orders",port="db",reason="revoked"\} 6\n/;
    // Workers send their counts about once a second: wait for both batches, then compare exactly.
    await waitFor(
      async () => {
        const m = await metrics();
        return allow(seen.allowed).test(m) && deny(seen.noLicense).test(m) && revoked.test(m);
      },
      { timeoutMs: 5_000, what: `allow ${seen.allowed}, deny ${seen.noLicense}, revoked 6 in /metrics` },
    );
    const m = await metrics();
    expect(m).toMatch(
      new RegExp(
        `portlicense_request_duration_seconds_count\\{service="orders",port="http"\\} ${seen.allowed}\\n`,
      ),
    );
    expect(m).toMatch(/portlicense_active_connections\{service="orders",port="db"\} 0\n/);
    expect(m).toMatch(/portlicense_bundle_version [1-9]/);
    const status = (await (await admin('/status')).json()) as {
      recentDenials: Array<{ identity: string; reason: string }>;
      ports: Array<{ port: string; listen: string }>;
      workers: Array<{
        slot: number;
        state: string;
        pid: number;
        bundleVersion: number;
        silentSeconds: number;
      }>;
    };
    expect(status.workers.map((w) => [w.slot, w.state, alive(w.pid)])).toEqual([
      [1, 'listening', true],
      [2, 'listening', true],
    ]);
    // ps shows each worker by its slot.
    for (const w of status.workers)
      expect(readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').replace(/\0+$/, '')).toBe(
        `portlicense sidecar worker ${w.slot}`,
      );
    expect(status.ports.map((p) => p.listen)).toEqual([`127.0.0.1:${ports.http}`, `127.0.0.1:${ports.tcp}`]);
    expect(status.recentDenials[0]).toMatchObject({ identity: ID.intruder, reason: 'no_license' });
  });

  it('usage from both workers reaches the authority', async () => {
    const shown = await waitFor(
      async () => {
        const l = JSON.parse(await cli('license', 'show', httpLicense, '--json')) as {
          lastAccess: { identity: string; origin: string; count: number } | null;
        };
        return l.lastAccess && l.lastAccess.count >= seen.allowed ? l.lastAccess : null;
      },
      { timeoutMs: 6_000, what: `a usage count of ${seen.allowed} at the authority` },
    );
    expect(shown).toMatchObject({ identity: ID.frontend, origin: '127.0.0.1', count: seen.allowed });
  });

  it('replaces a killed worker while the other keeps serving', async () => {
    const first = workerLines().find((l) => l.worker === 1)!;
    const pid = first.pid as number;
    process.kill(pid, 'SIGKILL');
    await sidecar.waitForLog((l) => /worker exited/.test(String(l.msg)) && l.pid === pid);
    for (let i = 0; i < 4; i++) expect((await get('frontend')).status).toBe(200);
    const back = await sidecar.waitForLog(
      (l) => l.msg === 'worker listening' && l.worker === 1 && l.pid !== pid,
    );
    expect(back).toMatchObject({ restarts: 1 });
    await waitFor(async () => (await admin('/readyz')).status === 200, { what: 'ready with two workers' });
    for (let i = 0; i < 6; i++) expect((await get('frontend')).status).toBe(200);
  });

  it('names a worker that stops answering in /readyz, then kills and replaces it', async () => {
    const stuck = workerLines().findLast((l) => l.worker === 2)!;
    const pid = stuck.pid as number;
    // A stopped process answers nothing, like a worker whose event loop is blocked.
    process.kill(pid, 'SIGSTOP');
    const unready = await waitFor(
      async () => {
        const r = await admin('/readyz');
        const body = (await r.json()) as { reasons: string[] };
        return r.status === 503 && body.reasons.some((x) => /worker 2 of 2 has not answered for/.test(x))
          ? body
          : null;
      },
      { timeoutMs: 5_000, what: '/readyz naming the silent worker' },
    );
    expect(unready.reasons.join('\n')).toMatch(/event loop blocked\?/);
    const killed = await sidecar.waitForLog(
      (l) => /worker not answering/.test(String(l.msg)) && l.pid === pid,
    );
    expect(killed).toMatchObject({ level: 'error', worker: 2 });
    expect(killed.silentMs as number).toBeGreaterThanOrEqual(2_000);
    const back = await sidecar.waitForLog(
      (l) => l.msg === 'worker listening' && l.worker === 2 && l.pid !== pid,
    );
    expect(back.pid).not.toBe(pid);
    await waitFor(() => !alive(pid), { what: 'the stopped worker gone' });
    await waitFor(async () => (await admin('/readyz')).status === 200, { what: 'ready with two workers' });
    for (let i = 0; i < 6; i++) expect((await get('frontend')).status).toBe(200);
  });

  it('drains on SIGTERM: workers and control plane exit, code 0', async () => {
    const pids = workerLines()
      .map((l) => l.pid as number)
      .filter(alive);
    expect(pids).toHaveLength(2);
    sidecar.child.kill('SIGTERM');
    expect(await sidecar.exited).toEqual({ code: 0, signal: null });
    expect(sidecar.logs().some((l) => l.msg === 'sidecar stopped')).toBe(true);
    await waitFor(() => pids.every((p) => !alive(p)), { what: 'workers gone' });
  });
});

describe('sidecar with workers: 2, start-up failure', () => {
  let dir: string;
  let blocker: Server;
  afterAll(() => {
    blocker?.close();
    removeDir(dir);
  });

  it('exits 1 naming the port a worker cannot bind, and leaves no worker behind', async () => {
    dir = tempDir('pl-e2e-cluster-fail-');
    writeCerts(dir, { orders: ID.orders });
    blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const busy = (blocker.address() as { port: number }).port;
    writeFileSync(join(dir, 'licenses.yaml'), 'licenses: []\n');
    const signed = await bundleSign(dir);
    expect(signed.code, signed.stderr).toBe(0);
    writeFileSync(
      join(dir, 'busy.yaml'),
      `node: n
trustDomains: [${TD}]
tls: { ca: certs/ca.pem, cert: certs/orders.pem, key: certs/orders-key.pem }
authority: { bundleFile: bundle.json, signingPublicKey: certs/bundle-signing.pub.pem }
ports:
  - { name: db, service: orders, protocol: tcp, listen: 127.0.0.1:${busy}, upstream: 127.0.0.1:5432 }
admin: { listen: 127.0.0.1:0 }
workers: 2
`,
    );
    const p = startCli(['sidecar', '--config', 'busy.yaml'], { cwd: dir });
    const { code } = await p.exited;
    expect(code).toBe(1);
    expect(p.stderr()).toMatch(new RegExp(`orders/db.*127\\.0\\.0\\.1:${busy}`));
    expect(p.logs().some((l) => l.msg === 'sidecar started')).toBe(false);
  });
});
