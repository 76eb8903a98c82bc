/**
 * Unit tests of the request head parser: each rule, the head as split by the network at any
 * point (byte by byte, and at every split point), and the limits.
 */
import { METHODS as NODE_METHODS } from 'node:http';
import { describe, expect, it } from 'vitest';
import { METHODS, NEED_MORE, RequestHeadParser, type RequestHead } from '../../../src/dataplane/h1/index.js';
import { driveRequests, payload } from './drive.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

function parse(s: string, opts = {}): RequestHead | string {
  const r = new RequestHeadParser(opts).execute(b(s));
  if (r.kind === 'more') return 'more';
  return r.kind === 'error' ? r.code : r;
}

function code(s: string, opts = {}): string {
  const r = parse(s, opts);
  return typeof r === 'string' ? r : 'ok';
}

/** Everything a driven connection yields, minus offsets that depend on how the bytes were split. */
function summary(chunks: Buffer[]): unknown {
  const o = driveRequests(chunks, { maxHeaderSize: 1024 });
  // Body bytes before a body error may have been accepted in an earlier chunk: compare the error, not them.
  const last = o.errorInBody ? o.messages.length - 1 : -1;
  return {
    messages: o.messages.map((m, i) => ({
      ...m.head,
      end: 0,
      body: i === last ? '' : payload(m),
      complete: m.complete,
    })),
    error: o.error?.code,
    errorInBody: o.errorInBody,
    stop: o.stop,
  };
}

function splits(s: string): Buffer[][] {
  const all = b(s);
  const out: Buffer[][] = [[...all].map((x) => Buffer.from([x]))];
  for (let k = 1; k < all.length; k++) out.push([all.subarray(0, k), all.subarray(k)]);
  return out;
}

describe('request heads: what is parsed', () => {
  it('parses method, target, version, headers in order with trimmed values, and where the head ends', () => {
    const s = 'GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A:  v 1 \t\r\nx-a:\r\nAccept: */*\r\n\r\nBODY';
    const h = parse(s) as RequestHead;
    expect(h).toMatchObject({
      kind: 'head',
      method: 'GET',
      target: '/a?b=1',
      version: '1.1',
      headers: ['Host', 'x', 'X-A', 'v 1', 'x-a', '', 'Accept', '*/*'],
      framing: 'none',
      contentLength: -1,
      keepAlive: true,
      upgrade: false,
      expectContinue: false,
    });
    expect(h.end).toBe(s.indexOf('BODY'));
    expect(h.size).toBe(h.end);
  });

  it('reads obs-text in values as latin1, like node', () => {
    expect((parse('GET / HTTP/1.1\r\nX: \xe9\xff\r\n\r\n') as RequestHead).headers).toEqual([
      'X',
      '\xe9\xff',
    ]);
  });

  it('starts at the given offset and skips empty lines before the request line', () => {
    const buf = b('junk\r\n\r\nGET / HTTP/1.1\r\n\r\n');
    const h = new RequestHeadParser().execute(buf, 4) as RequestHead;
    expect(h.method).toBe('GET');
    expect(h.end).toBe(buf.length);
  });

  it('knows the body framing: none, Content-Length (leading zeros, trailing spaces), chunked last', () => {
    expect(parse('POST / HTTP/1.1\r\nContent-Length: 007  \r\n\r\n')).toMatchObject({
      framing: 'length',
      contentLength: 7,
    });
    expect(parse('POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n')).toMatchObject({
      framing: 'length',
      contentLength: 0,
    });
    expect(parse('POST / HTTP/1.1\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n')).toMatchObject({
      framing: 'chunked',
    });
    expect(
      parse('POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n'),
    ).toMatchObject({
      framing: 'chunked',
    });
  });

  it('keep-alive: HTTP/1.1 unless close, HTTP/1.0 only with keep-alive; Connection is a token list', () => {
    expect(parse('GET / HTTP/1.1\r\n\r\n')).toMatchObject({ keepAlive: true });
    expect(parse('GET / HTTP/1.1\r\nConnection: foo, CLOSE\r\n\r\n')).toMatchObject({ keepAlive: false });
    expect(parse('GET / HTTP/1.1\r\nConnection: closed\r\n\r\n')).toMatchObject({ keepAlive: true });
    expect(parse('GET / HTTP/1.0\r\n\r\n')).toMatchObject({ keepAlive: false, version: '1.0' });
    expect(parse('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n')).toMatchObject({ keepAlive: true });
    expect(parse('GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n')).toMatchObject({
      keepAlive: false,
    });
    expect(parse('GET / HTTP/1.0\r\nConnection: keep-alive\t\r\n\r\n')).toMatchObject({ keepAlive: false });
  });

  it('upgrade needs both Upgrade and Connection: upgrade; Expect: 100-continue is flagged on HTTP/1.1', () => {
    expect(parse('GET / HTTP/1.1\r\nUpgrade: ws\r\nConnection: Upgrade\r\n\r\n')).toMatchObject({
      upgrade: true,
      hasUpgrade: true,
    });
    expect(parse('GET / HTTP/1.1\r\nUpgrade: ws\r\n\r\n')).toMatchObject({
      upgrade: false,
      hasUpgrade: true,
    });
    expect(parse('PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n')).toMatchObject({
      expectContinue: true,
    });
    expect(parse('PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n')).toMatchObject({ expectContinue: false });
    expect(code('PUT / HTTP/1.1\r\nExpect: foo\r\n\r\n')).toBe('unsupported_expect');
  });

  it('accepts the target forms and refuses the others', () => {
    for (const ok of [
      'GET /',
      'GET /a"<>{}|\\^`#f',
      'GET http://h:1/p?q',
      'GET http://h',
      'OPTIONS *',
      'CONNECT h:443',
    ])
      expect(code(`${ok} HTTP/1.1\r\n\r\n`), ok).toBe('ok');
    for (const bad of [
      'GET x',
      'GET ?',
      'GET *',
      'OPTIONS *x',
      'GET h-t+p://x/',
      'GET http:x',
      'CONNECT /a',
      'CONNECT a#b',
    ])
      expect(code(`${bad} HTTP/1.1\r\n\r\n`), bad).toBe('invalid_target');
    expect(code('GET /a\x7fb HTTP/1.1\r\n\r\n')).toBe('invalid_target');
    expect(code('GET /a\x80 HTTP/1.1\r\n\r\n')).toBe('invalid_target');
  });

  it("knows exactly node's methods (http.METHODS), case-sensitive, refused at the first impossible byte", () => {
    expect([...METHODS].sort()).toEqual([...NODE_METHODS].sort());
    for (const m of METHODS)
      expect(code(`${m} ${m === 'CONNECT' ? 'h:1' : '/'} HTTP/1.1\r\n\r\n`), m).toBe('ok');
    expect(code('get / HTTP/1.1\r\n\r\n')).toBe('invalid_method');
    expect(code('GETS / HTTP/1.1\r\n\r\n')).toBe('invalid_method');
    expect(code('GE / HTTP/1.1\r\n\r\n')).toBe('invalid_method');
    expect(code('PRI * HTTP/2.0\r\n\r\n')).toBe('invalid_method');
    expect(code('GX')).toBe('invalid_method');
  });
});

describe('request heads: what is refused', () => {
  const cases: Array<[string, string, string]> = [
    [
      'CL + TE',
      'POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
      'content_length_with_transfer_encoding',
    ],
    [
      'TE + CL',
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n',
      'content_length_with_transfer_encoding',
    ],
    [
      'two equal CL',
      'POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n',
      'duplicate_content_length',
    ],
    ['CL list', 'POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n', 'invalid_content_length'],
    ['CL +', 'POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n', 'invalid_content_length'],
    ['CL hex', 'POST / HTTP/1.1\r\nContent-Length: 0x1\r\n\r\n', 'invalid_content_length'],
    ['CL empty', 'POST / HTTP/1.1\r\nContent-Length: \r\n\r\n', 'invalid_content_length'],
    ['CL trailing tab', 'POST / HTTP/1.1\r\nContent-Length: 1\t\r\n\r\n', 'invalid_content_length'],
    ['CL 2^53', 'POST / HTTP/1.1\r\nContent-Length: 9007199254740992\r\n\r\n', 'content_length_overflow'],
    ['TE not chunked', 'POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n', 'invalid_transfer_encoding'],
    [
      'TE chunked not last',
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n',
      'invalid_transfer_encoding',
    ],
    [
      'TE chunked twice',
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
      'invalid_transfer_encoding',
    ],
    ['TE chunked,', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n', 'invalid_transfer_encoding'],
    [
      'TE chunked tab',
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\n\r\n',
      'invalid_transfer_encoding',
    ],
    ['TE empty', 'POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n', 'invalid_transfer_encoding'],
    ['TE on 1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 'transfer_encoding_http10'],
    ['obs-fold', 'GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n', 'obs_fold'],
    ['space first line', 'GET / HTTP/1.1\r\n X: a\r\n\r\n', 'invalid_header_name'],
    ['space before colon', 'GET / HTTP/1.1\r\nContent-Length : 1\r\n\r\n', 'invalid_header_name'],
    ['no colon', 'GET / HTTP/1.1\r\nX\r\n\r\n', 'invalid_header_name'],
    ['empty name', 'GET / HTTP/1.1\r\n: x\r\n\r\n', 'invalid_header_name'],
    ['bad name char', 'GET / HTTP/1.1\r\nX@: x\r\n\r\n', 'invalid_header_name'],
    ['obs-text name', 'GET / HTTP/1.1\r\nX\xe9: x\r\n\r\n', 'invalid_header_name'],
    ['NUL value', 'GET / HTTP/1.1\r\nX: a\0b\r\n\r\n', 'invalid_header_value'],
    ['CTL value', 'GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n', 'invalid_header_value'],
    ['DEL value', 'GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n', 'invalid_header_value'],
    ['bare LF after request line', 'GET / HTTP/1.1\nHost: a\r\n\r\n', 'invalid_version'],
    ['bare LF after value', 'GET / HTTP/1.1\r\nHost: a\n\r\n', 'invalid_line_ending'],
    ['bare LF end', 'GET / HTTP/1.1\r\nHost: a\r\n\n', 'invalid_line_ending'],
    ['bare CR in value', 'GET / HTTP/1.1\r\nX: a\rb\r\n\r\n', 'invalid_line_ending'],
    ['CR CR LF', 'GET / HTTP/1.1\r\r\n\r\n', 'invalid_line_ending'],
    ['leading bare LF', '\nGET / HTTP/1.1\r\n\r\n', 'invalid_line_ending'],
    ['double space', 'GET  / HTTP/1.1\r\n\r\n', 'invalid_request_line'],
    ['no version', 'GET /\r\n\r\n', 'invalid_request_line'],
    ['lowercase version', 'GET / http/1.1\r\n\r\n', 'invalid_version'],
    ['HTTP/1.2', 'GET / HTTP/1.2\r\n\r\n', 'unsupported_version'],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\n\r\n', 'unsupported_version'],
    ['HTTP/1.10', 'GET / HTTP/1.10\r\n\r\n', 'invalid_version'],
    ['space after version', 'GET / HTTP/1.1 \r\n\r\n', 'invalid_version'],
  ];
  for (const [name, s, want] of cases) it(name, () => expect(code(s)).toBe(want));
});

describe('request heads: refused as early as llhttp refuses, before the head is complete', () => {
  const early: Array<[string, string]> = [
    ['GX', 'invalid_method'],
    ['GE / ', 'invalid_method'],
    ['PUT x ', 'invalid_target'],
    ['GET /\x01', 'invalid_target'],
    ['POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n', 'duplicate_content_length'],
    ['POST / HTTP/1.1\r\nContent-Length: x\r\n', 'invalid_content_length'],
    [
      'POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n',
      'content_length_with_transfer_encoding',
    ],
    [
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n',
      'invalid_transfer_encoding',
    ],
    ['GET / HTTP/1.1\r\nX: a\r\n ', 'obs_fold'],
  ];
  for (const [s, want] of early) it(JSON.stringify(s), () => expect(code(s)).toBe(want));
});

describe('request heads: limits', () => {
  it('refuses a head over maxHeaderSize with head_too_large (431), counting every byte', () => {
    const head = (n: number): string => `GET / HTTP/1.1\r\nX: ${'v'.repeat(n)}\r\n\r\n`;
    const size = head(0).length;
    expect(code(head(1024 - size), { maxHeaderSize: 1024 })).toBe('ok');
    const r = new RequestHeadParser({ maxHeaderSize: 1024 }).execute(b(head(1025 - size)));
    expect(r).toMatchObject({ kind: 'error', code: 'head_too_large', status: 431 });
  });

  it('refuses an endless head as soon as the limit is passed, whatever the chunking', () => {
    const p = new RequestHeadParser({ maxHeaderSize: 1024 });
    expect(p.execute(b('GET / HTTP/1.1\r\nX: '))).toBe(NEED_MORE);
    let r = p.execute(b('a'.repeat(500)));
    expect(r).toBe(NEED_MORE);
    r = p.execute(b('a'.repeat(600)));
    expect(r).toMatchObject({ code: 'head_too_large' });
  });

  it('refuses more header fields than maxHeaders (431)', () => {
    const s = (n: number): string => `GET / HTTP/1.1\r\n${'X: y\r\n'.repeat(n)}\r\n`;
    expect(code(s(10), { maxHeaders: 10 })).toBe('ok');
    expect(new RequestHeadParser({ maxHeaders: 10 }).execute(b(s(11)))).toMatchObject({
      code: 'too_many_headers',
      status: 431,
    });
  });

  it('is reusable: pipelined heads one after the other, and after an error', () => {
    const p = new RequestHeadParser();
    const buf = b('GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n');
    const one = p.execute(buf) as RequestHead;
    const two = p.execute(buf, one.end) as RequestHead;
    expect([one.target, two.target, two.end]).toEqual(['/1', '/2', buf.length]);
    expect(p.execute(b('BAD\r\n'))).toMatchObject({ kind: 'error' });
    expect(p.execute(b('GET /3 HTTP/1.1\r\n\r\n'))).toMatchObject({ target: '/3' });
  });
});

describe('request heads: split anywhere by the network, same result', () => {
  const streams = [
    'GET /api/x?q=1 HTTP/1.1\r\nHost: orders\r\nUser-Agent: t\r\nX-Pad:  \t v \t\r\n\r\n',
    '\r\nPOST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
    'POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x="a;b"\r\nhello\r\n0\r\nT: v\r\n\r\nGET /n HTTP/1.1\r\nConnection: close\r\n\r\n',
    'GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n',
    'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n',
    `GET / HTTP/1.1\r\nX: ${'v'.repeat(1100)}\r\n\r\n`,
  ];
  for (const s of streams) {
    it(JSON.stringify(s.slice(0, 60)), () => {
      const whole = summary([b(s)]);
      for (const chunks of splits(s)) expect(summary(chunks)).toEqual(whole);
    });
  }
});
