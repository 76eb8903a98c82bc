/**
 * The decision engine: one verified bundle compiled into a per-port index (SPEC §2.3). Built once
 * per bundle on the control path; read by every request and connection on the data path, where a
 * decision for a recently seen identity is one Map lookup, one LRU hit and a short loop over that
 * identity's licenses, with no allocation.
 */
import { LRUCache } from 'lru-cache';
import { PortlicenseError } from '../errors.js';
import { compileLicenses, parseRfc3339, pathsMatch } from './compile.js';
import type { BundlePayload, CompiledLicense, DenyReason, PolicySnapshot } from './types.js';

export interface SnapshotOptions {
  /** Identities whose candidate licenses are remembered per port (default 1,024; a miss costs a few Map lookups). */
  identityCacheSize?: number;
}

type Candidates = readonly CompiledLicense[];

const NONE: Candidates = Object.freeze([]);
const SCHEME_LENGTH = 'spiffe://'.length;
/** lru-cache writes `status` into the options object it is given; one shared object avoids a fresh `{}` per get. */
const GET_OPTIONS = {};

/**
 * How far a candidate got through the checks, in SPEC order; the deny reason is the one of the
 * candidate that got furthest.
 */
const REASON_AT_STAGE: readonly DenyReason[] = [
  'no_license',
  'revoked',
  'not_yet_valid',
  'expired',
  'method_not_allowed',
  'path_not_allowed',
];

/** The licenses of one port, indexed by subject. */
class PortIndex {
  readonly exact = new Map<string, CompiledLicense[]>();
  /** `spiffe://td/ns/payments/` (a `/*` subject without its `*`) → licenses. */
  readonly prefix = new Map<string, CompiledLicense[]>();
  /** Lengths of the keys of `prefix`, to skip slicing an identity at boundaries no subject uses. */
  readonly prefixLengths = new Set<number>();
  private cache: LRUCache<string, Candidates> | null = null;

  constructor(private readonly cacheSize: number) {}

  add(l: CompiledLicense): void {
    const isPrefix = l.subject.endsWith('/*');
    const key = isPrefix ? l.subject.slice(0, -1) : l.subject;
    const map = isPrefix ? this.prefix : this.exact;
    const found = map.get(key);
    if (found) found.push(l);
    else map.set(key, [l]);
    if (isPrefix) this.prefixLengths.add(key.length);
  }

  candidates(identity: string): Candidates {
    // Created on first use: lru-cache pre-allocates `max` slots, and most ports of a big bundle
    // may never see traffic on this node.
    const cache = (this.cache ??= new LRUCache<string, Candidates>({ max: this.cacheSize }));
    let c = cache.get(identity, GET_OPTIONS);
    if (c === undefined) {
      c = this.lookup(identity);
      cache.set(identity, c);
    }
    return c;
  }

  /**
   * Exact subject plus every `/*` prefix that ends at one of the identity's `/` boundaries and
   * leaves at least one character below it: O(path depth), independent of the number of licenses.
   */
  private lookup(identity: string): Candidates {
    const exact = this.exact.get(identity);
    let out: CompiledLicense[] | null = exact ? exact.slice() : null;
    if (this.prefix.size > 0 && identity.startsWith('spiffe://')) {
      const last = identity.length - 1;
      for (
        let i = identity.indexOf('/', SCHEME_LENGTH);
        i !== -1 && i < last;
        i = identity.indexOf('/', i + 1)
      ) {
        if (!this.prefixLengths.has(i + 1)) continue;
        const hit = this.prefix.get(identity.slice(0, i + 1));
        if (hit) out = out ? out.concat(hit) : hit.slice();
      }
    }
    return out ? Object.freeze(out) : NONE;
  }
}

class Snapshot implements PolicySnapshot {
  constructor(
    readonly version: number,
    readonly issuedAt: number,
    readonly node: string,
    readonly licenses: readonly CompiledLicense[],
    private readonly ports: ReadonlyMap<string, PortIndex>,
    private readonly byId: ReadonlyMap<string, CompiledLicense>,
  ) {}

  decide(
    portKey: string,
    identity: string,
    now: number,
    method?: string,
    path?: string,
  ): CompiledLicense | DenyReason {
    const port = this.ports.get(portKey);
    if (port === undefined) return 'no_license';
    const cands = port.candidates(identity);
    let best: CompiledLicense | null = null;
    let stage = 0;
    for (let i = 0; i < cands.length; i++) {
      const l = cands[i]!;
      let s: number;
      if (l.revokedAt !== null) s = 1;
      else if (now < l.notBefore) s = 2;
      else if (now >= l.expiresAt) s = 3;
      else if (method !== undefined && l.methods !== null && !l.methods.has(method)) s = 4;
      else if (path !== undefined && !pathsMatch(l.paths, path)) s = 5;
      else {
        if (best === null || l.expiresAt > best.expiresAt) best = l;
        continue;
      }
      if (s > stage) stage = s;
    }
    return best ?? REASON_AT_STAGE[stage]!;
  }

  license(id: string): CompiledLicense | undefined {
    return this.byId.get(id);
  }
}

/**
 * Compile a verified payload into a snapshot. Throws PortlicenseError('BUNDLE_INVALID') when a
 * license or `issuedAt` is invalid (verifyBundle has normally caught that already).
 */
export function buildSnapshot(payload: BundlePayload, opts: SnapshotOptions = {}): PolicySnapshot {
  const issuedAt = parseRfc3339(payload.issuedAt);
  if (issuedAt === null)
    throw new PortlicenseError(
      'BUNDLE_INVALID',
      `bundle payload.issuedAt: ${JSON.stringify(payload.issuedAt)} is not an RFC 3339 time`,
    );
  const byId = new Map<string, CompiledLicense>();
  const licenses: readonly CompiledLicense[] = compileLicenses(payload.licenses, byId);
  const cacheSize = opts.identityCacheSize ?? 1_024;
  const ports = new Map<string, PortIndex>();
  for (const l of licenses) {
    let port = ports.get(l.portKey);
    if (port === undefined) ports.set(l.portKey, (port = new PortIndex(cacheSize)));
    port.add(l);
  }
  return new Snapshot(payload.version, issuedAt, payload.node, licenses, ports, byId);
}

const EMPTY = new Snapshot(0, 0, '', Object.freeze([]), new Map(), new Map());

/** Version 0: no licenses, every decision is `no_license`. What a store holds before any bundle. */
export function emptySnapshot(): PolicySnapshot {
  return EMPTY;
}
