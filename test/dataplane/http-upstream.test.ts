/**
 * The upstream side of an http port: failures answered 502/504, callers that leave, and the
 * listener lifecycle (listen errors, drain).
 */
import { Readable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpPort } from '../../src/dataplane/http-proxy.js';
import { PortlicenseError } from '../../src/errors.js';
import { startHttpHarness, type HttpHarness } from '../helpers/http.js';
import { hasCompleteResponse, parseRaw } from '../helpers/http-client.js';
import { Received, startDeafPort, tlsConnect, unusedPort, waitFor } from '../helpers/net.js';

let h: HttpHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('http port: upstream failures', () => {
  it('answers 502 JSON when the upstream refuses connections', async () => {
    const port = await unusedPort();
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      port: { upstream: { host: '127.0.0.1', port } },
    });
    const res = await h.client().request({ path: '/api', method: 'GET' });
    expect(res.statusCode).toBe(502);
    expect(res.headers['content-type']).toBe('application/json');
    expect(await res.body.json()).toEqual({
      error: 'bad_gateway',
      reason: 'upstream_unavailable',
      port: 'orders/http',
    });
    expect(h.telemetry.decisionList()).toEqual(['allow:-']);
  });

  it.each([
    ['fast lane', 'HTTP/1.1'],
    ['full path', 'HTTP/1.0'],
  ])('answers 502 when connecting to the upstream hangs past connectTimeout (%s)', async (_path, version) => {
    const deaf = await startDeafPort();
    try {
      h = await startHttpHarness({
        licenses: [{ id: 'lic_1' }],
        // upstreamTimeout well past the test's deadline: only the connect timeout can answer in time.
        port: {
          upstream: { host: '127.0.0.1', port: deaf.port },
          connectTimeout: 400,
          upstreamTimeout: 20_000,
        },
      });
      const rx = new Received(await tlsConnect({ ...h.address, ...h.creds }));
      const started = Date.now();
      rx.socket.write(`GET /api ${version}\r\nHost: orders\r\n\r\n`);
      await rx.until((t) => hasCompleteResponse(t), 5_000);
      // The port's connectTimeout answers: the upstream is down (502), not slow (504), on both paths.
      const res = parseRaw(rx.text);
      expect(res.status).toBe(502);
      expect(JSON.parse(res.body)).toEqual({
        error: 'bad_gateway',
        reason: 'upstream_unavailable',
        port: 'orders/http',
      });
      expect(Date.now() - started).toBeGreaterThanOrEqual(350);
      expect(Date.now() - started).toBeLessThan(3_000);
      rx.socket.destroy();
    } finally {
      await deaf.close();
    }
  });

  it('answers 502 for a POST whose upstream is down, and the connection stays usable', async () => {
    const port = await unusedPort();
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      port: { upstream: { host: '127.0.0.1', port } },
    });
    const client = h.client();
    const first = await client.request({ path: '/api', method: 'POST', body: 'x'.repeat(1000) });
    expect(first.statusCode).toBe(502);
    await first.body.dump();
    const second = await client.request({ path: '/api', method: 'GET' });
    expect(second.statusCode).toBe(502);
    await second.body.dump();
  });

  it('answers 504 JSON when no response head arrives within upstreamTimeout', async () => {
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      port: { upstreamTimeout: 300 },
      upstreamHandler: () => {
        // never answers
      },
    });
    const started = Date.now();
    const res = await h.client().request({ path: '/api', method: 'GET' });
    expect(res.statusCode).toBe(504);
    expect(await res.body.json()).toEqual({
      error: 'gateway_timeout',
      reason: 'upstream_timeout',
      port: 'orders/http',
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('counts upstreamTimeout from the last request byte sent: an upload slower than it is answered', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstreamTimeout: 300 } });
    const started = Date.now();
    // One byte every 100 ms: the upload takes twice upstreamTimeout, the upstream is never silent for it.
    async function* slowly(): AsyncGenerator<Buffer> {
      for (const b of 'abcdef') {
        await new Promise((r) => setTimeout(r, 100));
        yield Buffer.from(b);
      }
    }
    const res = await h.client().request({
      path: '/api',
      method: 'POST',
      headers: { 'content-length': '6' },
      body: Readable.from(slowly()),
    });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toMatchObject({ method: 'POST', bodyLength: 6 });
    expect(Date.now() - started).toBeGreaterThan(600);
  });

  it('cuts the caller connection when the upstream dies mid-body (no truncated 200 that looks whole)', async () => {
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      upstreamHandler: (_req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(200, { 'content-length': '100' });
        res.write('partial');
        setImmediate(() => res.socket?.destroy());
      },
    });
    const res = await h.client().request({ path: '/api', method: 'GET' });
    expect(res.statusCode).toBe(200);
    await expect(res.body.text()).rejects.toThrow();
  });

  it('aborts the upstream request when the caller goes away', async () => {
    let upstreamClosed: (() => void) | undefined;
    const closed = new Promise<boolean>((resolve) => (upstreamClosed = () => resolve(true)));
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      upstreamHandler: (req: IncomingMessage, res: ServerResponse) => {
        res.on('close', () => upstreamClosed!());
        void req;
      },
    });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    socket.write('GET /slow HTTP/1.1\r\nHost: orders\r\n\r\n');
    await waitFor(() => h!.upstream.requests.length === 1);
    socket.destroy();
    expect(await closed).toBe(true);
    await waitFor(() => h!.telemetry.durations.length === 1);
    expect(h.listener.activeConnections()).toBe(0);
  });
});

describe('http port: lifecycle', () => {
  it('rejects listen() with LISTEN_FAILED naming the port and address', async () => {
    h = await startHttpHarness();
    const other = createHttpPort({
      port: { ...h.config, listen: h.address },
      policy: h.policy,
      clock: h.clock,
      telemetry: h.telemetry,
      tls: h.tls,
      trustDomains: ['example.org'],
      handshakeTimeout: 1_000,
      log: h.log,
    });
    const err = await other.listen().then(
      () => null,
      (e: unknown) => e,
    );
    await other.drain(0);
    expect(err).toBeInstanceOf(PortlicenseError);
    expect((err as PortlicenseError).code).toBe('LISTEN_FAILED');
    expect((err as PortlicenseError).message).toContain('orders/http');
    expect((err as PortlicenseError).message).toContain(`127.0.0.1:${h.address.port}`);
  });

  it('counts active connections', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    expect(h.listener.activeConnections()).toBe(0);
    const a = await tlsConnect({ ...h.address, ...h.creds });
    const b = await tlsConnect({ ...h.address, ...h.creds });
    await waitFor(() => h!.listener.activeConnections() === 2);
    expect(h.telemetry.opened).toBe(2);
    a.destroy();
    b.destroy();
    await waitFor(() => h!.listener.activeConnections() === 0);
    expect(h.telemetry.closed).toBe(2);
  });

  it('drain: closes idle connections, finishes in-flight requests with connection: close, stops accepting', async () => {
    let release: (() => void) | undefined;
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      upstreamHandler: (req: IncomingMessage, res: ServerResponse) => {
        if (req.url === '/slow') release = () => res.end('slow done');
        else res.end('fast');
      },
    });
    // An idle keep-alive connection.
    const idle = await tlsConnect({ ...h.address, ...h.creds });
    const idleRx = new Received(idle);
    idle.write('GET /fast HTTP/1.1\r\nHost: orders\r\n\r\n');
    await idleRx.until(hasCompleteResponse);
    // A connection with a request in flight.
    const busy = await tlsConnect({ ...h.address, ...h.creds });
    const busyRx = new Received(busy);
    busy.write('GET /slow HTTP/1.1\r\nHost: orders\r\n\r\n');
    await waitFor(() => release !== undefined);

    const drained = h.listener.drain(h.clock.now() + 60_000);
    await idleRx.closed();
    await expect(tlsConnect({ ...h.address, ...h.creds })).rejects.toThrow();
    release!();
    const text = await busyRx.closed();
    const r = parseRaw(text);
    expect(r.status).toBe(200);
    expect(r.head).toMatch(/connection: close/i);
    expect(r.body).toBe('slow done');
    await drained;
    expect(h.listener.activeConnections()).toBe(0);
  });

  it('drain: cuts what is still open at the deadline', async () => {
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      upstreamHandler: () => {
        // never answers
      },
    });
    const busy = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(busy);
    busy.write('GET /stuck HTTP/1.1\r\nHost: orders\r\n\r\n');
    await waitFor(() => h!.upstream.requests.length === 1);
    let done = false;
    const drained = h.listener.drain(h.clock.now() + 5_000).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    h.clock.advance(5_000);
    await drained;
    await rx.closed();
    expect(h.listener.activeConnections()).toBe(0);
  });

  it('drain is idempotent', async () => {
    h = await startHttpHarness();
    const a = h.listener.drain(0);
    const b = h.listener.drain(0);
    expect(a).toBe(b);
    await a;
  });
});
