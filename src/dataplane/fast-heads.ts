/**
 * The heads the fast lane writes, each way. For the common head the rewrite is only "drop some
 * fields, add the proxy's own" (`plainRequestFields`, `plainResponseFields` in http-headers.ts say
 * when), so the head goes out as the bytes it came in: the start line and each run of kept field
 * lines copied as they are into a shared buffer, then the proxy's lines. No string per field, no
 * header list, no head string to build and encode. Any other head is built as a string by the
 * same rules (`requestHeadText`, `responseHeadText`); test/dataplane/fast-heads.test.ts holds the
 * two ways to the same fields.
 */
import type { RequestTarget } from '../policy/path.js';
import { FIELD_SLOTS, type HeadSpans } from './h1/head-scanner.js';
import { IDENTITY_HEADER, LICENSE_HEADER } from './http-headers.js';

type Latin1Writing = Buffer & { latin1Write(text: string, offset: number): number };

/** Size of a HeadOut buffer; a head larger than this gets one of its own. */
const OUT_SIZE = 64 * 1024;

const CHUNKED_LINE = 'transfer-encoding: chunked\r\n';
const KEEP_ALIVE_END = 'connection: keep-alive\r\n\r\n';
const CLOSE_LINE = 'connection: close\r\n';

/**
 * Where heads are written on their way out: one buffer, shared by every connection of the process,
 * handed out front to back. A head's bytes are reused for the next head once the socket has taken
 * them (`settle(false)`); a head the socket still holds (a connection still dialing, a slow
 * reader) is left alone, and later heads go after it, or into a new buffer when this one is full.
 */
export class HeadOut {
  private buf = Buffer.allocUnsafeSlow(OUT_SIZE) as Latin1Writing;
  private pos = 0;
  private start = 0;
  /** End of the head last closed and not settled yet; -1 otherwise. */
  private end = -1;

  /** Start a head of at most `max` bytes. */
  open(max: number): void {
    if (this.buf.length - this.pos < max) {
      this.buf = Buffer.allocUnsafeSlow(Math.max(OUT_SIZE, max)) as Latin1Writing;
      this.pos = 0;
    }
    this.start = this.pos;
  }

  /** Append `src[s, e)`. */
  bytes(src: Buffer, s: number, e: number): void {
    this.pos += src.copy(this.buf, this.pos, s, e);
  }

  /** Append `text`, one byte per character (latin1, as heads are read). */
  text(text: string): void {
    this.pos += this.buf.latin1Write(text, this.pos);
  }

  /** Forget the head written since `open` (it is not going anywhere). */
  drop(): void {
    this.pos = this.start;
  }

  /** The head written since `open`; valid until `settle`. */
  close(): Buffer {
    this.end = this.pos;
    return this.buf.subarray(this.start, this.pos);
  }

  /** Once the head is written: unless the socket still holds it (`held`), its bytes are free again. */
  settle(held: boolean): void {
    if (!held && this.pos === this.end) this.pos = this.start;
    this.end = -1;
  }
}

let marks = new Uint8Array(256);

/** A scratch array of at least `count` drop marks (one per field), reused. */
export function dropMarks(count: number): Uint8Array {
  if (marks.length < count) marks = new Uint8Array(count);
  return marks;
}

/**
 * Append the field lines of `h` not marked in `drop`, as they are, in runs; `from` (absolute in
 * `h.src`, or -1) starts the first run before the fields (a start line copied with them).
 */
function keptFields(out: HeadOut, h: HeadSpans, drop: Uint8Array, from: number): void {
  const src = h.src;
  const base = h.base;
  const f = h.fields;
  let run = from;
  for (let k = 0, j = 0; k < h.count; k++, j += FIELD_SLOTS) {
    if (drop[k] === 0) {
      if (run < 0) run = base + f[j]!;
    } else if (run >= 0) {
      out.bytes(src, run, base + f[j]!);
      run = -1;
    }
  }
  // The last line ends where the blank line begins.
  if (run >= 0) out.bytes(src, run, base + h.size - 2);
}

/** The proxy's fields on every request of a connection: x-forwarded-*, and who called when known. */
export function forwardedLines(origin: string, identity: string | null): string {
  const who = identity === null ? '' : `${IDENTITY_HEADER}: ${identity}\r\n`;
  return `x-forwarded-for: ${origin}\r\nx-forwarded-proto: https\r\n${who}`;
}

/** The field naming the license that admitted a request. */
export function licenseLine(id: string): string {
  return `${LICENSE_HEADER}: ${id}\r\n`;
}

/** Whether the request line can go up as it came: the target is the normalised one. */
function sameTarget(raw: string, target: RequestTarget): boolean {
  const q = target.query;
  return raw.length === target.path.length + (q === null ? 0 : q.length + 1) && raw.startsWith(target.path);
}

/**
 * The upstream request head in bytes, for a head `plainRequestFields` passed (its marks in `drop`):
 * the request line (as it came when the target needed no normalising), the kept fields as they
 * came, `forwarded` (forwardedLines), `license` (licenseLine, or ''), the body's framing and
 * `connection: keep-alive`. Valid until `out.settle`.
 */
export function requestHeadBytes(
  out: HeadOut,
  h: HeadSpans,
  drop: Uint8Array,
  method: string,
  rawTarget: string,
  target: RequestTarget,
  forwarded: string,
  license: string,
  chunked: boolean,
): Buffer {
  const q = target.query;
  out.open(
    h.size +
      method.length +
      target.path.length +
      (q === null ? 0 : q.length) +
      12 +
      forwarded.length +
      license.length +
      CHUNKED_LINE.length +
      KEEP_ALIVE_END.length,
  );
  let from = -1;
  if (sameTarget(rawTarget, target)) from = h.base + h.s1;
  else {
    out.text(method);
    out.text(' ');
    out.text(target.path);
    if (q !== null) {
      out.text('?');
      out.text(q);
    }
    out.text(' HTTP/1.1\r\n');
  }
  keptFields(out, h, drop, from);
  out.text(forwarded);
  if (license !== '') out.text(license);
  if (chunked) out.text(CHUNKED_LINE);
  out.text(KEEP_ALIVE_END);
  return out.close();
}

/** The upstream request head as a string, from `upstreamRequestHead`'s fields after `vouch`. */
export function requestHeadText(
  method: string,
  target: RequestTarget,
  headers: readonly string[],
  chunked: boolean,
): string {
  let text = `${method} ${target.query === null ? target.path : `${target.path}?${target.query}`} HTTP/1.1\r\n`;
  for (let i = 0; i + 1 < headers.length; i += 2) text += `${headers[i]!}: ${headers[i + 1]!}\r\n`;
  // The caller's chunks go on as they are, named by `chunked` alone whatever codings the caller
  // listed before it (the full path's client re-frames and names none): the upstream reads the
  // framing the lane checks, nothing else.
  if (chunked) text += CHUNKED_LINE;
  return text + KEEP_ALIVE_END;
}

/**
 * The caller's response head in bytes, for an HTTP/1.1 head `plainResponseFields` passed (its
 * marks in `drop`): the status line and the kept fields as they came, then Date (`date`) unless
 * `dated`, `connection: close` when `close`, and the body's framing. Left open in `out`, with
 * room for `room` more bytes (body bytes to send with it); `out.close()` gives the bytes.
 */
export function responseHeadBytes(
  out: HeadOut,
  h: HeadSpans,
  drop: Uint8Array,
  dated: boolean,
  date: string,
  close: boolean,
  chunked: boolean,
  room: number,
): void {
  out.open(h.size + date.length + 8 + CLOSE_LINE.length + CHUNKED_LINE.length + 2 + room);
  keptFields(out, h, drop, h.base + h.s1);
  if (!dated) {
    out.text('date: ');
    out.text(date);
    out.text('\r\n');
  }
  if (close) out.text(CLOSE_LINE);
  if (chunked) out.text(CHUNKED_LINE);
  out.text('\r\n');
}

/** The caller's response head as a string, from `callerResponseHeaders`' fields. */
export function responseHeadText(
  status: number,
  reason: string,
  headers: readonly string[],
  chunked: boolean,
): string {
  let text = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (let i = 0; i + 1 < headers.length; i += 2) text += `${headers[i]!}: ${headers[i + 1]!}\r\n`;
  if (chunked) text += CHUNKED_LINE;
  return text + '\r\n';
}
