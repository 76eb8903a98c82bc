/**
 * Reading the header fields that frame a message — Content-Length, Transfer-Encoding, Connection,
 * Expect — and the Keep-Alive hint of a response straight from the head's bytes, with the same acceptance rules as node's parser where
 * that parser is strict and RFC 9110/9112's where it is lenient.
 */
import { CLASS, HTAB, OWS, equalsLower } from './chars.js';

/** Content-Length that is not a number. */
export const CL_INVALID = -1;
/** Content-Length above 2^53-1. */
export const CL_OVERFLOW = -2;

/**
 * The value of a Content-Length field: one run of digits. `end` is the trimmed value end and
 * `rawEnd` the line's end: trailing spaces are allowed, a trailing tab is not (as in llhttp).
 */
export function contentLength(buf: Uint8Array, start: number, end: number, rawEnd: number): number {
  if (start === end) return CL_INVALID;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return CL_INVALID;
    if (n > (Number.MAX_SAFE_INTEGER - d) / 10) return CL_OVERFLOW;
    n = n * 10 + d;
  }
  for (let i = end; i < rawEnd; i++) if (buf[i] === HTAB) return CL_INVALID;
  return n;
}

/** Transfer-Encoding accumulated over all its fields, in order. */
export interface CodingList {
  /** Elements seen (empty ones included). */
  elements: number;
  /** Times the chunked coding appears. */
  chunked: number;
  /** Whether the last element seen is chunked. */
  chunkedLast: boolean;
  /** A field was empty or ended in a tab (llhttp refuses "chunked\t"). */
  malformed: boolean;
}

/** Add one Transfer-Encoding field's elements to `list`. */
export function addCodings(
  list: CodingList,
  buf: Uint8Array,
  start: number,
  end: number,
  rawEnd: number,
): void {
  if (start === end) list.malformed = true;
  for (let i = end; i < rawEnd; i++) if (buf[i] === HTAB) list.malformed = true;
  let s = start;
  while (s <= end) {
    let e = s;
    while (e < end && buf[e] !== 0x2c) e++;
    let a = s;
    let z = e;
    while (a < z && (CLASS[buf[a]!]! & OWS) !== 0) a++;
    while (z > a && (CLASS[buf[z - 1]!]! & OWS) !== 0) z--;
    const chunked = equalsLower(buf, a, z, 'chunked');
    list.elements++;
    if (chunked) list.chunked++;
    list.chunkedLast = chunked;
    s = e + 1;
  }
}

/** Connection options that matter for framing. */
export const CONN_CLOSE = 1;
export const CONN_KEEP_ALIVE = 2;
export const CONN_UPGRADE = 4;
/** Any other token: a field the sender declares hop-by-hop, which a proxy removes. */
export const CONN_OTHER = 8;

/**
 * The CONN_* flags named in one Connection field (comma-separated, case-insensitive tokens). An
 * option followed by a tab (before the comma or the line end) is not recognised, as in llhttp,
 * except "close": closing is always safe. Such an option is not CONN_OTHER either.
 */
export function connectionFlags(buf: Uint8Array, start: number, end: number, rawEnd: number): number {
  let flags = 0;
  let s = start;
  while (s < rawEnd) {
    let e = s;
    while (e < rawEnd && buf[e] !== 0x2c) e++;
    let a = s;
    let z = e;
    while (a < z && (CLASS[buf[a]!]! & OWS) !== 0) a++;
    let tab = false;
    while (z > a && (CLASS[buf[z - 1]!]! & OWS) !== 0) if (buf[--z] === HTAB) tab = true;
    const n = z - a;
    if (n === 5 && equalsLower(buf, a, z, 'close')) flags |= CONN_CLOSE;
    else if (n === 10 && equalsLower(buf, a, z, 'keep-alive')) flags |= tab ? 0 : CONN_KEEP_ALIVE;
    else if (n === 7 && equalsLower(buf, a, z, 'upgrade')) flags |= tab ? 0 : CONN_UPGRADE;
    else if (n !== 0) flags |= CONN_OTHER;
    s = e + 1;
  }
  return flags;
}

/** Which framing-relevant field a header name is, by length then bytes. */
export const F_OTHER = 0;
export const F_CONTENT_LENGTH = 1;
export const F_TRANSFER_ENCODING = 2;
export const F_CONNECTION = 3;
export const F_UPGRADE = 4;
export const F_EXPECT = 5;
export const F_KEEP_ALIVE = 6;

/** Classify the header name `buf[start, end)`. */
export function fieldKind(buf: Uint8Array, start: number, end: number): number {
  switch (end - start) {
    case 6:
      return equalsLower(buf, start, end, 'expect') ? F_EXPECT : F_OTHER;
    case 7:
      return equalsLower(buf, start, end, 'upgrade') ? F_UPGRADE : F_OTHER;
    case 10:
      if (equalsLower(buf, start, end, 'connection')) return F_CONNECTION;
      return equalsLower(buf, start, end, 'keep-alive') ? F_KEEP_ALIVE : F_OTHER;
    case 14:
      return equalsLower(buf, start, end, 'content-length') ? F_CONTENT_LENGTH : F_OTHER;
    case 17:
      return equalsLower(buf, start, end, 'transfer-encoding') ? F_TRANSFER_ENCODING : F_OTHER;
    default:
      return F_OTHER;
  }
}

/** The most seconds `keepAliveTimeout` reports; larger values are clamped (the pool caps it anyway). */
export const KEEP_ALIVE_TIMEOUT_MAX = 86_400;

/**
 * The `timeout` parameter of a Keep-Alive field (`Keep-Alive: timeout=5, max=100`, RFC 2068
 * §19.7.1.1, kept by RFC 9112 for HTTP/1.0-style hints): how many seconds the sender keeps an idle
 * connection open. Parameters are comma-separated `name=value` pairs, the name case-insensitive, the
 * value digits, optionally quoted. -1 when there is no `timeout` or its value is not a number.
 */
export function keepAliveTimeout(buf: Uint8Array, start: number, end: number): number {
  let s = start;
  while (s < end) {
    let e = s;
    while (e < end && buf[e] !== 0x2c) e++;
    let a = s;
    while (a < e && (CLASS[buf[a]!]! & OWS) !== 0) a++;
    let eq = a;
    while (eq < e && buf[eq] !== 0x3d) eq++;
    let n = eq;
    while (n > a && (CLASS[buf[n - 1]!]! & OWS) !== 0) n--;
    if (eq < e && n - a === 7 && equalsLower(buf, a, n, 'timeout')) return seconds(buf, eq + 1, e);
    s = e + 1;
  }
  return -1;
}

/** Digits between `start` and `end`, around which whitespace and one pair of quotes may stand; or -1. */
function seconds(buf: Uint8Array, start: number, end: number): number {
  let a = start;
  let z = end;
  while (a < z && (CLASS[buf[a]!]! & OWS) !== 0) a++;
  while (z > a && (CLASS[buf[z - 1]!]! & OWS) !== 0) z--;
  if (z - a >= 2 && buf[a] === 0x22 && buf[z - 1] === 0x22) {
    a++;
    z--;
  }
  if (a === z) return -1;
  let v = 0;
  for (let i = a; i < z; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return -1;
    v = Math.min(v * 10 + d, KEEP_ALIVE_TIMEOUT_MAX);
  }
  return v;
}
