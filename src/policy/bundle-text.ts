/**
 * Decoding and parsing a bundle's text in slices. A 10,000-license bundle is about 2 MB: decoding
 * it from UTF-8 and JSON.parse of it hold the event loop for 20–30 ms on a small machine, more
 * when a garbage collection lands inside. Both are cut here into pieces of a few hundred
 * kilobytes or licenses, with turns of the event loop between them (policy/slice.ts).
 *
 * The parse is JSON.parse all the same: a quick structural scan finds `payload.licenses`, the
 * document without that array is parsed in one (small) piece, and the array a batch of items at
 * a time. Anything the scan does not expect — a duplicate or escaped key, no such array,
 * malformed text — falls back to JSON.parse of the whole text, so results and error messages
 * are exactly JSON.parse's.
 */
import { StringDecoder } from 'node:string_decoder';
import { runSliced, type Slicer } from './slice.js';

/** Bytes decoded per slice. */
const DECODE_CHUNK = 256 * 1024;
/** Licenses parsed per JSON.parse call. */
const PARSE_BATCH = 256;
/** Characters scanned between two looks at the clock. */
const SCAN_CHECK = 16 * 1024;

/** Decode UTF-8 like `Buffer.toString('utf8')` (invalid sequences become U+FFFD), in slices. */
export async function decodeUtf8Sliced(bytes: Uint8Array, slicer: Slicer): Promise<string> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length <= DECODE_CHUNK) return buf.toString('utf8');
  const decoder = new StringDecoder('utf8');
  let text = '';
  for (let at = 0; at < buf.length; at += DECODE_CHUNK) {
    text += decoder.write(buf.subarray(at, at + DECODE_CHUNK));
    if (slicer.spent()) await slicer.pause();
  }
  return text + decoder.end();
}

/** Where the licenses array sits in the text: its brackets and the commas between its items. */
interface LicensesSpan {
  open: number;
  close: number;
  commas: number[];
}

const ROOT = 1;
const PAYLOAD = 2;
const LICENSES = 3;
const OTHER = 4;

/**
 * Find `payload.licenses` (the array under key "payload" of the top object, key "licenses").
 * Returns null when the text is not shaped as expected; the caller then parses it whole.
 */
function* scan(text: string): Generator<void, LicensesSpan | null> {
  const n = text.length;
  const roles: number[] = [];
  /** Per open Root or Payload object: the last key read, and whether a key comes next. */
  const keys: (string | null)[] = [];
  let expectKey = false;
  let span: LicensesSpan | null = null;
  let payloads = 0;
  let nextCheck = SCAN_CHECK;
  for (let i = 0; i < n;) {
    if (i >= nextCheck) {
      nextCheck = i + SCAN_CHECK;
      yield;
    }
    const c = text.charCodeAt(i);
    const top = roles.length === 0 ? 0 : roles[roles.length - 1]!;
    if (c === 0x22) {
      let end = text.indexOf('"', i + 1);
      for (;;) {
        if (end === -1) return null;
        let slashes = 0;
        while (text.charCodeAt(end - 1 - slashes) === 0x5c) slashes++;
        if (slashes % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      if (expectKey && (top === ROOT || top === PAYLOAD)) {
        const key = text.slice(i + 1, end);
        // An escaped key may spell "payload" or "licenses": leave such documents to JSON.parse.
        if (key.includes('\\')) return null;
        keys[keys.length - 1] = key;
        expectKey = false;
      }
      i = end + 1;
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      const key = top === ROOT || top === PAYLOAD ? keys[keys.length - 1] : null;
      let role = OTHER;
      if (top === 0 && c === 0x7b) role = ROOT;
      else if (top === ROOT && c === 0x7b && key === 'payload') role = PAYLOAD;
      else if (top === PAYLOAD && c === 0x5b && key === 'licenses') role = LICENSES;
      if (role === PAYLOAD && ++payloads > 1) return null;
      if (role === LICENSES) {
        if (span !== null) return null;
        span = { open: i, close: -1, commas: [] };
      }
      roles.push(role);
      if (role === ROOT || role === PAYLOAD) {
        keys.push(null);
        expectKey = true;
      }
    } else if (c === 0x7d || c === 0x5d) {
      const role = roles.pop();
      if (role === undefined) return null;
      if (role === ROOT || role === PAYLOAD) keys.pop();
      if (role === LICENSES) span!.close = i;
    } else if (c === 0x2c) {
      if (top === LICENSES) span!.commas.push(i);
      else if (top === ROOT || top === PAYLOAD) expectKey = true;
    }
    i++;
  }
  return span !== null && span.close !== -1 && roles.length === 0 ? span : null;
}

/** A value no bundle holds, standing in for the licenses array while the rest is parsed. */
const MARKER = '\u0000portlicense:licenses';

/**
 * JSON.parse(text), in slices for a bundle document: the same value, or the same SyntaxError.
 */
export async function parseJsonSliced(text: string, slicer: Slicer): Promise<unknown> {
  const span = await runSliced(scan(text), slicer);
  if (span === null) return JSON.parse(text);
  let doc: unknown;
  try {
    doc = JSON.parse(text.slice(0, span.open) + JSON.stringify(MARKER) + text.slice(span.close + 1));
  } catch {
    return JSON.parse(text);
  }
  const payload = (doc as { payload?: { licenses?: unknown } }).payload;
  // A later duplicate key (escaped, so the scan could not see it) would have won in JSON.parse.
  if (payload?.licenses !== MARKER) return JSON.parse(text);
  const licenses: unknown[] = [];
  const { open, close, commas } = span;
  for (let first = 0; first <= commas.length; first += PARSE_BATCH) {
    const from = first === 0 ? open + 1 : commas[first - 1]! + 1;
    const last = first + PARSE_BATCH;
    const to = last <= commas.length ? commas[last - 1]! : close;
    let batch: unknown[];
    try {
      batch = JSON.parse('[' + text.slice(from, to) + ']') as unknown[];
    } catch {
      return JSON.parse(text);
    }
    // Exactly one item between two commas: so the batches joined back are the array as written
    // (an empty batch would hide a trailing comma JSON.parse refuses).
    const expected = Math.min(last, commas.length + 1) - first;
    if (batch.length !== expected && !(commas.length === 0 && batch.length === 0)) return JSON.parse(text);
    for (let i = 0; i < batch.length; i++) licenses.push(batch[i]);
    if (slicer.spent()) await slicer.pause();
  }
  payload.licenses = licenses;
  return doc;
}
