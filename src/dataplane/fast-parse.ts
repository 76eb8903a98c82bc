/**
 * The fast lane's parsers (fast-lane.ts): a request-head parser, a response-head parser and a body
 * framer, all incremental (a head may arrive in any number of pieces).
 *
 * The request parser is deliberately narrow: it accepts a strict subset of what llhttp accepts
 * and reads it the same way; anything outside the subset is an error, which sends the connection
 * to the full path, where llhttp decides (answer or 400/431). So it never has to be as clever as
 * llhttp, only never more lenient: single spaces in the request line, `HTTP/1.0` or `HTTP/1.1`,
 * CRLF line ends only, token header names directly followed by `:`, visible ASCII, space and tab
 * in values, no line folding, one Content-Length of digits only (at most 15).
 *
 * The response parser reads what upstreams send (status line, headers, then RFC 9112 §6.3 framing)
 * and refuses the shapes a proxy must not pass on: CL with TE, differing CLs, TE not ending in
 * chunked, bare LF, folding, oversize heads. The framer follows Content-Length and chunked bodies
 * without copying them, so the proxy knows where a message ends.
 */

/** A request head the fast lane may serve (subject to `eligible` in fast-lane.ts). */
export interface ParsedRequest {
  readonly method: string;
  /** The request-target as received. */
  readonly target: string;
  readonly versionMinor: number;
  /** Flat [name, value, ...] in received order; values without surrounding whitespace. */
  readonly rawHeaders: string[];
  readonly chunked: boolean;
  /** Content-Length, or -1 when there is none. */
  readonly contentLength: number;
  readonly keepAlive: boolean;
  readonly upgrade: boolean;
  readonly expect: boolean;
}

export type BodyKind = 'none' | 'length' | 'chunked' | 'close' | 'switch';

export interface ParsedResponse {
  readonly status: number;
  readonly reason: string;
  readonly rawHeaders: string[];
  readonly kind: BodyKind;
  /** Content-Length for `length`. */
  readonly length: number;
  /** Whether the upstream lets the connection be reused (HTTP/1.1 without `Connection: close`). */
  readonly keepAlive: boolean;
}

/** `push` results besides an end offset. */
export const NEED_MORE = -1;
export const INVALID = -2;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

/** RFC 9110 tchar. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** Value bytes accepted: VCHAR, SP, HTAB (no obs-text: such a head goes to llhttp). */
const VALUE = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) VALUE[c] = 1;
VALUE[SP] = 1;
VALUE[HTAB] = 1;

/** Request-target bytes: visible ASCII. */
const TARGET = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) TARGET[c] = 1;

const MAX_HEADERS = 256;

/**
 * Collects the bytes of a head until the blank line (CRLF CRLF), across pieces, up to `max` bytes.
 * `push` returns NEED_MORE, INVALID (over the limit), or the offset in the piece just after the head.
 */
class HeadBuffer {
  private parts: Buffer[] = [];
  private size = 0;
  /** How many of the last bytes seen were a CRLF CRLF prefix (0..3). */
  private matched = 0;
  head: Buffer | null = null;

  constructor(private readonly max: number) {}

  reset(): void {
    this.parts = [];
    this.size = 0;
    this.matched = 0;
    this.head = null;
  }

  private fail(): number {
    this.reset();
    return INVALID;
  }

  push(chunk: Buffer): number {
    let m = this.matched;
    const n = chunk.length;
    let end = -1;
    // Fast path: a whole head in this piece.
    if (m === 0) {
      const i = chunk.indexOf('\r\n\r\n', 0, 'latin1');
      if (i !== -1) end = i + 4;
    }
    if (end === -1) {
      for (let i = 0; i < n; i++) {
        const c = chunk[i]!;
        // A bare LF or CR is refused now, not after the head deadline: the full path answers 400.
        if (m === 0 || m === 2) {
          if (c === LF) return this.fail();
          m = c === CR ? m + 1 : 0;
        } else if (c !== LF) return this.fail();
        else m++;
        if (m === 4) {
          end = i + 1;
          break;
        }
      }
    }
    if (end === -1) {
      this.matched = m;
      this.size += n;
      if (this.size > this.max) return INVALID;
      this.parts.push(chunk);
      return NEED_MORE;
    }
    this.size += end;
    if (this.size > this.max) return INVALID;
    const last = end === n ? chunk : chunk.subarray(0, end);
    this.head = this.parts.length === 0 ? last : Buffer.concat([...this.parts, last]);
    this.parts = [];
    return end;
  }
}

/** Find CRLF from `i`; -1 when absent or when a bare CR or LF comes first. */
function lineEnd(b: Buffer, i: number, end: number): number {
  for (; i < end; i++) {
    const c = b[i]!;
    if (c === CR) return i + 1 < end && b[i + 1] === LF ? i : -1;
    if (c === LF) return -1;
  }
  return -1;
}

/**
 * Parse header lines from `i` to the blank line at `end - 2` into `out`; returns false on
 * anything outside the accepted grammar.
 */
function parseHeaders(b: Buffer, i: number, end: number, out: string[]): boolean {
  while (i < end - 2) {
    const eol = lineEnd(b, i, end);
    if (eol === -1) return false;
    let j = i;
    while (j < eol && TCHAR[b[j]!] === 1) j++;
    if (j === i || j === eol || b[j] !== COLON) return false;
    const name = b.toString('latin1', i, j);
    j++;
    while (j < eol && (b[j] === SP || b[j] === HTAB)) j++;
    let k = eol;
    while (k > j && (b[k - 1] === SP || b[k - 1] === HTAB)) k--;
    for (let x = j; x < k; x++) if (VALUE[b[x]!] !== 1) return false;
    out.push(name, b.toString('latin1', j, k));
    if (out.length > 2 * MAX_HEADERS) return false;
    i = eol + 2;
  }
  return true;
}

/** ASCII case-insensitive comparison of `s` with the lower-case `lower`. */
function is(s: string, lower: string): boolean {
  if (s.length !== lower.length) return false;
  for (let i = 0; i < s.length; i++) if ((s.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/** Digits only, at most 15 of them (so the number is exact); -1 otherwise. */
function decimal(v: string): number {
  if (v.length === 0 || v.length > 15) return -1;
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const d = v.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** Whether a comma-separated header value holds `token` (case-insensitive). */
function hasToken(v: string, token: string): boolean {
  if (is(v, token)) return true;
  for (const part of v.split(',')) if (is(part.trim(), token)) return true;
  return false;
}

/** Incremental request-head parser; reuse it with `reset` (done by `push` after each head). */
export class RequestHeadParser {
  private readonly buf: HeadBuffer;
  private parsed: ParsedRequest | null = null;

  constructor(maxHeaderSize: number) {
    this.buf = new HeadBuffer(maxHeaderSize);
  }

  /**
   * Feed the next piece. Returns NEED_MORE, INVALID (not in the accepted subset, or too large:
   * the full path decides), or the offset just after the head, whose result is then `result()`.
   */
  push(chunk: Buffer): number {
    const end = this.buf.push(chunk);
    if (end < 0) {
      if (end === INVALID) this.buf.reset();
      return end;
    }
    const head = this.buf.head!;
    this.buf.reset();
    this.parsed = parseRequest(head);
    return this.parsed === null ? INVALID : end;
  }

  result(): ParsedRequest {
    return this.parsed!;
  }
}

function parseRequest(b: Buffer): ParsedRequest | null {
  const end = b.length;
  const eol = lineEnd(b, 0, end);
  if (eol === -1) return null;
  let i = 0;
  while (i < eol && TCHAR[b[i]!] === 1) i++;
  if (i === 0 || b[i] !== SP) return null;
  const method = b.toString('latin1', 0, i);
  const t0 = ++i;
  while (i < eol && TARGET[b[i]!] === 1) i++;
  if (i === t0 || b[i] !== SP || eol - i !== 9) return null;
  // " HTTP/1.x"
  if (b.toString('latin1', i + 1, i + 8) !== 'HTTP/1.') return null;
  const minor = b[i + 8]! - 0x30;
  if (minor !== 0 && minor !== 1) return null;
  const target = b.toString('latin1', t0, i);
  const raw: string[] = [];
  if (!parseHeaders(b, eol + 2, end, raw)) return null;
  let contentLength = -1;
  let chunked = false;
  let close = minor === 0;
  let upgrade = false;
  let expect = false;
  for (let h = 0; h < raw.length; h += 2) {
    const name = raw[h]!;
    const value = raw[h + 1]!;
    switch (name.length) {
      case 14:
        if (is(name, 'content-length')) {
          if (contentLength !== -1) return null;
          contentLength = decimal(value);
          if (contentLength === -1) return null;
        }
        break;
      case 17:
        if (is(name, 'transfer-encoding')) chunked = true;
        break;
      case 10:
        if (is(name, 'connection')) {
          if (hasToken(value, 'close')) close = true;
          else if (minor === 0 && hasToken(value, 'keep-alive')) close = false;
          if (hasToken(value, 'upgrade')) upgrade = true;
        }
        break;
      case 7:
        if (is(name, 'upgrade')) upgrade = true;
        break;
      case 6:
        if (is(name, 'expect')) expect = true;
        break;
      default:
        break;
    }
  }
  return {
    method,
    target,
    versionMinor: minor,
    rawHeaders: raw,
    chunked,
    contentLength,
    keepAlive: !close,
    upgrade,
    expect,
  };
}

/** Incremental response-head parser. `reset(method)` before each response (HEAD has no body). */
export class ResponseHeadParser {
  private readonly buf: HeadBuffer;
  private parsed: ParsedResponse | null = null;
  private head = false;

  constructor(maxHeaderSize = 64 * 1024) {
    this.buf = new HeadBuffer(maxHeaderSize);
  }

  reset(method: string): void {
    this.buf.reset();
    this.parsed = null;
    this.head = method === 'HEAD';
  }

  push(chunk: Buffer): number {
    const end = this.buf.push(chunk);
    if (end < 0) return end;
    const head = this.buf.head!;
    this.buf.reset();
    this.parsed = parseResponse(head, this.head);
    return this.parsed === null ? INVALID : end;
  }

  result(): ParsedResponse {
    return this.parsed!;
  }
}

function parseResponse(b: Buffer, isHead: boolean): ParsedResponse | null {
  const end = b.length;
  const eol = lineEnd(b, 0, end);
  // "HTTP/1.x NNN" at least.
  if (eol < 12 || b.toString('latin1', 0, 7) !== 'HTTP/1.' || b[8] !== SP) return null;
  const minor = b[7]! - 0x30;
  if (minor !== 0 && minor !== 1) return null;
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const d = b[i]! - 0x30;
    if (d < 0 || d > 9) return null;
    status = status * 10 + d;
  }
  if (status < 100) return null;
  let reason = '';
  if (eol > 12) {
    if (b[12] !== SP) return null;
    for (let i = 13; i < eol; i++) if (VALUE[b[i]!] !== 1 && b[i]! < 0x80) return null;
    reason = b.toString('latin1', 13, eol);
  }
  const raw: string[] = [];
  if (!parseHeaders(b, eol + 2, end, raw)) return null;
  let length = -1;
  let te: string | null = null;
  let close = minor === 0;
  for (let h = 0; h < raw.length; h += 2) {
    const name = raw[h]!;
    const value = raw[h + 1]!;
    if (is(name, 'content-length')) {
      const n = decimal(value);
      if (n === -1 || (length !== -1 && n !== length)) return null;
      length = n;
    } else if (is(name, 'transfer-encoding')) {
      te = te === null ? value : `${te}, ${value}`;
    } else if (is(name, 'connection')) {
      if (hasToken(value, 'close')) close = true;
      else if (minor === 0 && hasToken(value, 'keep-alive')) close = false;
    }
  }
  let kind: BodyKind;
  if (status === 101) kind = 'switch';
  else if (isHead || status < 200 || status === 204 || status === 304) kind = 'none';
  else if (te !== null) {
    if (length !== -1) return null;
    const codings = te.split(',');
    if (!is(codings[codings.length - 1]!.trim(), 'chunked')) return null;
    kind = 'chunked';
  } else if (length !== -1) kind = length === 0 ? 'none' : 'length';
  else kind = 'close';
  return { status, reason, rawHeaders: raw, kind, length, keepAlive: !close && kind !== 'close' };
}

const enum Chunk {
  Size,
  SizeLf,
  Ext,
  Data,
  DataCr,
  DataLf,
  Trailer,
  TrailerLf,
  TrailerLine,
  TrailerLineLf,
  Done,
}

/**
 * Follows one message body as it streams through, without copying it: `push` returns how many of
 * the piece's bytes belong to the body (the rest is not this message's), or -1 when the body
 * breaks its framing; `done` tells when the body is complete.
 */
export class BodyFramer {
  done = false;
  /** Body bytes so far without the chunked framing (what the metrics count as proxied). */
  payload = 0;
  private kind: BodyKind = 'none';
  private left = 0;
  private st = Chunk.Size;
  private size = 0;
  private digits = 0;
  private lineBytes = 0;

  start(kind: BodyKind, length: number): void {
    this.kind = kind;
    this.done = kind === 'none';
    this.left = kind === 'length' ? length : 0;
    this.st = Chunk.Size;
    this.size = 0;
    this.digits = 0;
    this.lineBytes = 0;
    this.payload = 0;
  }

  push(chunk: Buffer): number {
    if (this.done) return 0;
    switch (this.kind) {
      case 'length': {
        const n = Math.min(this.left, chunk.length);
        this.left -= n;
        this.payload += n;
        if (this.left === 0) this.done = true;
        return n;
      }
      case 'chunked':
        return this.chunked(chunk);
      case 'close':
        this.payload += chunk.length;
        return chunk.length;
      default:
        return 0;
    }
  }

  private chunked(b: Buffer): number {
    const n = b.length;
    let i = 0;
    while (i < n) {
      const c = b[i]!;
      switch (this.st) {
        case Chunk.Size: {
          const d = hex(c);
          if (d !== -1) {
            if (++this.digits > 13) return -1; // past 2^52: no honest chunk is that large
            this.size = this.size * 16 + d;
          } else if (this.digits === 0) return -1;
          else if (c === CR) this.st = Chunk.SizeLf;
          else if (c === 0x3b /* ; */ || c === SP || c === HTAB) this.st = Chunk.Ext;
          else return -1;
          i++;
          break;
        }
        case Chunk.Ext:
          // Extensions are skipped up to the CR; no control bytes but HTAB.
          if (c === CR) this.st = Chunk.SizeLf;
          else if (c < 0x20 ? c !== HTAB : c === 0x7f) return -1;
          if (++this.lineBytes > 4096) return -1;
          i++;
          break;
        case Chunk.SizeLf:
          if (c !== LF) return -1;
          i++;
          this.lineBytes = 0;
          this.digits = 0;
          if (this.size === 0) this.st = Chunk.Trailer;
          else {
            this.left = this.size;
            this.st = Chunk.Data;
          }
          this.size = 0;
          break;
        case Chunk.Data: {
          const take = Math.min(this.left, n - i);
          this.left -= take;
          this.payload += take;
          i += take;
          if (this.left === 0) this.st = Chunk.DataCr;
          break;
        }
        case Chunk.DataCr:
          if (c !== CR) return -1;
          this.st = Chunk.DataLf;
          i++;
          break;
        case Chunk.DataLf:
          if (c !== LF) return -1;
          this.st = Chunk.Size;
          i++;
          break;
        case Chunk.Trailer:
          // Start of a trailer line, or the final CRLF.
          if (c === CR) this.st = Chunk.TrailerLf;
          else if (TCHAR[c] === 1) {
            this.st = Chunk.TrailerLine;
            this.lineBytes = 1;
          } else return -1;
          i++;
          break;
        case Chunk.TrailerLf:
          if (c !== LF) return -1;
          i++;
          this.st = Chunk.Done;
          this.done = true;
          return i;
        case Chunk.TrailerLine:
          if (c === CR) this.st = Chunk.TrailerLineLf;
          else if (c !== HTAB && (c < 0x20 || c === 0x7f)) return -1;
          if (++this.lineBytes > 8192) return -1;
          i++;
          break;
        case Chunk.TrailerLineLf:
          if (c !== LF) return -1;
          this.st = Chunk.Trailer;
          i++;
          break;
        default:
          return i;
      }
    }
    return n;
  }
}

function hex(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}
