/**
 * Both directions, as deployed (issue 6 point 3): the authority and two sidecars as child
 * processes. Sidecar A sits beside a caller app (identity `frontend`) and has outbound listeners
 * only; sidecar B (identity `orders`) guards an HTTP upstream and a TCP echo. The app speaks
 * plaintext to A's loopback ports and holds no certificate. It reaches B's upstream only while
 * `frontend` holds a license at B; a revoke makes B deny, and B's 403 comes back through A as is
 * while the TCP flow is closed; a B that is not who A expects is refused by A; A's /status and
 * metrics and B's last access (license show) both record the calls.
 */
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminCli,
  authorityStarted,
  authorityYaml,
  credsOf,
  onOrders,
  ordersSidecarYaml,
  pickPorts,
  SERVICES_YAML,
  sidecarAuthorityBlock,
  sidecarStarted,
  TD,
  writeCerts,
} from '../helpers/deployment.js';
import { httpsGet, type SimpleResponse } from '../helpers/http-client.js';
import { startUpstream, type TestUpstream } from '../helpers/http.js';
import { closed, roundTrip, startTcpEcho, tcpConnect, waitFor, type TestServer } from '../helpers/net.js';
import { expectedAllocator, startCli, type CliProcess } from '../helpers/proc.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const ID = {
  admin: `spiffe://${TD}/admin/ops`,
  orders: `spiffe://${TD}/ns/default/sa/orders`,
  frontend: `spiffe://${TD}/ns/default/sa/frontend`,
};
const PAYMENTS = `spiffe://${TD}/ns/default/sa/payments`;

/** What the app does: a plaintext HTTP request on a fresh connection, no certificate anywhere. */
function plainGet(port: number, path = '/api/orders'): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('two sidecars: app -> A (outbound) -> B (inbound) -> upstream', () => {
  let dir: string;
  let up: TestUpstream;
  let echo: TestServer;
  let authority: CliProcess;
  let sidecarA: CliProcess;
  let sidecarB: CliProcess;
  const ports = {
    api: 0,
    apiAdmin: 0,
    bHttp: 0,
    bTcp: 0,
    bAdmin: 0,
    aAdmin: 0,
    aHttp: 0,
    aTcp: 0,
    aWrong: 0,
  };
  const { cli, grant } = adminCli(
    () => dir,
    () => ports.api,
  );
  const admin = async (port: number, path: string): Promise<string> =>
    (await fetch(`http://127.0.0.1:${port}${path}`)).text();
  /** The same request made directly to B with frontend's certificate, as a mesh-less app would. */
  const directToB = (): Promise<SimpleResponse> =>
    httpsGet({ host: '127.0.0.1', port: ports.bHttp }, credsOf(dir, 'frontend'), '/api/orders');

  beforeAll(async () => {
    dir = tempDir('pl-e2e-outbound-');
    writeCerts(dir, ID);
    up = await startUpstream();
    echo = await startTcpEcho();
    await pickPorts(ports);
    writeFileSync(
      join(dir, 'authority.yaml'),
      authorityYaml({ api: ports.api, admin: ports.apiAdmin, sidecars: `spiffe://${TD}/ns/*` }),
    );
    // B: beside the orders service, guarding its ports.
    writeFileSync(
      join(dir, 'sidecar-b.yaml'),
      ordersSidecarYaml({
        node: 'node-b',
        authority: sidecarAuthorityBlock(ports.api, 'node-b'),
        http: ports.bHttp,
        httpUpstream: up.address.port,
        tcp: ports.bTcp,
        tcpUpstream: echo.port,
        admin: ports.bAdmin,
        drainTimeout: '1s',
      }),
    );
    // A: beside the frontend app, carrying its calls; it guards no port of its own.
    writeFileSync(
      join(dir, 'sidecar-a.yaml'),
      `node: node-a
trustDomains: [${TD}]
tls: { ca: certs/ca.pem, cert: certs/frontend.pem, key: certs/frontend-key.pem }
${sidecarAuthorityBlock(ports.api, 'node-a')}
ports: []
outbound:
  - { name: orders-http, listen: 127.0.0.1:${ports.aHttp}, target: localhost:${ports.bHttp}, serverId: "${ID.orders}" }
  - { name: orders-db, listen: 127.0.0.1:${ports.aTcp}, target: 127.0.0.1:${ports.bTcp}, serverId: "spiffe://${TD}/ns/default/*" }
  - { name: payments, listen: 127.0.0.1:${ports.aWrong}, target: 127.0.0.1:${ports.bHttp}, serverId: "${PAYMENTS}" }
admin: { listen: 127.0.0.1:${ports.aAdmin} }
drainTimeout: 1s
`,
    );
    writeFileSync(join(dir, 'services.yaml'), SERVICES_YAML);
    authority = startCli(['authority', '--config', 'authority.yaml'], { cwd: dir });
    await authority.waitForLog(authorityStarted);
    await cli('apply', '-f', 'services.yaml');
    sidecarB = startCli(['sidecar', '--config', 'sidecar-b.yaml'], { cwd: dir });
    // A runs on the C library's allocator, as an operator who opts out of tcmalloc gets.
    sidecarA = startCli(['sidecar', '--config', 'sidecar-a.yaml'], {
      cwd: dir,
      env: { PORTLICENSE_MALLOC: 'system' },
    });
    await Promise.all([sidecarB.waitForLog(sidecarStarted), sidecarA.waitForLog(sidecarStarted)]);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${ports.bAdmin}/readyz`)).status === 200, {
      timeoutMs: 10_000,
      what: 'sidecar B ready',
    });
    // A client-only sidecar pulls no bundles; its certificate is all it needs to be ready.
    expect((await fetch(`http://127.0.0.1:${ports.aAdmin}/readyz`)).status).toBe(200);
  });

  afterAll(async () => {
    sidecarA?.kill();
    sidecarB?.kill();
    authority?.kill();
    await up?.close();
    await echo?.close();
    removeDir(dir);
  });

  it("keeps the C library's allocator when PORTLICENSE_MALLOC=system (A), the launcher's default otherwise (B)", () => {
    expect(sidecarA.logs().find(sidecarStarted)?.allocator).toBe('system');
    expect(sidecarB.logs().find(sidecarStarted)?.allocator).toBe(expectedAllocator());
  });

  it('carries the app only while it holds a license at B; a revoke denies through A, 403 as is, and closes the TCP flow', async () => {
    // No license yet: B's 403 reaches the plaintext app exactly as B wrote it.
    const denied = await plainGet(ports.aHttp);
    expect(denied.status).toBe(403);
    expect(denied.headers['x-portlicense-deny-reason']).toBe('no_license');
    expect(JSON.parse(denied.body)).toEqual({
      error: 'forbidden',
      reason: 'no_license',
      port: 'orders/http',
    });
    expect(denied.body).toBe((await directToB()).body);
    expect(up.requests).toHaveLength(0);

    const httpLicense = await grant(...onOrders(ID.frontend), '--paths', '/api/*');
    await grant(...onOrders(ID.frontend, 'db'));
    await waitFor(async () => (await plainGet(ports.aHttp)).status === 200, {
      timeoutMs: 3_000,
      what: 'the grant to reach B',
    });
    // B saw A's identity: the sidecar's certificate stands for the app.
    expect(up.requests.at(-1)!.headers['x-portlicense-identity']).toBe(ID.frontend);
    expect(up.requests.at(-1)!.headers['x-portlicense-license']).toBe(httpLicense);
    const flow = await tcpConnect(ports.aTcp);
    expect(await roundTrip(flow, 'hello over two sidecars\n')).toBe('hello over two sidecars\n');

    // B's last access reaches the authority with its next usage report.
    const shown = await waitFor(
      async () => {
        const l = JSON.parse(await cli('license', 'show', httpLicense, '--json')) as {
          lastAccess: { identity: string; origin: string; count: number } | null;
        };
        return l.lastAccess;
      },
      { timeoutMs: 5_000, what: 'last access in license show' },
    );
    expect(shown).toMatchObject({ identity: ID.frontend, origin: '127.0.0.1' });

    // A's view: every call counted per outbound entry.
    const status = JSON.parse(await admin(ports.aAdmin, '/status')) as {
      outbound: Array<{
        name: string;
        target: string;
        activeConnections: number;
        connections: Record<string, number>;
      }>;
    };
    const byName = new Map(status.outbound.map((o) => [o.name, o]));
    expect(byName.get('orders-http')!.connections.ok).toBeGreaterThanOrEqual(2);
    expect(byName.get('orders-http')!.target).toBe(`localhost:${ports.bHttp}`);
    expect(byName.get('orders-db')).toMatchObject({ activeConnections: 1, connections: { ok: 1 } });
    expect(await admin(ports.aAdmin, '/metrics')).toMatch(
      /portlicense_outbound_connections_total\{name="orders-db",result="ok"\} 1/,
    );

    await cli('license', 'revoke', '--subject', ID.frontend, '--reason', 'e2e revoke');
    const t0 = Date.now();
    const [after] = await Promise.all([
      waitFor(
        async () => {
          const r = await plainGet(ports.aHttp);
          return r.status === 403 ? r : null;
        },
        { timeoutMs: 2_000, what: 'HTTP denied through A after the revoke' },
      ),
      closed(flow, 2_000),
    ]);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(after.headers['x-portlicense-deny-reason']).toBe('revoked');
    expect(after.body).toBe('{"error":"forbidden","reason":"revoked","port":"orders/http"}');
    expect(after.body).toBe((await directToB()).body);
    // A did not fail anything: the denial is B's, passed through.
    expect(await admin(ports.aAdmin, '/metrics')).not.toMatch(
      /portlicense_outbound_connections_total\{name="orders-(http|db)",result="(?!ok)\w+"\} [1-9]/,
    );
  });

  it('refuses a B that is not the server the outbound entry expects, before the request leaves A', async () => {
    const before = up.requests.length;
    const err = await plainGet(ports.aWrong).then(
      () => null,
      (e: NodeJS.ErrnoException) => e,
    );
    expect(err?.code).toBe('ECONNRESET');
    expect(up.requests.length).toBe(before);

    expect(await admin(ports.aAdmin, '/metrics')).toMatch(
      /portlicense_outbound_connections_total\{name="payments",result="server_id_mismatch"\} 1/,
    );
    const status = JSON.parse(await admin(ports.aAdmin, '/status')) as {
      outbound: Array<{
        name: string;
        lastError: { result: string; detail: string; presentedUris: string[] } | null;
      }>;
    };
    expect(status.outbound.find((o) => o.name === 'payments')!.lastError).toMatchObject({
      result: 'server_id_mismatch',
      detail: `the server is ${ID.orders}, expected ${PAYMENTS}`,
      presentedUris: [ID.orders],
    });
    const logged = await sidecarA.waitForLog((l) => l.result === 'server_id_mismatch');
    expect(logged).toMatchObject({ level: 'warn', outbound: 'payments', presentedUris: [ID.orders] });
  });

  it('drains on SIGTERM: an open flow through A keeps going until drainTimeout, new ones are refused', async () => {
    await grant(...onOrders(ID.frontend, 'db'), '--reason', 'drain test');
    const flow = await waitFor(
      async () => {
        const s = await tcpConnect(ports.aTcp);
        try {
          await roundTrip(s, 'ping\n');
          return s;
        } catch {
          s.destroy();
          return null;
        }
      },
      { timeoutMs: 3_000, what: 'a TCP flow through A' },
    );
    const t0 = Date.now();
    sidecarA.child.kill('SIGTERM');
    await sidecarA.waitForLog((l) => l.msg === 'draining');
    expect(await roundTrip(flow, 'still here\n')).toBe('still here\n');
    await expect(tcpConnect(ports.aTcp)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await closed(flow, 3_000);
    expect((await sidecarA.exited).code).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
  });
});

describe('portlicense dev: frontend-app calls orders through its outbound listener', () => {
  let dir: string;
  let dev: CliProcess | undefined;

  afterAll(async () => {
    if (dev) {
      dev.child.kill('SIGTERM');
      await dev.exited;
    }
    removeDir(dir);
  });

  it('prints a plaintext curl that works from the app side', async () => {
    dir = tempDir('pl-e2e-dev-');
    dev = startCli(['dev', '--dir', dir]);
    await waitFor(() => dev!.stderr().includes('Ctrl-C stops everything.\n'), {
      timeoutMs: 15_000,
      what: 'portlicense dev to print its commands',
    });
    const printed = dev.stderr();
    const port = Number(/^ {2}curl http:\/\/127\.0\.0\.1:(\d+)\/api\/orders$/m.exec(printed)?.[1]);
    expect(port, printed).toBeGreaterThan(0);
    const r = await plainGet(port);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ identity: ID.frontend, url: '/api/orders' });
    const denied = await plainGet(port, '/admin');
    expect(denied.headers['x-portlicense-deny-reason']).toBe('path_not_allowed');
    dev.child.kill('SIGTERM');
    expect((await dev.exited).code).toBe(0);
    dev = undefined;
  });
});
