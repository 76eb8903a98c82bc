/**
 * Byte-exact requests a proxy must refuse rather than forward (SPEC §6): request-smuggling shapes,
 * malformed and oversize heads, slow heads. None of them may reach the upstream.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startHttpHarness, startUpstream, type HttpHarness } from '../helpers/http.js';
import { parseRaw, rawRequest } from '../helpers/http-client.js';
import { Received, tlsConnect, waitFor } from '../helpers/net.js';

let h: HttpHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

interface RawAnswer {
  status: number;
  head: string;
  body: string;
  /** The proxy closed the connection after answering. */
  closed: boolean;
}

/** Send raw bytes on a fresh connection and read until the proxy closes it. */
async function send(bytes: string, harness: HttpHarness = h!): Promise<RawAnswer> {
  const rx = await rawRequest(harness.address, harness.creds, bytes);
  const text = await rx.closed();
  return { ...parseRaw(text), closed: rx.ended };
}

const MALFORMED = '{"error":"bad_request","reason":"malformed_request","port":"orders/http"}';

/** Requests that Node's strict parser (llhttp) must refuse before any handler runs. */
const PARSER_REFUSES: Array<[string, string]> = [
  [
    'Content-Length with Transfer-Encoding',
    'POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n',
  ],
  [
    'Transfer-Encoding with Content-Length (reversed order)',
    'POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
  ],
  [
    'two differing Content-Length headers',
    'POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nab',
  ],
  [
    'two identical Content-Length headers',
    'POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab',
  ],
  ['a Content-Length list', 'POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 40\r\n\r\nab'],
  [
    'Transfer-Encoding that does not end in chunked',
    'POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
  ],
  [
    'an obfuscated Transfer-Encoding',
    'POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
  ],
  ['an obs-fold header line', 'GET /api HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n'],
  ['bare LF line endings', 'GET /api HTTP/1.1\nHost: a\n\n'],
  ['a space before the colon', 'GET /api HTTP/1.1\r\nHost: a\r\nContent-Length : 2\r\n\r\nab'],
];

/** Valid heads with a broken chunked body, sent in one write with a request hidden behind. */
const BAD_CHUNKS: Array<[string, string]> = [
  ['a chunk size that is not hex', 'zz\r\nab\r\n0\r\n\r\n'],
  ['a chunk size without its CRLF', '2\nab\r\n0\r\n\r\n'],
  ['chunk data longer than its size', '2\r\nabcd\r\n0\r\n\r\n'],
  ['a chunk size that overflows', 'ffffffffffffffffff\r\nab\r\n0\r\n\r\n'],
];

describe('http port: smuggling shapes are refused by the parser and never forwarded', () => {
  // One port for the whole table: every case must leave the upstream untouched, so state carries over safely.
  let port: HttpHarness;
  beforeAll(async () => {
    port = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
  });
  afterAll(() => port.close());

  for (const [name, bytes] of PARSER_REFUSES) {
    it(name, async () => {
      const r = await send(bytes, port);
      expect(r.status).toBe(400);
      expect(r.closed).toBe(true);
      expect(r.body).toBe(MALFORMED);
      expect(port.upstream.requests).toHaveLength(0);
      expect(port.upstream.connections).toBe(0);
      expect(port.telemetry.decisions).toHaveLength(0);
    });
  }
});

describe('http port: head anomalies the parser lets through', () => {
  it('refuses an HTTP/1.1 request without Host with 400 missing_host', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const r = await send('GET /api HTTP/1.1\r\n\r\n');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toEqual({ error: 'bad_request', reason: 'missing_host', port: 'orders/http' });
    expect(h.upstream.connections).toBe(0);
  });

  it('refuses two Host headers with 400 duplicate_host', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const r = await send('GET /api HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toEqual({
      error: 'bad_request',
      reason: 'duplicate_host',
      port: 'orders/http',
    });
    expect(r.closed).toBe(true);
    expect(h.upstream.connections).toBe(0);
  });

  it('refuses an absolute-form target naming another host with 400 host_mismatch', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const r = await send('GET http://admin.internal/api HTTP/1.1\r\nHost: orders\r\n\r\n');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'host_mismatch' });
    expect(h.upstream.connections).toBe(0);
  });

  it('serves an absolute-form target that names the Host, forwarding it in origin form', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const rx = await rawRequest(
      h.address,
      h.creds,
      'GET http://Orders.internal:8443/api/x?q=1 HTTP/1.1\r\nHost: orders.internal:8443\r\nConnection: close\r\n\r\n',
    );
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(200);
    expect(h.upstream.requests[0]!.url).toBe('/api/x?q=1');
    expect(h.upstream.requests[0]!.headers.host).toBe('orders.internal:8443');
  });

  it('keeps the framing when Connection names Content-Length: the body is never a second request', async () => {
    // Removing the named Content-Length but forwarding the body would make the upstream read the
    // body as a request of its own: past the decision, with the caller's forged identity header.
    h = await startHttpHarness({ licenses: [{ id: 'lic_1', paths: ['/public/*'] }] });
    const smuggled =
      'GET /admin/secret HTTP/1.1\r\nHost: orders\r\nX-PortLicense-Identity: spiffe://example.org/ns/default/sa/admin\r\n\r\n';
    const r = await send(
      'POST /public/x HTTP/1.1\r\nHost: orders\r\nConnection: content-length, close\r\n' +
        `Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
    );
    expect(r.status).toBe(200);
    expect(h.upstream.requests.map((q) => `${q.method} ${q.url}`)).toEqual(['POST /public/x']);
    const seen = h.upstream.requests[0]!;
    expect(seen.headers['content-length']).toBe(String(smuggled.length));
    expect(seen.body.toString('latin1')).toBe(smuggled);
    expect(seen.headers['x-portlicense-identity']).toBe('spiffe://example.org/ns/default/sa/frontend');
  });

  it('sees every field of a head, however many: framing and Host after 1,100 fields count', async () => {
    // Node hands a handler only its first maxHeadersCount fields while its parser frames the
    // body with all of them; the proxy must see the same fields the parser framed with.
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const filler = Array.from({ length: 1_100 }, (_, i) => `a${i}: b\r\n`).join('');
    const chunked = await send(
      `POST /api HTTP/1.1\r\nHost: orders\r\n${filler}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    );
    expect(chunked.status).toBe(200);
    expect(h.upstream.requests).toHaveLength(1);
    expect(h.upstream.requests[0]!.body.toString()).toBe('hello');
    const twoHosts = await send(`GET /api HTTP/1.1\r\nHost: orders\r\n${filler}Host: evil\r\n\r\n`);
    expect(twoHosts.status).toBe(400);
    expect(JSON.parse(twoHosts.body)).toMatchObject({ reason: 'duplicate_host' });
    expect(h.upstream.requests).toHaveLength(1);
  });

  it('refuses CONNECT with 400 unsupported_method', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const r = await send('CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'unsupported_method' });
    expect(h.upstream.connections).toBe(0);
  });
});

describe('http port: bodies that break mid-way', () => {
  let shared: HttpHarness | undefined;
  const sharedPort = async (): Promise<HttpHarness> =>
    (shared ??= await startHttpHarness({ licenses: [{ id: 'lic_1' }] }));
  afterAll(() => shared?.close());

  for (const [name, body] of BAD_CHUNKS) {
    it(`${name}, right after the head: 400, and the upstream receives not one byte`, async () => {
      const port = await sharedPort();
      const r = await send(
        `POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${body}GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n`,
        port,
      );
      expect(r.status).toBe(400);
      expect(r.body).toBe(MALFORMED);
      expect(r.closed).toBe(true);
      expect(port.upstream.requests).toHaveLength(0);
      expect(port.upstream.bytesReceived()).toBe(0);
    });
  }

  it('a bad chunk after the head went upstream: the upstream request is aborted, nothing after it is forwarded', async () => {
    let seen: ((r: { complete: boolean; body: string }) => void) | undefined;
    const upstreamDone = new Promise<{ complete: boolean; body: string }>((resolve) => (seen = resolve));
    const upstream = await startUpstream((req: IncomingMessage, _res: ServerResponse) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('close', () => seen!({ complete: req.complete, body }));
    });
    try {
      h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstream });
      const socket = await tlsConnect({ ...h.address, ...h.creds });
      const rx = new Received(socket);
      socket.write('POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
      await waitFor(() => upstream.requests.length === 1);
      socket.write('zz\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n');
      const r = parseRaw(await rx.closed());
      expect(r.status).toBe(400);
      const got = await upstreamDone;
      expect(got.complete).toBe(false);
      expect(got.body).not.toContain('smuggled');
      expect(upstream.requests.map((q) => q.url)).toEqual(['/api']);
    } finally {
      await h?.close();
      h = undefined;
      await upstream.close();
    }
  });
});

describe('http port: head size and head time limits', () => {
  it('answers an oversize head with 431 and never forwards it', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { maxHeaderSize: 4096 } });
    const r = await send(`GET /api HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`);
    expect(r.status).toBe(431);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'bad_request', reason: 'headers_too_large' });
    expect(r.closed).toBe(true);
    expect(h.upstream.connections).toBe(0);
  });

  it('accepts a head just under the limit', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { maxHeaderSize: 4096 } });
    const r = await send(
      `GET /api HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Big: ${'a'.repeat(3500)}\r\n\r\n`,
    );
    expect(r.status).toBe(200);
  });

  it('times out a client that dribbles its head (408, connection closed)', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { headersTimeout: 300 } });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    const started = Date.now();
    // One header byte every 50 ms: each write is activity, none completes the head.
    const drip = setInterval(() => {
      if (!socket.destroyed && socket.writable) socket.write('X');
    }, 50);
    socket.write('GET /api HTTP/1.1\r\nHost: a\r\nX-Slow: ');
    try {
      const r = parseRaw(await rx.closed(5_000));
      expect(r.status).toBe(408);
      expect(JSON.parse(r.body)).toMatchObject({ reason: 'request_timeout' });
    } finally {
      clearInterval(drip);
    }
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(h.upstream.connections).toBe(0);
  });

  it('cuts a client that stalls mid-body, and the upstream request with it', async () => {
    let upstreamClosed = false;
    const upstream = await startUpstream((req: IncomingMessage) => {
      req.resume();
      req.on('close', () => (upstreamClosed = true));
    });
    try {
      h = await startHttpHarness({
        licenses: [{ id: 'lic_1' }],
        upstream,
        port: { idleTimeout: 200, upstreamTimeout: 200 },
      });
      const socket = await tlsConnect({ ...h.address, ...h.creds });
      const rx = new Received(socket);
      const started = Date.now();
      socket.write('POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789');
      await rx.closed(5_000);
      // Inactivity limit while a request is open: max(idleTimeout, upstreamTimeout) + 1 s.
      expect(Date.now() - started).toBeLessThan(4_000);
      await waitFor(() => upstreamClosed);
    } finally {
      await h?.close();
      h = undefined;
      await upstream.close();
    }
  });
});

describe('http port: pipelined requests around answers the proxy writes itself', () => {
  // `Expect: 100-continue` hands the connection to the full path, where Node's server parses the
  // pipelined requests after it at once; the first answer is held back 300 ms by the upstream.
  const SLOW = 'GET /slow HTTP/1.1\r\nHost: orders\r\nExpect: 100-continue\r\n\r\n';
  const slowFirst = (req: IncomingMessage, res: ServerResponse): void => {
    req.resume();
    setTimeout(
      () => {
        res.writeHead(200, { 'content-length': '5' });
        res.end('first');
      },
      req.url === '/slow' ? 300 : 0,
    );
  };
  const statuses = (text: string): string[] => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]!);

  for (const [name, paths, last] of [
    ['allowed', undefined, '101'],
    ['denied', ['/slow'], '403'],
  ] as const) {
    it(`answers an upgrade (${name}) only after the response pipelined before it`, async () => {
      h = await startHttpHarness({
        licenses: [{ id: 'lic_1', ...(paths ? { paths: [...paths] } : {}) }],
        upstreamHandler: slowFirst,
      });
      const rx = await rawRequest(
        h.address,
        h.creds,
        SLOW + 'GET /ws HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
      );
      await rx.until((t) => statuses(t).length === 3);
      expect(statuses(rx.text)).toEqual(['100', '200', last]);
      expect(rx.text).toContain('\r\n\r\nfirstHTTP/1.1 ' + last);
      rx.socket.destroy();
    });
  }

  it('answers a malformed head only after the response pipelined before it', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstreamHandler: slowFirst });
    const rx = await rawRequest(
      h.address,
      h.creds,
      SLOW + 'GET /x HTTP/1.1\r\nHost: orders\r\nbad header\r\n\r\n',
    );
    await rx.until((t) => statuses(t).length === 3);
    expect(statuses(rx.text)).toEqual(['100', '200', '400']);
    expect(h.upstream.requests.map((r) => r.url)).toEqual(['/slow']);
    rx.socket.destroy();
  });

  it('lets a request that arrived whole finish when the head pipelined after it is malformed', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], upstreamHandler: slowFirst });
    const rx = await rawRequest(
      h.address,
      h.creds,
      'POST /slow HTTP/1.1\r\nHost: orders\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello' +
        'GET /x HTTP/1.1\r\nHost: orders\r\nbad header\r\n\r\n',
    );
    await rx.until((t) => statuses(t).length === 3);
    expect(statuses(rx.text)).toEqual(['100', '200', '400']);
    expect(rx.text).toContain('\r\n\r\nfirstHTTP/1.1 400');
    rx.socket.destroy();
  });

  for (const [name, first] of [
    ['a 400', 'GET /a%zz HTTP/1.1\r\nHost: orders\r\n\r\n'],
    [
      'a refused Expect: 100-continue',
      'POST /admin HTTP/1.1\r\nHost: orders\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello',
    ],
  ] as const) {
    it(`serves nothing pipelined behind ${name} that closes the connection`, async () => {
      h = await startHttpHarness({ licenses: [{ id: 'lic_1', paths: ['/public/*'] }] });
      const r = await send(first + 'GET /public/after HTTP/1.1\r\nHost: orders\r\n\r\n');
      expect([400, 403]).toContain(r.status);
      expect(r.closed).toBe(true);
      expect(r.head).toMatch(/\r\nconnection: close/i);
      // A request served is decided as soon as it is parsed, before the connection closes.
      expect(h.telemetry.decisions.filter((d) => d.decision === 'allow')).toHaveLength(0);
      expect(h.upstream.requests).toHaveLength(0);
    });
  }
});
