/**
 * The byte-level state machine shared by the request and the response head parsers: start line,
 * header fields, blank line. It validates every byte as it arrives (so a bad byte is refused at
 * once, not after a timeout) and records where each part is instead of building strings; the
 * parsers turn the spans into strings once the head is complete.
 *
 * A head that arrives in one buffer is scanned in place. A head split across buffers is gathered in
 * a small per-parser buffer (grown on demand, at most the head size limit), so the spans always
 * point into one contiguous piece of memory. The limit counts every byte of the head, leading empty
 * lines included: the bytes held in memory are what it bounds.
 */
import { CLASS, COLON, CR, FIELD, HTAB, LF, OWS, SP, TOKEN, VCHAR } from './chars.js';
import { H1_ERRORS, type H1Error } from './errors.js';
import {
  CL_INVALID,
  CL_OVERFLOW,
  F_CONTENT_LENGTH,
  F_TRANSFER_ENCODING,
  addCodings,
  contentLength,
  fieldKind,
  type CodingList,
} from './fields.js';
import { METHOD_ROOT, methodAt, methodStep } from './methods.js';
import { validTarget } from './target.js';

/** `execute` results. */
export const MORE = 0;
export const DONE = 1;
export const FAILED = 2;

const S_REQ_START = 0;
const S_LEAD_LF = 1;
const S_METHOD = 2;
const S_TARGET_START = 3;
const S_TARGET = 4;
const S_VERSION = 5;
const S_START_LF = 6;
const S_RES_START = 7;
const S_STATUS = 8;
const S_REASON = 9;
const S_LINE_START = 10;
const S_NAME = 11;
const S_VALUE_START = 12;
const S_VALUE = 13;
const S_VALUE_LF = 14;
const S_END_LF = 15;

/** "HTTP/" then digit "." digit. */
const VERSION_PREFIX = [0x48, 0x54, 0x54, 0x50, 0x2f];

const EMPTY = Buffer.alloc(0);

/** Slots per header field in `fields`: name start/end, value start/end (trimmed), raw value end. */
export const FIELD_SLOTS = 5;

/** Buffer's native latin1 decoder (on the prototype since node 0.x; toString('latin1', ...) wraps it). */
type LatinSlicing = Buffer & { latin1Slice(start: number, end: number): string };

/**
 * Where the parts of the head just scanned are, for code that rewrites it in bytes (the fast lane).
 * Offsets are relative to `base` in `src`; valid until the scanner's next `execute` or `reset`.
 */
export interface HeadSpans {
  readonly src: Buffer;
  readonly base: number;
  /** Head size in bytes, leading empty lines included: the blank line ends at `base + size`. */
  readonly size: number;
  /** Where the start line begins (after any leading empty lines). */
  readonly s1: number;
  /** Request: target span; response: reason phrase span. */
  readonly s2: number;
  readonly e2: number;
  readonly minor: number;
  /** FIELD_SLOTS per field: name start/end, value start/end (trimmed), line end (at its CR). */
  readonly fields: Int32Array;
  readonly count: number;
}

/** Limits of one head. */
export interface HeadLimits {
  /** Largest head in bytes, start line to blank line inclusive. */
  maxHeaderSize: number;
  /** Most header fields. */
  maxHeaders: number;
}

/** Scans heads; one per connection direction, reused for every message. */
export class HeadScanner implements HeadSpans {
  readonly maxHeaderSize: number;
  readonly maxHeaders: number;
  private readonly startState: number;
  private state: number;
  private acc: Buffer | undefined;
  private accLen = 0;
  private vpos = 0;
  private statusDigits = 0;
  private mark = 0;
  private lastNonOws = 0;

  // Results, valid after DONE until the next execute(). Spans are relative to `base` in `src`.
  /** Buffer holding the head. */
  src: Buffer = EMPTY;
  /** Where the head starts in `src`. */
  base = 0;
  /** Offset in the last buffer given to execute() just past the head. */
  end = 0;
  /** Head size in bytes. */
  size = 0;
  /** Request: the method's trie node (see methods.ts). */
  method = 0;
  /** Where the start line begins; request: e1 is where the method ends. */
  s1 = 0;
  e1 = 0;
  /** Request: target span; response: reason phrase span. */
  s2 = 0;
  e2 = 0;
  major = 0;
  minor = 0;
  status = 0;
  /** Header field spans, FIELD_SLOTS per field. */
  readonly fields: Int32Array;
  count = 0;
  /** Why the head was refused, after FAILED. */
  error: H1Error = H1_ERRORS.invalid_request_line;

  constructor(response: boolean, limits: HeadLimits) {
    this.maxHeaderSize = limits.maxHeaderSize;
    this.maxHeaders = limits.maxHeaders;
    this.startState = response ? S_RES_START : S_REQ_START;
    this.state = this.startState;
    this.fields = new Int32Array(limits.maxHeaders * FIELD_SLOTS);
  }

  /**
   * The whole head as one latin1 string, decoded once: the parsers slice names and values out of
   * it (a V8 substring is far cheaper than one buffer decode per field). Spans index into it.
   */
  text(): string {
    return (this.src as LatinSlicing).latin1Slice(this.base, this.base + this.size);
  }

  /** The span [s, e) of the head as a latin1 string. */
  slice(s: number, e: number): string {
    return (this.src as LatinSlicing).latin1Slice(this.base + s, this.base + e);
  }

  /** Forget any partial head (the next byte starts a new message). */
  reset(): void {
    // Drop the reference to the caller's chunk: it may be large and is not ours to keep.
    this.src = EMPTY;
    this.state = this.startState;
    this.accLen = 0;
    this.count = 0;
  }

  /** Feed `chunk[offset..]`. MORE: all of it belongs to an unfinished head; DONE: see `end`; FAILED: see `error`. */
  execute(chunk: Buffer, offset: number): number {
    const available = chunk.length - offset;
    if (this.accLen === 0) {
      const end = offset + Math.min(available, this.maxHeaderSize);
      const r = this.scan(chunk, offset, offset, end);
      if (r === DONE) {
        this.src = chunk;
        this.base = offset;
        this.end = this.doneAt;
        this.size = this.doneAt - offset;
        return DONE;
      }
      if (r === FAILED) return FAILED;
      if (end < chunk.length) return this.fail(H1_ERRORS.head_too_large);
      this.stash(chunk, offset, available);
      return MORE;
    }
    const from = this.accLen;
    const take = Math.min(available, this.maxHeaderSize - from);
    this.stash(chunk, offset, take);
    const acc = this.acc!;
    const r = this.scan(acc, 0, from, this.accLen);
    if (r === DONE) {
      this.src = acc;
      this.base = 0;
      this.end = offset + (this.doneAt - from);
      this.size = this.doneAt;
      return DONE;
    }
    if (r === FAILED) return FAILED;
    if (take < available) return this.fail(H1_ERRORS.head_too_large);
    return MORE;
  }

  private doneAt = 0;

  private fail(e: H1Error): number {
    this.error = e;
    return FAILED;
  }

  private stash(chunk: Buffer, offset: number, n: number): void {
    if (n === 0) return;
    const need = this.accLen + n;
    let acc = this.acc;
    if (acc === undefined || acc.length < need) {
      const grown = Buffer.allocUnsafe(
        Math.min(this.maxHeaderSize, Math.max(need, 2 * (acc?.length ?? 512))),
      );
      if (acc !== undefined) acc.copy(grown, 0, 0, this.accLen);
      this.acc = acc = grown;
    }
    chunk.copy(acc, this.accLen, offset, offset + n);
    this.accLen = need;
  }

  /** Run the state machine over buf[i, end); spans are stored relative to `base`. */
  private scan(buf: Buffer, base: number, i: number, end: number): number {
    let state = this.state;
    const fields = this.fields;
    while (i < end) {
      const b = buf[i]!;
      switch (state) {
        case S_REQ_START:
          if (b === CR) state = S_LEAD_LF;
          else {
            const node = methodStep(METHOD_ROOT, b);
            if (node < 0)
              return this.stop(state, b === LF ? H1_ERRORS.invalid_line_ending : H1_ERRORS.invalid_method);
            this.method = node;
            this.s1 = i - base;
            state = S_METHOD;
          }
          break;
        case S_LEAD_LF:
          if (b !== LF) return this.stop(state, H1_ERRORS.invalid_line_ending);
          state = this.startState;
          break;
        case S_METHOD:
          if (b === SP) {
            if (methodAt(this.method) === undefined) return this.stop(state, H1_ERRORS.invalid_method);
            this.e1 = i - base;
            state = S_TARGET_START;
          } else {
            const node = methodStep(this.method, b);
            if (node < 0) return this.stop(state, H1_ERRORS.invalid_method);
            this.method = node;
          }
          break;
        case S_TARGET_START:
          if ((CLASS[b]! & VCHAR) === 0) {
            return this.stop(state, b === SP ? H1_ERRORS.invalid_request_line : H1_ERRORS.invalid_target);
          }
          this.s2 = i - base;
          state = S_TARGET;
          break;
        case S_TARGET: {
          while (i < end && (CLASS[buf[i]!]! & VCHAR) !== 0) i++;
          if (i === end) continue;
          const c = buf[i]!;
          if (c !== SP) {
            return this.stop(
              state,
              c === CR || c === LF ? H1_ERRORS.invalid_request_line : H1_ERRORS.invalid_target,
            );
          }
          this.e2 = i - base;
          if (!validTarget(buf, base + this.s2, i, methodAt(this.method)!)) {
            return this.stop(state, H1_ERRORS.invalid_target);
          }
          this.vpos = 0;
          state = S_VERSION;
          break;
        }
        case S_RES_START:
          if (b === CR) {
            state = S_LEAD_LF;
            break;
          }
          if (b === LF) return this.stop(state, H1_ERRORS.invalid_line_ending);
          this.s1 = i - base;
          this.vpos = 0;
          state = S_VERSION;
          continue; // this byte is the first of the version
        case S_VERSION: {
          const p = this.vpos++;
          if (p < 5) {
            if (b !== VERSION_PREFIX[p]) return this.stop(state, H1_ERRORS.invalid_version);
          } else if (p === 5 || p === 7) {
            if (b < 0x30 || b > 0x39) return this.stop(state, H1_ERRORS.invalid_version);
            if (p === 5) this.major = b - 0x30;
            else this.minor = b - 0x30;
          } else if (p === 6) {
            if (b !== 0x2e) return this.stop(state, H1_ERRORS.invalid_version);
          } else if (this.startState === S_REQ_START) {
            if (b !== CR) return this.stop(state, H1_ERRORS.invalid_version);
            state = S_START_LF;
          } else {
            if (b !== SP) return this.stop(state, H1_ERRORS.invalid_status_line);
            this.statusDigits = 0;
            this.status = 0;
            state = S_STATUS;
          }
          break;
        }
        case S_STATUS:
          if (this.statusDigits < 3) {
            if (b < 0x30 || b > 0x39) return this.stop(state, H1_ERRORS.invalid_status_line);
            this.status = this.status * 10 + (b - 0x30);
            this.statusDigits++;
          } else if (b === SP) {
            this.s2 = this.e2 = i + 1 - base;
            state = S_REASON;
          } else if (b === CR) {
            this.s2 = this.e2 = i - base;
            state = S_START_LF;
          } else return this.stop(state, H1_ERRORS.invalid_status_line);
          break;
        case S_REASON: {
          while (i < end && (CLASS[buf[i]!]! & (FIELD | OWS)) !== 0) i++;
          if (i === end) continue;
          if (buf[i] !== CR) return this.stop(state, H1_ERRORS.invalid_status_line);
          this.e2 = i - base;
          state = S_START_LF;
          break;
        }
        case S_START_LF:
          if (b !== LF) return this.stop(state, H1_ERRORS.invalid_line_ending);
          this.count = 0;
          this.lengthSeen = this.codingSeen = false;
          this.codings.elements = this.codings.chunked = 0;
          state = S_LINE_START;
          break;
        case S_LINE_START:
          if ((CLASS[b]! & TOKEN) !== 0) {
            if (this.count === this.maxHeaders) return this.stop(state, H1_ERRORS.too_many_headers);
            fields[this.count * FIELD_SLOTS] = i - base;
            state = S_NAME;
          } else if (b === CR) state = S_END_LF;
          else if (b === SP || b === HTAB) {
            return this.stop(state, this.count === 0 ? H1_ERRORS.invalid_header_name : H1_ERRORS.obs_fold);
          } else
            return this.stop(state, b === LF ? H1_ERRORS.invalid_line_ending : H1_ERRORS.invalid_header_name);
          break;
        case S_NAME: {
          while (i < end && (CLASS[buf[i]!]! & TOKEN) !== 0) i++;
          if (i === end) continue;
          if (buf[i] !== COLON) return this.stop(state, H1_ERRORS.invalid_header_name);
          fields[this.count * FIELD_SLOTS + 1] = i - base;
          state = S_VALUE_START;
          break;
        }
        case S_VALUE_START:
          if (b === SP || b === HTAB) break;
          if (b === CR) {
            const f = this.count * FIELD_SLOTS;
            fields[f + 2] = fields[f + 3] = fields[f + 4] = i - base;
            state = S_VALUE_LF;
          } else if ((CLASS[b]! & FIELD) !== 0) {
            fields[this.count * FIELD_SLOTS + 2] = i - base;
            this.lastNonOws = i + 1 - base;
            state = S_VALUE;
          } else
            return this.stop(
              state,
              b === LF ? H1_ERRORS.invalid_line_ending : H1_ERRORS.invalid_header_value,
            );
          break;
        case S_VALUE: {
          let c = b;
          let last = this.lastNonOws;
          for (;;) {
            const k = CLASS[c]!;
            if ((k & FIELD) !== 0) last = i + 1 - base;
            else if ((k & OWS) === 0) break;
            if (++i === end) break;
            c = buf[i]!;
          }
          this.lastNonOws = last;
          if (i === end) continue;
          if (c !== CR) {
            return this.stop(
              state,
              c === LF ? H1_ERRORS.invalid_line_ending : H1_ERRORS.invalid_header_value,
            );
          }
          const f = this.count * FIELD_SLOTS;
          fields[f + 3] = last;
          fields[f + 4] = i - base;
          state = S_VALUE_LF;
          break;
        }
        case S_VALUE_LF: {
          if (b !== LF) return this.stop(state, H1_ERRORS.invalid_line_ending);
          const e = this.checkField(buf, base);
          if (e !== undefined) return this.stop(state, e);
          this.count++;
          state = S_LINE_START;
          break;
        }
        case S_END_LF:
          if (b !== LF) return this.stop(state, H1_ERRORS.invalid_line_ending);
          this.doneAt = i + 1;
          this.state = this.startState;
          this.accLen = 0;
          return DONE;
      }
      i++;
    }
    this.state = state;
    return MORE;
  }

  private lengthSeen = false;
  private codingSeen = false;
  private readonly codings: CodingList = { elements: 0, chunked: 0, chunkedLast: false, malformed: false };

  /**
   * The framing conflicts llhttp refuses at the end of the field line rather than of the head:
   * a malformed or repeated Content-Length, and Content-Length with Transfer-Encoding.
   */
  private checkField(buf: Buffer, base: number): H1Error | undefined {
    const f = this.count * FIELD_SLOTS;
    const fields = this.fields;
    const kind = fieldKind(buf, base + fields[f]!, base + fields[f + 1]!);
    if (kind === F_CONTENT_LENGTH) {
      if (this.lengthSeen) return H1_ERRORS.duplicate_content_length;
      this.lengthSeen = true;
      const n = contentLength(buf, base + fields[f + 2]!, base + fields[f + 3]!, base + fields[f + 4]!);
      if (n === CL_INVALID) return H1_ERRORS.invalid_content_length;
      if (n === CL_OVERFLOW) return H1_ERRORS.content_length_overflow;
    } else if (kind === F_TRANSFER_ENCODING) {
      this.codingSeen = true;
      // llhttp refuses any Transfer-Encoding field after one that named chunked, at once.
      const codings = this.codings;
      const before = codings.chunked;
      addCodings(codings, buf, base + fields[f + 2]!, base + fields[f + 3]!, base + fields[f + 4]!);
      if (codings.chunked > 1 || (before > 0 && this.startState === S_REQ_START)) {
        return H1_ERRORS.invalid_transfer_encoding;
      }
    } else return undefined;
    return this.lengthSeen && this.codingSeen ? H1_ERRORS.content_length_with_transfer_encoding : undefined;
  }

  private stop(state: number, e: H1Error): number {
    this.state = state;
    this.error = e;
    return FAILED;
  }
}
