/**
 * Differential test of the response parsers against node's http client (llhttp, strict): a raw
 * TCP server writes each response byte string to a real http.request, and the same bytes go
 * through our response head parser + body framer. Whenever node refuses, we refuse; whenever both
 * accept, status, headers, framing and body agree. Our extra refusals must be listed in STRICTER.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESPONSES, RESPONSE_SEEDS, mutate, prng } from './corpus.js';
import { compareResponse } from './compare.js';
import { driveResponse } from './drive.js';
import { startResponseOracle, type ResponseOracle } from './node-oracle.js';

const MAX = 4096;

/** Where we are deliberately stricter than node's client, each with why and a check on the bytes. */
const STRICTER: Record<string, { why: string; shows: (rest: string) => boolean }> = {
  invalid_status_line: {
    why: 'status outside 100-599 (RFC 9110 §15), or a control character or DEL in the reason phrase (RFC 9112 §4); llhttp takes 000-999 and any byte but CR/LF',
    shows: (rest) =>
      // eslint-disable-next-line no-control-regex -- control characters are the point
      /^[\r\n]*HTTP\/\d\.\d ([^1-5]|\d\d\d[^ \r]|\d\d\d [^\r]*[\x00-\x08\x0a-\x1f\x7f])/.test(rest),
  },
  unsupported_version: {
    why: 'HTTP/0.9 or HTTP/2.0 in a status line (llhttp accepts them)',
    shows: (rest) => /^[\r\n]*HTTP\/(?!1\.[01] )\d\.\d/.test(rest),
  },
  invalid_transfer_encoding: {
    why: 'chunked twice, an empty field, or a trailing tab (llhttp reads until close or ignores the field)',
    shows: (rest) => /transfer-encoding:/i.test(rest),
  },
  transfer_encoding_http10: {
    why: 'RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty',
    shows: (rest) => /^[\r\n]*HTTP\/1\.0/.test(rest) && /transfer-encoding/i.test(rest),
  },
  content_length_overflow: {
    why: 'Content-Length above 2^53-1',
    shows: (rest) => /content-length:[ \t]*\d{16,}/i.test(rest),
  },
  chunk_size_overflow: {
    why: 'chunk size above 2^53-1',
    shows: (rest) => /^0*[0-9a-f]{14,}/im.test(rest),
  },
  interim_response_close: {
    why: 'a 1xx that closes the connection: node delivers the 1xx and then drops the rest (HPE_CLOSED_CONNECTION), so no final response can come; we refuse at once (the proxy answers 502)',
    shows: (rest) =>
      /^[\r\n]*HTTP\/1\.\d 1\d\d/.test(rest) && /connection:[^\r]*close|^[\r\n]*HTTP\/1\.0/i.test(rest),
  },
  invalid_upgrade: {
    why: 'a 101 must carry Upgrade and Connection: upgrade (RFC 9110 §15.2.2, §7.8); node treats it as a bodiless response',
    shows: (rest) => /^[\r\n]*HTTP\/1\.[01] 101/.test(rest),
  },
  forbidden_trailer: {
    why: "Content-Length, Transfer-Encoding and Connection in trailers change framing after the fact (node's client ignores them; its server refuses the first two)",
    shows: (rest) => /\r\n(connection|transfer-encoding|content-length):/i.test(rest),
  },
  invalid_chunk_extension: {
    why: 'empty chunk-extension names or values (llhttp accepts them)',
    shows: (rest) => /;[;=\r]|=[;\r]/.test(rest),
  },
  invalid_line_ending: {
    why: 'a bare CR: llhttp skips any CR and LF before a status line and takes a bare CR at the end of the status line; we want CRLF',
    shows: (rest) =>
      /^(\r\n)*(\r(?!\n)|\n)/.test(rest) || /^[^\n]*\r(?!\n)/.test(rest.replace(/^[\r\n]+/, '')),
  },
  head_too_large: {
    why: 'every byte of the head counts against the limit (node counts reason, names and values)',
    shows: (rest) => rest.length > MAX,
  },
};

let oracle: ResponseOracle;
beforeAll(async () => {
  oracle = await startResponseOracle(MAX);
});
afterAll(() => oracle.close());

async function differential(
  cases: Array<[string, string]>,
): Promise<{ nodeRefused: number; failures: string[]; stricter: Map<string, number> }> {
  const outcomes = await oracle.run(
    cases.map(([method, s]) => ({ method, bytes: Buffer.from(s, 'latin1') })),
    32,
  );
  let nodeRefused = 0;
  const failures: string[] = [];
  const stricter = new Map<string, number>();
  for (let i = 0; i < cases.length; i++) {
    const [method, s] = cases[i]!;
    const node = outcomes[i]!;
    if (node.error !== undefined) nodeRefused++;
    const ours = driveResponse([Buffer.from(s, 'latin1')], method, { maxHeaderSize: MAX });
    const v = compareResponse(ours, node);
    const show = `${method} ${JSON.stringify(s.length > 300 ? `${s.slice(0, 300)}...` : s)}`;
    if (!v.ok) {
      failures.push(`${show}: ${v.why}`);
      continue;
    }
    if (v.stricter === undefined) continue;
    const rule = STRICTER[v.stricter];
    if (rule === undefined || !rule.shows(s.slice(Math.max(0, ours.errorAt)))) {
      failures.push(`${show}: we refuse (${v.stricter}) where node accepts, not a listed strictness`);
      continue;
    }
    stricter.set(v.stricter, (stricter.get(v.stricter) ?? 0) + 1);
  }
  console.log(
    `responses: ${cases.length} cases, node refused ${nodeRefused}; stricter: ${[...stricter].map(([k, n]) => `${k}=${n}`).join(' ') || 'none'}`,
  );
  return { nodeRefused, failures, stricter };
}

describe('response parsing vs node http client (llhttp strict)', () => {
  it('hand-written corpus and head size boundaries', async () => {
    const sizes: Array<[string, string]> = [];
    for (const d of [-30, -4, -2, -1, 0, 1, 2]) {
      sizes.push(['GET', `HTTP/1.1 200 OK\r\nX: ${'v'.repeat(MAX - 40 + d)}\r\nContent-Length: 1\r\n\r\nx`]);
      sizes.push(['GET', `HTTP/1.1 200 ${'r'.repeat(MAX - 20 + d)}\r\nContent-Length: 1\r\n\r\nx`]);
    }
    const t = await differential([...RESPONSES, ...sizes]);
    expect(t.failures).toEqual([]);
    expect(t.nodeRefused).toBeGreaterThan(15);
  });

  const count = Number(process.env.H1_MUTATIONS ?? 1500);
  it(`${count} seeded mutations of valid responses`, async () => {
    const rnd = prng(Number(process.env.H1_SEED ?? 0xbeef));
    const cases: Array<[string, string]> = [];
    for (let i = 0; i < count; i++) {
      const [method, s] = RESPONSE_SEEDS[i % RESPONSE_SEEDS.length]!;
      cases.push([method, mutate(s, rnd)]);
    }
    const t = await differential(cases);
    expect(t.failures.slice(0, 10)).toEqual([]);
    expect(t.nodeRefused).toBeGreaterThan(count / 6);
  });
});
