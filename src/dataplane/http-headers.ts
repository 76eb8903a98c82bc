/**
 * Header rewriting between the caller and the upstream (SPEC §2.5). The request head the upstream
 * sees is built here in one pass over Node's `rawHeaders`, which also catches the head anomalies
 * llhttp lets through (a second Host). Hop-by-hop headers never cross the proxy in either direction,
 * and a caller can never supply the identity or license headers the upstream trusts.
 */

/** Set by the proxy, stripped from callers (every copy, any case). */
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
}

const KINDS = new Map<string, Kind>([
  ['connection', Kind.Connection],
  ['keep-alive', Kind.Drop],
  ['te', Kind.Drop],
  ['trailer', Kind.Drop],
  ['transfer-encoding', Kind.TransferEncoding],
  ['upgrade', Kind.Upgrade],
  ['proxy-connection', Kind.Drop],
  ['proxy-authenticate', Kind.Drop],
  ['proxy-authorization', Kind.Drop],
  // Answered by the proxy itself (100 Continue is sent only once the request is authorised).
  ['expect', Kind.Drop],
  [IDENTITY_HEADER, Kind.Drop],
  [LICENSE_HEADER, Kind.Drop],
  ['x-forwarded-proto', Kind.Drop],
  ['x-forwarded-for', Kind.ForwardedFor],
  ['host', Kind.Host],
  ['content-length', Kind.ContentLength],
]);

function kindOf(lowerName: string): Kind | undefined {
  const k = KINDS.get(lowerName);
  if (k !== undefined) return k;
  // Every Proxy-* header is between the caller and a proxy, never for the origin.
  return lowerName.startsWith('proxy-') ? Kind.Drop : undefined;
}

/** What is wrong with a request head that the HTTP parser accepted; answered with 400. */
export type HeadProblem = 'duplicate_host' | 'conflicting_content_length';

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
 * For an Upgrade request, `Upgrade` and `Connection: upgrade` are kept, as they are the request.
 * The caller adds the identity and license headers with `vouch` once the request is authorised.
 */
export function upstreamRequestHead(
  raw: readonly string[],
  origin: string,
  upgrade: boolean,
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
    const kind = kindOf(name.toLowerCase());
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
        upgradeValue = value;
        break;
      case Kind.Connection:
        named = connectionTokens(value, named);
        break;
      default:
        break;
    }
  }
  if (named !== null) removeNamed(out, named);
  if (upgrade && upgradeValue !== null) out.push('connection', 'upgrade', 'upgrade', upgradeValue);
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
 */
export function callerResponseHeaders(raw: readonly Buffer[], close: boolean): string[] {
  const out: string[] = [];
  let named: string[] | null = null;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    const lower = name.toLowerCase();
    const kind = RESPONSE_KINDS.get(lower) ?? (lower.startsWith('proxy-') ? Kind.Drop : undefined);
    if (kind === undefined) {
      out.push(name, raw[i + 1]!.toString('latin1'));
    } else if (kind === Kind.Connection) {
      named = connectionTokens(raw[i + 1]!.toString('latin1'), named);
    }
  }
  if (named !== null) removeNamed(out, named);
  if (close) out.push('connection', 'close');
  return out;
}

const RESPONSE_KINDS = new Map<string, Kind>([
  ['connection', Kind.Connection],
  ['keep-alive', Kind.Drop],
  ['te', Kind.Drop],
  ['trailer', Kind.Drop],
  ['transfer-encoding', Kind.Drop],
  ['upgrade', Kind.Drop],
]);

/** Tokens of a Connection header beyond the usual ones, lower-cased, appended to `into`. */
function connectionTokens(value: string, into: string[] | null): string[] | null {
  const v = value.toLowerCase();
  if (v === 'keep-alive' || v === 'close' || v === 'upgrade') return into;
  for (const part of v.split(',')) {
    const t = part.trim();
    if (t === '' || t === 'keep-alive' || t === 'close' || t === 'upgrade') continue;
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
