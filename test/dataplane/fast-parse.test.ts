/**
 * The fast lane's parsers (src/dataplane/fast-parse.ts): the narrow request grammar (everything
 * outside it is INVALID, so the full path's llhttp decides), response framing per RFC 9112 §6.3,
 * and the body framer, fed whole and at every split point.
 */
import { describe, expect, it } from 'vitest';
import {
  BodyFramer,
  INVALID,
  NEED_MORE,
  RequestHeadParser,
  ResponseHeadParser,
  type BodyKind,
} from '../../src/dataplane/fast-parse.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Feed `text` in the given pieces; the result of the last push and the parser. */
function feed(text: string, cuts: number[], max = 16_384): { end: number; p: RequestHeadParser } {
  const p = new RequestHeadParser(max);
  let at = 0;
  let end = NEED_MORE;
  for (const cut of [...cuts, text.length]) {
    if (cut <= at) continue;
    end = p.push(b(text.slice(at, cut)));
    at = cut;
    if (end !== NEED_MORE) break;
  }
  return { end, p };
}

const GOOD =
  'POST /api/orders?id=7 HTTP/1.1\r\nHost: orders\r\nContent-Length: 5\r\nX-Empty:\r\nX-Pad: \t v \t\r\n\r\nhello';

describe('RequestHeadParser', () => {
  it('parses a head and says where it ends, whatever the pieces', () => {
    const headEnd = GOOD.indexOf('\r\n\r\n') + 4;
    for (let cut = 1; cut < GOOD.length; cut++) {
      const { end, p } = feed(GOOD, [cut]);
      // The end offset is relative to the piece that completed the head.
      expect(end, `cut ${cut}`).toBe(cut >= headEnd ? headEnd : headEnd - cut);
      expect(p.result()).toMatchObject({
        method: 'POST',
        target: '/api/orders?id=7',
        versionMinor: 1,
        rawHeaders: ['Host', 'orders', 'Content-Length', '5', 'X-Empty', '', 'X-Pad', 'v'],
        contentLength: 5,
        chunked: false,
        keepAlive: true,
        upgrade: false,
        expect: false,
      });
    }
    const bytewise = feed(
      GOOD,
      Array.from({ length: GOOD.length }, (_, i) => i),
    );
    expect(bytewise.p.result().rawHeaders).toHaveLength(8);
  });

  it('reads keep-alive, Upgrade, Expect and chunking from the headers', () => {
    const r = (extra: string, v = '1'): ReturnType<RequestHeadParser['result']> => {
      const { end, p } = feed(`GET / HTTP/1.${v}\r\nHost: a\r\n${extra}\r\n`, []);
      expect(end).toBeGreaterThan(0);
      return p.result();
    };
    expect(r('Connection: close\r\n').keepAlive).toBe(false);
    expect(r('Connection: Keep-Alive, CLOSE\r\n').keepAlive).toBe(false);
    expect(r('', '0').keepAlive).toBe(false);
    expect(r('Connection: keep-alive\r\n', '0').keepAlive).toBe(true);
    expect(r('Connection: Upgrade\r\nUpgrade: websocket\r\n').upgrade).toBe(true);
    expect(r('Expect: 100-continue\r\n').expect).toBe(true);
    expect(r('Transfer-Encoding: chunked\r\n').chunked).toBe(true);
    expect(r('').contentLength).toBe(-1);
  });

  const OUTSIDE: Array<[string, string]> = [
    ['a bare LF', 'GET / HTTP/1.1\nHost: a\n\n'],
    ['a bare LF after a good line', 'GET / HTTP/1.1\r\nHost: a\n\r\n'],
    ['a bare CR', 'GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n'],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n'],
    ['a space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n'],
    ['an empty header name', 'GET / HTTP/1.1\r\n: a\r\n\r\n'],
    ['a NUL in a value', 'GET / HTTP/1.1\r\nX: a\0b\r\n\r\n'],
    ['obs-text in a value', 'GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n'],
    ['two spaces in the request line', 'GET  / HTTP/1.1\r\n\r\n'],
    ['a lower-case version', 'GET / http/1.1\r\n\r\n'],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\n\r\n'],
    ['HTTP/1.2', 'GET / HTTP/1.2\r\n\r\n'],
    ['no version', 'GET /\r\n\r\n'],
    ['a control byte in the target', 'GET /a\x01 HTTP/1.1\r\n\r\n'],
    ['a non-token method', 'G(T / HTTP/1.1\r\n\r\n'],
    ['two Content-Lengths', 'POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n'],
    ['a Content-Length list', 'POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n'],
    ['a signed Content-Length', 'POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n'],
    ['an empty Content-Length', 'POST / HTTP/1.1\r\nContent-Length:\r\n\r\n'],
    ['a 16-digit Content-Length', 'POST / HTTP/1.1\r\nContent-Length: 1000000000000000\r\n\r\n'],
  ];
  for (const [name, text] of OUTSIDE)
    it(`refuses ${name} (INVALID: the full path decides)`, () => {
      expect(feed(text, []).end).toBe(INVALID);
    });

  it('refuses a head over the size limit, split or whole, and is usable again after', () => {
    const big = `GET / HTTP/1.1\r\nX: ${'a'.repeat(200)}\r\n\r\n`;
    expect(feed(big, [], 100).end).toBe(INVALID);
    expect(feed(big, [50, 90, 120], 100).end).toBe(INVALID);
    const p = new RequestHeadParser(100);
    expect(p.push(b(big))).toBe(INVALID);
    expect(p.push(b('GET / HTTP/1.1\r\n\r\n'))).toBe(18);
  });

  it('parses consecutive heads with one parser', () => {
    const p = new RequestHeadParser(1_000);
    expect(p.push(b('GET /1 HTTP/1.1\r\n\r\n'))).toBe(19);
    expect(p.result().target).toBe('/1');
    expect(p.push(b('GET /2 HTTP/1.1\r\n'))).toBe(NEED_MORE);
    expect(p.push(b('\r\n'))).toBe(2);
    expect(p.result().target).toBe('/2');
  });
});

describe('ResponseHeadParser', () => {
  const parse = (text: string, method = 'GET'): ReturnType<ResponseHeadParser['result']> | number => {
    const p = new ResponseHeadParser();
    p.reset(method);
    const end = p.push(b(text));
    return end < 0 ? end : p.result();
  };

  it.each<[string, string, BodyKind, boolean]>([
    ['Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'length', true],
    ['Content-Length: 0', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'none', true],
    ['chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 'chunked', true],
    ['neither: until close', 'HTTP/1.1 200 OK\r\n\r\n', 'close', false],
    ['204', 'HTTP/1.1 204 No Content\r\n\r\n', 'none', true],
    ['304 with a length', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n', 'none', true],
    ['101', 'HTTP/1.1 101 Switching Protocols\r\n\r\n', 'switch', true],
    [
      'Connection: close',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n',
      'length',
      false,
    ],
    ['HTTP/1.0', 'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n', 'length', false],
    ['no reason phrase', 'HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n', 'length', true],
  ])('%s', (_name, text, kind, keepAlive) => {
    expect(parse(text)).toMatchObject({ kind, keepAlive });
  });

  it('has no body for HEAD whatever the headers say', () => {
    expect(parse('HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n', 'HEAD')).toMatchObject({ kind: 'none' });
  });

  it.each([
    ['CL with TE', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['differing CLs', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'],
    ['TE not ending in chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n'],
    ['a two-digit status', 'HTTP/1.1 20 OK\r\n\r\n'],
    ['no space after the status', 'HTTP/1.1 200OK\r\n\r\n'],
    ['a folded header', 'HTTP/1.1 200 OK\r\nX: 1\r\n 2\r\n\r\n'],
    ['not HTTP', 'ICY 200 OK\r\n\r\n'],
  ])('refuses %s', (_name, text) => {
    expect(parse(text)).toBe(INVALID);
  });
});

describe('BodyFramer', () => {
  /** Push `text` in pieces of `step` bytes; consumed bytes, payload and whether done. */
  function frame(kind: BodyKind, length: number, text: string, step: number): [number, number, boolean] {
    const f = new BodyFramer();
    f.start(kind, length);
    let consumed = 0;
    for (let i = 0; i < text.length; i += step) {
      const n = f.push(b(text.slice(i, i + step)));
      if (n < 0) return [n, f.payload, f.done];
      consumed += n;
      if (f.done) break;
    }
    return [consumed, f.payload, f.done];
  }

  const CHUNKED = '3;a=b\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n';

  it('follows a chunked body with extensions and trailers, at every piece size, and stops at its end', () => {
    for (let step = 1; step <= CHUNKED.length; step++)
      expect(frame('chunked', 0, `${CHUNKED}NEXT`, step), `step ${step}`).toEqual([CHUNKED.length, 19, true]);
  });

  it('follows Content-Length bodies and leaves what follows', () => {
    expect(frame('length', 5, 'helloNEXT', 1)).toEqual([5, 5, true]);
    expect(frame('length', 5, 'helloNEXT', 9)).toEqual([5, 5, true]);
    expect(frame('close', 0, 'all of it', 4)).toEqual([9, 9, false]);
  });

  it.each([
    ['a non-hex size', 'zz\r\n'],
    ['an empty size', '\r\n'],
    ['a size with a bare LF', '3\nabc\r\n0\r\n\r\n'],
    ['data longer than its size', '3\r\nabcd\r\n0\r\n\r\n'],
    ['a size past 2^52', '10000000000000\r\n'],
    ['a control byte in an extension', '3;a\x01\r\nabc\r\n'],
    ['a bad trailer line start', '0\r\n:x\r\n\r\n'],
  ])('refuses %s', (_name, text) => {
    expect(frame('chunked', 0, text, text.length)[0]).toBe(-1);
    expect(frame('chunked', 0, text, 1)[0]).toBe(-1);
  });
});
