/**
 * Who may call what (SPEC §5, the "who" column). The TLS layer has already refused any client
 * whose certificate does not chain to `tls.ca`; here the verified certificate's SPIFFE ID is read
 * once per connection and matched against the `admins` and `sidecars` subject patterns. A
 * `sidecars` entry may also bound the services a sidecar identity may name in bundle pulls and
 * usage reports.
 */
import type { TLSSocket } from 'node:tls';
import { peerIdentity, type PeerIdentityResult } from '../dataplane/identity.js';
import type { SidecarGrant } from '../config/authority.js';
import { subjectMatches } from '../policy/spiffe.js';
import { forbidden } from './api-error.js';

/** What a route asks of its caller: an admin, a sidecar, or any verified identity. */
export type Role = 'admin' | 'sidecar' | 'any';

export class Authorizer {
  /** One identity per TLS connection: a keep-alive connection is parsed once, not per request. */
  private readonly identities = new WeakMap<TLSSocket, PeerIdentityResult>();

  constructor(
    private readonly trustDomains: readonly string[],
    private readonly admins: readonly string[],
    private readonly sidecars: readonly SidecarGrant[],
  ) {}

  /**
   * The caller's SPIFFE ID.
   * @throws ApiError 403 when the (chain-verified) certificate carries no usable identity.
   */
  identityOf(socket: TLSSocket): string {
    let r = this.identities.get(socket);
    if (r === undefined) {
      r = peerIdentity(socket, this.trustDomains);
      this.identities.set(socket, r);
    }
    if (r.error !== undefined) throw forbidden(`no usable identity: ${r.error}`);
    return r.identity;
  }

  isAdmin(identity: string): boolean {
    return this.admins.some((p) => subjectMatches(p, identity));
  }

  isSidecar(identity: string): boolean {
    return this.sidecars.some((g) => subjectMatches(g.identity, identity));
  }

  /**
   * The services a sidecar identity may name: the union of its matching `sidecars` entries, or
   * null when one of them is a plain subject (every service).
   */
  sidecarServices(identity: string): ReadonlySet<string> | null {
    const out = new Set<string>();
    for (const g of this.sidecars) {
      if (!subjectMatches(g.identity, identity)) continue;
      if (g.services === null) return null;
      for (const s of g.services) out.add(s);
    }
    return out;
  }

  /**
   * @throws ApiError 403 naming the first of `services` outside the identity's `sidecars` entries.
   * `what`: the refused act, as in "pull bundles of".
   */
  requireServices(identity: string, services: Iterable<string>, what: string): void {
    const allowed = this.sidecarServices(identity);
    if (allowed === null) return;
    for (const s of services) {
      if (allowed.has(s)) continue;
      const list = [...allowed].sort().join(', ');
      throw forbidden(
        `identity ${identity} may not ${what} service ${s}: its sidecars entries allow ${list === '' ? 'none' : list}`,
      );
    }
  }

  /** @throws ApiError 403 `identity X is not in admins` (or sidecars). */
  require(identity: string, role: Role): void {
    if (role === 'admin' && !this.isAdmin(identity)) throw forbidden(`identity ${identity} is not in admins`);
    if (role === 'sidecar' && !this.isSidecar(identity))
      throw forbidden(`identity ${identity} is not in sidecars`);
  }
}
