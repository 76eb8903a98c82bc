/**
 * Differential test of the request parsers against node's own (llhttp in http.Server, strict mode):
 * every byte string goes to a real http.createServer over a real socket, and through our head
 * parser + body framer. Whenever node refuses, we refuse; whenever both accept, heads, bodies and
 * keep-alive agree. Where we refuse and node does not, the reason must be one of STRICTER below.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REQUESTS, REQUEST_SEEDS, mutate, prng } from './corpus.js';
import { compareRequests } from './compare.js';
import { driveRequests } from './drive.js';
import { startRequestOracle, type NodeOutcome, type RequestOracle } from './node-oracle.js';

const MAX = 4096;

/** Where we are deliberately stricter than llhttp, each with why and a check that the bytes show it. */
const STRICTER: Record<string, { why: string; shows: (rest: string) => boolean }> = {
  head_too_large: {
    why: 'we count every byte of the head (start line, CRLFs, whitespace, leading empty lines) against the limit, node only the target, names and values: the limit bounds memory',
    shows: (rest) => rest.length > MAX,
  },
  unsupported_version: {
    why: 'llhttp accepts HTTP/0.9 and HTTP/2.0 (and "GET /" with no version); the proxy speaks 1.0 and 1.1 only',
    shows: (rest) => /^[^\n]* HTTP\/(?!1\.[01]\r)\d\.\d/.test(rest.replace(/^[\r\n]+/, '')),
  },
  invalid_request_line: {
    why: 'llhttp accepts several spaces between method, target and version, and a request line without version (HTTP/0.9); RFC 9112 §3 has exactly one SP',
    shows: (rest) => /^[\r\n]*[^ \r\n]+ ( |[^ \r\n]*( {2}|\r|\n))/.test(rest),
  },
  invalid_version: {
    why: 'same as invalid_request_line: a second space after the target is read as the start of the version',
    shows: (rest) => /^[\r\n]*[^ \r\n]+ [^ \r\n]+ {2}/.test(rest),
  },
  invalid_target: {
    why: 'asterisk-form only as "OPTIONS *", authority-form only for CONNECT, absolute-form authority limited to RFC 3986 characters (llhttp accepts "GET *x", "CONNECT /a")',
    shows: (rest) =>
      /^[\r\n]*(?!OPTIONS \* )[A-Z-]+ \*/.test(rest) ||
      /^[\r\n]*CONNECT /.test(rest) ||
      /^[\r\n]*[A-Z-]+ [A-Za-z]+:\/\/[^ /?]*[^-A-Za-z0-9._~!$&'()*+,;=:@[\]% /?]/.test(rest),
  },
  invalid_line_ending: {
    why: 'before a request line llhttp skips any CR and LF; we skip CRLF pairs only',
    shows: (rest) => /^(\r\n)*(\r(?!\n)|\n)/.test(rest),
  },
  invalid_method: {
    why: 'PRI (the HTTP/2 preface) is not a method here; llhttp waits for the rest of the preface',
    shows: (rest) => /^[\r\n]*PRI /.test(rest),
  },
  content_length_overflow: {
    why: 'Content-Length above 2^53-1 (llhttp takes up to 2^64-1): no body that large is real, and numbers stay exact',
    shows: (rest) => /content-length:[ \t]*\d{16,}/i.test(rest),
  },
  chunk_size_overflow: {
    why: 'chunk size above 2^53-1 (llhttp takes up to 2^64-1)',
    shows: (rest) => /^0*[0-9a-f]{14,}/im.test(rest),
  },
  invalid_transfer_encoding: {
    why: 'an empty Transfer-Encoding field or one ending in a tab is refused (llhttp ignores the first and reads "chunked\\t" as another coding), and so is a non-chunked one on an upgrade request (llhttp skips the check when it hands the socket over)',
    shows: (rest) =>
      /transfer-encoding:([ \t]*|[^\r]*\t)\r\n/i.test(rest) ||
      (/\r\nupgrade:/i.test(rest) && /transfer-encoding/i.test(rest)),
  },
  too_many_headers: {
    why: 'node keeps the first maxHeadersCount (2000) fields and silently drops the rest; we refuse more than 128 (an option)',
    shows: (rest) => rest.split('\r\n\r\n')[0]!.split('\r\n').length > 129,
  },
  transfer_encoding_http10: {
    why: 'RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty (llhttp accepts chunked)',
    shows: (rest) => /HTTP\/1\.0\r\n/.test(rest) && /transfer-encoding/i.test(rest),
  },
  invalid_chunk_extension: {
    why: 'RFC 9112 §7.1.1 extension names and token values are non-empty (llhttp accepts ";=v", ";;", ";a=")',
    shows: (rest) => /^[0-9a-f]*(;[^\r]*)?;[^\r]*?(;[;=\r]|=[;\r]|;=)|^[0-9a-f]+;[;=]/im.test(rest),
  },
  forbidden_trailer: {
    why: 'Connection in trailers would change the connection after the fact (llhttp honours it); refused like Content-Length and Transfer-Encoding',
    shows: (rest) => /\r\nconnection:/i.test(rest),
  },
  unsupported_expect: {
    why: 'each Expect field must be exactly 100-continue (node accepts a list containing it)',
    shows: (rest) => /expect:/i.test(rest),
  },
  keep_alive: {
    why: 'HTTP/1.0 with "Connection: keep-alive, close": close wins (llhttp keeps the connection)',
    shows: (rest) => /connection:[^\r]*close/i.test(rest),
  },
};

let oracle: RequestOracle;
beforeAll(async () => {
  oracle = await startRequestOracle(MAX);
});
afterAll(() => oracle.close());

function sizeCases(): string[] {
  const out: string[] = [];
  for (const d of [-40, -20, -8, -4, -3, -2, -1, 0, 1, 2]) {
    out.push(`GET / HTTP/1.1\r\nX: ${'v'.repeat(MAX - 2 + d)}\r\n\r\n`);
    out.push(`GET /${'u'.repeat(MAX - 1 + d)} HTTP/1.1\r\n\r\n`);
    out.push(`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(MAX - 40 + d)}\r\n\r\n`);
  }
  out.push(`${'\r\n'.repeat(MAX)}GET / HTTP/1.1\r\n\r\n`);
  out.push(`GET / HTTP/1.1\r\n${'X:\r\n'.repeat(200)}\r\n`);
  out.push(
    `POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nT: ${'t'.repeat(MAX)}\r\n\r\n`,
  );
  out.push(
    `POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;e=${'e'.repeat(17_000)}\r\na\r\n0\r\n\r\n`,
  );
  return out;
}

interface Tally {
  cases: number;
  nodeRefused: number;
  oursRefused: number;
  stricter: Map<string, number>;
  failures: string[];
}

async function differential(cases: string[]): Promise<Tally> {
  const bufs = cases.map((c) => Buffer.from(c, 'latin1'));
  const outcomes: NodeOutcome[] = await oracle.run(bufs, 48);
  const t: Tally = { cases: cases.length, nodeRefused: 0, oursRefused: 0, stricter: new Map(), failures: [] };
  for (let i = 0; i < bufs.length; i++) {
    const node = outcomes[i]!;
    const ours = driveRequests([bufs[i]!], { maxHeaderSize: MAX });
    if (
      node.error !== undefined &&
      node.error !== 'HPE_INVALID_EOF_STATE' &&
      node.error !== 'HPE_CLOSED_CONNECTION'
    ) {
      t.nodeRefused++;
    }
    if (ours.error !== undefined) t.oursRefused++;
    const v = compareRequests(ours, node);
    const show = JSON.stringify(cases[i]!.length > 300 ? `${cases[i]!.slice(0, 300)}...` : cases[i]);
    if (!v.ok) {
      t.failures.push(`${show}: ${v.why}`);
      continue;
    }
    if (v.stricter === undefined) continue;
    const rule = STRICTER[v.stricter];
    const rest = cases[i]!.slice(Math.max(0, ours.errorAt));
    if (rule === undefined || !rule.shows(rest)) {
      t.failures.push(`${show}: we refuse (${v.stricter}) where node accepts, not a listed strictness`);
      continue;
    }
    t.stricter.set(v.stricter, (t.stricter.get(v.stricter) ?? 0) + 1);
  }
  return t;
}

function report(name: string, t: Tally): void {
  const stricter = [...t.stricter].map(([k, n]) => `${k}=${n}`).join(' ');
  console.log(
    `${name}: ${t.cases} cases, node refused ${t.nodeRefused}, we refused ${t.oursRefused}; stricter: ${stricter || 'none'}`,
  );
}

describe('request parsing vs node http.Server (llhttp strict)', () => {
  it('hand-written corpus: valid, malformed and smuggling shapes, and head size boundaries', async () => {
    const t = await differential([...REQUESTS, ...sizeCases()]);
    report('hand corpus', t);
    expect(t.failures).toEqual([]);
    expect(t.nodeRefused).toBeGreaterThan(100);
  });

  // H1_MUTATIONS and H1_SEED run a longer or different search by hand.
  const count = Number(process.env.H1_MUTATIONS ?? 3000);
  it(`${count} seeded mutations of valid requests`, async () => {
    const rnd = prng(Number(process.env.H1_SEED ?? 0x5eed));
    const cases: string[] = [];
    for (let i = 0; i < count; i++) cases.push(mutate(REQUEST_SEEDS[i % REQUEST_SEEDS.length]!, rnd));
    const t = await differential(cases);
    report('mutations', t);
    expect(t.failures.slice(0, 10)).toEqual([]);
    expect(t.nodeRefused).toBeGreaterThan(count / 6);
  });
});
