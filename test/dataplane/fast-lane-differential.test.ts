/**
 * Chunked request bodies through the real fast lane (TLS, a real http port, node's server as the
 * upstream), compared with what node's own parser (llhttp, strict) makes of the same bytes:
 * - node accepts the body: the upstream gets it whole, with the same payload (or the fast lane is
 *   stricter, for a listed reason, and answers 400/431 without the upstream taking it for whole);
 * - node refuses it mid-body: the upstream never takes it for whole, never sees the request behind
 *   it, and the caller gets the full path's answer (431 for HPE_HEADER_OVERFLOW, else 400) and a close;
 * - node waits for more: so does the fast lane (the upstream request stays open);
 * - the request after a body both accept is the next request for both (pipelining).
 * The h1 differential tests compare the framer itself; this one checks the lane around it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BodyFramer } from '../../src/dataplane/h1/index.js';
import { startHttpHarness, type HttpHarness } from '../helpers/http.js';
import { Received, tlsConnect, waitFor } from '../helpers/net.js';
import { REQUESTS, mutate, prng } from './h1/corpus.js';
import { startRequestOracle, type NodeOutcome, type RequestOracle } from './h1/node-oracle.js';

const MAX = 16_384;
const CHUNKED_HEAD = 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n';

/** Where the framer refuses a body llhttp takes (see STRICTER in h1/request-differential.test.ts). */
const STRICTER = new Set([
  'chunk_size_overflow', // above 2^53-1
  'invalid_chunk_extension', // empty extension names and values
  'forbidden_trailer', // Connection in trailers
  'chunk_line_too_long', // the whole line counts, not only extension names and values
  'trailers_too_large', // every trailer byte counts, not only names and values
]);

/** Errors node reports that are not a refusal of the bytes. */
const NOT_REFUSAL = new Set(['HPE_INVALID_EOF_STATE', 'HPE_CLOSED_CONNECTION', 'ECONNRESET']);

/** Chunked bodies of the hand corpus (what follows its plain chunked head), and size boundaries. */
function handBodies(): string[] {
  const out = REQUESTS.filter((r) => r.startsWith(CHUNKED_HEAD)).map((r) => r.slice(CHUNKED_HEAD.length));
  for (const n of [16_380, 16_382, 16_384, 16_385, 20_000]) out.push(`1;${'e'.repeat(n)}\r\na\r\n0\r\n\r\n`);
  for (const n of [100, 20_000]) out.push(`${'0'.repeat(n)}1\r\na\r\n0\r\n\r\n`);
  for (const n of [16_000, 16_400]) out.push(`1\r\na\r\n0\r\nT: ${'t'.repeat(n)}\r\n\r\n`);
  out.push('3\r\nabc\r\n', '3\r\nab', '0\r\n', '0\r\nT: v\r\n', '');
  return out;
}

const SEEDS = [
  '5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n',
  '3;a="b \\" c";d\r\nabc\r\nA\r\n0123456789\r\n0;e=f\r\nX-A: 1\r\nX-B:\r\n\r\n',
  '1\r\nz\r\n1\r\ny\r\n0\r\n\r\n',
];

/** What the fast lane did with one case. */
interface Observed {
  statuses: number[];
  closed: boolean;
  timedOut: boolean;
}

/** What the upstream (node's server) saw of one request: payload, and whether it completed. */
interface Seen {
  body: string;
  complete: boolean;
  closed: boolean;
}

function statuses(text: string): number[] {
  // Bodies here are `ok` or a JSON refusal: a status line can only be a status line.
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

/** The framer's own verdict on a body (as the fast lane runs it, vouched names aside). */
function framerVerdict(body: Buffer): string {
  const f = new BodyFramer({ maxTrailerSize: MAX });
  f.begin('chunked');
  return f.execute(body) < 0 ? f.error!.code : f.done ? 'done' : 'more';
}

let oracle: RequestOracle;
let h: HttpHarness;
const seen = new Map<string, Seen>();

beforeAll(async () => {
  oracle = await startRequestOracle(MAX);
  h = await startHttpHarness({
    licenses: [{ id: 'lic_1' }],
    port: { maxHeaderSize: MAX, maxConnections: 1_000 },
    upstreamHandler: (req: IncomingMessage, res: ServerResponse) => {
      const s: Seen = { body: '', complete: false, closed: false };
      seen.set(req.url!, s);
      req.on('data', (c: Buffer) => (s.body += c.toString('latin1')));
      req.on('end', () => {
        s.complete = true;
        res.end('ok');
      });
      req.on('close', () => (s.closed = true));
    },
  });
});
afterAll(async () => {
  await h.close();
  await oracle.close();
});

/**
 * Send one case and wait until the caller has every answer node's reading of the bytes calls for,
 * or the connection closed; a body node leaves unfinished is cut by the caller once its head is
 * upstream. With `split`, the first `split` bytes go first and the rest once the request is
 * upstream, so the body is judged mid-way (after the upstream was contacted), not with the head.
 */
async function run(id: number, bytes: Buffer, split: number, node: NodeOutcome): Promise<Observed> {
  const rx = new Received(await tlsConnect({ ...h.address, ...h.creds }));
  const path = `/c${id}`;
  let timedOut = false;
  // Upstream progress has no event on the caller's socket: poll it (waitFor), with the close.
  const wait = (cond: () => boolean): Promise<void> =>
    waitFor(() => cond() || rx.ended, { timeoutMs: 3_000, intervalMs: 5 }).then(
      () => undefined,
      () => void (timedOut = true),
    );
  if (split > 0) {
    rx.socket.write(bytes.subarray(0, split));
    await wait(() => seen.has(path));
    if (!rx.ended) rx.socket.write(bytes.subarray(split));
  } else rx.socket.write(bytes);
  const complete = node.messages.filter((m) => m.complete).length;
  const waitingForMore =
    node.messages.length > complete && (node.error === undefined || NOT_REFUSAL.has(node.error));
  await wait(() => statuses(rx.text).length >= complete && (!waitingForMore || seen.has(path)));
  // A refusal (node's, or the fast lane's where it is stricter) ends with a close: wait for it.
  const refusedByNode = node.error !== undefined && !NOT_REFUSAL.has(node.error);
  const refusal = statuses(rx.text).some((s) => s === 400 || s === 431);
  if ((refusedByNode || refusal) && !timedOut) await wait(() => false);
  rx.socket.destroy();
  return { statuses: statuses(rx.text), closed: rx.ended, timedOut };
}

/** How the cases fell out, so a corpus that stops reaching a branch shows. */
interface Tally {
  accepted: number;
  refused: number;
  waiting: number;
  stricter: Map<string, number>;
}

/** Check one case once the upstream has settled; returns what is wrong, or undefined. */
function check(id: number, body: Buffer, node: NodeOutcome, got: Observed, t: Tally): string | undefined {
  const m0 = node.messages[0];
  const up = seen.get(`/c${id}`);
  const next = seen.get(`/n${id}`);
  const refused = node.error !== undefined && !NOT_REFUSAL.has(node.error);
  if (got.timedOut) return `timed out: ${JSON.stringify(got)}`;
  if (m0 === undefined) return `node did not read the head (${node.error})`;
  if (m0.complete) {
    if (up?.complete === true) {
      t.accepted++;
      if (up.body !== m0.body)
        return `payload upstream ${JSON.stringify(up.body)} node ${JSON.stringify(m0.body)}`;
      if (got.statuses[0] !== 200) return `answered ${got.statuses[0]} for a body both accept`;
      const m1 = node.messages[1];
      if (m1?.complete && m1.url === `/n${id}` && next?.complete !== true)
        return 'the request after the body did not reach the upstream';
      return undefined;
    }
    const ours = framerVerdict(body);
    t.stricter.set(ours, (t.stricter.get(ours) ?? 0) + 1);
    if (!STRICTER.has(ours))
      return `node accepts the body, the fast lane did not (${ours}): ${JSON.stringify(got)}`;
    if (![400, 431].includes(got.statuses[0] ?? 0) || !got.closed)
      return `stricter (${ours}) but answered ${JSON.stringify(got)}`;
    return next === undefined ? undefined : 'a request after a refused body reached the upstream';
  }
  if (up?.complete === true)
    return `the upstream took whole a body node ${refused ? `refused (${node.error})` : 'waits on'}`;
  if (next !== undefined) return 'a request after an unfinished body reached the upstream';
  if (refused) t.refused++;
  else t.waiting++;
  if (!refused) return undefined;
  const want = node.error === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  if (got.statuses.length !== 1 || got.statuses[0] !== want || !got.closed)
    return `node refused (${node.error}): want ${want} and close, got ${JSON.stringify(got)}`;
  return undefined;
}

async function differential(
  name: string,
  bodies: string[],
  offset: number,
  split: boolean,
): Promise<{ failures: string[]; t: Tally }> {
  const cases = bodies.map((b, i) => {
    const id = offset + i;
    const body = Buffer.from(b, 'latin1');
    const head = `POST /c${id} HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const next = `GET /n${id} HTTP/1.1\r\nHost: orders\r\n\r\n`;
    const bytes = Buffer.concat([Buffer.from(head), body, Buffer.from(next)]);
    return { id, body, bytes, split: split ? head.length + Math.min(1, body.length) : 0 };
  });
  const nodes = await oracle.run(
    cases.map((c) => c.bytes),
    32,
  );
  const observed: Observed[] = new Array<Observed>(cases.length);
  let cursor = 0;
  const worker = async (): Promise<void> => {
    while (cursor < cases.length) {
      const k = cursor++;
      const c = cases[k]!;
      observed[k] = await run(c.id, c.bytes, c.split, nodes[k]!);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  // Every request the upstream began has ended (completed or cut) before anything is judged.
  await waitFor(() => [...seen.values()].every((s) => s.closed), {
    timeoutMs: 5_000,
    what: 'upstream settled',
  });
  const failures: string[] = [];
  const t: Tally = { accepted: 0, refused: 0, waiting: 0, stricter: new Map() };
  cases.forEach((c, k) => {
    const why = check(c.id, c.body, nodes[k]!, observed[k]!, t);
    if (why !== undefined)
      failures.push(`${JSON.stringify(c.body.toString('latin1').slice(0, 120))}: ${why}`);
  });
  const stricter = [...t.stricter].map(([k, n]) => `${k}=${n}`).join(' ');
  console.log(
    `${name}: ${cases.length} bodies, both accept ${t.accepted}, node refuses ${t.refused}, unfinished ${t.waiting}; stricter: ${stricter || 'none'}`,
  );
  return { failures, t };
}

describe('chunked uploads through the fast lane vs node http.Server (llhttp strict)', () => {
  for (const split of [false, true]) {
    const how = split ? 'sent after the head went upstream' : 'sent with the head';
    it(`hand corpus bodies and size boundaries, ${how}`, async () => {
      const bodies = handBodies();
      expect(bodies.length).toBeGreaterThan(60);
      const { failures, t } = await differential(`hand corpus, ${how}`, bodies, split ? 1_000 : 0, split);
      expect(failures).toEqual([]);
      expect(t.accepted).toBeGreaterThan(10);
      expect(t.refused).toBeGreaterThan(20);
      expect(t.waiting).toBeGreaterThan(3);
    });
  }

  // H1_LANE_MUTATIONS and H1_SEED run a longer or different search by hand.
  const count = Number(process.env.H1_LANE_MUTATIONS ?? 300);
  it(`${count} seeded mutations of chunked bodies, sent after the head went upstream`, async () => {
    const rnd = prng(Number(process.env.H1_SEED ?? 0x5eed));
    const bodies = Array.from({ length: count }, (_, i) => mutate(SEEDS[i % SEEDS.length]!, rnd));
    const { failures, t } = await differential('mutations', bodies, 10_000, true);
    expect(failures.slice(0, 10)).toEqual([]);
    expect(t.accepted).toBeGreaterThan(count / 20);
    expect(t.refused).toBeGreaterThan(count / 4);
  });
});
