/**
 * Finds where a message body ends without touching the bytes: fed the body bytes as they arrive,
 * it says how many of them belong to the current message and when the message is complete, so the
 * proxy forwards the client's (or the upstream's) bytes verbatim and knows where the next message
 * starts. For chunked bodies it validates the framing as strictly as node's parser (sizes, chunk
 * extensions, the CRLF after each chunk, trailers) without decoding or copying anything.
 */
import { CLASS, CR, FIELD, HEX, LF, OWS, QDTEXT, TOKEN, hexValue } from './chars.js';
import { H1_ERRORS, type H1Error } from './errors.js';

/** How a body is delimited (RequestFraming and ResponseFraming are subsets). */
export type BodyFraming = 'none' | 'length' | 'chunked' | 'close' | 'switch';

/** Limits inside a chunked body. */
export interface BodyFramerOptions {
  /** Largest trailer section in bytes (give it the head limit: node counts trailers like a head). Default 16384. */
  maxTrailerSize?: number;
  /** Longest chunk-size line, extensions included (node allows 16 KiB of extensions). Default 16384. */
  maxChunkLineSize?: number;
  /**
   * More trailer names refused as `forbidden_trailer` (lower-case letters and "-"), matched
   * ignoring case and with `_` read as `-`; a name ending in `*` matches every name that begins
   * with the rest. For a proxy that forwards request trailers: the fields it vouches for in the
   * head it rewrote, which a caller must not add after it (an upstream that merges trailers into
   * headers would trust them).
   */
  forbidTrailers?: readonly string[];
}

const B_DONE = 0;
const B_LENGTH = 1;
const B_CLOSE = 2;
const B_FAILED = 3;
const C_SIZE_START = 10;
const C_SIZE = 11;
const C_EXT_NAME_START = 12;
const C_EXT_NAME = 13;
const C_EXT_VALUE_START = 14;
const C_EXT_TOKEN = 15;
const C_EXT_QUOTED = 16;
const C_EXT_ESCAPE = 17;
const C_EXT_AFTER_QUOTE = 18;
const C_SIZE_LF = 19;
const C_DATA = 20;
const C_DATA_CR = 21;
const C_DATA_LF = 22;
const C_TRAILER_START = 23;
const C_TRAILER_NAME = 24;
const C_TRAILER_VALUE = 25;
const C_TRAILER_LF = 26;
const C_END_LF = 27;

const SEMI = 0x3b;
const EQUALS = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const UNDERSCORE = 0x5f;
const DASH = 0x2d;
const MAX_SIZE_BEFORE_DIGIT = Math.floor(Number.MAX_SAFE_INTEGER / 16);

/** Trailer fields that would change the framing or the connection after the fact. */
const FORBIDDEN_TRAILERS = ['content-length', 'transfer-encoding', 'connection'];
/** Forbidden names are tracked as bits of one integer while a trailer name is read. */
const MAX_FORBIDDEN = 30;

/** Frames the bodies of one connection direction, one message after the other. */
export class BodyFramer {
  private readonly maxTrailerSize: number;
  private readonly maxChunkLineSize: number;
  /** Forbidden trailer names (without a final `*`); bit k of the masks below is names[k]. */
  private readonly names: readonly string[];
  /** Names matched as prefixes. */
  private readonly prefixes: number;
  /** Names in which `_` reads as `-`. */
  private readonly folds: number;
  private readonly allNames: number;
  private state = B_DONE;
  private remaining = 0;
  private lineBytes = 0;
  private trailerBytes = 0;
  private nameLen = 0;
  private candidates = 0;
  /** Why the body was refused, once execute() returned -1. */
  error: H1Error | undefined;
  /** Body bytes of this message so far, without the chunked framing (what a proxy counts as moved). */
  payload = 0;

  constructor(opts: BodyFramerOptions = {}) {
    this.maxTrailerSize = opts.maxTrailerSize ?? 16_384;
    this.maxChunkLineSize = opts.maxChunkLineSize ?? 16_384;
    const names = [...FORBIDDEN_TRAILERS];
    let prefixes = 0;
    let folds = 0;
    for (const name of opts.forbidTrailers ?? []) {
      const bit = 1 << names.length;
      folds |= bit;
      if (name.endsWith('*')) prefixes |= bit;
      names.push(name.endsWith('*') ? name.slice(0, -1) : name);
    }
    if (names.length > MAX_FORBIDDEN)
      throw new RangeError(`at most ${MAX_FORBIDDEN} forbidden trailer names`);
    this.names = names;
    this.prefixes = prefixes;
    this.folds = folds;
    this.allNames = (1 << names.length) - 1;
  }

  /** Start the body of a new message; `contentLength` is read for framing 'length' only. */
  begin(framing: BodyFraming, contentLength = -1): void {
    this.error = undefined;
    this.payload = 0;
    switch (framing) {
      case 'none':
        this.state = B_DONE;
        break;
      case 'length':
        this.remaining = contentLength;
        this.state = contentLength > 0 ? B_LENGTH : B_DONE;
        break;
      case 'chunked':
        this.state = C_SIZE_START;
        this.lineBytes = 0;
        break;
      case 'close':
      case 'switch':
        this.state = B_CLOSE;
        break;
    }
  }

  /** The message is complete: nothing more belongs to it. */
  get done(): boolean {
    return this.state === B_DONE;
  }

  /**
   * Feed `chunk[start, end)`. Returns how many bytes from `start` belong to this message (all of
   * them unless it ended inside the chunk: then check `done`), or -1 if the body is malformed
   * (see `error`). The whole range is checked before answering: on -1, forward none of it.
   */
  execute(chunk: Buffer, start = 0, end = chunk.length): number {
    switch (this.state) {
      case B_DONE:
        return 0;
      case B_CLOSE:
        this.payload += end - start;
        return end - start;
      case B_FAILED:
        return -1;
      case B_LENGTH: {
        const take = Math.min(this.remaining, end - start);
        this.remaining -= take;
        this.payload += take;
        if (this.remaining === 0) this.state = B_DONE;
        return take;
      }
      default:
        return this.chunked(chunk, start, end);
    }
  }

  /** At end of input: whether the message is complete (a close-delimited body ends here). */
  finish(): boolean {
    if (this.state === B_CLOSE) this.state = B_DONE;
    return this.state === B_DONE;
  }

  private fail(e: H1Error): number {
    this.state = B_FAILED;
    this.error = e;
    return -1;
  }

  private chunked(buf: Buffer, start: number, end: number): number {
    let state = this.state;
    let i = start;
    while (i < end) {
      if (state === C_DATA) {
        const take = Math.min(this.remaining, end - i);
        this.remaining -= take;
        this.payload += take;
        i += take;
        if (this.remaining === 0) state = C_DATA_CR;
        continue;
      }
      const b = buf[i]!;
      if (state <= C_SIZE_LF) {
        if (++this.lineBytes > this.maxChunkLineSize) return this.fail(H1_ERRORS.chunk_line_too_long);
      } else if (state >= C_TRAILER_START && ++this.trailerBytes > this.maxTrailerSize) {
        return this.fail(H1_ERRORS.trailers_too_large);
      }
      switch (state) {
        case C_SIZE_START:
          if ((CLASS[b]! & HEX) === 0) return this.fail(H1_ERRORS.invalid_chunk_size);
          this.remaining = hexValue(b);
          state = C_SIZE;
          break;
        case C_SIZE:
          if ((CLASS[b]! & HEX) !== 0) {
            if (this.remaining > MAX_SIZE_BEFORE_DIGIT) return this.fail(H1_ERRORS.chunk_size_overflow);
            this.remaining = this.remaining * 16 + hexValue(b);
            if (this.remaining > Number.MAX_SAFE_INTEGER) return this.fail(H1_ERRORS.chunk_size_overflow);
          } else if (b === SEMI) state = C_EXT_NAME_START;
          else if (b === CR) state = C_SIZE_LF;
          else return this.fail(H1_ERRORS.invalid_chunk_size);
          break;
        case C_EXT_NAME_START:
          if ((CLASS[b]! & TOKEN) === 0) return this.fail(H1_ERRORS.invalid_chunk_extension);
          state = C_EXT_NAME;
          break;
        case C_EXT_NAME:
          if ((CLASS[b]! & TOKEN) !== 0) break;
          if (b === EQUALS) state = C_EXT_VALUE_START;
          else if (b === SEMI) state = C_EXT_NAME_START;
          else if (b === CR) state = C_SIZE_LF;
          else return this.fail(H1_ERRORS.invalid_chunk_extension);
          break;
        case C_EXT_VALUE_START:
          if ((CLASS[b]! & TOKEN) !== 0) state = C_EXT_TOKEN;
          else if (b === DQUOTE) state = C_EXT_QUOTED;
          else return this.fail(H1_ERRORS.invalid_chunk_extension);
          break;
        case C_EXT_TOKEN:
          if ((CLASS[b]! & TOKEN) !== 0) break;
          if (b === SEMI) state = C_EXT_NAME_START;
          else if (b === CR) state = C_SIZE_LF;
          else return this.fail(H1_ERRORS.invalid_chunk_extension);
          break;
        case C_EXT_QUOTED:
          if (b === DQUOTE) state = C_EXT_AFTER_QUOTE;
          else if (b === BACKSLASH) state = C_EXT_ESCAPE;
          else if ((CLASS[b]! & QDTEXT) === 0) return this.fail(H1_ERRORS.invalid_chunk_extension);
          break;
        case C_EXT_ESCAPE:
          if ((CLASS[b]! & (FIELD | OWS)) === 0) return this.fail(H1_ERRORS.invalid_chunk_extension);
          state = C_EXT_QUOTED;
          break;
        case C_EXT_AFTER_QUOTE:
          if (b === SEMI) state = C_EXT_NAME_START;
          else if (b === CR) state = C_SIZE_LF;
          else return this.fail(H1_ERRORS.invalid_chunk_extension);
          break;
        case C_SIZE_LF:
          if (b !== LF) return this.fail(H1_ERRORS.invalid_line_ending);
          this.lineBytes = 0;
          if (this.remaining === 0) {
            this.trailerBytes = 0;
            state = C_TRAILER_START;
          } else state = C_DATA;
          break;
        case C_DATA_CR:
          if (b !== CR) return this.fail(H1_ERRORS.missing_chunk_crlf);
          state = C_DATA_LF;
          break;
        case C_DATA_LF:
          if (b !== LF) return this.fail(H1_ERRORS.missing_chunk_crlf);
          state = C_SIZE_START;
          break;
        case C_TRAILER_START:
          if (b === CR) state = C_END_LF;
          else if ((CLASS[b]! & TOKEN) !== 0) {
            this.nameLen = 0;
            this.candidates = this.allNames;
            this.matchName(b);
            state = C_TRAILER_NAME;
          } else return this.fail(b === LF ? H1_ERRORS.invalid_line_ending : H1_ERRORS.invalid_trailer);
          break;
        case C_TRAILER_NAME:
          if ((CLASS[b]! & TOKEN) !== 0) this.matchName(b);
          else if (b === COLON) {
            if (this.forbidden()) return this.fail(H1_ERRORS.forbidden_trailer);
            state = C_TRAILER_VALUE;
          } else return this.fail(H1_ERRORS.invalid_trailer);
          break;
        case C_TRAILER_VALUE:
          if (b === CR) state = C_TRAILER_LF;
          else if ((CLASS[b]! & (FIELD | OWS)) === 0) {
            return this.fail(b === LF ? H1_ERRORS.invalid_line_ending : H1_ERRORS.invalid_trailer);
          }
          break;
        case C_TRAILER_LF:
          if (b !== LF) return this.fail(H1_ERRORS.invalid_line_ending);
          state = C_TRAILER_START;
          break;
        case C_END_LF:
          if (b !== LF) return this.fail(H1_ERRORS.invalid_line_ending);
          this.state = B_DONE;
          return i + 1 - start;
      }
      i++;
    }
    this.state = state;
    return end - start;
  }

  /** Narrow the forbidden names still matching the trailer name so far (split-safe: no buffering). */
  private matchName(b: number): void {
    const p = this.nameLen++;
    const names = this.names;
    let c = this.candidates;
    for (let k = 0; c !== 0 && k < names.length; k++) {
      const bit = 1 << k;
      if ((c & bit) === 0) continue;
      const name = names[k]!;
      if (p >= name.length) {
        if ((this.prefixes & bit) === 0) c &= ~bit;
        continue;
      }
      // Names are lower-case letters and "-": OR-ing 0x20 lower-cases a letter and turns no other
      // token byte into a letter or "-".
      const x = b === UNDERSCORE && (this.folds & bit) !== 0 ? DASH : b | 0x20;
      if (x !== name.charCodeAt(p)) c &= ~bit;
    }
    this.candidates = c;
  }

  /** Whether the trailer name just read is forbidden (a candidate left that it covers whole). */
  private forbidden(): boolean {
    const names = this.names;
    for (let k = 0; k < names.length; k++) {
      if ((this.candidates & (1 << k)) !== 0 && this.nameLen >= names[k]!.length) return true;
    }
    return false;
  }
}
