/**
 * The fast lane of an http port (src/dataplane/fast-lane.ts), over real TLS and real upstreams:
 * what only it does — pipelined requests, handing a connection to the full path at a request
 * boundary, keeping upstream connections, following every response framing — and what a raw
 * upstream can do wrong. The http-*.test.ts suites run through it too (it serves their plain
 * requests), so this file covers what they do not reach.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createConnection, type Socket } from 'node:net';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { PortConfig } from '../../src/config/types.js';
import { startHttpHarness, type HttpHarness } from '../helpers/http.js';
import { parseRaw, rawRequest } from '../helpers/http-client.js';
import { Received, startTcpServer, tlsConnect, waitFor, type TestServer } from '../helpers/net.js';

let h: HttpHarness | undefined;
let raw: TestServer | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  await raw?.close();
  raw = undefined;
});

const GET = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: orders\r\n${extra}\r\n`;

/** The complete responses in raw text, bodies decoded (Content-Length or chunked without trailers). */
function responses(text: string): { status: number; body: string }[] {
  const out: { status: number; body: string }[] = [];
  let rest = text;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) return out;
    const head = rest.slice(0, end);
    let at = end + 4;
    let body = '';
    if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      for (;;) {
        const eol = rest.indexOf('\r\n', at);
        if (eol === -1) return out;
        const size = parseInt(rest.slice(at, eol), 16);
        if (size === 0) {
          if (rest.length < eol + 4) return out;
          at = eol + 4;
          break;
        }
        if (rest.length < eol + 2 + size + 2) return out;
        body += rest.slice(eol + 2, eol + 2 + size);
        at = eol + 2 + size + 2;
      }
    } else {
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (rest.length < at + len) return out;
      body = rest.slice(at, at + len);
      at += len;
    }
    out.push({ status: parseRaw(head).status, body });
    rest = rest.slice(at);
  }
}

/** The log lines of requests the fast lane sent again on a new upstream connection. */
function retries(): Record<string, unknown>[] {
  if (h === undefined) throw new Error('retries(): no harness started');
  return h.logs.lines
    .filter((l) => l.msg === 'request sent again on a new upstream connection')
    .map((l) => ({ level: l.level, method: l.method, path: l.path }));
}

/** A harness in front of `up`, and a caller whose `first` request has been answered. */
async function answeredFirst(
  up: TestServer,
  first: string,
  port: Partial<PortConfig> = {},
): Promise<Received> {
  h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: up, ...port } });
  const rx = await rawRequest(h.address, h.creds, first);
  await rx.until((t) => responses(t).length === 1);
  return rx;
}

/** Send `request` on the caller's connection and wait for its `n`th response. */
async function exchange(rx: Received, request: string, n: number): Promise<void> {
  rx.socket.write(request);
  await rx.until((t) => responses(t).length === n);
}

/**
 * An upstream that answers each request head it reads with `answer(n, socket, head)` (n = 0, 1, ...;
 * `head` without its blank line). A request's body, if any, is read as the start of the next head.
 */
async function rawUpstream(answer: (n: number, socket: Socket, head: string) => void): Promise<TestServer> {
  let n = 0;
  return startTcpServer((s) => {
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        answer(n++, s, head);
      }
    });
  });
}

describe('fast lane: one connection, many requests', () => {
  it('answers pipelined requests in order, each forwarded once, over one upstream connection', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const rx = await rawRequest(h.address, h.creds, GET('/a') + GET('/b') + GET('/c'));
    await rx.until((t) => responses(t).length === 3);
    const got = responses(rx.text).map((r) => [r.status, (JSON.parse(r.body) as { url: string }).url]);
    expect(got).toEqual([
      [200, '/a'],
      [200, '/b'],
      [200, '/c'],
    ]);
    expect(h.upstream.requests.map((r) => r.url)).toEqual(['/a', '/b', '/c']);
    expect(h.upstream.connections).toBe(1);
    rx.socket.destroy();
  });

  it('closes a connection after idleTimeout without a byte either way, and not while bytes flow', async () => {
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      port: { idleTimeout: 300 },
      upstreamHandler: (req: IncomingMessage, res: ServerResponse) => {
        if (req.url !== '/drip') return void res.end('ok');
        // A response that takes 4 idle timeouts, a chunk every half of one: never idle.
        let n = 0;
        const t = setInterval(() => {
          res.write(`${n}\n`);
          if (++n === 8) {
            clearInterval(t);
            res.end();
          }
        }, 150);
      },
    });
    const rx = new Received(await tlsConnect({ ...h.address, ...h.creds }));
    const started = Date.now();
    // Requests half an idle timeout apart keep it open well past one idle timeout...
    for (let i = 1; i <= 3; i++) {
      rx.socket.write(GET(`/r${i}`));
      await rx.until((t) => responses(t).length === i);
      if (i < 3) await new Promise((r) => setTimeout(r, 150));
    }
    rx.socket.write(GET('/drip'));
    await rx.until((t) => responses(t).length === 4, 5_000);
    expect(Date.now() - started).toBeGreaterThan(1_200);
    expect(rx.ended).toBe(false);
    expect(responses(rx.text)[3]!.body).toBe('0\n1\n2\n3\n4\n5\n6\n7\n');
    // ...then nothing either way: closed after 300 ms (the sweep checks every 75 ms).
    const quiet = Date.now();
    await rx.closed(3_000);
    expect(Date.now() - quiet).toBeGreaterThanOrEqual(290);
    expect(Date.now() - quiet).toBeLessThan(1_500);
    expect(h.upstream.requests.map((r) => r.url)).toEqual(['/r1', '/r2', '/r3', '/drip']);
  });

  it('takes a head that arrives one byte at a time', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const rx = new Received(await tlsConnect({ ...h.address, ...h.creds }));
    for (const b of GET('/slow')) {
      rx.socket.write(b);
      await new Promise((r) => setImmediate(r));
    }
    await rx.until((t) => responses(t).length === 1);
    expect(responses(rx.text)[0]!.status).toBe(200);
    expect(h.upstream.requests.map((r) => r.url)).toEqual(['/slow']);
    rx.socket.destroy();
  });

  it('serves a chunked upload between plain requests, in order, over one upstream connection', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const chunked =
      'POST /up HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
    const rx = await rawRequest(h.address, h.creds, GET('/first') + chunked + GET('/after'));
    await rx.until((t) => responses(t).length === 3);
    expect(responses(rx.text).map((r) => (JSON.parse(r.body) as { url: string }).url)).toEqual([
      '/first',
      '/up',
      '/after',
    ]);
    // The full path would have dispatched /after beside /up on another upstream connection: the
    // request after the chunked body was read where that body ended, by the fast lane.
    expect(h.upstream.requests.map((r) => [r.method, r.url, r.body.toString()])).toEqual([
      ['GET', '/first', ''],
      ['POST', '/up', 'hello'],
      ['GET', '/after', ''],
    ]);
    expect(h.upstream.connections).toBe(1);
    expect(rx.ended).toBe(false);
    rx.socket.destroy();
  });

  it('passes obs-text in a field value on as the bytes it came in', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const rx = await rawRequest(h.address, h.creds, Buffer.from(GET('/x', 'X-Name: caf\xe9\r\n'), 'latin1'));
    await rx.until((t) => responses(t).length === 1);
    expect(responses(rx.text)[0]!.status).toBe(200);
    expect(h.upstream.requests[0]!.headers['x-name']).toBe('caf\xe9');
    rx.socket.destroy();
  });

  it('hands a head that arrived over many reads to the full path whole', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const rx = new Received(await tlsConnect({ ...h.address, ...h.creds }));
    // Expect: 100-continue is the full path's; every read of the head must reach it, in order.
    const post = 'POST /handed HTTP/1.1\r\nHost: orders\r\nX-Long: 0123456789\r\nExpect: 100-continue\r\n';
    for (const b of post + 'Content-Length: 5\r\n\r\n') {
      rx.socket.write(b);
      await new Promise((r) => setImmediate(r));
    }
    await rx.until((t) => t.includes('100 Continue'));
    rx.socket.write('hello');
    await rx.until((t) => t.includes('"url":"/handed"'));
    expect(h.upstream.requests.map((r) => [r.url, r.headers['x-long'], r.body.toString()])).toEqual([
      ['/handed', '0123456789', 'hello'],
    ]);
    rx.socket.destroy();
  });

  it.each([
    ['Content-Length', 'Content-Length: 5\r\n\r\nhello'],
    ['chunked', 'Transfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n'],
  ])(
    'drops a denied small body (%s) that came whole with its head and keeps serving the connection',
    async (_framing, rest) => {
      h = await startHttpHarness({ licenses: [{ id: 'lic_1', methods: ['GET'] }] });
      const post = `POST /p HTTP/1.1\r\nHost: orders\r\n${rest}`;
      const rx = await rawRequest(h.address, h.creds, post + GET('/ok'));
      await rx.until((t) => responses(t).length === 2);
      expect(responses(rx.text).map((r) => r.status)).toEqual([403, 200]);
      expect(h.upstream.requests.map((r) => r.url)).toEqual(['/ok']);
      expect(rx.ended).toBe(false);
      rx.socket.destroy();
    },
  );

  it('closes after answering a request that says Connection: close', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const rx = await rawRequest(h.address, h.creds, GET('/bye', 'Connection: close\r\n'));
    const text = await rx.closed();
    expect(parseRaw(text).status).toBe(200);
    expect(parseRaw(text).head.toLowerCase()).toContain('connection: close');
  });

  it('keeps no body for HEAD, 204 and 304, and the connection stays usable', async () => {
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      upstreamHandler: (req: IncomingMessage, res: ServerResponse) => {
        if (req.url === '/204') res.writeHead(204).end();
        else if (req.url === '/304') res.writeHead(304, { etag: '"x"' }).end();
        else res.writeHead(200, { 'content-length': '5' }).end(req.method === 'HEAD' ? undefined : 'hello');
      },
    });
    const head = 'HEAD /h HTTP/1.1\r\nHost: orders\r\n\r\n';
    const rx = await rawRequest(h.address, h.creds, head + GET('/204') + GET('/304') + GET('/h'));
    await rx.until((t) => t.endsWith('hello'));
    expect(rx.text.match(/^HTTP\/1\.1 \d{3}/gm)).toEqual([
      'HTTP/1.1 200',
      'HTTP/1.1 204',
      'HTTP/1.1 304',
      'HTTP/1.1 200',
    ]);
    expect(rx.text.split('hello')).toHaveLength(2); // one body: the GET's
    rx.socket.destroy();
  });
});

/**
 * A TCP relay in front of the proxy that counts the TLS records it carries to the caller: how
 * many writes the proxy made of a response (TLS 1.3 sends every record after the handshake as
 * application data, so count only between a request and the end of its answer).
 */
async function recordCounter(to: { host: string; port: number }): Promise<{
  relay: TestServer;
  records: () => number;
}> {
  let records = 0;
  const relay = await startTcpServer((down) => {
    const up = createConnection(to.port, to.host);
    let buf = Buffer.alloc(0);
    up.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      // A record: type (1), version (2), length (2), then the payload.
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        records++;
        buf = buf.subarray(5 + buf.readUInt16BE(3));
      }
      down.write(d);
    });
    down.on('data', (d: Buffer) => up.write(d));
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    up.on('error', () => {});
    down.on('error', () => {});
  });
  return { relay, records: () => records };
}

describe('fast lane: upstream responses', () => {
  it("writes a small response's head and body to the caller in one TLS record", async () => {
    raw = await rawUpstream((_n, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world'));
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: raw } });
    const { relay, records } = await recordCounter(h.address);
    try {
      const rx = new Received(await tlsConnect({ ...h.creds, host: relay.host, port: relay.port }));
      rx.socket.write(GET('/one'));
      await rx.until((t) => t.endsWith('hello world'));
      // The handshake and session tickets are behind us: the second answer alone.
      const before = records();
      rx.socket.write(GET('/two'));
      await rx.until((t) => t.split('hello world').length === 3);
      expect(records() - before).toBe(1);
      rx.socket.destroy();
    } finally {
      await relay.close();
    }
  });

  it("keeps a response's Content-Length that its Connection header names: the next response stays apart", async () => {
    raw = await rawUpstream((_n, s) =>
      s.write(
        'HTTP/1.1 200 OK\r\nConnection: content-length, x-hop\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\nhello',
      ),
    );
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: raw } });
    const rx = await rawRequest(h.address, h.creds, GET('/a') + GET('/b'));
    await rx.until((t) => t.split('hello').length === 3);
    expect(responses(rx.text)).toEqual([
      { status: 200, body: 'hello' },
      { status: 200, body: 'hello' },
    ]);
    expect(rx.text.match(/\r\nContent-Length: 5\r\n/g)).toHaveLength(2);
    expect(rx.text).not.toMatch(/x-hop/i);
    rx.socket.destroy();
  });

  it('hands the next request a kept connection that reads: after a response the caller had to pause for', async () => {
    // 40 KB in one upstream read fills the caller socket past its high-water mark, so the lane
    // pauses the upstream connection; the response ends in that same read and the connection goes
    // back to the pool. The next request gets that connection (the pool is LIFO).
    const big = Buffer.alloc(40_000, 0x61);
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      port: { upstreamTimeout: 1_500 },
      upstreamHandler: (req, res) => {
        req.resume();
        req.on('end', () => {
          const body = req.url === '/big' ? big : Buffer.from('ok');
          res.writeHead(200, { 'content-length': body.length });
          res.end(body);
        });
      },
    });
    const one = async (path: string): Promise<{ status: number; bytes: number; ms: number }> => {
      const started = performance.now();
      const rx = await rawRequest(h!.address, h!.creds, GET(path, 'Connection: close\r\n'));
      const text = await rx.closed();
      return { status: parseRaw(text).status, bytes: rx.bytes.length, ms: performance.now() - started };
    };
    const first = await one('/big');
    expect(first.status).toBe(200);
    expect(first.bytes).toBeGreaterThan(big.length);
    const second = await one('/small');
    expect(second.status).toBe(200); // not 504 after upstreamTimeout
    expect(second.ms).toBeLessThan(1_000);
    expect(h.upstream.connections).toBe(1);
  });

  it('passes a chunked response on verbatim and counts its payload', async () => {
    raw = await rawUpstream((_n, s) =>
      s.write(
        'HTTP/1.1 200 OK\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n',
      ),
    );
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: raw } });
    const rx = await rawRequest(h.address, h.creds, GET('/c') + GET('/c'));
    await rx.until((t) => (t.match(/X-T: 1\r\n\r\n/g) ?? []).length === 2);
    expect(rx.text.match(/\r\nTrailer: X-T\r\n/g)).toHaveLength(2);
    expect(rx.text).toContain(
      'transfer-encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n',
    );
    await waitFor(() => h!.telemetry.bytesOut === 10);
    expect(raw.accepted()).toBe(1); // the upstream connection was kept for the second request
    rx.socket.destroy();
  });

  it("dates a response whose upstream did not, keeps the upstream's own Date, and dates its 403s", async () => {
    const upstreamDate = 'Mon, 02 Jan 2006 15:04:05 GMT';
    raw = await rawUpstream((n, s) =>
      s.write(`HTTP/1.1 200 OK\r\n${n === 0 ? '' : `Date: ${upstreamDate}\r\n`}Content-Length: 2\r\n\r\nok`),
    );
    h = await startHttpHarness({ licenses: [{ id: 'lic_1', methods: ['GET'] }], port: { upstream: raw } });
    const before = Math.floor(Date.now() / 1000) * 1000;
    const rx = await rawRequest(
      h.address,
      h.creds,
      GET('/a') + GET('/b') + 'DELETE /c HTTP/1.1\r\nHost: orders\r\n\r\n',
    );
    await rx.until((t) => (t.match(/HTTP\/1\.1 /g) ?? []).length === 3 && t.endsWith('}'));
    const heads = rx.text.split(/HTTP\/1\.1 /).slice(1);
    const dates = heads.map((hd) => [...hd.matchAll(/\r\ndate: ([^\r]*)/gi)].map((m) => m[1]!));
    expect(dates.map((d) => d.length)).toEqual([1, 1, 1]);
    for (const d of [dates[0]![0]!, dates[2]![0]!]) {
      expect(d).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
      expect(Date.parse(d)).toBeGreaterThanOrEqual(before);
      expect(Date.parse(d)).toBeLessThanOrEqual(Date.now());
    }
    expect(dates[1]).toEqual([upstreamDate]);
    expect(heads[2]).toMatch(/^403 /);
    rx.socket.destroy();
  });

  it('forwards a body delimited by the upstream closing, then closes the caller', async () => {
    raw = await rawUpstream((_n, s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-');
      setTimeout(() => s.end('close'), 20);
    });
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: raw } });
    const rx = await rawRequest(h.address, h.creds, GET('/eof'));
    const text = await rx.closed();
    expect(parseRaw(text)).toMatchObject({ status: 200, body: 'until-close' });
    expect(parseRaw(text).head.toLowerCase()).toContain('connection: close');
  });

  it('does not relay 1xx answers, then relays the final one', async () => {
    raw = await rawUpstream((_n, s) =>
      s.write('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'),
    );
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: raw } });
    const rx = await rawRequest(h.address, h.creds, GET('/hints'));
    await rx.until((t) => t.endsWith('ok'));
    expect(rx.text).not.toContain('103');
    expect(parseRaw(rx.text).status).toBe(200);
    rx.socket.destroy();
  });

  const BAD_RESPONSES: Array<[string, string]> = [
    [
      'Content-Length with Transfer-Encoding',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
    ],
    [
      'two differing Content-Lengths',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
    ],
    ['a bare LF', 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok'],
    ['a folded header', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 2\r\n\r\nok'],
    ['a 101 nobody asked for', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n'],
    ['garbage', 'SSH-2.0-OpenSSH_9.2\r\n\r\n'],
  ];
  for (const [name, answer] of BAD_RESPONSES)
    it(`answers 502 for a response head with ${name}`, async () => {
      raw = await rawUpstream((_n, s) => s.write(answer));
      h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: raw } });
      const rx = await rawRequest(h.address, h.creds, GET('/bad'));
      await rx.until((t) => responses(t).length === 1);
      expect(responses(rx.text)[0]).toMatchObject({ status: 502 });
      expect(responses(rx.text)[0]!.body).toContain('upstream_unavailable');
      rx.socket.destroy();
    });

  it('cuts the caller when a chunked body breaks its framing mid-way', async () => {
    raw = await rawUpstream((_n, s) =>
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n'),
    );
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: raw } });
    const rx = await rawRequest(h.address, h.creds, GET('/broken'));
    const text = await rx.closed();
    // Closed without a complete response: at most the head and the good chunk, never the last chunk.
    expect(rx.ended).toBe(true);
    expect(text).not.toContain('0\r\n\r\n');
    expect(text).not.toContain('zz');
  });

  it('opens a new upstream connection when the kept one was closed by the upstream', async () => {
    raw = await rawUpstream((_n, s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const rx = await answeredFirst(raw, GET('/1'));
    await waitFor(() => raw!.sockets.every((s) => s.destroyed));
    await exchange(rx, GET('/2'), 2);
    expect(responses(rx.text).map((r) => r.status)).toEqual([200, 200]);
    expect(raw.accepted()).toBe(2);
    rx.socket.destroy();
  });

  it('answers 502 and keeps the caller when the upstream closes without answering', async () => {
    raw = await rawUpstream((n, s) => {
      if (n === 0) s.destroy();
      else s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const rx = await answeredFirst(raw, GET('/gone'));
    await exchange(rx, GET('/again'), 2);
    expect(responses(rx.text).map((r) => r.status)).toEqual([502, 200]);
    // A new connection's first request is not sent again: the upstream may be what fails it.
    expect(retries()).toEqual([]);
    rx.socket.destroy();
  });

  describe('the keep-alive race: a kept connection closed as a request went out on it', () => {
    const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';

    it.each(['reset', 'FIN'])(
      'sends a GET again, once, on a new connection when the kept one closes (%s) before answering',
      async (how) => {
        const heads: string[] = [];
        raw = await rawUpstream((n, s, head) => {
          heads.push(head);
          if (n !== 1) s.write(OK);
          else if (how === 'reset') s.destroy();
          else s.end();
        });
        const rx = await answeredFirst(raw, GET('/first'));
        await exchange(rx, GET('/second'), 2);
        await exchange(rx, GET('/third'), 3);
        expect(responses(rx.text).map((r) => r.status)).toEqual([200, 200, 200]);
        // The same head both times, the proxy's fields included; the second time on a new connection,
        // which is then kept for the next request.
        expect(heads).toHaveLength(4);
        expect(heads[2]).toBe(heads[1]);
        expect(heads[2]).toContain('x-portlicense-identity: spiffe://example.org/ns/default/sa/frontend');
        expect(raw.accepted()).toBe(2);
        expect(retries()).toEqual([{ level: 'info', method: 'GET', path: '/second' }]);
        rx.socket.destroy();
      },
    );

    it("closes a kept upstream connection after the port's upstreamIdleTimeout, before the upstream would", async () => {
      raw = await rawUpstream((_n, s) => s.write(OK));
      const rx = await answeredFirst(raw, GET('/1'), { upstreamIdleTimeout: 300 });
      const idle = Date.now();
      await waitFor(
        () => raw!.sockets.length === 1 && raw!.sockets.every((s) => s.destroyed || s.readableEnded),
        {
          timeoutMs: 3_000,
          what: 'the sidecar closing its idle upstream connection',
        },
      );
      expect(Date.now() - idle).toBeGreaterThanOrEqual(250);
      await exchange(rx, GET('/2'), 2);
      expect(responses(rx.text).map((r) => r.status)).toEqual([200, 200]);
      expect(raw.accepted()).toBe(2);
      rx.socket.destroy();
    });

    describe("the upstream's own keep-alive (Keep-Alive: timeout=N)", () => {
      const KEPT_2S = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=2, max=100\r\n\r\nok';

      it('keeps the connection for a second less than the upstream says, when that is sooner', async () => {
        raw = await rawUpstream((_n, s) => s.write(KEPT_2S));
        const rx = await answeredFirst(raw, GET('/1'), { upstreamIdleTimeout: 4_000 });
        await exchange(rx, GET('/2'), 2);
        expect(raw.accepted()).toBe(1);
        // Kept for 1 s (2 s less the margin), not the port's 4 s: no condition to wait on but time.
        await new Promise((r) => setTimeout(r, 1_200));
        await exchange(rx, GET('/3'), 3);
        expect(responses(rx.text).map((r) => r.status)).toEqual([200, 200, 200]);
        expect(raw.accepted()).toBe(2);
        expect(raw.sockets[0]!.destroyed || raw.sockets[0]!.readableEnded).toBe(true);
        expect(retries()).toEqual([]);
        rx.socket.destroy();
      });

      it('does not keep a connection the upstream closes within a second (timeout=1)', async () => {
        raw = await rawUpstream((_n, s) =>
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=1\r\n\r\nok'),
        );
        const rx = await answeredFirst(raw, GET('/1'));
        await exchange(rx, GET('/2'), 2);
        expect(responses(rx.text).map((r) => r.status)).toEqual([200, 200]);
        expect(raw.accepted()).toBe(2);
        // Closed by the sidecar once answered, not left to idle (upstreamIdleTimeout is 4 s here).
        await waitFor(() => raw!.sockets[0]!.destroyed || raw!.sockets[0]!.readableEnded, {
          timeoutMs: 1_000,
          what: 'the sidecar closing the first connection after its response',
        });
        rx.socket.destroy();
      });

      it('the full path keeps it too, with the same margin (undici would drop it at its 2 s default)', async () => {
        raw = await rawUpstream((_n, s) => s.write(KEPT_2S));
        // HTTP/1.0 is the full path's (http.Server and undici), and stays there on this connection.
        const old = (path: string): string =>
          `GET ${path} HTTP/1.0\r\nHost: orders\r\nConnection: keep-alive\r\n\r\n`;
        const rx = await answeredFirst(raw, old('/1'));
        await exchange(rx, old('/2'), 2);
        expect(responses(rx.text).map((r) => r.status)).toEqual([200, 200]);
        expect(raw.accepted()).toBe(1);
        rx.socket.destroy();
      });
    });

    it('answers 502 when the new connection closes too: a request is sent again at most once', async () => {
      raw = await rawUpstream((n, s) => {
        if (n === 1 || n === 2) s.destroy();
        else s.write(OK);
      });
      const rx = await answeredFirst(raw, GET('/1'));
      await exchange(rx, GET('/2'), 2);
      await exchange(rx, GET('/3'), 3);
      expect(responses(rx.text).map((r) => r.status)).toEqual([200, 502, 200]);
      expect(raw.accepted()).toBe(3);
      expect(retries()).toHaveLength(1);
      rx.socket.destroy();
    });

    const notAgain: [string, string, (s: Socket) => void][] = [
      [
        'a POST (not idempotent)',
        'POST /pay HTTP/1.1\r\nHost: orders\r\nContent-Length: 0\r\n\r\n',
        (s) => s.destroy(),
      ],
      [
        'a DELETE (Go does not retry it either)',
        'DELETE /item HTTP/1.1\r\nHost: orders\r\n\r\n',
        (s) => s.destroy(),
      ],
      [
        'a GET with a body',
        'GET /q HTTP/1.1\r\nHost: orders\r\nContent-Length: 2\r\n\r\nhi',
        (s) => s.destroy(),
      ],
      ['a GET the upstream began to answer', GET('/partial'), (s) => s.end('HTTP/1.1 200 OK\r\n')],
    ];
    it.each(notAgain)('does not send %s again: the caller gets 502', async (_what, request, fail) => {
      let seen = 0;
      raw = await rawUpstream((n, s) => {
        seen++;
        if (n === 1) fail(s);
        else s.write(OK);
      });
      const rx = await answeredFirst(raw, GET('/first'));
      await exchange(rx, request, 2);
      expect(responses(rx.text).map((r) => r.status)).toEqual([200, 502]);
      expect(retries()).toEqual([]);
      expect(raw.accepted()).toBe(1);
      // (the GET's body reads as one more head at the upstream, which answers it on a closed socket)
      expect(seen).toBeGreaterThanOrEqual(2);
      rx.socket.destroy();
    });
  });

  it('relays a large response byte for byte to a caller that holds it back, then reads it', async () => {
    // The upstream reads land in one buffer shared by every upstream socket; a chunk the caller's
    // socket has to keep (its earlier writes still waiting) must be a copy. Small pieces, one per
    // turn, so that many reads come while the caller's socket is waiting but under its
    // high-water mark; random bytes, so a chunk overwritten by a later read shows in the digest.
    const body = randomBytes(16 << 20);
    let upSocket: Socket | undefined;
    raw = await rawUpstream((_n, s) => {
      upSocket = s;
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
      const piece = (at: number): void => {
        if (at >= body.length || s.destroyed) return;
        s.write(body.subarray(at, at + 2000));
        setImmediate(piece, at + 2000);
      };
      piece(0);
    });
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: raw } });
    const caller = await tlsConnect({ ...h.address, ...h.creds });
    caller.pause();
    caller.write(GET('/big'));
    // Held back all the way: the proxy stopped reading the upstream, whose writes now queue.
    await waitFor(() => upSocket !== undefined && upSocket.writableLength > 0);
    const chunks: Buffer[] = [];
    let got = 0;
    caller.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
    });
    caller.resume();
    await waitFor(() => got >= body.length, { timeoutMs: 20_000, what: 'the whole response' });
    const all = Buffer.concat(chunks);
    const headEnd = all.indexOf('\r\n\r\n') + 4;
    expect(parseRaw(all.subarray(0, headEnd).toString('latin1')).status).toBe(200);
    expect(all.length - headEnd).toBe(body.length);
    expect(digest(all.subarray(headEnd))).toBe(digest(body));
    caller.destroy();
  });
});

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const POST_CHUNKED = (path: string, extra = ''): string =>
  `POST ${path} HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n${extra}\r\n`;
const MALFORMED = '{"error":"bad_request","reason":"malformed_request","port":"orders/http"}';

/** How the upstream (node's server) saw one request end: completely or cut, and the body it read. */
interface UpstreamEnd {
  complete: boolean;
  body: string;
}

/**
 * An upstream handler that records each request's body as node reads it and, once the request is
 * closed, how it ended (`ends`, by path); `answer` writes the response (default: none).
 */
function recordEnds(
  ends: Map<string, UpstreamEnd>,
  bodies: Map<string, string>,
  answer: (req: IncomingMessage, res: ServerResponse) => void = () => {},
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const url = req.url!;
    bodies.set(url, '');
    req.on('data', (c: Buffer) => bodies.set(url, bodies.get(url)! + c.toString('latin1')));
    req.on('close', () => ends.set(url, { complete: req.complete, body: bodies.get(url)! }));
    answer(req, res);
  };
}

/** The harness with a `recordEnds` upstream (`answer` writes its responses), and a caller connected to it. */
async function recordingLane(
  answer?: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ h: HttpHarness; ends: Map<string, UpstreamEnd>; bodies: Map<string, string>; rx: Received }> {
  const ends = new Map<string, UpstreamEnd>();
  const bodies = new Map<string, string>();
  const harness = await startHttpHarness({
    licenses: [{ id: 'lic_1' }],
    upstreamHandler: recordEnds(ends, bodies, answer),
  });
  h = harness; // closed by afterEach
  const rx = new Received(await tlsConnect({ ...harness.address, ...harness.creds }));
  return { h: harness, ends, bodies, rx };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('fast lane: chunked uploads', () => {
  const BODY = '3;ext=1;q="a b"\r\nabc\r\n2\r\nde\r\n0;end=yes\r\nX-Sum: abcde\r\nx-t:1\r\n\r\n';

  it('forwards the body verbatim (sizes, extensions, trailers) as transfer-encoding: chunked, and counts its payload', async () => {
    const seen: string[] = [];
    raw = await startTcpServer((s) => {
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        // One answer per complete request: the body is known, so a request ends where BODY does.
        for (let at = buf.indexOf(BODY); at !== -1; at = buf.indexOf(BODY)) {
          seen.push(buf.slice(0, at + BODY.length));
          buf = buf.slice(at + BODY.length);
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        }
      });
    });
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: raw } });
    const req = POST_CHUNKED('/up', 'Trailer: X-Sum\r\n') + BODY;
    const rx = await rawRequest(h.address, h.creds, req + req);
    await rx.until((t) => responses(t).length === 2);
    expect(responses(rx.text).map((r) => r.status)).toEqual([200, 200]);
    expect(seen).toHaveLength(2);
    for (const text of seen) {
      const end = text.indexOf('\r\n\r\n');
      const lines = text.slice(0, end).split('\r\n');
      expect(lines[0]).toBe('POST /up HTTP/1.1');
      expect(lines.filter((l) => /^(transfer-encoding|content-length):/i.test(l))).toEqual([
        'transfer-encoding: chunked',
      ]);
      // The trailers go on, so the header announcing them does too.
      expect(lines).toContain('Trailer: X-Sum');
      expect(text.slice(end + 4)).toBe(BODY);
    }
    expect(raw.accepted()).toBe(1); // both connections were kept after the first exchange
    await waitFor(() => h!.telemetry.durations.length === 2);
    expect(h.telemetry.bytesIn).toBe(10); // the payload (abc, de) of each, not the framing
    expect(rx.ended).toBe(false);
    rx.socket.destroy();
  });

  it('forwards each piece as it arrives, whatever the split, and the trailers at the end', async () => {
    const { ends, bodies, rx } = await recordingLane((req, res) =>
      req.on('end', () => res.end(JSON.stringify({ body: bodies.get('/drip'), trailers: req.trailers }))),
    );
    rx.socket.write(POST_CHUNKED('/drip'));
    // [bytes written, payload the upstream has read once they are through]
    const pieces: Array<[string, string]> = [
      ['5', ''],
      [';n=1\r', ''],
      ['\nhel', 'hel'],
      ['lo\r', 'hello'],
      ['\n1\r\n \r', 'hello '],
      ['\n6\r\nworld!\r\n', 'hello world!'],
      ['0\r\nX-Check', 'hello world!'],
      ['sum: 42\r\n', 'hello world!'],
    ];
    for (const [piece, payload] of pieces) {
      rx.socket.write(piece);
      // Each piece of payload reaches the upstream before the next one is sent: nothing waits for the end.
      await waitFor(() => bodies.get('/drip') === payload);
      await new Promise((r) => setImmediate(r));
    }
    expect(responses(rx.text)).toEqual([]);
    rx.socket.write('\r\n');
    await rx.until((t) => responses(t).length === 1);
    expect(JSON.parse(responses(rx.text)[0]!.body)).toEqual({
      body: 'hello world!',
      trailers: { 'x-checksum': '42' },
    });
    expect(ends.get('/drip')?.complete ?? true).toBe(true);
    rx.socket.destroy();
  });

  it('a bad chunk after the head went upstream: the upstream request is cut, the caller gets 400 and a close', async () => {
    const { h, ends, bodies, rx } = await recordingLane((req, res) => {
      if (req.url === '/next') res.end('ok');
    });
    rx.socket.write(`${POST_CHUNKED('/api')}3\r\nabc\r\n`);
    await waitFor(() => bodies.get('/api') === 'abc');
    rx.socket.write(`3\r\nxyz\r\nzz\r\n${GET('/smuggled')}`);
    const r = parseRaw(await rx.closed());
    expect(r.status).toBe(400);
    expect(r.body).toBe(MALFORMED);
    // Not one byte of the read that broke the framing went on, and the upstream saw the request cut.
    expect(await waitFor(() => ends.get('/api'))).toEqual({ complete: false, body: 'abc' });
    expect(h.upstream.requests.map((q) => q.url)).toEqual(['/api']);
    // The cut upstream connection is not reused: the next request opens another.
    const rx2 = await rawRequest(h.address, h.creds, GET('/next'));
    await rx2.until((t) => responses(t).length === 1);
    expect(responses(rx2.text)[0]).toEqual({ status: 200, body: 'ok' });
    expect(h.upstream.connections).toBe(2);
    rx2.socket.destroy();
  });

  it('a bad chunk once the response is under way: both connections are cut, no 400 is added to it', async () => {
    const { ends, rx } = await recordingLane((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
    });
    rx.socket.write(`${POST_CHUNKED('/api')}3\r\nabc\r\n`);
    await rx.until((t) => t.includes('partial'));
    rx.socket.write('3\r\nabcX\r\n0\r\n\r\n');
    const text = await rx.closed();
    expect(parseRaw(text).status).toBe(200);
    expect(text).not.toContain('malformed');
    expect(text).not.toMatch(/\r\n0\r\n\r\n$/); // the response is not made to look complete
    expect(await waitFor(() => ends.get('/api'))).toEqual({ complete: false, body: 'abc' });
  });

  describe('framing refused mid-body: the full path answers', () => {
    let shared: HttpHarness | undefined;
    const ends = new Map<string, UpstreamEnd>();
    const bodies = new Map<string, string>();
    afterAll(() => shared?.close());
    const cases: Array<[string, string, number, string]> = [
      [
        'a chunk-size line over 16 KiB',
        `1;e=${'x'.repeat(20_000)}\r\na\r\n0\r\n\r\n`,
        400,
        'malformed_request',
      ],
      ['a chunk size over 2^53', '20000000000000\r\n', 400, 'malformed_request'],
      ['trailers over the head limit', `0\r\nX-Big: ${'x'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
      ['a Content-Length trailer', '0\r\nContent-Length: 5\r\n\r\n', 400, 'malformed_request'],
      // Stricter than the full path (which drops request trailers): the upstream trusts these headers.
      [
        'an identity trailer',
        '0\r\nX-PortLicense_Identity: spiffe://example.org/ns/a/sa/admin\r\n\r\n',
        400,
        'malformed_request',
      ],
      ['an x-forwarded-for trailer', '0\r\nx-forwarded-for: 10.0.0.1\r\n\r\n', 400, 'malformed_request'],
    ];
    cases.forEach(([name, bad, status, reason], i) =>
      it(`${name}: ${status} ${reason}, and the upstream request is cut`, async () => {
        shared ??= await startHttpHarness({
          licenses: [{ id: 'lic_1' }],
          upstreamHandler: recordEnds(ends, bodies),
        });
        const path = `/case${i}`;
        const rx = new Received(await tlsConnect({ ...shared.address, ...shared.creds }));
        rx.socket.write(`${POST_CHUNKED(path)}3\r\nabc\r\n`);
        await waitFor(() => bodies.get(path) === 'abc');
        rx.socket.write(bad);
        const r = parseRaw(await rx.closed());
        expect(r.status).toBe(status);
        expect(JSON.parse(r.body)).toEqual({ error: 'bad_request', reason, port: 'orders/http' });
        expect(await waitFor(() => ends.get(path))).toEqual({ complete: false, body: 'abc' });
      }),
    );
  });

  it('an answer before the body ended: the caller is told connection: close, the upstream connection is dropped', async () => {
    h = await startHttpHarness({
      licenses: [{ id: 'lic_1' }],
      upstreamHandler: (req: IncomingMessage, res: ServerResponse) => res.end(req.url),
    });
    const rx = await rawRequest(h.address, h.creds, `${POST_CHUNKED('/early')}3\r\nabc\r\n`);
    const r = parseRaw(await rx.closed());
    expect(r).toMatchObject({ status: 200, body: '/early' });
    expect(r.head.toLowerCase()).toContain('connection: close');
    const rx2 = await rawRequest(h.address, h.creds, GET('/next'));
    await rx2.until((t) => responses(t).length === 1);
    expect(h.upstream.connections).toBe(2);
    rx2.socket.destroy();
  });

  describe('denied with a chunked body', () => {
    // A chunked body that came whole with the head is dropped and the connection kept: see
    // "drops a denied small body (chunked)" above.
    const closing: Array<[string, string]> = [
      ['a body still coming', '5\r\nhel'],
      ['a body that breaks its framing', `zz\r\n${GET('/ok')}`],
      ['no body bytes yet', ''],
    ];
    for (const [name, rest] of closing)
      it(`${name}: 403 and close, nothing forwarded`, async () => {
        h = await startHttpHarness({ licenses: [{ id: 'lic_1', methods: ['GET'] }] });
        const rx = await rawRequest(h.address, h.creds, POST_CHUNKED('/p') + rest);
        const r = parseRaw(await rx.closed());
        expect(r.status).toBe(403);
        expect(r.head.toLowerCase()).toContain('connection: close');
        expect(h.upstream.connections).toBe(0);
      });
  });

  it('stops reading the caller while the upstream does not read, and forwards every byte once it does', async () => {
    const MiB = 1 << 20;
    const count = 32;
    const sizeLine = `${MiB.toString(16)}\r\n`;
    const framed = count * (sizeLine.length + MiB + 2) + 5;
    let up: Socket | undefined;
    raw = await startTcpServer((s) => {
      up = s;
      s.pause();
    });
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }], port: { upstream: raw } });
    const rx = new Received(await tlsConnect({ ...h.address, ...h.creds }));
    rx.socket.write(POST_CHUNKED('/big'));
    const block = Buffer.alloc(MiB, 0x61);
    for (let i = 0; i < count; i++) {
      rx.socket.write(sizeLine);
      rx.socket.write(block);
      rx.socket.write('\r\n');
    }
    rx.socket.write('0\r\n\r\n');
    await waitFor(() => up !== undefined);
    // The proxy stops reading the caller well short of what was sent: kernel buffers on both hops,
    // not the 32 MiB the caller queued. (What is checked is that nothing more happens, so there is
    // no event to await: a short wall-clock window, as in splice.test.ts.)
    await sleep(300);
    const queued = rx.socket.writableLength;
    expect(queued).toBeGreaterThan(8 * MiB);
    await sleep(200);
    expect(rx.socket.writableLength).toBe(queued);

    let head = '';
    let body = 0;
    up!.on('data', (d: Buffer) => {
      if (body === 0 && !head.endsWith('\r\n\r\n')) {
        const text = head + d.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end === -1) {
          head = text;
          return;
        }
        head = text.slice(0, end + 4);
        body = text.length - head.length;
      } else body += d.length;
      if (body === framed) up!.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    up!.resume();
    await rx.until((t) => responses(t).length === 1, 20_000);
    expect(responses(rx.text)[0]).toEqual({ status: 200, body: 'ok' });
    expect(body).toBe(framed);
    await waitFor(() => h!.telemetry.durations.length === 1);
    expect(h.telemetry.bytesIn).toBe(count * MiB);
    rx.socket.destroy();
  });
});
