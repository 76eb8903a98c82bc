/**
 * Unit tests of the response head parser: status line, headers, and the body framing of
 * RFC 9112 §6.3 from the request method and the status.
 */
import { describe, expect, it } from 'vitest';
import { ResponseHeadParser, type ResponseHead } from '../../../src/dataplane/h1/index.js';

function parse(s: string, method = 'GET', opts = {}): ResponseHead | string {
  const p = new ResponseHeadParser(opts);
  p.begin(method);
  const r = p.execute(Buffer.from(s, 'latin1'));
  if (r.kind === 'more') return 'more';
  return r.kind === 'error' ? r.code : r;
}

describe('response heads', () => {
  it('parses status, reason, headers and where the head ends', () => {
    const s = 'HTTP/1.1 404 Not  Found\r\nContent-Length: 3\r\nX:  a \r\n\r\nabc';
    expect(parse(s)).toMatchObject({
      version: '1.1',
      status: 404,
      reason: 'Not  Found',
      headers: ['Content-Length', '3', 'X', 'a'],
      framing: 'length',
      contentLength: 3,
      keepAlive: true,
      end: s.length - 3,
    });
    expect(parse('HTTP/1.1 200\r\n\r\n')).toMatchObject({ status: 200, reason: '' });
  });

  it('frames per RFC 9112 §6.3', () => {
    const f = (s: string, method = 'GET'): string => {
      const r = parse(s, method);
      return typeof r === 'string' ? r : r.framing;
    };
    expect(f('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n', 'HEAD')).toBe('none');
    expect(f('HTTP/1.1 204 No\r\nContent-Length: 3\r\n\r\n')).toBe('none');
    expect(f('HTTP/1.1 304 No\r\nTransfer-Encoding: chunked\r\n\r\n')).toBe('none');
    expect(f('HTTP/1.1 103 Early\r\n\r\n')).toBe('none');
    expect(f('HTTP/1.1 101 S\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n')).toBe('switch');
    expect(f('HTTP/1.1 200 OK\r\n\r\n', 'CONNECT')).toBe('switch');
    expect(f('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n')).toBe('chunked');
    expect(f('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n')).toBe('close');
    expect(f('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n')).toBe('length');
    expect(f('HTTP/1.1 200 OK\r\n\r\n')).toBe('close');
  });

  it("reads the upstream's Keep-Alive timeout hint, in seconds", () => {
    const t = (fields: string): number | string => {
      const r = parse(`HTTP/1.1 200 OK\r\nContent-Length: 0\r\n${fields}\r\n`);
      return typeof r === 'string' ? r : r.keepAliveTimeout;
    };
    expect(t('')).toBe(-1);
    expect(t('Keep-Alive: timeout=5, max=100\r\n')).toBe(5);
    expect(t('keep-alive: max=100, TIMEOUT = 7 \r\n')).toBe(7);
    expect(t('Keep-Alive: timeout="3"\r\n')).toBe(3);
    expect(t('Keep-Alive: timeout=0\r\n')).toBe(0);
    // The smallest of several fields; a value that is not a number does not count.
    expect(t('Keep-Alive: timeout=9\r\nKeep-Alive: timeout=4\r\n')).toBe(4);
    expect(t('Keep-Alive: timeout=soon\r\nKeep-Alive: timeout=6\r\n')).toBe(6);
    for (const bad of [
      'timeout',
      'timeout=',
      'timeout=-1',
      'timeout=1.5',
      'timeouts=5',
      'max=5',
      'timeout="5',
    ]) {
      expect(t(`Keep-Alive: ${bad}\r\n`), bad).toBe(-1);
    }
    // Clamped, not overflowing; and nothing to say for a connection that is not kept.
    expect(t('Keep-Alive: timeout=99999999999999999999999\r\n')).toBe(86_400);
    expect(t('Keep-Alive: timeout=5\r\nConnection: close\r\n')).toBe(-1);
  });

  it('marks informational heads and keep-alive', () => {
    expect(parse('HTTP/1.1 100 Continue\r\n\r\n')).toMatchObject({ informational: true, keepAlive: true });
    expect(parse('HTTP/1.1 200 OK\r\n\r\n')).toMatchObject({ keepAlive: false });
    expect(parse('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n')).toMatchObject({ keepAlive: false });
    expect(parse('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n')).toMatchObject({
      keepAlive: true,
    });
    expect(parse('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')).toMatchObject({
      keepAlive: false,
    });
  });

  const bad: Array<[string, string, string]> = [
    [
      'CL + TE',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
      'content_length_with_transfer_encoding',
    ],
    [
      'CL + TE on HEAD',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n',
      'content_length_with_transfer_encoding',
    ],
    [
      'differing CLs',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n',
      'duplicate_content_length',
    ],
    [
      'equal CLs',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n',
      'duplicate_content_length',
    ],
    ['CL list', 'HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n', 'invalid_content_length'],
    ['two-digit status', 'HTTP/1.1 20 OK\r\n\r\n', 'invalid_status_line'],
    ['four-digit status', 'HTTP/1.1 2000 OK\r\n\r\n', 'invalid_status_line'],
    ['status 600', 'HTTP/1.1 600 OK\r\n\r\n', 'invalid_status_line'],
    ['status 099', 'HTTP/1.1 099 OK\r\n\r\n', 'invalid_status_line'],
    ['CTL in reason', 'HTTP/1.1 200 O\x01K\r\n\r\n', 'invalid_status_line'],
    ['double space before status', 'HTTP/1.1  200 OK\r\n\r\n', 'invalid_status_line'],
    ['HTTP/2.0', 'HTTP/2.0 200 OK\r\n\r\n', 'unsupported_version'],
    ['lowercase', 'http/1.1 200 OK\r\n\r\n', 'invalid_version'],
    ['bare LF', 'HTTP/1.1 200 OK\nX: y\r\n\r\n', 'invalid_status_line'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n', 'obs_fold'],
    ['TE on 1.0', 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'transfer_encoding_http10'],
    [
      'chunked twice',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n',
      'invalid_transfer_encoding',
    ],
    ['101 without Upgrade', 'HTTP/1.1 101 S\r\n\r\n', 'invalid_upgrade'],
    ['1xx closing', 'HTTP/1.1 100 C\r\nConnection: close\r\n\r\n', 'interim_response_close'],
  ];
  for (const [name, s, want] of bad) it(`refuses ${name}`, () => expect(parse(s)).toBe(want));

  it('has a 64 KiB head limit by default', () => {
    const head = (n: number): string => `HTTP/1.1 200 OK\r\nX: ${'v'.repeat(n)}\r\n\r\n`;
    const size = head(0).length;
    expect(parse(head(65_536 - size))).toMatchObject({ status: 200 });
    expect(parse(head(65_537 - size))).toBe('head_too_large');
  });

  it('gives the same head at every split point, and parses a final head after an informational one', () => {
    const s = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\n\r\nok';
    const buf = Buffer.from(s, 'latin1');
    for (let k = 0; k <= buf.length; k++) {
      const p = new ResponseHeadParser();
      p.begin('GET');
      const heads: ResponseHead[] = [];
      for (const [chunk, base] of [
        [buf.subarray(0, k), 0],
        [buf.subarray(k), k],
      ] as const) {
        let off = 0;
        while (off < chunk.length) {
          const r = p.execute(chunk, off);
          if (r.kind !== 'head') break;
          heads.push({ ...r, end: base + r.end });
          off = r.end;
          if (!r.informational) break;
        }
      }
      expect(
        heads.map((h) => [h.status, h.headers, h.end]),
        `split ${k}`,
      ).toEqual([
        [100, [], 25],
        [200, ['Content-Length', '2', 'X', 'y'], buf.length - 2],
      ]);
    }
  });
});
