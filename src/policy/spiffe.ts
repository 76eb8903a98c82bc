/**
 * SPIFFE ID and subject-pattern syntax (X.509-SVID rules), shared by config validation, the data
 * plane's identity check and the authority's input validation.
 */

/** Max length of a SPIFFE ID in bytes (SPIFFE ID spec). */
export const MAX_SPIFFE_ID_BYTES = 2048;

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;

export interface SpiffeId {
  trustDomain: string;
  /** Path including the leading `/`, or `` for a trust-domain-only ID. */
  path: string;
}

/**
 * Parse a SPIFFE ID strictly: `spiffe://<trust domain><path>`, lower-case trust domain, no port,
 * userinfo, query or fragment, path segments of [A-Za-z0-9._-] that are not `.` or `..`.
 * Returns a reason string when invalid.
 */
export function parseSpiffeId(id: string): SpiffeId | string {
  if (Buffer.byteLength(id) > MAX_SPIFFE_ID_BYTES) return `longer than ${MAX_SPIFFE_ID_BYTES} bytes`;
  if (!id.startsWith('spiffe://')) return 'must start with "spiffe://"';
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (trustDomain === '') return 'has an empty trust domain';
  if (!TRUST_DOMAIN.test(trustDomain))
    return `trust domain "${trustDomain}" may only hold a-z, 0-9, ".", "-", "_" (no port, no userinfo, lower case)`;
  if (path !== '') {
    const segments = path.slice(1).split('/');
    for (const s of segments) {
      if (s === '') return 'has an empty path segment (or a trailing "/")';
      if (s === '.' || s === '..') return 'has a "." or ".." path segment';
      if (!PATH_SEGMENT.test(s))
        return `path segment "${s}" may only hold A-Z, a-z, 0-9, ".", "-", "_" (no query, fragment or percent-encoding)`;
    }
  }
  return { trustDomain, path };
}

/**
 * A license subject: an exact SPIFFE ID, or a prefix pattern `spiffe://td/some/path/*` that matches
 * every ID strictly below that path. Returns a reason string when invalid.
 */
export function parseSubjectPattern(pattern: string): { prefix: boolean; id: SpiffeId } | string {
  const prefix = pattern.endsWith('/*');
  const id = parseSpiffeId(prefix ? pattern.slice(0, -2) : pattern);
  if (typeof id === 'string') return id;
  return { prefix, id };
}

/** Whether `identity` matches `pattern` (exact, or below a `/*` prefix at a `/` boundary). */
export function subjectMatches(pattern: string, identity: string): boolean {
  if (!pattern.endsWith('/*')) return pattern === identity;
  const base = pattern.slice(0, -1); // keep the trailing "/"
  return identity.length > base.length && identity.startsWith(base);
}

/**
 * Whether `pattern` matches every identity `subject` matches: `subject` is the same pattern, or an
 * ID or a narrower prefix under `pattern`'s prefix.
 */
export function subjectCovers(pattern: string, subject: string): boolean {
  if (pattern === subject) return true;
  if (!pattern.endsWith('/*')) return false;
  return subjectMatches(pattern, subject.endsWith('/*') ? subject.slice(0, -2) + '/x' : subject);
}
