/**
 * The fast lane writes a head two ways (src/dataplane/fast-heads.ts): as its own bytes with some
 * fields dropped, when `plainRequestFields` / `plainResponseFields` say that is the whole rewrite,
 * and otherwise as a string through `upstreamRequestHead` / `callerResponseHeaders`. Here both ways
 * meet on thousands of seeded heads built from the names the rules care about, in every spelling:
 * whatever the byte way writes, parsed back, is exactly what the string way writes; it never takes
 * a head the string way refuses; and both ways are taken often.
 */
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  RequestHeadParser,
  ResponseHeadParser,
  type RequestHead,
  type ResponseHead,
} from '../../src/dataplane/h1/index.js';
import {
  HeadOut,
  dropMarks,
  forwardedLines,
  licenseLine,
  requestHeadBytes,
  requestHeadText,
  responseHeadBytes,
  responseHeadText,
} from '../../src/dataplane/fast-heads.js';
import {
  RESPONSE_DATED,
  callerResponseHeaders,
  plainRequestFields,
  plainResponseFields,
  targetAuthority,
  upstreamRequestHead,
  vouch,
} from '../../src/dataplane/http-headers.js';
import { normalizeTarget } from '../../src/policy/path.js';
import { prng } from './h1/corpus.js';
import { startTcpServer, tcpConnect, waitFor } from '../helpers/net.js';

const ORIGIN = '10.9.8.7';
const IDENTITY = 'spiffe://example.org/ns/a/sa/caller';
const LICENSE = 'lic-42';
const DATE = 'Sun, 29 Nov 2026 12:00:00 GMT';

const pick = <T>(rnd: () => number, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

/** Request field names the rules treat apart, in several spellings, and plain ones. */
const REQUEST_NAMES = [
  'Accept',
  'User-Agent',
  'X-Custom',
  'x-custom',
  'Date',
  'Cookie',
  'X-Foo',
  'Trailer',
  'TRAILER',
  'Connection',
  'connection',
  'Keep-Alive',
  'TE',
  'te',
  'Proxy',
  'Proxy-Authorization',
  'proxy_connection',
  'Proxyx',
  'Proxy-',
  'X-PortLicense-Identity',
  'x_portlicense_license',
  'X-Portlicense-Anything',
  'X-Forwarded-For',
  'x_forwarded_for',
  'X-Forwarded-Proto',
  'X_FORWARDED_PROTO',
  'X-Forwarded-Host',
  'Host',
  'Expect',
  'Keep_Alive',
];
const CONNECTION_VALUES = [
  'keep-alive',
  'close',
  'Keep-Alive',
  'keep-alive, x-foo',
  ' close ,  KEEP-ALIVE ',
  'x-foo',
  'Date',
  'close,',
  ',',
  'upgrade',
  'close\xa0',
  'keep-alive\t',
  'te, close',
];
const VALUES = ['a', 'v 1', '', '\xe9\xff', 'x\ty', '1.2.3.4', '*/*', ' spaced  '];
const TARGETS = [
  '/',
  '/a/b?x=1&y',
  '/a//b',
  '/a/./c/../d?q',
  '/%7Euser/x',
  '/a%2fb',
  '/p?',
  'http://svc/x?y',
  'http://other/x',
];

function requestHead(rnd: () => number): string {
  const target = pick(rnd, TARGETS);
  let head = `${pick(rnd, ['GET', 'POST', 'PUT', 'DELETE'])} ${target} HTTP/1.1\r\n`;
  const n = Math.floor(rnd() * 8);
  let hosts = rnd() < 0.9 ? 1 : pick(rnd, [0, 2]);
  let body = '';
  for (let i = 0; i < n || hosts > 0; i++) {
    if (hosts > 0 && (i >= n || rnd() < 0.3)) {
      head += `${pick(rnd, ['Host', 'host', 'HOST'])}:${pick(rnd, [' svc', 'svc', ' svc ', 'other'])}\r\n`;
      hosts--;
      continue;
    }
    const name = pick(rnd, REQUEST_NAMES);
    if (name === 'Host') continue;
    if (name === 'Expect') {
      head += 'Expect: 100-continue\r\n';
      continue;
    }
    const value = /^connection$/i.test(name) ? pick(rnd, CONNECTION_VALUES) : pick(rnd, VALUES);
    head += `${name}:${pick(rnd, [' ', '', '  ', '\t'])}${value}\r\n`;
  }
  const framing = rnd();
  if (framing < 0.2) {
    head += 'Transfer-Encoding: chunked\r\n';
    body = '0\r\n\r\n';
  } else if (framing < 0.4) {
    head += 'Content-Length: 0\r\n';
  }
  return head + '\r\n' + body;
}

function parseRequest(bytes: Buffer): { head: RequestHead; pairs: string[] } {
  const p = new RequestHeadParser();
  const head = p.execute(bytes);
  if (head.kind !== 'head')
    throw new Error(`written head does not parse: ${JSON.stringify(bytes.toString('latin1'))}`);
  return { head, pairs: head.headers };
}

describe('request heads: bytes and strings agree', () => {
  it('writes the same upstream head both ways for 4,000 seeded heads, and takes each way often', () => {
    const rnd = prng(0x4ead5);
    const out = new HeadOut();
    const counts = { bytes: 0, strings: 0, refused: 0, rewrittenLine: 0 };
    for (let c = 0; c < 4000; c++) {
      const raw = requestHead(rnd);
      const parser = new RequestHeadParser({ headerStrings: false });
      const head = parser.execute(Buffer.from(raw, 'latin1'));
      if (head.kind !== 'head') continue; // refused by the parser: never rewritten
      expect(head.headers).toEqual([]);
      const target = normalizeTarget(head.target, head.method);
      if (target === null) continue;
      const spans = parser.spans();
      const drop = dropMarks(spans.count);
      const plain = plainRequestFields(spans, drop) && targetAuthority(head.target) === null;
      const license = rnd() < 0.8 ? LICENSE : null;
      const identity = rnd() < 0.9 ? IDENTITY : null;
      const chunked = head.framing === 'chunked';

      const uh = upstreamRequestHead(parser.fieldList(), ORIGIN, false, true);
      const authority = targetAuthority(head.target);
      const refused =
        typeof uh === 'string' ||
        uh.host === null ||
        (authority !== null && authority !== uh.host.toLowerCase());
      if (refused) {
        counts.refused++;
        expect(plain, `the byte way took a head the string way refuses: ${JSON.stringify(raw)}`).toBe(false);
        continue;
      }
      vouch(uh.headers, identity, license);
      const text = requestHeadText(head.method, target, uh.headers, chunked);
      if (!plain) {
        counts.strings++;
        continue;
      }
      counts.bytes++;
      const bytes = requestHeadBytes(
        out,
        spans,
        drop,
        head.method,
        head.target,
        target,
        forwardedLines(ORIGIN, identity),
        license === null ? '' : licenseLine(license),
        chunked,
      );
      const fromBytes = parseRequest(Buffer.from(bytes));
      out.settle(false);
      const fromText = parseRequest(Buffer.from(text, 'latin1'));
      if (!bytes.toString('latin1').startsWith(`${head.method} ${head.target} `)) counts.rewrittenLine++;
      expect(
        [fromBytes.head.method, fromBytes.head.target, fromBytes.pairs],
        `head ${JSON.stringify(raw)}`,
      ).toEqual([fromText.head.method, fromText.head.target, fromText.pairs]);
      expect(fromBytes.head.framing).toBe(head.framing);
      expect(fromBytes.head.keepAlive).toBe(true);
      // Nothing of a caller's copy of the proxy's own fields survives.
      const names = fromBytes.pairs
        .filter((_, i) => i % 2 === 0)
        .map((n) => n.toLowerCase().replace(/_/g, '-'));
      expect(names.filter((n) => n === 'x-portlicense-identity').length).toBe(identity === null ? 0 : 1);
      expect(names.filter((n) => n === 'x-forwarded-proto').length).toBe(1);
    }
    expect(counts.bytes).toBeGreaterThan(800);
    expect(counts.strings).toBeGreaterThan(300);
    expect(counts.refused).toBeGreaterThan(100);
    expect(counts.rewrittenLine).toBeGreaterThan(100);
  });

  it('takes the string way for what only it can do: join x-forwarded-for, drop what Connection names', () => {
    for (const extra of [
      'X-Forwarded-For: 1.1.1.1\r\n',
      'Connection: x-foo\r\nX-Foo: 1\r\n',
      'Connection: close\xa0\r\n',
    ]) {
      const parser = new RequestHeadParser({ headerStrings: false });
      const head = parser.execute(Buffer.from(`GET / HTTP/1.1\r\nHost: a\r\n${extra}\r\n`, 'latin1'));
      expect(head.kind).toBe('head');
      const spans = parser.spans();
      expect(plainRequestFields(spans, dropMarks(spans.count)), extra).toBe(false);
    }
  });
});

const RESPONSE_NAMES = [
  'Server',
  'X-Foo',
  'Date',
  'date',
  'Connection',
  'Keep-Alive',
  'TE',
  'Trailer',
  'Upgrade',
  'Proxy-Foo',
  'proxy-',
  'Proxy',
  'Proxyx',
  'Cache-Control',
  'Set-Cookie',
  'X-PortLicense-Deny-Reason',
];

function responseHead(rnd: () => number): string {
  let head = `${pick(rnd, ['HTTP/1.1 200 OK', 'HTTP/1.1 204', 'HTTP/1.1 404 Not \xe9Found', 'HTTP/1.0 200 OK', 'HTTP/1.1 500 '])}\r\n`;
  const n = Math.floor(rnd() * 8);
  for (let i = 0; i < n; i++) {
    const name = pick(rnd, RESPONSE_NAMES);
    const value = name === 'Connection' ? pick(rnd, CONNECTION_VALUES) : pick(rnd, VALUES);
    head += `${name}:${pick(rnd, [' ', '', '\t'])}${value}\r\n`;
  }
  const framing = rnd();
  if (framing < 0.3) head += 'Transfer-Encoding: chunked\r\n';
  else if (framing < 0.7) head += 'Content-Length: 3\r\n';
  return head + '\r\n';
}

describe('response heads: bytes and strings agree', () => {
  it('writes the same caller head both ways for 4,000 seeded heads, and takes each way often', () => {
    const rnd = prng(0x2e5b0);
    const out = new HeadOut();
    const counts = { bytes: 0, strings: 0 };
    for (let c = 0; c < 4000; c++) {
      const raw = responseHead(rnd);
      const parser = new ResponseHeadParser({ headerStrings: false });
      parser.begin('GET');
      const head = parser.execute(Buffer.from(raw, 'latin1'));
      if (head.kind !== 'head' || head.informational || head.framing === 'switch') continue;
      const close = rnd() < 0.3;
      const chunked = head.framing === 'chunked';
      const spans = parser.spans();
      const drop = dropMarks(spans.count);
      const plain = head.version === '1.1' ? plainResponseFields(spans, drop) : 0;
      const text = responseHeadText(
        head.status,
        head.reason,
        callerResponseHeaders(parser.fieldList(), close, DATE, true),
        chunked,
      );
      if (plain === 0) {
        counts.strings++;
        continue;
      }
      counts.bytes++;
      responseHeadBytes(out, spans, drop, (plain & RESPONSE_DATED) !== 0, DATE, close, chunked, 0);
      const bytes = Buffer.from(out.close());
      out.settle(false);
      const parse = (b: Buffer): ResponseHead => {
        const p = new ResponseHeadParser();
        p.begin('GET');
        const h = p.execute(b);
        if (h.kind !== 'head')
          throw new Error(`written head does not parse: ${JSON.stringify(b.toString('latin1'))}`);
        return h;
      };
      const a = parse(bytes);
      const b = parse(Buffer.from(text, 'latin1'));
      expect(
        [a.status, a.reason.trim(), a.headers, a.framing, a.keepAlive],
        `head ${JSON.stringify(raw)}`,
      ).toEqual([b.status, b.reason.trim(), b.headers, b.framing, b.keepAlive]);
    }
    expect(counts.bytes).toBeGreaterThan(1000);
    expect(counts.strings).toBeGreaterThan(300);
  });
});

describe('HeadOut', () => {
  it('reuses the bytes of a head the socket took, and never those of one it still holds', () => {
    const out = new HeadOut();
    out.open(16);
    out.text('first');
    const first = out.close();
    out.settle(true); // still queued somewhere: must stay as it is
    out.open(16);
    out.text('second');
    const second = out.close();
    out.settle(false); // taken: the next head may use these bytes
    out.open(16);
    out.text('THIRD!');
    const third = out.close();
    out.settle(false);
    expect(first.toString()).toBe('first');
    expect(second.toString()).toBe('THIRD!'); // the same bytes, reused
    expect(third.toString()).toBe('THIRD!');
    // A head larger than the buffer gets a buffer of its own.
    out.open(200_000);
    const big = 'x'.repeat(200_000);
    out.text(big);
    expect(out.close().toString()).toBe(big);
    out.settle(false);
    expect(first.toString()).toBe('first');
  });

  it('keeps a head that a socket still holds while later heads are written and reused', async () => {
    // What the fast lane does after each write: settle(socket.writableLength > 0). A peer that does
    // not read makes the socket keep the head; the heads written after it must not touch its bytes.
    const got: Buffer[] = [];
    let peer: Socket | undefined;
    const server = await startTcpServer((s) => {
      peer = s;
      s.pause();
      s.on('data', (d: Buffer) => got.push(d));
    });
    const socket = await tcpConnect(server.port);
    try {
      await waitFor(() => peer !== undefined);
      const fill = Buffer.alloc(32 << 20, 0x2e);
      socket.write(fill); // more than the kernel takes while nobody reads
      expect(socket.writableLength).toBeGreaterThan(0);
      const out = new HeadOut();
      out.open(64);
      out.text('HTTP/1.1 200 OK\r\nx-held: yes\r\n\r\n');
      socket.write(out.close());
      out.settle(socket.writableLength > 0);
      for (let i = 0; i < 100; i++) {
        out.open(64);
        out.text(`HTTP/1.1 500 NO\r\nx-other: ${i}\r\n\r\n`);
        out.close();
        out.settle(false); // written and taken: its bytes are reused by the next one
      }
      peer!.resume();
      const head = 'HTTP/1.1 200 OK\r\nx-held: yes\r\n\r\n';
      await waitFor(() => got.reduce((n, d) => n + d.length, 0) >= fill.length + head.length, {
        timeoutMs: 20_000,
        what: 'every byte',
      });
      expect(Buffer.concat(got).subarray(fill.length).toString('latin1')).toBe(head);
    } finally {
      socket.destroy();
      await server.close();
    }
  });
});
