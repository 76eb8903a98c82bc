/**
 * The whole system as it runs in staging: the authority and a sidecar as child processes with
 * real certificates, driven only through their public interfaces (CLI, HTTP, TLS, signals, files).
 * Grant -> allowed; revoke -> denied within 2 s and the TCP flow closed; last access in `license
 * show`; automatic renewal of a license in use while an unused one and a capped one expire;
 * authority killed -> still enforcing; sidecar restarted during the outage -> enforcing from
 * cache; tampered cache -> refused.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminCli,
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
import { closed, roundTrip, startTcpEcho, tlsConnect, waitFor, type TestServer } from '../helpers/net.js';
import { startCli, type CliProcess } from '../helpers/proc.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const ID = {
  admin: `spiffe://${TD}/admin/ops`,
  orders: `spiffe://${TD}/ns/default/sa/orders`,
  frontend: `spiffe://${TD}/ns/default/sa/frontend`,
  steady: `spiffe://${TD}/ns/default/sa/steady`,
  idle: `spiffe://${TD}/ns/default/sa/idle`,
  capped: `spiffe://${TD}/ns/default/sa/capped`,
};
type Who = keyof typeof ID;

describe('authority + sidecar (child processes)', () => {
  let dir: string;
  let up: TestUpstream;
  let echo: TestServer;
  let authority: CliProcess;
  let sidecar: CliProcess;
  const ports = { api: 0, apiAdmin: 0, http: 0, tcp: 0, admin: 0 };
  const creds = (who: Who) => credsOf(dir, who);
  const { cli, grant } = adminCli(
    () => dir,
    () => ports.api,
  );
  /** A license for `who` on orders/http with a 5 s TTL, capped at `maxLifetime`. */
  const grantShortLived = (who: Who, maxLifetime: string): Promise<string> =>
    grant(...onOrders(ID[who]), '--ttl', '5s', '--max-lifetime', maxLifetime);
  const get = async (who: Who, path = '/api/orders') => {
    const r = await httpsGet({ host: '127.0.0.1', port: ports.http }, creds(who), path);
    return {
      status: r.status,
      reason: r.headers['x-portlicense-deny-reason'] as string | undefined,
      body: r.body,
    };
  };
  const ready = async () => (await fetch(`http://127.0.0.1:${ports.admin}/readyz`)).status;
  const startAuthority = async () => {
    authority = startCli(['authority', '--config', 'authority.yaml'], { cwd: dir });
    await authority.waitForLog(authorityStarted);
  };
  const startSidecar = async () => {
    sidecar = startCli(['sidecar', '--config', 'sidecar.yaml'], { cwd: dir });
    await sidecar.waitForLog(sidecarStarted);
  };

  beforeAll(async () => {
    dir = tempDir('pl-e2e-system-');
    writeCerts(dir, ID);
    up = await startUpstream();
    echo = await startTcpEcho();
    await pickPorts(ports);
    writeOrdersDeployment(dir, {
      ports,
      httpUpstream: up.address.port,
      tcpUpstream: echo.port,
      sidecarId: ID.orders,
    });
    writeFileSync(join(dir, 'services.yaml'), SERVICES_YAML);
    await startAuthority();
    expect(await cli('apply', '-f', 'services.yaml')).toMatch(/created/);
    await startSidecar();
    await waitFor(async () => (await ready()) === 200, { timeoutMs: 10_000, what: 'sidecar ready' });
  });

  afterAll(async () => {
    sidecar?.kill();
    authority?.kill();
    await up?.close();
    await echo?.close();
    removeDir(dir);
  });

  it('a grant reaches the sidecar at once; a revoke denies within 2 s and closes the TCP flow it admitted', async () => {
    expect((await get('frontend')).reason).toBe('no_license');
    const httpLicense = await grant(...onOrders(ID.frontend), '--paths', '/api/*', '--reason', 'e2e');
    await grant(...onOrders(ID.frontend, 'db'), '--reason', 'e2e');
    await waitFor(async () => (await get('frontend')).status === 200, {
      timeoutMs: 2_000,
      what: 'grant to take effect',
    });
    const flow = await tlsConnect({ port: ports.tcp, ...creds('frontend') });
    expect(await roundTrip(flow, 'hello\n')).toBe('hello\n');

    // Last access reaches the authority with the next usage report.
    await waitFor(
      async () =>
        (
          JSON.parse(await cli('license', 'show', httpLicense, '--json')) as {
            lastAccess: { identity: string } | null;
          }
        ).lastAccess,
      { timeoutMs: 5_000, what: 'last access in license show' },
    );
    const shown = JSON.parse(await cli('license', 'show', httpLicense, '--json')) as {
      lastAccess: { identity: string; origin: string; count: number };
    };
    expect(shown.lastAccess).toMatchObject({ identity: ID.frontend, origin: '127.0.0.1' });

    const t0 = Date.now();
    await cli('license', 'revoke', '--subject', ID.frontend, '--reason', 'e2e revoke');
    await Promise.all([
      waitFor(async () => (await get('frontend')).reason === 'revoked', {
        timeoutMs: 2_000,
        what: 'HTTP denied after revoke',
      }),
      closed(flow, 2_000),
    ]);
    expect(Date.now() - t0).toBeLessThan(2_000);
    const metrics = await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`)).text();
    expect(metrics).toMatch(
      /portlicense_connections_terminated_total\{service="orders",port="db",reason="revoked"\} 1/,
    );
  });

  it('renews a license in steady use across several TTLs, lets an unused one expire, and expires a capped one after a warning', async () => {
    const steady = await grantShortLived('steady', '1h');
    const idle = await grantShortLived('idle', '1h');
    const capped = await grantShortLived('capped', '8s');
    await waitFor(async () => (await get('steady')).status === 200, {
      timeoutMs: 5_000,
      what: 'steady allowed',
    });
    const started = Date.now();
    let cappedDeniedAt = 0;
    // 17 s is more than three TTLs of 5 s: without renewal, steady would have expired twice over.
    while (Date.now() - started < 17_000) {
      const s = await get('steady');
      expect(s.status, `steady denied ${s.reason} after ${Date.now() - started} ms`).toBe(200);
      const c = await get('capped');
      if (c.status === 403 && !cappedDeniedAt) {
        expect(c.reason).toBe('expired');
        cappedDeniedAt = Date.now() - started;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(cappedDeniedAt).toBeGreaterThan(6_000);
    expect(cappedDeniedAt).toBeLessThan(10_000);
    expect((await get('idle')).reason).toBe('expired');

    const state = async (id: string) =>
      (JSON.parse(await cli('license', 'show', id, '--json')) as { state: string }).state;
    expect(await state(steady)).toBe('active');
    expect(await state(idle)).toBe('expired');
    expect(await state(capped)).toBe('expired');
    // Never silent: the sidecar warned before the capped license expired, naming it.
    const warning = sidecar.logs().find((l) => l.level === 'warn' && l.license === capped);
    expect(warning).toMatchObject({ subject: ID.capped, port: 'orders/http' });
    const audit = await cli('audit', '--json');
    expect(audit).toMatch(/auto_renew/);
    expect(audit).toMatch(new RegExp(`"expire"[^}]*${idle}|${idle}[^}]*"expire"`));
  }, 40_000);

  it('keeps enforcing when the authority dies, and from the cache file after a sidecar restart', async () => {
    const frontend = await grant(...onOrders(ID.frontend), '--ttl', '1h');
    await waitFor(async () => (await get('frontend')).status === 200, {
      timeoutMs: 2_000,
      what: 'frontend allowed',
    });
    authority.child.kill('SIGKILL');
    await authority.exited;
    expect((await get('frontend')).status).toBe(200);
    expect((await get('idle')).reason).toBe('expired');

    sidecar.child.kill('SIGTERM');
    expect((await sidecar.exited).code).toBe(0);
    // It tried to deliver the use since its last report before it stopped, and said what it dropped.
    const said = sidecar.logs().map((l) => String(l.msg));
    const dropped = said.indexOf(
      'usage not reported before stopping: the authority did not take it in time; dropped',
    );
    expect(dropped).toBeGreaterThan(-1);
    expect(dropped).toBeLessThan(said.indexOf('sidecar stopped'));
    await startSidecar();
    await sidecar.waitForLog((l) => l.msg === 'enforcing cached bundle until the authority answers');
    expect((await get('frontend')).status).toBe(200);
    expect((await get('idle')).reason).toBe('expired');
    // Enforcing, but not confirmed fresh by the authority: not ready.
    expect(await ready()).toBe(503);
    void frontend;
  });

  it('refuses a tampered cache file (deny-all) and recovers when the authority is back', async () => {
    sidecar.child.kill('SIGTERM');
    await sidecar.exited;
    const cacheFile = join(dir, 'data/node-a-bundle.json');
    const doc = JSON.parse(readFileSync(cacheFile, 'utf8')) as {
      payload: { licenses: Array<{ subject: string }> };
    };
    for (const l of doc.payload.licenses) l.subject = ID.idle;
    writeFileSync(cacheFile, JSON.stringify(doc));
    await startSidecar();
    await sidecar.waitForLog((l) => /cache file refused/.test(String(l.msg)));
    expect((await get('frontend')).reason).toBe('no_license');
    expect((await get('idle')).reason).toBe('no_license');

    await startAuthority();
    await waitFor(async () => (await get('frontend')).status === 200, {
      timeoutMs: 20_000,
      what: 'sync after the authority returns',
    });
    await waitFor(async () => (await ready()) === 200, { timeoutMs: 5_000, what: 'ready again' });
  }, 40_000);
});
