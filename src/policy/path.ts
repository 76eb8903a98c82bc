/**
 * Request-target parsing and path normalisation (SPEC §2.3). Path rules are matched against the
 * normalised path, and the proxy forwards that same string upstream, so what was authorised is
 * exactly what the upstream sees: no encoded dot segment, doubled slash or backslash can make the
 * two disagree. The normal case — an already canonical path — is one scan with no allocation.
 */

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const BACKSLASH = 0x5c;
const QUESTION = 0x3f;
const HASH = 0x23;

/** ASCII characters that may stand raw in a canonical path segment (RFC 3986 pchar, minus `%`). */
const PCHAR = new Uint8Array(128);
/** RFC 3986 unreserved: the only characters whose percent-encoding is decoded. */
const UNRESERVED = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9\-._~]/.test(ch)) UNRESERVED[c] = 1;
  if (UNRESERVED[c] === 1 || "!$&'()*+,;=:@".includes(ch)) PCHAR[c] = 1;
}

const HEX = '0123456789ABCDEF';

function pct(b: number): string {
  return '%' + HEX[b >> 4]! + HEX[b & 15]!;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Normalise a request path (no query) to its canonical form, or return null when it cannot be
 * (the proxy answers 400). Rules, Envoy-like:
 * - it must start with `/`;
 * - `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded; every other escape stays
 *   encoded with upper-case hex, so `%2F`, `%5C` and `%25` never become separators or escapes and
 *   reserved characters keep the meaning the upstream gives them;
 * - an invalid escape, a control character (C0, DEL, C1; raw or decoded), a raw `?` or `#`, a lone
 *   surrogate or bytes that are not valid UTF-8 → null;
 * - a raw `\` is a `/`; runs of slashes collapse to one;
 * - `.` and `..` segments are resolved (after decoding, so `%2e%2e` counts); `..` at the root stays
 *   at the root (RFC 3986 remove_dot_segments);
 * - a segment some upstream could still resolve as `..` → null: `..;x` (path parameters, which
 *   Tomcat-style servers strip) and dots between encoded separators (`..%2Fadmin`);
 * - characters not allowed raw in a path (space, `"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`,
 *   `}`, non-ASCII as UTF-8) are percent-encoded.
 * Returns `raw` itself when it is already canonical.
 */
export function normalizePath(raw: string): string | null {
  const n = raw.length;
  if (n === 0 || raw.charCodeAt(0) !== SLASH) return null;
  let prev = SLASH;
  for (let i = 1; i < n; i++) {
    const c = raw.charCodeAt(i);
    if (c === SLASH) {
      if (prev === SLASH) return normalizeSlow(raw);
    } else if (c >= 128 || PCHAR[c] !== 1 || (c === DOT && prev === SLASH)) {
      // Escapes, odd characters and anything that may start a dot segment take the slow path.
      return normalizeSlow(raw);
    }
    prev = c;
  }
  return raw;
}

/** The full normaliser: segment by segment, validating UTF-8 across decoded bytes. */
function normalizeSlow(raw: string): string | null {
  const n = raw.length;
  const segments: string[] = [];
  let seg = '';
  // UTF-8 validation state for non-ASCII bytes: continuation bytes still due, and the allowed
  // range of the next one (tightened after some lead bytes to refuse overlongs and surrogates).
  let need = 0;
  let lo = 0x80;
  let hi = 0xbf;

  const byte = (b: number): boolean => {
    if (need > 0) {
      if (b < lo || b > hi) return false;
      need--;
      lo = 0x80;
      hi = 0xbf;
      return true;
    }
    lo = 0x80;
    hi = 0xbf;
    // 0xC2 0x80-0x9F would be a C1 control character: refused like C0.
    if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      if (b === 0xc2) lo = 0xa0;
    } else if (b === 0xe0) {
      need = 2;
      lo = 0xa0;
    } else if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) {
      need = 2;
    } else if (b === 0xed) {
      need = 2;
      hi = 0x9f;
    } else if (b === 0xf0) {
      need = 3;
      lo = 0x90;
    } else if (b >= 0xf1 && b <= 0xf3) {
      need = 3;
    } else if (b === 0xf4) {
      need = 3;
      hi = 0x8f;
    } else {
      return false;
    }
    return true;
  };

  const endSegment = (): boolean => {
    if (seg === '' || seg === '.') {
      // Empty (doubled slash) and `.` segments vanish.
    } else if (seg === '..') {
      segments.pop();
    } else if (isAmbiguousDotSegment(seg)) {
      return false;
    } else {
      segments.push(seg);
    }
    return true;
  };

  for (let i = 1; i < n; i++) {
    const c = raw.charCodeAt(i);
    if (c === PERCENT) {
      const h = i + 2 < n ? hexValue(raw.charCodeAt(i + 1)) : -1;
      const l = h >= 0 ? hexValue(raw.charCodeAt(i + 2)) : -1;
      if (l < 0) return null;
      i += 2;
      const b = (h << 4) | l;
      if (b >= 0x80) {
        if (!byte(b)) return null;
        seg += pct(b);
        continue;
      }
      if (need > 0 || b < 0x20 || b === 0x7f) return null;
      seg += UNRESERVED[b] === 1 ? String.fromCharCode(b) : pct(b);
      continue;
    }
    if (need > 0) return null;
    if (c === SLASH || c === BACKSLASH) {
      if (!endSegment()) return null;
      seg = '';
    } else if (c < 0x80) {
      if (c < 0x20 || c === 0x7f || c === QUESTION || c === HASH) return null;
      seg += PCHAR[c] === 1 ? raw[i]! : pct(c);
    } else {
      // A raw non-ASCII character (Node's parser refuses these on the wire; JS callers may pass
      // them): encode the code point as UTF-8.
      let cp = c;
      if (c >= 0xd800 && c <= 0xdbff) {
        const d = i + 1 < n ? raw.charCodeAt(i + 1) : 0;
        if (d < 0xdc00 || d > 0xdfff) return null;
        cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      } else if (c >= 0xdc00 && c <= 0xdfff) {
        return null;
      }
      if (cp <= 0x9f) return null;
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) seg += pct(b);
    }
  }
  if (need > 0) return null;
  const last = seg;
  if (!endSegment()) return null;
  const trailing = last === '' || last === '.' || last === '..';
  if (segments.length === 0) return '/';
  const path = '/' + segments.join('/');
  return trailing ? path + '/' : path;
}

const ENCODED_SEPARATOR = /%2F|%5C/;

/**
 * Segments the normaliser keeps but some upstream could still read as a dot segment:
 * `..;x` / `.;x` (Tomcat and Spring strip `;` parameters, also when written `%3B`), and dots
 * between encoded separators (`..%2Fadmin`, for an upstream that decodes `%2F` before resolving dots).
 */
function isAmbiguousDotSegment(seg: string): boolean {
  if (seg.charCodeAt(0) === DOT && isDotWithParams(seg)) return true;
  if (!ENCODED_SEPARATOR.test(seg)) return false;
  for (const part of seg.split(ENCODED_SEPARATOR)) {
    if (part === '.' || part === '..' || (part.charCodeAt(0) === DOT && isDotWithParams(part))) return true;
  }
  return false;
}

/** `.;x`, `..;x` (also with `;` encoded as `%3B`): a dot segment carrying path parameters. */
function isDotWithParams(seg: string): boolean {
  const rest = seg.charCodeAt(1) === DOT ? seg.slice(2) : seg.slice(1);
  return rest.startsWith(';') || rest.startsWith('%3B');
}

/** A request-target split into path and query. */
export interface RequestTarget {
  /** The path, not yet normalised (or `*` for `OPTIONS *`). */
  path: string;
  /** What follows the first `?`, without it; null when there is no `?`. */
  query: string | null;
}

const ABSOLUTE = /^https?:\/\/([A-Za-z0-9.\-_~:[\]]+)/i;

/**
 * Split an HTTP request-target (RFC 9112 §3.2) into path and query, or null when the form is not
 * one the sidecar serves:
 * - origin-form `/p?q` — the normal case;
 * - absolute-form `http(s)://host[:port]/p?q` — accepted as servers must (RFC 9112 §3.2.2), the
 *   authority is dropped (ports are matched by listener, not by Host); userinfo (`@`) is refused;
 * - asterisk-form `*` only with method OPTIONS;
 * - authority-form (CONNECT), anything else, or a fragment `#` anywhere → null.
 */
export function splitTarget(target: string, method?: string): RequestTarget | null {
  if (target.includes('#')) return null;
  let start = 0;
  if (target.charCodeAt(0) !== SLASH) {
    if (target === '*') return method === 'OPTIONS' ? { path: '*', query: null } : null;
    const m = ABSOLUTE.exec(target);
    if (!m) return null;
    start = m[0].length;
    const next = target.charCodeAt(start);
    if (start < target.length && next !== SLASH && next !== QUESTION) return null;
  }
  const q = target.indexOf('?', start);
  const path = q === -1 ? target.slice(start) : target.slice(start, q);
  return { path: path === '' ? '/' : path, query: q === -1 ? null : target.slice(q + 1) };
}

/**
 * `splitTarget` then `normalizePath`: the path to match and forward, and the query to forward
 * untouched; null means 400. `OPTIONS *` keeps the path `*`, which only a license without path
 * rules admits.
 */
export function normalizeTarget(target: string, method?: string): RequestTarget | null {
  const t = splitTarget(target, method);
  if (t === null || t.path === '*') return t;
  const path = normalizePath(t.path);
  if (path === null) return null;
  t.path = path;
  return t;
}

/** The request-target to send upstream for a normalised path and the original query. */
export function joinTarget(path: string, query: string | null): string {
  return query === null ? path : path + '?' + query;
}
