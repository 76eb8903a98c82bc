/**
 * Byte classes for HTTP/1.1 parsing (RFC 9110 §5.6, RFC 9112), as one 256-entry table of bit flags
 * so the scanners test a byte with a single lookup instead of comparisons or regexes.
 */

/** tchar: the bytes of a method, a header name, a chunk-extension name or token value. */
export const TOKEN = 1;
/** Visible ASCII (0x21-0x7E): the bytes node's parser allows in a request target. */
export const VCHAR = 2;
/** field-vchar: visible ASCII and obs-text (0x80-0xFF); SP and HTAB are handled apart. */
export const FIELD = 4;
/** Hexadecimal digit. */
export const HEX = 8;
/** SP or HTAB (optional whitespace). */
export const OWS = 16;
/** qdtext of a quoted-string: HTAB, SP, 0x21, 0x23-0x5B, 0x5D-0x7E, obs-text. */
export const QDTEXT = 32;
/** Bytes of an authority (RFC 3986 §3.2): unreserved, sub-delims, ":", "@", "[", "]", "%". */
export const AUTHORITY = 64;

/** Flags of every byte value. */
export const CLASS: Uint8Array = (() => {
  const t = new Uint8Array(256);
  const tchar = "!#$%&'*+-.^_`|~";
  const authority = "-._~!$&'()*+,;=:@[]%";
  for (let b = 0; b < 256; b++) {
    const c = String.fromCharCode(b);
    const alnum = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
    let f = 0;
    if (alnum || tchar.includes(c)) f |= TOKEN;
    if (b >= 0x21 && b <= 0x7e) f |= VCHAR | FIELD;
    if (b >= 0x80) f |= FIELD | QDTEXT;
    if ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66)) f |= HEX;
    if (b === 0x20 || b === 0x09) f |= OWS | QDTEXT;
    if (b === 0x21 || (b >= 0x23 && b <= 0x5b) || (b >= 0x5d && b <= 0x7e)) f |= QDTEXT;
    if (alnum || authority.includes(c)) f |= AUTHORITY;
    t[b] = f;
  }
  return t;
})();

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HTAB = 0x09;
export const COLON = 0x3a;

/** Value of a hexadecimal digit byte (callers check HEX first). */
export function hexValue(b: number): number {
  return b <= 0x39 ? b - 0x30 : (b | 0x20) - 0x57;
}

/**
 * Whether `buf[start, end)` equals `lower` ignoring ASCII case. `lower` must be lowercase letters,
 * digits or "-": OR-ing 0x20 folds letters and leaves those unchanged.
 */
export function equalsLower(buf: Uint8Array, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    if ((buf[start + i]! | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}
