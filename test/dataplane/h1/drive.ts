/**
 * Drives the h1 parsers over a connection's bytes the way the lean engine will — head, then body
 * framer, then the next head on the same bytes — and reports what was accepted, for comparison
 * with node's own parser. Also the reference usage of the API.
 */
import {
  BodyFramer,
  RequestHeadParser,
  ResponseHeadParser,
  type H1Error,
  type RequestHead,
  type ResponseHead,
} from '../../../src/dataplane/h1/index.js';

export interface DrivenMessage<H> {
  head: H;
  /** Body bytes exactly as framed (chunked framing included). */
  raw: Buffer[];
  complete: boolean;
}

export interface DrivenOutcome<H> {
  messages: Array<DrivenMessage<H>>;
  error: H1Error | undefined;
  /** The error came from a body (the head before it was accepted). */
  errorInBody: boolean;
  /** end: all bytes used; incomplete: waiting for more; close: a message ended the connection; upgrade: protocol switch. */
  stop: 'end' | 'incomplete' | 'close' | 'upgrade' | 'error';
  /** Bytes held in an unfinished head when input ended. */
  pending: Buffer;
  /** Offset (in the concatenated input) where the refused head or body began. */
  errorAt: number;
}

/** A parsed head as the driver needs it. */
interface Head {
  kind: 'head';
  end: number;
  framing: string;
  contentLength: number;
}

/** What the caller's parser pair decides at each message boundary. */
interface Steps<H> {
  /** After a head: read its body, read the next head (an interim head), or stop (a protocol switch). */
  afterHead(h: H): 'body' | 'next' | 'upgrade';
  /** After a complete body: whether another message may follow on the connection. */
  more(h: H): boolean;
}

/**
 * The loop both parsers share: a head, then its body through `framer`, then the next head on the
 * same bytes. Returns the outcome so far and the message whose body was being read at the end.
 */
function drive<H extends Head>(
  chunks: readonly Buffer[],
  parser: { execute(chunk: Buffer, offset: number): H | H1Error | { kind: 'more' } },
  framer: BodyFramer,
  steps: Steps<H>,
): { out: DrivenOutcome<H>; cur: DrivenMessage<H> | undefined } {
  const out: DrivenOutcome<H> = {
    messages: [],
    error: undefined,
    errorInBody: false,
    stop: 'end',
    pending: Buffer.alloc(0),
    errorAt: -1,
  };
  let seen = 0;
  let headAt = 0;
  let cur: DrivenMessage<H> | undefined;
  const pending: Buffer[] = [];
  for (const chunk of chunks) {
    let off = 0;
    while (off < chunk.length) {
      if (cur === undefined) {
        if (pending.length === 0) headAt = seen + off;
        const r = parser.execute(chunk, off);
        if (r.kind === 'more') {
          pending.push(chunk.subarray(off));
          break;
        }
        pending.length = 0;
        if (r.kind === 'error') {
          out.error = r;
          out.errorAt = headAt;
          out.stop = 'error';
          return { out, cur };
        }
        off = r.end;
        const m: DrivenMessage<H> = { head: r, raw: [], complete: false };
        out.messages.push(m);
        const next = steps.afterHead(r);
        if (next === 'upgrade') {
          out.stop = 'upgrade';
          return { out, cur: m };
        }
        if (next === 'next') {
          m.complete = true;
          continue;
        }
        cur = m;
        framer.begin(r.framing as Parameters<BodyFramer['begin']>[0], r.contentLength);
      } else {
        const n = framer.execute(chunk, off);
        if (n < 0) {
          out.error = framer.error;
          out.errorAt = seen + off;
          out.errorInBody = true;
          out.stop = 'error';
          return { out, cur };
        }
        cur.raw.push(chunk.subarray(off, off + n));
        off += n;
      }
      if (framer.done) {
        cur.complete = true;
        if (!steps.more(cur.head)) {
          out.stop = 'close';
          return { out, cur };
        }
        cur = undefined;
      }
    }
    seen += chunk.length;
  }
  out.pending = Buffer.concat(pending);
  if (cur !== undefined || pending.length > 0) out.stop = 'incomplete';
  return { out, cur };
}

/** Feed `chunks` (one connection's bytes, split as they arrived) through the request parsers. */
export function driveRequests(
  chunks: readonly Buffer[],
  opts: { maxHeaderSize?: number; maxHeaders?: number } = {},
): DrivenOutcome<RequestHead> {
  const framer = new BodyFramer({ maxTrailerSize: opts.maxHeaderSize ?? 16_384 });
  return drive<RequestHead>(chunks, new RequestHeadParser(opts), framer, {
    afterHead: (r) => (r.upgrade || r.method === 'CONNECT' ? 'upgrade' : 'body'),
    more: (r) => r.keepAlive,
  }).out;
}

/** Feed a response to a request with `method` through the response parsers (1xx heads, then the final one). */
export function driveResponse(
  chunks: readonly Buffer[],
  method: string,
  opts: { maxHeaderSize?: number } = {},
): DrivenOutcome<ResponseHead> {
  const parser = new ResponseHeadParser(opts);
  const framer = new BodyFramer({ maxTrailerSize: opts.maxHeaderSize ?? 65_536 });
  parser.begin(method);
  const { out, cur } = drive<ResponseHead>(chunks, parser, framer, {
    afterHead: (r) => (r.informational ? 'next' : r.framing === 'switch' ? 'upgrade' : 'body'),
    more: () => false,
  });
  // End of input: a close-delimited body is complete now.
  if (out.stop === 'incomplete' && cur !== undefined && framer.finish()) {
    cur.complete = true;
    out.stop = 'end';
    out.pending = Buffer.alloc(0);
  }
  return out;
}

/** The payload of a chunked body the framer accepted (test-side decoder; assumes valid framing). */
export function dechunk(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let i = 0;
  for (;;) {
    const lineEnd = raw.indexOf('\r\n', i);
    if (lineEnd < 0) break;
    const line = raw.toString('latin1', i, lineEnd);
    const size = parseInt(line.split(';')[0]!, 16);
    i = lineEnd + 2;
    if (size === 0 || Number.isNaN(size)) break;
    parts.push(raw.subarray(i, Math.min(i + size, raw.length)));
    i += size + 2;
  }
  return Buffer.concat(parts);
}

/** The payload node would deliver for a driven message: dechunked or as is. */
export function payload(m: DrivenMessage<{ framing: string }>): string {
  const raw = Buffer.concat(m.raw);
  return (m.head.framing === 'chunked' ? dechunk(raw) : raw).toString('latin1');
}
