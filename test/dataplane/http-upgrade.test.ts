/**
 * Upgrade (WebSocket-style) requests: authorised like any request, then spliced to the upstream;
 * the spliced flow is closed when its license stops granting it (SPEC §2.4, §2.5).
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  FRONTEND,
  parseRaw,
  startHttpHarness,
  tlsConnect,
  until,
  Received,
  type HttpHarness,
  type TestLicense,
} from '../helpers/http.js';

let h: HttpHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const UPGRADE =
  'GET /ws/chat?room=1 HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: echo\r\n' +
  'X-PortLicense-Identity: spiffe://example.org/admin\r\nX-PortLicense-License: lic_forged\r\n\r\n';

/** Open a connection, send the upgrade request, and wait for the upstream's 101. */
async function upgraded(
  licenses: TestLicense[],
  port: Parameters<typeof startHttpHarness>[0] = {},
): Promise<Received> {
  h = await startHttpHarness({ licenses, ...port });
  const socket = await tlsConnect(h.address, h.creds);
  const rx = new Received(socket);
  socket.write(UPGRADE);
  await rx.until((t) => t.includes('\r\n\r\n'));
  expect(parseRaw(rx.text).status).toBe(101);
  return rx;
}

describe('http port: upgrades', () => {
  it('splices an allowed upgrade both ways with our identity headers, and honours half-close', async () => {
    const rx = await upgraded([{ id: 'lic_1' }], { logAllowedHttp: true });
    const seen = h!.upstream.upgrades[0]!;
    expect(seen.url).toBe('/ws/chat?room=1');
    expect(seen.headers['x-portlicense-identity']).toBe(FRONTEND);
    expect(seen.headers['x-portlicense-license']).toBe('lic_1');
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers.upgrade).toBe('echo');
    expect(seen.rawHeaders.filter((v) => /^x-portlicense-/i.test(v))).toHaveLength(2);

    rx.socket.write('ping');
    await rx.until((t) => t.endsWith('ping'));
    // Half-close: the caller is done sending, the upstream still answers, then both ends close.
    rx.socket.end('last');
    const text = await rx.closed();
    expect(text.endsWith('pinglast')).toBe(true);
    expect(rx.error).toBeNull();
    await until(() => h!.telemetry.access.length === 1);
    expect(h!.telemetry.access[0]).toMatchObject({
      decision: 'allow',
      license: 'lic_1',
      method: 'GET',
      path: '/ws/chat',
      status: 101,
      bytesIn: 8,
    });
    expect(h!.telemetry.bytesIn).toBe(8);
    expect(h!.telemetry.decisionList()).toEqual(['allow:-']);
  });

  it('refuses an upgrade without a license: raw 403, nothing reaches the upstream', async () => {
    h = await startHttpHarness({ licenses: [] });
    const socket = await tlsConnect(h.address, h.creds);
    const rx = new Received(socket);
    socket.write(UPGRADE);
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(403);
    expect(r.head).toMatch(/x-portlicense-deny-reason: no_license/);
    expect(JSON.parse(r.body)).toEqual({ error: 'forbidden', reason: 'no_license', port: 'orders/http' });
    expect(h.upstream.connections).toBe(0);
    expect(h.telemetry.decisionList()).toEqual(['deny:no_license']);
    expect(h.telemetry.access[0]).toMatchObject({ decision: 'deny', reason: 'no_license', status: 403 });
  });

  it('refuses an upgrade to a path the license does not cover', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1', paths: ['/api/*'] }] });
    const socket = await tlsConnect(h.address, h.creds);
    const rx = new Received(socket);
    socket.write(UPGRADE);
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(403);
    expect(r.head).toMatch(/x-portlicense-deny-reason: path_not_allowed/);
    expect(h.upstream.connections).toBe(0);
  });

  it('answers 502 when the upstream cannot be reached for an upgrade', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    await h.upstream.close();
    const socket = await tlsConnect(h.address, h.creds);
    const rx = new Received(socket);
    socket.write(UPGRADE);
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(502);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'upstream_unavailable' });
  });

  it('closes the flow when its license is revoked', async () => {
    const rx = await upgraded([{ id: 'lic_1' }]);
    h!.setLicenses([{ id: 'lic_1', revokedAt: 0 }]);
    await rx.closed();
    expect(h!.telemetry.terminations).toEqual(['revoked']);
    await until(() => h!.listener.activeConnections() === 0);
  });

  it('closes the flow when its license is removed from the policy', async () => {
    const rx = await upgraded([{ id: 'lic_1' }]);
    h!.setLicenses([]);
    await rx.closed();
    expect(h!.telemetry.terminations).toEqual(['license_removed']);
  });

  it('closes the flow when its license expires', async () => {
    const rx = await upgraded([{ id: 'lic_1', expiresAt: 60_000 }]);
    rx.socket.write('still here');
    await rx.until((t) => t.endsWith('still here'));
    h!.clock.advance(60_000);
    await rx.closed();
    expect(h!.telemetry.terminations).toEqual(['expired']);
  });

  it('closes the flow when its license is narrowed to paths that exclude it', async () => {
    const rx = await upgraded([{ id: 'lic_1' }]);
    h!.setLicenses([{ id: 'lic_1', paths: ['/api/*'] }]);
    await rx.closed();
    expect(h!.telemetry.terminations).toHaveLength(1);
  });

  it('keeps the flow when another license still covers it', async () => {
    const rx = await upgraded([{ id: 'lic_1' }, { id: 'lic_2', expiresAt: 10_000 }]);
    h!.setLicenses([{ id: 'lic_2' }]);
    rx.socket.write('ping');
    await rx.until((t) => t.endsWith('ping'));
    expect(rx.ended).toBe(false);
    expect(h!.telemetry.terminations).toEqual([]);
    rx.socket.destroy();
  });

  it('closes an idle flow after idleTimeout', async () => {
    const rx = await upgraded([{ id: 'lic_1' }], { port: { idleTimeout: 200 } });
    await rx.closed();
    expect(h!.telemetry.terminations).toEqual(['idle_timeout']);
  });
});
