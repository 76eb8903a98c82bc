/**
 * `npm run bench:h1`: heads parsed per second by src/dataplane/h1 — a typical ~300-byte request
 * head (whole, and split in three chunks as a slow network delivers it), a response head, and a
 * chunked body framed — next to node's own parser (llhttp through the internal binding http.Server
 * uses, with the same JS callback that receives method, url and the header array). Medians of
 * H1_ROUNDS rounds of H1_MS milliseconds each. Not part of npm test.
 */
import { BodyFramer, RequestHeadParser, ResponseHeadParser } from '../src/dataplane/h1/index.js';

const MS = Number(process.env.H1_MS ?? 500);
const ROUNDS = Number(process.env.H1_ROUNDS ?? 5);

const REQUEST = Buffer.from(
  'GET /api/v1/orders/12345?expand=items&limit=20 HTTP/1.1\r\n' +
    'Host: orders.internal.example:8443\r\n' +
    'User-Agent: portlicense-bench/1.0 (linux; x64)\r\n' +
    'Accept: application/json, text/plain;q=0.9, */*;q=0.8\r\n' +
    'Accept-Encoding: gzip, deflate, br\r\n' +
    'X-Request-Id: 7f3c2a10-55e1-4b1e-9b7e-0d2c4f6a9e31\r\n' +
    'Connection: keep-alive\r\n\r\n',
);
const RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 1234\r\n' +
    'Date: Mon, 01 Jan 2024 00:00:00 GMT\r\nCache-Control: no-store\r\nX-Request-Id: 7f3c2a10\r\n\r\n',
);
const CHUNKED = Buffer.from(`${'400\r\n'}${'x'.repeat(1024)}\r\n`.repeat(8) + '0\r\n\r\n');

/** Runs of `fn` (each parses `per` heads) per second, median of the rounds. */
function rate(fn: () => number): number {
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let n = 0;
    const start = process.hrtime.bigint();
    const until = start + BigInt(MS) * 1_000_000n;
    let now = start;
    while (now < until) {
      for (let k = 0; k < 1000; k++) n += fn();
      now = process.hrtime.bigint();
    }
    rates.push(n / (Number(now - start) / 1e9));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)]!;
}

interface NodeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(buf: Buffer): number | Error;
  [k: number]: unknown;
}
interface NodeParserClass {
  new (): NodeParser;
  REQUEST: number;
  RESPONSE: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
}

/** node's parser as http.Server drives it, or undefined if the internal binding is gone. */
function nodeParser(type: 'REQUEST' | 'RESPONSE', onHead: () => void): NodeParser | undefined {
  try {
    process.noDeprecation = true;
    const binding = (
      process as unknown as { binding(name: string): { HTTPParser: NodeParserClass } }
    ).binding('http_parser');
    const P = binding.HTTPParser;
    const p = new P();
    p[P.kOnHeadersComplete] = onHead;
    p[P.kOnBody] = () => {};
    p[P.kOnMessageComplete] = () => {};
    p[P.kOnExecute] = () => {};
    p.initialize(P[type], {}, 16_384, 0);
    return p;
  } catch {
    return undefined;
  }
}

const line = (name: string, ours: number, node?: number): void => {
  const ns = (r: number): string => `${(1e9 / r).toFixed(0)} ns`;
  const vs =
    node === undefined
      ? ''
      : `   node ${(node / 1e6).toFixed(2)} M/s (${ns(node)})   ratio ${(ours / node).toFixed(2)}x`;
  console.log(`${name.padEnd(34)} ours ${(ours / 1e6).toFixed(2)} M/s (${ns(ours)})${vs}`);
};

const req = new RequestHeadParser();
const oursReq = rate(() => (req.execute(REQUEST).kind === 'head' ? 1 : 0));
const a = REQUEST.subarray(0, 100);
const b = REQUEST.subarray(100, 200);
const c = REQUEST.subarray(200);
const oursSplit = rate(() => {
  req.execute(a);
  req.execute(b);
  return req.execute(c).kind === 'head' ? 1 : 0;
});
let seen = 0;
const nodeReq = nodeParser('REQUEST', () => void seen++);
const nodeReqRate = nodeReq && rate(() => (nodeReq.execute(REQUEST), 1));

const res = new ResponseHeadParser();
res.begin('GET');
const oursRes = rate(() => (res.execute(RESPONSE).kind === 'head' ? 1 : 0));
const nodeRes = nodeParser('RESPONSE', () => void seen++);
// Node's response parser needs the body consumed: feed a body-less (304) variant instead.
const RESPONSE_304 = Buffer.from(RESPONSE.toString('latin1').replace('200 OK', '304 Not Modified'), 'latin1');
const nodeResRate = nodeRes && rate(() => (nodeRes.execute(RESPONSE_304), 1));

const framer = new BodyFramer();
const oursChunked = rate(() => {
  framer.begin('chunked');
  return framer.execute(CHUNKED) === CHUNKED.length ? 1 : 0;
});

console.log(
  `h1 parsing, node ${process.version}, ${ROUNDS} x ${MS} ms, request head ${REQUEST.length} B, response head ${RESPONSE.length} B`,
);
line(`request head (${REQUEST.length} B, one buffer)`, oursReq, nodeReqRate);
line('request head (three chunks)', oursSplit);
line(`response head (${RESPONSE.length} B)`, oursRes, nodeResRate);
line(`chunked body framed (${CHUNKED.length} B, 8 chunks)`, oursChunked);
if (seen === 0 && nodeReq) console.log('(node parser produced no heads: comparison invalid)');
