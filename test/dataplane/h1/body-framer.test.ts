/**
 * Unit tests of the body framer: where a body ends (length, chunked, close), every chunked rule
 * it enforces, and the same answer whatever the split of the bytes.
 */
import { describe, expect, it } from 'vitest';
import { BodyFramer, type BodyFraming } from '../../../src/dataplane/h1/index.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Feed `s` in chunks of `step` bytes: bytes accepted, done, error code. */
function frame(framing: BodyFraming, s: string, step = s.length || 1, opts = {}, length = -1) {
  const f = new BodyFramer(opts);
  f.begin(framing, length);
  const buf = b(s);
  let used = 0;
  for (let off = 0; off < buf.length && !f.done; off += step) {
    const end = Math.min(buf.length, off + step);
    const n = f.execute(buf, off, end);
    if (n < 0) return { used, done: false, error: f.error!.code };
    used += n;
    if (n < end - off) break;
  }
  return { used, done: f.done, error: undefined };
}

const CHUNKED = '5;a=b;c="d \\" e"\r\nhello\r\n0A\r\n0123456789\r\n0\r\nX-T: v\r\nY:\r\n\r\n';

describe('body framer', () => {
  it('none is complete at once and takes nothing', () => {
    expect(frame('none', 'GET / HTTP/1.1\r\n\r\n')).toEqual({ used: 0, done: true, error: undefined });
  });

  it('length takes exactly N bytes and leaves the next message', () => {
    expect(frame('length', 'helloGET', undefined, {}, 5)).toEqual({ used: 5, done: true, error: undefined });
    expect(frame('length', 'hel', undefined, {}, 5)).toEqual({ used: 3, done: false, error: undefined });
    expect(frame('length', 'x', undefined, {}, 0)).toEqual({ used: 0, done: true, error: undefined });
  });

  it('close takes everything and is complete only at end of input', () => {
    const f = new BodyFramer();
    f.begin('close');
    expect(f.execute(b('abc'))).toBe(3);
    expect(f.done).toBe(false);
    expect(f.finish()).toBe(true);
  });

  it('chunked: finds the end after the trailers, without copying, at every split', () => {
    const s = `${CHUNKED}GET /next`;
    for (let step = 1; step <= s.length; step++) {
      expect(frame('chunked', s, step), `step ${step}`).toEqual({
        used: CHUNKED.length,
        done: true,
        error: undefined,
      });
    }
  });

  it('an unfinished chunked body is not done', () => {
    expect(frame('chunked', '5\r\nhel')).toEqual({ used: 6, done: false, error: undefined });
    expect(frame('chunked', '0\r\n')).toEqual({ used: 3, done: false, error: undefined });
  });

  const bad: Array<[string, string, string]> = [
    ['size not hex', 'zz\r\nab\r\n0\r\n\r\n', 'invalid_chunk_size'],
    ['empty size', '\r\nab\r\n0\r\n\r\n', 'invalid_chunk_size'],
    ['size with +', '+2\r\nab\r\n0\r\n\r\n', 'invalid_chunk_size'],
    ['size 0x', '0x2\r\nab\r\n0\r\n\r\n', 'invalid_chunk_size'],
    ['space after size', '2 \r\nab\r\n0\r\n\r\n', 'invalid_chunk_size'],
    ['size over 2^53', '20000000000000\r\n', 'chunk_size_overflow'],
    ['size over 2^64', 'ffffffffffffffffff\r\nab\r\n0\r\n\r\n', 'chunk_size_overflow'],
    ['size line LF only', '2\nab\r\n0\r\n\r\n', 'invalid_chunk_size'],
    ['size line CR only', '2\rab\r\n0\r\n\r\n', 'invalid_line_ending'],
    ['data longer than size', '2\r\nabcd\r\n0\r\n\r\n', 'missing_chunk_crlf'],
    ['data then LF', '2\r\nab\n0\r\n\r\n', 'missing_chunk_crlf'],
    ['ext empty', '2;\r\nab\r\n0\r\n\r\n', 'invalid_chunk_extension'],
    ['ext space before ;', '2 ;a\r\nab\r\n0\r\n\r\n', 'invalid_chunk_size'],
    ['ext space after ;', '2; a\r\nab\r\n0\r\n\r\n', 'invalid_chunk_extension'],
    ['ext spaces around =', '2;a = b\r\nab\r\n0\r\n\r\n', 'invalid_chunk_extension'],
    ['ext empty name', '2;=b\r\nab\r\n0\r\n\r\n', 'invalid_chunk_extension'],
    ['ext empty value', '2;a=\r\nab\r\n0\r\n\r\n', 'invalid_chunk_extension'],
    ['ext CTL in quoted', '2;a="\x01"\r\nab\r\n0\r\n\r\n', 'invalid_chunk_extension'],
    ['ext junk after quote', '2;a="b"c\r\nab\r\n0\r\n\r\n', 'invalid_chunk_extension'],
    ['ext obs-text unquoted', '2;a=\xe9\r\nab\r\n0\r\n\r\n', 'invalid_chunk_extension'],
    ['ext bare CR', '2;a\rb\r\nab\r\n0\r\n\r\n', 'invalid_line_ending'],
    ['trailer obs-fold', '0\r\nX: a\r\n b\r\n\r\n', 'invalid_trailer'],
    ['trailer space before colon', '0\r\nX : a\r\n\r\n', 'invalid_trailer'],
    ['trailer CTL', '0\r\nX: \x01\r\n\r\n', 'invalid_trailer'],
    ['trailer bare LF', '0\r\nX: a\n\r\n', 'invalid_line_ending'],
    ['final bare LF', '0\r\n\n', 'invalid_line_ending'],
    ['trailer Content-Length', '0\r\ncontent-LENGTH: 1\r\n\r\n', 'forbidden_trailer'],
    ['trailer Transfer-Encoding', '0\r\nTransfer-Encoding: chunked\r\n\r\n', 'forbidden_trailer'],
    ['trailer Connection', '0\r\nConnection: close\r\n\r\n', 'forbidden_trailer'],
  ];
  for (const [name, s, want] of bad) {
    it(`refuses ${name} (${want}) at every split`, () => {
      for (let step = 1; step <= s.length; step++)
        expect(frame('chunked', s, step).error, `step ${step}`).toBe(want);
    });
  }

  it('allows trailer names that only start like forbidden ones', () => {
    expect(frame('chunked', '0\r\nContent-Lengthy: 1\r\nConnectio: x\r\n\r\n').done).toBe(true);
  });

  it('refuses the extra trailer names it is given, in any case, with _ for -, a * as any suffix', () => {
    const opts = { forbidTrailers: ['x-own-*', 'x-fwd'] };
    const refused = ['X-Own-Identity', 'x_own_license', 'X-OWN-', 'x-fwd', 'X_Fwd'];
    for (const name of refused) {
      const s = `0\r\n${name}: v\r\n\r\n`;
      for (let step = 1; step <= s.length; step++)
        expect(frame('chunked', s, step, opts).error, `${name} step ${step}`).toBe('forbidden_trailer');
    }
    for (const name of ['x-own', 'x-ow-n', 'x-fwd-x', 'x-fw', 'y-own-a', 'Content_Length'])
      expect(frame('chunked', `0\r\n${name}: v\r\n\r\n`, 1, opts).done, name).toBe(true);
    // The built-in names keep their rule: exact, no _ folding. Without the option, any other name is fine.
    expect(frame('chunked', '0\r\nCONNECTION: x\r\n\r\n', 1, opts).error).toBe('forbidden_trailer');
    expect(frame('chunked', '0\r\nX-Own-Identity: v\r\n\r\n').done).toBe(true);
    expect(() => new BodyFramer({ forbidTrailers: Array.from({ length: 28 }, (_, i) => `n${i}`) })).toThrow(
      RangeError,
    );
  });

  it('limits the chunk-size line and the trailer section', () => {
    expect(
      frame('chunked', `1;e=${'x'.repeat(100)}\r\na\r\n0\r\n\r\n`, 7, { maxChunkLineSize: 64 }).error,
    ).toBe('chunk_line_too_long');
    expect(frame('chunked', `0\r\nT: ${'x'.repeat(100)}\r\n\r\n`, 7, { maxTrailerSize: 64 }).error).toBe(
      'trailers_too_large',
    );
    expect(frame('chunked', `0\r\nT: ${'x'.repeat(50)}\r\n\r\n`, 7, { maxTrailerSize: 64 }).done).toBe(true);
  });

  it('on error, says -1 for the whole call, and stays failed', () => {
    const f = new BodyFramer();
    f.begin('chunked');
    expect(f.execute(b('2\r\nab\r\nzz'))).toBe(-1);
    expect(f.execute(b('0\r\n\r\n'))).toBe(-1);
    f.begin('length', 1);
    expect(f.execute(b('xy'))).toBe(1);
    expect(f.error).toBeUndefined();
  });
});
