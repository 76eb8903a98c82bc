/**
 * Reading a scanned head's field spans: noting what frames the message, and (when asked) turning
 * them into the flat [name, value, ...] string array. Shared by the request and response parsers;
 * what the notes mean differs between the two and is decided there.
 */
import { equalsLower } from './chars.js';
import { H1_ERRORS, type H1Error } from './errors.js';
import {
  CL_INVALID,
  CL_OVERFLOW,
  F_CONNECTION,
  F_CONTENT_LENGTH,
  F_EXPECT,
  F_KEEP_ALIVE,
  F_TRANSFER_ENCODING,
  F_UPGRADE,
  addCodings,
  connectionFlags,
  contentLength,
  fieldKind,
  keepAliveTimeout,
  type CodingList,
} from './fields.js';
import { FIELD_SLOTS, type HeadScanner } from './head-scanner.js';

/** What the framing fields of one head said; reused from head to head. */
export class FieldNotes {
  /** Content-Length value, or -1 when absent. */
  contentLength = -1;
  readonly codings: CodingList = { elements: 0, chunked: 0, chunkedLast: false, malformed: false };
  /** CONN_* flags over all Connection fields. */
  connection = 0;
  upgrade = false;
  /** Expect fields seen, and whether all of them were 100-continue. */
  expect = 0;
  expectContinueOnly = true;
  /** The smallest `timeout` of the Keep-Alive fields, in seconds; -1 when none gave one. */
  keepAliveTimeout = -1;

  clear(): void {
    this.contentLength = -1;
    this.codings.elements = this.codings.chunked = 0;
    this.codings.chunkedLast = this.codings.malformed = false;
    this.connection = 0;
    this.upgrade = false;
    this.expect = 0;
    this.expectContinueOnly = true;
    this.keepAliveTimeout = -1;
  }
}

/** Note what frames the head `sc` just scanned in `notes`; or the error that refuses it. */
export function noteFields(sc: HeadScanner, notes: FieldNotes): H1Error | undefined {
  notes.clear();
  const buf = sc.src;
  const base = sc.base;
  const f = sc.fields;
  for (let k = 0, j = 0; k < sc.count; k++, j += FIELD_SLOTS) {
    const vs = base + f[j + 2]!;
    const ve = base + f[j + 3]!;
    switch (fieldKind(buf, base + f[j]!, base + f[j + 1]!)) {
      case F_CONTENT_LENGTH: {
        if (notes.contentLength !== -1) return H1_ERRORS.duplicate_content_length;
        const n = contentLength(buf, vs, ve, base + f[j + 4]!);
        if (n === CL_INVALID) return H1_ERRORS.invalid_content_length;
        if (n === CL_OVERFLOW) return H1_ERRORS.content_length_overflow;
        notes.contentLength = n;
        break;
      }
      case F_TRANSFER_ENCODING:
        addCodings(notes.codings, buf, vs, ve, base + f[j + 4]!);
        break;
      case F_CONNECTION:
        notes.connection |= connectionFlags(buf, vs, ve, base + f[j + 4]!);
        break;
      case F_UPGRADE:
        notes.upgrade = true;
        break;
      case F_EXPECT:
        notes.expect++;
        if (!equalsLower(buf, vs, ve, '100-continue')) notes.expectContinueOnly = false;
        break;
      case F_KEEP_ALIVE: {
        const t = keepAliveTimeout(buf, vs, ve);
        if (t !== -1 && (notes.keepAliveTimeout === -1 || t < notes.keepAliveTimeout))
          notes.keepAliveTimeout = t;
        break;
      }
    }
  }
  return undefined;
}

/**
 * The fields of the head `sc` just scanned as [name, value, ...] strings, names as sent and values
 * without their surrounding whitespace. `text` is `sc.text()`: each string is a slice of it.
 */
export function fieldStrings(sc: HeadScanner, text: string): string[] {
  const f = sc.fields;
  const headers = new Array<string>(sc.count * 2);
  for (let k = 0, j = 0; k < sc.count; k++, j += FIELD_SLOTS) {
    headers[2 * k] = text.slice(f[j], f[j + 1]);
    headers[2 * k + 1] = f[j + 2] === f[j + 3] ? '' : text.slice(f[j + 2], f[j + 3]);
  }
  return headers;
}
