/**
 * The caller's workload identity from its verified client certificate (SPEC §2.2, X.509-SVID
 * rules). Runs once per connection, after the chain has been verified; anything unusable is a
 * reason string that ends up as `bad_identity`.
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { parseSpiffeId } from '../policy/spiffe.js';

export type PeerIdentityResult =
  { identity: string; error?: undefined } | { identity?: undefined; error: string };

/**
 * The URI entries of Node's `subjectAltName` string, or null when it cannot be read. Node writes
 * `TYPE:value` entries joined by `, `, and writes a value as a JSON string when it holds a comma,
 * a quote, a backslash or anything non-printable (`URI:"spiffe://a\u002cb"`), so a crafted SAN
 * cannot smuggle a second entry into the list.
 */
export function uriSans(subjectAltName: string): string[] | null {
  const uris: string[] = [];
  let i = 0;
  const s = subjectAltName;
  while (i < s.length) {
    const colon = s.indexOf(':', i);
    if (colon === -1) return null;
    const type = s.slice(i, colon);
    let value: string;
    let next: number;
    if (s.charCodeAt(colon + 1) === 0x22 /* " */) {
      let j = colon + 2;
      while (j < s.length && s.charCodeAt(j) !== 0x22) j += s.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (j >= s.length) return null;
      try {
        value = JSON.parse(s.slice(colon + 1, j + 1)) as string;
      } catch {
        return null;
      }
      next = j + 1;
    } else {
      const comma = s.indexOf(', ', colon + 1);
      next = comma === -1 ? s.length : comma;
      value = s.slice(colon + 1, next);
    }
    if (next < s.length) {
      if (!s.startsWith(', ', next)) return null;
      next += 2;
    }
    if (type === 'URI') uris.push(value);
    i = next;
  }
  return uris;
}

/**
 * One element of a certificate's encoding: its tag, and where its contents start and end; null
 * when it does not fit or uses what DER forbids (an indefinite length). Long-form lengths with
 * leading zeros are BER, not DER, but OpenSSL takes them, so they are read too.
 */
function derElement(
  der: Uint8Array,
  pos: number,
  end: number,
): { tag: number; start: number; end: number } | null {
  if (pos + 2 > end) return null;
  const tag = der[pos]!;
  let len = der[pos + 1]!;
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || start + n > end) return null;
    len = 0;
    for (let i = 0; i < n; i++) {
      len = len * 256 + der[start + i]!;
      if (len > end) return null;
    }
    start += n;
  }
  return start + len > end ? null : { tag, start, end: start + len };
}

/** keyCertSign and cRLSign in the first byte of a KeyUsage BIT STRING (bits 5 and 6). */
const CA_KEY_USAGE = 0x04 | 0x02;

/**
 * Whether the certificate's KeyUsage extension (2.5.29.15) sets keyCertSign or cRLSign, which
 * X.509-SVID forbids in a leaf; null when the encoding cannot be followed. Node exposes no
 * key-usage bits, so this walks the DER: Certificate > TBSCertificate > [3] > Extensions >
 * Extension, every one of them.
 */
export function signsCertificates(der: Uint8Array): boolean | null {
  const cert = derElement(der, 0, der.length);
  if (cert?.tag !== 0x30) return null;
  const tbs = derElement(der, cert.start, cert.end);
  if (tbs?.tag !== 0x30) return null;
  let signs = false;
  for (let p = tbs.start; p < tbs.end;) {
    const field = derElement(der, p, tbs.end);
    if (field === null) return null;
    p = field.end;
    if (field.tag !== 0xa3) continue;
    const list = derElement(der, field.start, field.end);
    if (list?.tag !== 0x30) return null;
    for (let q = list.start; q < list.end;) {
      const ext = derElement(der, q, list.end);
      if (ext?.tag !== 0x30) return null;
      q = ext.end;
      const oid = derElement(der, ext.start, ext.end);
      if (oid?.tag !== 0x06) return null;
      const ku =
        oid.end - oid.start === 3 &&
        der[oid.start] === 0x55 &&
        der[oid.start + 1] === 0x1d &&
        der[oid.start + 2] === 0x0f;
      if (!ku) continue;
      let value = derElement(der, oid.end, ext.end);
      if (value?.tag === 0x01) value = derElement(der, value.end, ext.end); // critical
      if (value?.tag !== 0x04) return null;
      const bits = derElement(der, value.start, value.end);
      if (bits?.tag !== 0x03 || bits.end - bits.start < 1) return null;
      if (bits.end - bits.start > 1 && (der[bits.start + 1]! & CA_KEY_USAGE) !== 0) signs = true;
    }
  }
  return signs;
}

/**
 * Check a verified certificate against the X.509-SVID rules and the accepted trust domains:
 * a leaf (not a CA, and no keyCertSign or cRLSign key usage), exactly one `spiffe://` URI SAN, a valid SPIFFE ID (no query, fragment,
 * port; at most 2048 bytes) with a path, of an accepted trust domain. URIs of other schemes are
 * ignored.
 */
export function certificateIdentity(
  cert: X509Certificate,
  trustDomains: readonly string[],
): PeerIdentityResult {
  if (cert.ca) return { error: 'the client certificate is a CA certificate, not a leaf' };
  // X.509-SVID §4.3: a leaf must not be able to sign certificates or CRLs, basicConstraints or not.
  const signs = signsCertificates(cert.raw);
  if (signs === null)
    return { error: 'the client certificate is not DER-encoded: its key usage cannot be checked' };
  if (signs) return { error: 'the client certificate has key usage keyCertSign or cRLSign: not a leaf' };
  const san = cert.subjectAltName;
  if (san === undefined) return { error: 'the client certificate has no subjectAltName (no SPIFFE ID)' };
  const uris = uriSans(san);
  if (uris === null) return { error: 'the client certificate subjectAltName cannot be read' };
  let id: string | undefined;
  for (const u of uris) {
    // Case-insensitive scheme: `SPIFFE://` is a SPIFFE URI too, and then an invalid one.
    if (u.length < 7 || u.slice(0, 7).toLowerCase() !== 'spiffe:') continue;
    if (id !== undefined) return { error: 'the client certificate has more than one spiffe:// URI SAN' };
    id = u;
  }
  if (id === undefined) return { error: 'the client certificate has no spiffe:// URI SAN' };
  const parsed = parseSpiffeId(id);
  if (typeof parsed === 'string') return { error: `SPIFFE ID ${JSON.stringify(id.slice(0, 256))} ${parsed}` };
  // X.509-SVID §3: a leaf's ID names a workload, so it has a path; the bare trust domain does not.
  if (parsed.path === '')
    return { error: `SPIFFE ID ${JSON.stringify(id)} names a trust domain, not a workload (no path)` };
  if (!trustDomains.includes(parsed.trustDomain))
    return {
      error: `trust domain "${parsed.trustDomain}" is not accepted (accepted: ${trustDomains.join(', ')})`,
    };
  return { identity: id };
}

/** The verified peer's SPIFFE ID, or why it has none. Call only on an authorized socket. */
export function peerIdentity(socket: TLSSocket, trustDomains: readonly string[]): PeerIdentityResult {
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return { error: 'no client certificate' };
  return certificateIdentity(cert, trustDomains);
}
