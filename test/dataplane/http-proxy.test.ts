/**
 * The http port end to end over real TLS and sockets: what is forwarded, what the upstream sees,
 * what callers get back, and what is counted.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { FRONTEND, startHttpHarness, type HttpHarness } from '../helpers/http.js';
import { parseRaw, rawRequest } from '../helpers/http-client.js';
import { waitFor } from '../helpers/net.js';

let h: HttpHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

interface Echo {
  method: string;
  url: string;
  headers: Record<string, string | string[]>;
  bodyLength: number;
}

describe('http port: allowed requests', () => {
  it('forwards an allowed GET with identity, license and forwarding headers, keeping Host', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const res = await h.client().request({ path: '/api/orders?x=1&y=%2F', method: 'GET' });
    const echo = (await res.body.json()) as Echo;
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-upstream']).toBe('yes');
    expect(echo.url).toBe('/api/orders?x=1&y=%2F');
    expect(echo.headers['x-portlicense-identity']).toBe(FRONTEND);
    expect(echo.headers['x-portlicense-license']).toBe('lic_1');
    expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(echo.headers['x-forwarded-proto']).toBe('https');
    expect(echo.headers.host).toBe(`${h.address.host}:${h.address.port}`);
    expect(h.telemetry.decisionList()).toEqual(['allow:-']);
    expect(h.telemetry.durations).toHaveLength(1);
  });

  it('removes every caller copy of the identity and license headers, in any case', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const rx = await rawRequest(
      h.address,
      h.creds,
      'GET /api HTTP/1.1\r\nHost: orders\r\n' +
        'X-PortLicense-Identity: spiffe://example.org/admin\r\n' +
        'x-portlicense-identity: spiffe://example.org/admin2\r\n' +
        'X-PORTLICENSE-LICENSE: lic_forged\r\n' +
        'x-portlicense-license: lic_forged2\r\n' +
        'X-Forwarded-Proto: http\r\n' +
        'Connection: close\r\n\r\n',
    );
    expect(parseRaw(await rx.closed()).status).toBe(200);
    const seen = h.upstream.requests[0]!;
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names.filter((n) => n === 'x-portlicense-identity')).toHaveLength(1);
    expect(names.filter((n) => n === 'x-portlicense-license')).toHaveLength(1);
    expect(seen.headers['x-portlicense-identity']).toBe(FRONTEND);
    expect(seen.headers['x-portlicense-license']).toBe('lic_1');
    expect(seen.headers['x-forwarded-proto']).toBe('https');
  });

  it('drops method and URL overrides, so a GET-only license cannot become a DELETE upstream', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1', methods: ['GET'], paths: ['/api/*'] }] });
    const rx = await rawRequest(
      h.address,
      h.creds,
      'GET /api/orders/7 HTTP/1.1\r\nHost: orders\r\n' +
        'X-HTTP-Method-Override: DELETE\r\n' +
        'X_HTTP_Method: DELETE\r\n' +
        'x-method-override: DELETE\r\n' +
        'X-Original-URL: /admin\r\n' +
        'X-Rewrite-URL: /admin\r\n' +
        'Connection: close\r\n\r\n',
    );
    expect(parseRaw(await rx.closed()).status).toBe(200);
    const seen = h.upstream.requests[0]!;
    expect(seen.method).toBe('GET');
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0);
    expect(
      names.filter((n) =>
        /^x[-_](http[-_]method|method[-_]override|original[-_]url|rewrite[-_]url)/i.test(n),
      ),
    ).toEqual([]);
  });

  it('removes caller copies spelled with underscores, which CGI/WSGI/PHP upstreams read as ours', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const rx = await rawRequest(
      h.address,
      h.creds,
      'GET /api HTTP/1.1\r\nHost: orders\r\n' +
        'x_portlicense_identity: spiffe://example.org/admin\r\n' +
        'X_PortLicense_Identity: spiffe://example.org/admin2\r\n' +
        'X-PORTLICENSE_IDENTITY: spiffe://example.org/admin3\r\n' +
        'x_portlicense_license: lic_forged\r\n' +
        'X-PortLicense_License: lic_forged2\r\n' +
        'X_Forwarded_Proto: http\r\n' +
        'Proxy: http://attacker.example:8080\r\n' +
        'X_Kept: k\r\n' +
        'Connection: close\r\n\r\n',
    );
    expect(parseRaw(await rx.closed()).status).toBe(200);
    const seen = h.upstream.requests[0]!;
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0);
    // What a CGI gateway would turn into HTTP_X_PORTLICENSE_*: only the two the proxy vouches for.
    expect(names.filter((n) => /^x[-_]portlicense[-_]/i.test(n))).toEqual([
      'x-portlicense-identity',
      'x-portlicense-license',
    ]);
    expect(names.filter((n) => /^x[-_]forwarded[-_]proto$/i.test(n))).toEqual(['x-forwarded-proto']);
    expect(names.filter((n) => /^proxy$/i.test(n))).toEqual([]);
    expect(seen.headers['x-portlicense-identity']).toBe(FRONTEND);
    expect(seen.headers['x-portlicense-license']).toBe('lic_1');
    expect(seen.headers.x_kept).toBe('k');
  });

  it("appends the caller's address to an existing x-forwarded-for", async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const rx = await rawRequest(
      h.address,
      h.creds,
      'GET /api HTTP/1.1\r\nHost: orders\r\nX-Forwarded-For: 10.0.0.9\r\nx-forwarded-for: 10.0.0.10\r\nConnection: close\r\n\r\n',
    );
    await rx.closed();
    expect(h.upstream.requests[0]!.headers['x-forwarded-for']).toBe('10.0.0.9, 10.0.0.10, 127.0.0.1');
  });

  it('drops hop-by-hop request headers and the ones Connection names', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const rx = await rawRequest(
      h.address,
      h.creds,
      'GET /api HTTP/1.1\r\nHost: orders\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n' +
        'Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Authorization: Basic eA==\r\n' +
        'Proxy-Connection: keep-alive\r\nProxy-Foo: bar\r\nX-End-To-End: kept\r\n\r\n',
    );
    await rx.until((t) => t.includes('"bodyLength"'));
    rx.socket.destroy();
    const seen = h.upstream.requests[0]!.headers;
    for (const hop of ['x-hop', 'keep-alive', 'te', 'proxy-authorization', 'proxy-connection', 'proxy-foo'])
      expect(seen[hop], hop).toBeUndefined();
    // undici's own connection management, not the caller's header.
    expect(seen.connection).toBe('keep-alive');
    expect(seen['x-end-to-end']).toBe('kept');
    // End to end (RFC 9110 §6.6.2): the fast lane forwards bodies with their trailers, and the
    // header that announces them (the full path drops both; docs/http-proxy.md).
    expect(seen.trailer).toBe('X-T');
  });

  it('drops hop-by-hop response headers and keeps repeated end-to-end ones', async () => {
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      upstreamHandler: (_req: IncomingMessage, res: ServerResponse) => {
        res.setHeader('Connection', 'keep-alive, X-Up-Hop');
        res.setHeader('X-Up-Hop', '1');
        res.setHeader('Keep-Alive', 'timeout=30');
        res.setHeader('Proxy-Authenticate', 'Basic');
        res.setHeader('Set-Cookie', ['a=1', 'b=2']);
        res.setHeader('Content-Type', 'text/plain');
        res.end('ok');
      },
    });
    const rx = await rawRequest(h.address, h.creds, 'GET /api HTTP/1.1\r\nHost: orders\r\n\r\n');
    const { head, status } = parseRaw(await rx.until((t) => t.endsWith('ok') || t.includes('\r\n0\r\n\r\n')));
    rx.socket.destroy();
    expect(status).toBe(200);
    expect(head).not.toMatch(/x-up-hop/i);
    expect(head).not.toMatch(/proxy-authenticate/i);
    expect(head).not.toMatch(/keep-alive: timeout=30/i);
    expect(head.match(/set-cookie: /gi)).toHaveLength(2);
  });

  it('streams a large POST body both ways: the upstream answers before the body ends', async () => {
    const CHUNK = 256 * 1024;
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      upstreamHandler: (req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        let total = 0;
        req.on('data', (c: Buffer) => {
          total += c.length;
          res.write(`got ${total}\n`);
        });
        req.on('end', () => res.end(`end ${total}\n`));
      },
    });
    const body = new PassThrough();
    const pending = h.client().request({ path: '/upload', method: 'POST', body });
    body.write(Buffer.alloc(CHUNK, 1));
    const res = await pending;
    expect(res.statusCode).toBe(200);
    const it = res.body[Symbol.asyncIterator]();
    let text = '';
    // The response is readable while the request body is still open: nothing is buffered whole.
    while (!text.includes(`got ${CHUNK}`)) text += String((await it.next()).value);
    expect(body.writableEnded).toBe(false);
    body.write(Buffer.alloc(CHUNK, 2));
    body.end(Buffer.alloc(CHUNK, 3));
    for (let r = await it.next(); !r.done; r = await it.next()) text += String(r.value);
    expect(text).toContain(`end ${3 * CHUNK}`);
    await waitFor(() => h!.telemetry.durations.length === 1);
    expect(h.telemetry.bytesIn).toBe(3 * CHUNK);
    expect(h.telemetry.bytesOut).toBe(Buffer.byteLength(text));
  });

  it('streams a chunked response: early chunks reach the caller before the upstream finishes', async () => {
    let finish: (() => void) | undefined;
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      upstreamHandler: (_req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first;');
        finish = () => res.end('last');
      },
    });
    const res = await h.client().request({ path: '/stream', method: 'GET' });
    const it = res.body[Symbol.asyncIterator]();
    expect(String((await it.next()).value)).toBe('first;');
    finish!();
    let rest = '';
    for (let r = await it.next(); !r.done; r = await it.next()) rest += String(r.value);
    expect(rest).toBe('last');
  });

  it('reuses upstream connections (keep-alive) and the usage entry of the connection', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const client = h.client();
    for (let i = 0; i < 5; i++) {
      const res = await client.request({ path: `/api/${i}`, method: 'GET' });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
    }
    expect(h.upstream.requests).toHaveLength(5);
    expect(h.upstream.connections).toBe(1);
    expect(h.telemetry.usageLookups).toBe(1);
    const entry = [...h.telemetry.usageEntries.values()][0]!;
    expect(entry).toMatchObject({ licenseId: 'lic_1', identity: FRONTEND, origin: '127.0.0.1', count: 5 });
    expect(entry.at).toBe(h.clock.now());
  });

  it('normalises the path and forwards the normalised form', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1', paths: ['/api/*'] }] });
    const rx = await rawRequest(
      h.address,
      h.creds,
      'GET /api/./orders//%7Ebob/x/../y?a=%2e%2e HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n',
    );
    expect(parseRaw(await rx.closed()).status).toBe(200);
    expect(h.upstream.requests[0]!.url).toBe('/api/orders/~bob/y?a=%2e%2e');
  });

  it('logs allowed requests when logAllowedHttp is on', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], logAllowedHttp: true });
    const res = await h.client().request({ path: '/api/x', method: 'POST', body: 'hello' });
    const text = await res.body.text();
    await waitFor(() => h!.telemetry.access.length === 1);
    expect(h.telemetry.access[0]).toMatchObject({
      kind: 'http',
      decision: 'allow',
      reason: null,
      identity: FRONTEND,
      origin: '127.0.0.1',
      license: 'lic_1',
      method: 'POST',
      path: '/api/x',
      status: 200,
      bytesIn: 5,
      bytesOut: Buffer.byteLength(text),
    });
  });

  it('does not log allowed requests by default', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const res = await h.client().request({ path: '/api/x', method: 'GET' });
    await res.body.dump();
    await waitFor(() => h!.telemetry.durations.length === 1);
    expect(h.telemetry.access).toHaveLength(0);
  });

  it('sends 100 Continue only once an Expect: 100-continue request is allowed', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1', methods: ['PUT'] }] });
    const rx = await rawRequest(
      h.address,
      h.creds,
      'PUT /api HTTP/1.1\r\nHost: orders\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n',
    );
    await rx.until((t) => t.includes('100 Continue'));
    rx.socket.write('hello');
    await rx.until((t) => t.includes('"bodyLength":5'));
    rx.socket.destroy();
    expect(h.upstream.requests[0]!.headers.expect).toBeUndefined();
    expect(h.upstream.requests[0]!.body.toString()).toBe('hello');
  });
});

describe('http port: audit mode', () => {
  it('forwards a would-be deny, counts audit_deny and logs it', async () => {
    h = await startHttpHarness({ port: { mode: 'audit' } });
    const res = await h.client().request({ path: '/api', method: 'GET' });
    const echo = (await res.body.json()) as Echo;
    expect(res.statusCode).toBe(200);
    expect(echo.headers['x-portlicense-identity']).toBe(FRONTEND);
    expect(echo.headers['x-portlicense-license']).toBeUndefined();
    expect(h.telemetry.decisionList()).toEqual(['audit_deny:no_license']);
    expect(h.telemetry.denials).toHaveLength(0);
    await waitFor(() => h!.telemetry.access.length === 1);
    expect(h.telemetry.access[0]).toMatchObject({
      decision: 'audit_deny',
      reason: 'no_license',
      status: 200,
    });
  });

  it('still allows licensed requests normally', async () => {
    h = await startHttpHarness({ port: { mode: 'audit' }, licenses: [{ id: 'lic_1' }] });
    const res = await h.client().request({ path: '/api', method: 'GET' });
    await res.body.dump();
    expect(h.telemetry.decisionList()).toEqual(['allow:-']);
  });
});
