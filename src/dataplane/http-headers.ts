/**
 * Header rewriting between the caller and the upstream (SPEC §2.5). The request head the upstream
 * sees is built here in one pass over Node's `rawHeaders`, which also catches the head anomalies
 * llhttp lets through (a second Host). Hop-by-hop headers never cross the proxy in either direction,
 * and a caller can never supply the identity or license headers the upstream trusts, in any case
 * or with `_` for `-`.
 *
 * The fast lane applies the same rules to a head's bytes (`plainRequestFields`,
 * `plainResponseFields`): it marks the fields to drop and forwards the rest as they came, for every
 * head whose rewrite is only that; the rest goes through the string functions here.
 */
import { equalsLower } from './h1/chars.js';
import { CONN_OTHER, connectionFlags } from './h1/fields.js';
import { FIELD_SLOTS, type HeadSpans } from './h1/head-scanner.js';

/** Set by the proxy, stripped from callers (every copy, any case, `_` or `-`: see `requestKind`). */
export const IDENTITY_HEADER = 'x-portlicense-identity';
export const LICENSE_HEADER = 'x-portlicense-license';
export const DENY_REASON_HEADER = 'x-portlicense-deny-reason';

const enum Kind {
  /** Hop-by-hop (RFC 9110 §7.6.1) or the proxy's own business: never forwarded. */
  Drop = 1,
  Connection,
  Upgrade,
  Host,
  ContentLength,
  TransferEncoding,
  ForwardedFor,
  /** Announces trailer fields: dropped unless the body goes on with its trailers (the fast lane). */
  Trailer,
}

/**
 * Request headers matched by exact name (any case). The proxy's own names (`x-portlicense-*`,
 * `x-forwarded-*`, `proxy*`) are matched separately, with `_` read as `-` (see `requestKind`).
 */
const REQUEST_KINDS: ReadonlyArray<readonly [string, Kind]> = [
  ['connection', Kind.Connection],
  ['keep-alive', Kind.Drop],
  ['te', Kind.Drop],
  ['trailer', Kind.Trailer],
  ['transfer-encoding', Kind.TransferEncoding],
  ['upgrade', Kind.Upgrade],
  // Answered by the proxy itself (100 Continue is sent only once the request is authorised).
  ['expect', Kind.Drop],
  ['host', Kind.Host],
  ['content-length', Kind.ContentLength],
];

/** REQUEST_KINDS by name length: a lookup compares a name with at most two candidates, in place. */
const KINDS_BY_LENGTH: Array<Array<readonly [string, Kind]> | undefined> = [];
for (const entry of REQUEST_KINDS) (KINDS_BY_LENGTH[entry[0].length] ??= []).push(entry);

const OWN_PREFIX = 'x-portlicense-';
/**
 * Fields with which common frameworks let a request claim another method or URL than its request
 * line (Express's method-override, Rails, Laravel and Symfony read the method ones; IIS and
 * Symfony the URL ones). The license decided the request line's method and path, so a caller's
 * copy is dropped, in any spelling, as the proxy's own names are.
 */
const OVERRIDES = [
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-url',
  'x-rewrite-url',
];
const FORWARDED_FOR = 'x-forwarded-for';
const FORWARDED_PROTO = 'x-forwarded-proto';
const UNDERSCORE = 0x5f;

/** The lower-case code of `name[i]` (ASCII); `_` reads as `-` when `fold`. */
function lowerCode(name: string, i: number, fold: boolean): number {
  const c = name.charCodeAt(i);
  if (c >= 0x41 && c <= 0x5a) return c | 0x20;
  return fold && c === UNDERSCORE ? 0x2d : c;
}

/** Whether `name` starts with the lower-case `prefix`, ignoring case; with `fold`, `_` matches `-`. */
function startsWithName(name: string, prefix: string, fold: boolean): boolean {
  if (name.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (lowerCode(name, i, fold) !== prefix.charCodeAt(i)) return false;
  return true;
}

/**
 * How a request header is treated, without lower-casing (or otherwise copying) its name.
 *
 * CGI, WSGI, PHP and Rack upstreams see `X_PortLicense_Identity` and `X-PortLicense-Identity` as
 * the same variable (`HTTP_X_PORTLICENSE_IDENTITY`), and which copy wins is theirs to pick. So the
 * names the proxy owns are compared with `_` read as `-` (Envoy's `headers_with_underscores_action`,
 * narrowed to our names): every `x-portlicense-*`, `x-forwarded-proto` and `Proxy`/`Proxy-*`
 * (hop-by-hop; a bare `Proxy` is httpoxy's `HTTP_PROXY`) is dropped in any spelling, and an
 * `x-forwarded-for` spelled with `_` is dropped rather than joined to the one the proxy sends.
 */
function requestKind(name: string): Kind | undefined {
  const n = name.length;
  const first = name.charCodeAt(0) | 0x20;
  if (first === 0x78 /* x */) {
    if (n >= OWN_PREFIX.length && startsWithName(name, OWN_PREFIX, true)) return Kind.Drop;
    if (n === FORWARDED_FOR.length && startsWithName(name, FORWARDED_FOR, true))
      return name.includes('_') ? Kind.Drop : Kind.ForwardedFor;
    if (n === FORWARDED_PROTO.length && startsWithName(name, FORWARDED_PROTO, true)) return Kind.Drop;
    for (let i = 0; i < OVERRIDES.length; i++) {
      const o = OVERRIDES[i]!;
      if (n === o.length && startsWithName(name, o, true)) return Kind.Drop;
    }
    return undefined;
  }
  // `Proxy` and every `Proxy-*` header are between the caller and a proxy, never for the origin.
  if (
    first === 0x70 /* p */ &&
    startsWithName(name, 'proxy', true) &&
    (n === 5 || lowerCode(name, 5, true) === 0x2d)
  )
    return Kind.Drop;
  const candidates = KINDS_BY_LENGTH[n];
  if (candidates === undefined) return undefined;
  for (let i = 0; i < candidates.length; i++) {
    const [word, kind] = candidates[i]!;
    if (startsWithName(name, word, false)) return kind;
  }
  return undefined;
}

/** Whether an `Upgrade` value asks for exactly WebSocket (one token, any case, optional whitespace). */
function isWebSocket(value: string): boolean {
  const v = value.trim();
  return v.length === 9 && startsWithName(v, 'websocket', false);
}

/** What is wrong with a request head that the HTTP parser accepted; answered with 400. */
export type HeadProblem = 'duplicate_host' | 'conflicting_content_length' | 'unsupported_upgrade';

/** The request head to send upstream, and what the proxy needs to know about the request body. */
export interface UpstreamHead {
  /** Flat name/value list (the form undici and `rawHeaders` use). */
  readonly headers: string[];
  /** The caller's Host value, or null (HTTP/1.0). */
  readonly host: string | null;
  /** Request body: 0 none, >0 its Content-Length, -1 chunked. */
  readonly bodyLength: number;
}

/**
 * Build the upstream request head from the caller's raw headers: drop hop-by-hop headers (and
 * the ones `Connection` names), every caller copy of the identity/license headers and
 * `x-forwarded-proto`; keep Host; append the caller's address (`origin`) to `x-forwarded-for`.
 * For an Upgrade request, only `Upgrade: websocket` is accepted (anything else is
 * `unsupported_upgrade`) and sent on as `Connection: upgrade` and `Upgrade: websocket`.
 * `Trailer` is kept only with `trailers` (the body is forwarded with its trailers, as the fast lane
 * does); the full path's client drops trailers, so the header announcing them goes too.
 * The caller adds the identity and license headers with `vouch` once the request is authorised.
 */
export function upstreamRequestHead(
  raw: readonly string[],
  origin: string,
  upgrade: boolean,
  trailers = false,
): UpstreamHead | HeadProblem {
  const out: string[] = [];
  let host: string | null = null;
  let contentLength: string | null = null;
  let chunked = false;
  let forwardedFor: string | null = null;
  let upgradeValue: string | null = null;
  let named: string[] | null = null;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const kind = requestKind(name);
    if (kind === undefined) {
      out.push(name, value);
      continue;
    }
    switch (kind) {
      case Kind.Host:
        if (host !== null) return 'duplicate_host';
        host = value;
        out.push(name, value);
        break;
      case Kind.ContentLength:
        // llhttp already refuses any repeated Content-Length; this keeps the rule independent of it.
        if (contentLength !== null && contentLength !== value) return 'conflicting_content_length';
        if (contentLength === null) out.push(name, value);
        contentLength = value;
        break;
      case Kind.TransferEncoding:
        chunked = true;
        break;
      case Kind.ForwardedFor:
        forwardedFor = forwardedFor === null ? value : `${forwardedFor}, ${value}`;
        break;
      case Kind.Upgrade:
        // Joined, so a second Upgrade header is a list and fails the WebSocket check below.
        upgradeValue = upgradeValue === null ? value : `${upgradeValue}, ${value}`;
        break;
      case Kind.Connection:
        named = connectionTokens(value, named);
        break;
      case Kind.Trailer:
        if (trailers) out.push(name, value);
        break;
      default:
        break;
    }
  }
  if (named !== null) removeNamed(out, named);
  if (upgrade) {
    if (upgradeValue === null || !isWebSocket(upgradeValue)) return 'unsupported_upgrade';
    out.push('connection', 'upgrade', 'upgrade', 'websocket');
  }
  out.push('x-forwarded-for', forwardedFor === null ? origin : `${forwardedFor}, ${origin}`);
  out.push('x-forwarded-proto', 'https');
  const bodyLength = chunked ? -1 : contentLength === null ? 0 : Number(contentLength);
  return { headers: out, host, bodyLength };
}

/** Add the headers the upstream trusts: who called (when known) and under which license (when one admitted it). */
export function vouch(headers: string[], identity: string | null, licenseId: string | null): void {
  if (identity !== null) headers.push(IDENTITY_HEADER, identity);
  if (licenseId !== null) headers.push(LICENSE_HEADER, licenseId);
}

/**
 * The response headers to give the caller: the upstream's raw headers (latin1, as on the wire)
 * without hop-by-hop ones; `connection: close` appended when the proxy is closing the connection.
 * With `date` (an HTTP date), a response that has no Date gets one (RFC 9110 §6.6.1: a recipient
 * with a clock forwarding a response without Date adds it); without it, the writer adds its own
 * (Node's ServerResponse does). `Trailer` is kept only with `trailers` (the body goes on with its
 * trailers).
 */
export function callerResponseHeaders(
  raw: readonly (Buffer | string)[],
  close: boolean,
  date: string | null = null,
  trailers = false,
): string[] {
  const out: string[] = [];
  let named: string[] | null = null;
  let dated = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = latin1(raw[i]!);
    const lower = name.toLowerCase();
    const kind = RESPONSE_KINDS.get(lower) ?? (lower.startsWith('proxy-') ? Kind.Drop : undefined);
    if (kind === undefined || (kind === Kind.Trailer && trailers)) {
      out.push(name, latin1(raw[i + 1]!));
      if (lower === 'date') dated = true;
    } else if (kind === Kind.Connection) {
      named = connectionTokens(latin1(raw[i + 1]!), named);
    }
  }
  if (named !== null) removeNamed(out, named);
  // (A Date that Connection named is hop-by-hop, and gone.)
  if (date !== null && (!dated || named?.includes('date') === true)) out.push('date', date);
  if (close) out.push('connection', 'close');
  return out;
}

/** undici hands over raw Buffers, Node's own client latin1 strings. */
function latin1(v: Buffer | string): string {
  return typeof v === 'string' ? v : v.toString('latin1');
}

const RESPONSE_KINDS = new Map<string, Kind>([
  ['connection', Kind.Connection],
  ['keep-alive', Kind.Drop],
  ['te', Kind.Drop],
  ['trailer', Kind.Trailer],
  ['transfer-encoding', Kind.Drop],
  ['upgrade', Kind.Drop],
]);

/**
 * Fields a Connection option never removes: they say how long the message is and where it goes,
 * and the proxy forwards the message as it framed it. A caller that names Content-Length would
 * otherwise have its body go upstream with no length, read there as a second request that no
 * decision saw; an upstream that names it, a kept-alive response the caller cannot delimit.
 */
const MESSAGE_FIELDS = new Set(['content-length', 'transfer-encoding', 'host']);

/**
 * Tokens of a Connection header beyond the usual ones, lower-cased, appended to `into`; the
 * MESSAGE_FIELDS are not among them.
 */
function connectionTokens(value: string, into: string[] | null): string[] | null {
  const v = value.toLowerCase();
  if (v === 'keep-alive' || v === 'close' || v === 'upgrade') return into;
  for (const part of v.split(',')) {
    const t = part.trim();
    if (t === '' || t === 'keep-alive' || t === 'close' || t === 'upgrade' || MESSAGE_FIELDS.has(t)) continue;
    (into ??= []).push(t);
  }
  return into;
}

/** Remove, in place, the headers a Connection header named (RFC 9110 §7.6.1). */
function removeNamed(headers: string[], named: readonly string[]): void {
  let w = 0;
  for (let r = 0; r + 1 < headers.length; r += 2) {
    const name = headers[r]!;
    if (named.includes(name.toLowerCase())) continue;
    headers[w++] = name;
    headers[w++] = headers[r + 1]!;
  }
  headers.length = w;
}

/**
 * The authority of an absolute-form request-target (`http://host:port/...`), lower-cased, or
 * null for origin-form and asterisk-form.
 */
export function targetAuthority(target: string): string | null {
  if (target.charCodeAt(0) === 0x2f || target === '*') return null;
  const start = target.indexOf('://');
  if (start === -1) return null;
  let end = start + 3;
  while (end < target.length) {
    const c = target.charCodeAt(end);
    if (c === 0x2f || c === 0x3f) break;
    end++;
  }
  return target.slice(start + 3, end).toLowerCase();
}

// ---- The same rules over a head's bytes (the fast lane) ----

/** `lowerCode` of `buf[i]`. */
function lowerByte(buf: Uint8Array, i: number, fold: boolean): number {
  const c = buf[i]!;
  if (c >= 0x41 && c <= 0x5a) return c | 0x20;
  return fold && c === UNDERSCORE ? 0x2d : c;
}

/** `startsWithName` over the name `buf[s, e)`. */
function bytesStartWith(buf: Uint8Array, s: number, e: number, prefix: string, fold: boolean): boolean {
  if (e - s < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++)
    if (lowerByte(buf, s + i, fold) !== prefix.charCodeAt(i)) return false;
  return true;
}

/** `requestKind` of the name `buf[s, e)`. */
function requestKindAt(buf: Uint8Array, s: number, e: number): Kind | undefined {
  const n = e - s;
  const first = buf[s]! | 0x20;
  if (first === 0x78 /* x */) {
    if (n >= OWN_PREFIX.length && bytesStartWith(buf, s, e, OWN_PREFIX, true)) return Kind.Drop;
    if (n === FORWARDED_FOR.length && bytesStartWith(buf, s, e, FORWARDED_FOR, true)) {
      for (let i = s; i < e; i++) if (buf[i] === UNDERSCORE) return Kind.Drop;
      return Kind.ForwardedFor;
    }
    if (n === FORWARDED_PROTO.length && bytesStartWith(buf, s, e, FORWARDED_PROTO, true)) return Kind.Drop;
    for (let i = 0; i < OVERRIDES.length; i++) {
      const o = OVERRIDES[i]!;
      if (n === o.length && bytesStartWith(buf, s, e, o, true)) return Kind.Drop;
    }
    return undefined;
  }
  if (
    first === 0x70 /* p */ &&
    bytesStartWith(buf, s, e, 'proxy', true) &&
    (n === 5 || lowerByte(buf, s + 5, true) === 0x2d)
  )
    return Kind.Drop;
  const candidates = KINDS_BY_LENGTH[n];
  if (candidates === undefined) return undefined;
  for (let i = 0; i < candidates.length; i++) {
    const [word, kind] = candidates[i]!;
    if (bytesStartWith(buf, s, e, word, false)) return kind;
  }
  return undefined;
}

/**
 * Whether the Connection field at `f[j]` may name a field to remove. Any token it cannot read as
 * keep-alive, close or upgrade in bytes counts (one with a byte `trim` would remove but HTTP
 * whitespace is not, or one of the MESSAGE_FIELDS), so such a head takes the string path, where
 * `connectionTokens` decides.
 */
function namesFields(buf: Uint8Array, base: number, f: Int32Array, j: number): boolean {
  return (connectionFlags(buf, base + f[j + 2]!, base + f[j + 3]!, base + f[j + 4]!) & CONN_OTHER) !== 0;
}

/**
 * For the request head `h`: mark in `drop` (1) each field `upstreamRequestHead(…, false, true)`
 * leaves out, and answer whether that is all it does to this head, so the other fields can go
 * upstream as they are, followed by the proxy's own (x-forwarded-for with the caller's address,
 * x-forwarded-proto, and `vouch`'s). False for a head that needs `upstreamRequestHead` itself: a
 * caller's x-forwarded-for to join, a Connection field naming fields to remove, or a Host missing
 * or repeated (which it refuses).
 */
export function plainRequestFields(h: HeadSpans, drop: Uint8Array): boolean {
  const buf = h.src;
  const base = h.base;
  const f = h.fields;
  let hosts = 0;
  for (let k = 0, j = 0; k < h.count; k++, j += FIELD_SLOTS) {
    let d = 1;
    switch (requestKindAt(buf, base + f[j]!, base + f[j + 1]!)) {
      case undefined:
      case Kind.ContentLength: // the parser refuses a second one
      case Kind.Trailer:
        d = 0;
        break;
      case Kind.Host:
        hosts++;
        d = 0;
        break;
      case Kind.ForwardedFor:
        return false;
      case Kind.Connection:
        if (namesFields(buf, base, f, j)) return false;
        break;
      default: // dropped: hop-by-hop, the proxy's own names, Transfer-Encoding (re-sent by the lane)
        break;
    }
    drop[k] = d;
  }
  return hosts === 1;
}

/** `plainResponseFields`: the head can be forwarded in bytes. */
export const RESPONSE_PLAIN = 1;
/** `plainResponseFields`: the head has a Date field. */
export const RESPONSE_DATED = 2;

/**
 * For the response head `h`: mark in `drop` (1) each field `callerResponseHeaders(…, trailers =
 * true)` leaves out. RESPONSE_PLAIN (with RESPONSE_DATED when a Date field is kept) when that is all
 * it does to this head, so the rest can go to the caller as it is, followed by Date when missing
 * and the lane's own fields; 0 when a Connection field names fields to remove.
 */
export function plainResponseFields(h: HeadSpans, drop: Uint8Array): number {
  const buf = h.src;
  const base = h.base;
  const f = h.fields;
  let dated = 0;
  for (let k = 0, j = 0; k < h.count; k++, j += FIELD_SLOTS) {
    const s = base + f[j]!;
    const e = base + f[j + 1]!;
    let d = 0;
    switch (e - s) {
      case 2:
        d = equalsLower(buf, s, e, 'te') ? 1 : 0;
        break;
      case 4:
        if (equalsLower(buf, s, e, 'date')) dated = RESPONSE_DATED;
        break;
      case 7:
        d = equalsLower(buf, s, e, 'upgrade') ? 1 : 0; // Trailer stays: the body keeps its trailers
        break;
      case 10:
        if (equalsLower(buf, s, e, 'connection')) {
          if (namesFields(buf, base, f, j)) return 0;
          d = 1;
        } else d = equalsLower(buf, s, e, 'keep-alive') ? 1 : 0;
        break;
      case 17:
        d = equalsLower(buf, s, e, 'transfer-encoding') ? 1 : 0;
        break;
    }
    if (d === 0 && e - s >= 6 && equalsLower(buf, s, s + 6, 'proxy-')) d = 1;
    drop[k] = d;
  }
  return RESPONSE_PLAIN | dated;
}
