/**
 * Upgrade (WebSocket) requests: authorised like any request, spliced to the upstream only once it
 * answered 101; the spliced flow is closed when its license stops granting it (SPEC §2.4, §2.5).
 */
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  FRONTEND,
  startHttpHarness,
  startUpstream,
  type HttpHarness,
  type TestLicense,
  type TestUpstream,
} from '../helpers/http.js';
import { parseRaw } from '../helpers/http-client.js';
import { Received, startDeafPort, tlsConnect, waitFor } from '../helpers/net.js';

let h: HttpHarness | undefined;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  await h?.close();
  h = undefined;
  for (const c of cleanups.splice(0)) await c();
});

const UPGRADE =
  'GET /ws/chat?room=1 HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
  'X-PortLicense-Identity: spiffe://example.org/admin\r\nX-PortLicense-License: lic_forged\r\n' +
  'X_PortLicense_Identity: spiffe://example.org/admin\r\nx-portlicense_LICENSE: lic_forged\r\n\r\n';

/** A second request smuggled behind an upgrade: a path the license does not cover, a forged identity. */
const SMUGGLED =
  'GET /admin/secret HTTP/1.1\r\nHost: orders\r\nx-portlicense-identity: spiffe://example.org/admin\r\n\r\n';

function wsRequest(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${extra}\r\n`;
}

/** How many HTTP responses a raw answer holds. */
function responses(text: string): number {
  return text.split('HTTP/1.1 ').length - 1;
}

/** An upstream for upgrade tests, closed after the test. */
async function upstreamWith(
  upgrade: (req: IncomingMessage, socket: Socket, head: Buffer) => void,
): Promise<TestUpstream> {
  const up = await startUpstream(undefined, { upgrade });
  cleanups.push(() => up.close());
  return up;
}

/**
 * A raw TCP upstream that speaks plain HTTP/1.1 and knows nothing of upgrades: every request head
 * gets a 200, the connection stays open, and every byte that arrives is recorded.
 */
async function plainHttpUpstream(): Promise<{ port: number; received: () => string; closed: Promise<void> }> {
  let text = '';
  let answered = 0;
  let onClosed!: () => void;
  const closed = new Promise<void>((resolve) => (onClosed = resolve));
  const sockets = new Set<Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      while (text.split('\r\n\r\n').length - 1 > answered) {
        answered++;
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
    s.on('close', () => {
      sockets.delete(s);
      onClosed();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as AddressInfo).port, received: () => text, closed };
}

/** Open a connection, send the upgrade request, and wait for the upstream's 101. */
async function upgraded(
  licenses: TestLicense[],
  port: Parameters<typeof startHttpHarness>[0] = {},
): Promise<Received> {
  h = await startHttpHarness({ licenses, ...port });
  const socket = await tlsConnect({ ...h.address, ...h.creds });
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
    expect(seen.headers.upgrade).toBe('websocket');
    expect(seen.headers.connection).toBe('upgrade');
    // Every caller copy is gone, `_` spellings included: only the two the proxy vouches for are left.
    expect(seen.rawHeaders.filter((v, i) => i % 2 === 0 && /^x[-_]portlicense[-_]/i.test(v))).toEqual([
      'x-portlicense-identity',
      'x-portlicense-license',
    ]);

    rx.socket.write('ping');
    await rx.until((t) => t.endsWith('ping'));
    // Half-close: the caller is done sending, the upstream still answers, then both ends close.
    rx.socket.end('last');
    const text = await rx.closed();
    expect(text.endsWith('pinglast')).toBe(true);
    expect(rx.error).toBeNull();
    await waitFor(() => h!.telemetry.access.length === 1);
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
    const socket = await tlsConnect({ ...h.address, ...h.creds });
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
    const socket = await tlsConnect({ ...h.address, ...h.creds });
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
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(UPGRADE);
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(502);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'upstream_unavailable' });
  });

  it('answers 502 when connecting to the upstream for an upgrade hangs past connectTimeout', async () => {
    const deaf = await startDeafPort();
    try {
      h = await startHttpHarness({
        licenses: [{ id: 'lic_1' }],
        port: { upstream: { host: '127.0.0.1', port: deaf.port }, connectTimeout: 300 },
      });
      const socket = await tlsConnect({ ...h.address, ...h.creds });
      const rx = new Received(socket);
      const started = Date.now();
      socket.write(UPGRADE);
      const r = parseRaw(await rx.closed());
      expect(r.status).toBe(502);
      expect(JSON.parse(r.body)).toMatchObject({ reason: 'upstream_unavailable' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      expect(h.logs.lines.find((l) => l.msg === 'upstream upgrade failed')).toMatchObject({
        error: 'connect timeout after 300 ms',
      });
    } finally {
      await deaf.close();
    }
  });

  it('closes the flow when its license is revoked', async () => {
    const rx = await upgraded([{ id: 'lic_1' }]);
    h!.setLicenses([{ id: 'lic_1', revokedAt: 0 }]);
    await rx.closed();
    expect(h!.telemetry.terminations).toEqual(['revoked']);
    await waitFor(() => h!.listener.activeConnections() === 0);
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

describe('http port: upgrade requests cannot carry undecided requests', () => {
  it('never lets a request behind a refused upgrade reach the upstream (Node upstream without upgrade handler)', async () => {
    const up = await startUpstream();
    cleanups.push(() => up.close());
    up.server.removeAllListeners('upgrade');
    h = await startHttpHarness({ licenses: [{ id: 'lic_1', paths: ['/ws'] }], upstream: up });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(wsRequest('/ws') + SMUGGLED);
    socket.write(SMUGGLED);
    const text = await rx.closed();
    // One answer (the upstream's 200 to /ws, as it ignores the upgrade), then the connection closes.
    expect(responses(text)).toBe(1);
    const r = parseRaw(text);
    expect(r.status).toBe(200);
    expect(r.head).toMatch(/\r\nconnection: close(\r\n|$)/);
    expect(JSON.parse(r.body)).toMatchObject({ url: '/ws' });
    await waitFor(() => up.connections === 1 && up.bytesReceived() > 0);
    expect(up.requests.map((q) => q.url)).toEqual(['/ws']);
    expect(h.telemetry.decisionList()).toEqual(['allow:-']);
  });

  it('never lets a request behind a refused upgrade reach the upstream (raw upstream, every byte recorded)', async () => {
    const up = await plainHttpUpstream();
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1', paths: ['/ws'] }],
      port: { upstream: { host: '127.0.0.1', port: up.port } },
      logAllowedHttp: true,
    });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(wsRequest('/ws') + SMUGGLED);
    socket.write(SMUGGLED);
    const text = await rx.closed();
    await up.closed;
    expect(responses(text)).toBe(1);
    expect(parseRaw(text)).toMatchObject({ status: 200, body: 'ok' });
    const received = up.received();
    expect(received.startsWith('GET /ws HTTP/1.1\r\n')).toBe(true);
    expect(received.split('\r\n\r\n')).toHaveLength(2);
    expect(received.endsWith('\r\n\r\n')).toBe(true);
    expect(received).not.toContain('admin');
    await waitFor(() => h!.telemetry.access.length === 1);
    expect(h.telemetry.access[0]).toMatchObject({ path: '/ws', status: 200, bytesIn: 0, bytesOut: 2 });
  });

  it('relays a non-101 answer with connection: close, never sends the held bytes, and closes both sides', async () => {
    const seen: { head: number; data: string; closed: boolean } = { head: -1, data: '', closed: false };
    const up = await upstreamWith((_req, s, head) => {
      seen.head = head.length;
      s.on('data', (d: Buffer) => (seen.data += d.toString('latin1')));
      // Node's server sockets allow half-open: the proxy's close shows as an end of input.
      s.on('end', () => (seen.closed = true));
      s.write(
        'HTTP/1.1 426 Upgrade Required\r\ncontent-length: 5\r\nconnection: keep-alive\r\n' +
          'keep-alive: timeout=5\r\nx-up: 1\r\n\r\nnope!',
      );
    });
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstream: up });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(wsRequest('/ws') + 'held bytes' + SMUGGLED);
    const text = await rx.closed();
    const r = parseRaw(text);
    expect(r.status).toBe(426);
    expect(r.head).toMatch(/^HTTP\/1\.1 426 Upgrade Required\r\n/);
    expect(r.head).toMatch(/\r\nx-up: 1/);
    expect(r.head).toMatch(/\r\nconnection: close$/);
    expect(r.head).not.toMatch(/keep-alive/i);
    expect(r.body).toBe('nope!');
    expect(responses(text)).toBe(1);
    await waitFor(() => seen.closed);
    expect(seen).toEqual({ head: 0, data: '', closed: true });
  });

  it('relays a chunked non-101 answer whole, close-delimited', async () => {
    const up = await upstreamWith((_req, s) => {
      s.write(
        'HTTP/1.1 403 Forbidden\r\ntransfer-encoding: chunked\r\n\r\n5\r\nnope!\r\n3\r\n!!!\r\n0\r\n\r\n',
      );
    });
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstream: up });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(wsRequest('/ws'));
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(403);
    expect(r.head).not.toMatch(/transfer-encoding/i);
    expect(r.body).toBe('nope!!!!');
    expect(rx.error).toBeNull();
  });

  it('cuts the caller when the upstream dies in the middle of a relayed answer', async () => {
    const up = await upstreamWith((_req, s) => {
      s.write('HTTP/1.1 403 Forbidden\r\ncontent-length: 100\r\n\r\npartial');
      setImmediate(() => s.destroy());
    });
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstream: up });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.on('error', () => {});
    socket.write(wsRequest('/ws'));
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(403);
    expect(r.body.length).toBeLessThan(100);
  });

  it('sends the bytes held behind the upgrade request only after the upstream answered 101', async () => {
    const order: string[] = [];
    const up = await upstreamWith((_req, s, head) => {
      order.push(`head:${head.length}`);
      s.on('data', (d: Buffer) => order.push(`data:${d.toString('latin1')}`));
      s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello');
      s.pipe(s);
    });
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstream: up, logAllowedHttp: true });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(wsRequest('/ws') + 'early');
    await rx.until((t) => t.endsWith('helloearly'));
    expect(parseRaw(rx.text).status).toBe(101);
    expect(rx.text).toMatch(/\r\nUpgrade: websocket\r\n/);
    expect(order).toEqual(['head:0', 'data:early']);
    socket.end('!');
    await rx.closed();
    await waitFor(() => h!.telemetry.access.length === 1);
    expect(h.telemetry.access[0]).toMatchObject({ status: 101, bytesIn: 6, bytesOut: 11 });
  });

  it('answers 504 when the upstream does not answer the upgrade within upstreamTimeout, and closes it', async () => {
    let upstreamClosed = false;
    let received = '';
    const up = await upstreamWith((_req, s) => {
      s.on('data', (d: Buffer) => (received += d.toString('latin1')));
      s.on('end', () => (upstreamClosed = true));
    });
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      upstream: up,
      port: { upstreamTimeout: 1_000 },
    });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(wsRequest('/ws') + SMUGGLED);
    await waitFor(() => up.upgrades.length === 1);
    h.clock.advance(999);
    expect(rx.ended).toBe(false);
    h.clock.advance(1);
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(504);
    expect(JSON.parse(r.body)).toEqual({
      error: 'gateway_timeout',
      reason: 'upstream_timeout',
      port: 'orders/http',
    });
    await waitFor(() => upstreamClosed);
    expect(received).toBe('');
  });

  it('lets the upstream go as soon as a caller waiting for the upgrade answer resets its connection', async () => {
    let upstreamClosed = false;
    // (the upstream's socket is half-open, as http.Server makes them: our close is its 'end')
    const up = await upstreamWith((_req, s) => s.on('end', () => (upstreamClosed = true)));
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstream: up });
    const tcp = net.connect({ host: '127.0.0.1', port: h.address.port });
    await once(tcp, 'connect');
    const socket = await tlsConnect({ ...h.address, ...h.creds, socket: tcp });
    socket.write(wsRequest('/ws'));
    await waitFor(() => up.upgrades.length === 1);
    tcp.resetAndDestroy();
    // The port's clock never moves here: upstreamTimeout cannot be what closes it.
    await waitFor(() => upstreamClosed, { timeoutMs: 2_000, what: 'the upstream connection closed' });
    expect(upstreamClosed).toBe(true);
  });

  it('answers 502 when the upstream closes without answering the upgrade', async () => {
    const up = await upstreamWith((_req, s) => s.end());
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstream: up });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(wsRequest('/ws'));
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(502);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'upstream_unavailable' });
  });

  it('answers 502 to an oversize upstream answer head', async () => {
    const up = await upstreamWith((_req, s) => {
      s.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-big: ${'a'.repeat(70_000)}\r\n\r\n`,
      );
    });
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstream: up });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(wsRequest('/ws') + 'held');
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(502);
    expect(rx.text).not.toContain('x-big');
  });

  it('does not splice on a 101 that does not switch to anything (no Upgrade/Connection)', async () => {
    let received = '';
    const up = await upstreamWith((_req, s) => {
      s.on('data', (d: Buffer) => (received += d.toString('latin1')));
      s.write('HTTP/1.1 101 Switching Protocols\r\n\r\n');
    });
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstream: up });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(wsRequest('/ws') + SMUGGLED);
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(502);
    expect(received).toBe('');
  });
});

describe('http port: only WebSocket upgrades', () => {
  const refused: Array<[string, string]> = [
    [
      'h2c',
      'GET /ws HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n' +
        'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    ],
    ['a protocol list', wsRequest('/ws').replace('Upgrade: websocket', 'Upgrade: websocket, h2c')],
    ['two Upgrade headers', wsRequest('/ws', 'upgrade: h2c\r\n')],
    ['an unknown protocol', wsRequest('/ws').replace('websocket', 'echo')],
    ['a POST', wsRequest('/ws').replace('GET', 'POST')],
    ['a body', wsRequest('/ws', 'Content-Length: 4\r\n') + 'body'],
    ['HTTP/1.0', wsRequest('/ws').replace('HTTP/1.1', 'HTTP/1.0')],
  ];
  for (const [what, request] of refused) {
    it(`refuses an upgrade with ${what}: 400 unsupported_upgrade, nothing reaches the upstream`, async () => {
      h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
      const socket = await tlsConnect({ ...h.address, ...h.creds });
      const rx = new Received(socket);
      socket.write(request + SMUGGLED);
      const text = await rx.closed();
      expect(responses(text)).toBe(1);
      const r = parseRaw(text);
      expect(r.status).toBe(400);
      expect(r.head).toMatch(/\r\nconnection: close/);
      expect(JSON.parse(r.body)).toEqual({
        error: 'bad_request',
        reason: 'unsupported_upgrade',
        port: 'orders/http',
      });
      expect(h.upstream.connections).toBe(0);
      expect(h.telemetry.decisionList()).toEqual([]);
    });
  }

  it('treats an Upgrade header without Connection: upgrade as a plain request, dropping it', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write('GET /api HTTP/1.1\r\nHost: orders\r\nUpgrade: h2c\r\nConnection: close\r\n\r\n');
    expect(parseRaw(await rx.closed()).status).toBe(200);
    expect(h.upstream.upgrades).toHaveLength(0);
    expect(h.upstream.requests[0]!.headers.upgrade).toBeUndefined();
  });
});
