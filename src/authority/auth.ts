/**
 * Who may call what (SPEC §5, the "who" column). The TLS layer has already refused any client
 * whose certificate does not chain to `tls.ca`; here the verified certificate's SPIFFE ID is read
 * once per connection and matched against the `admins` and `sidecars` subject patterns.
 */
import type { TLSSocket } from 'node:tls';
import { peerIdentity, type PeerIdentityResult } from '../dataplane/identity.js';
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
    private readonly sidecars: readonly string[],
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
    return this.sidecars.some((p) => subjectMatches(p, identity));
  }

  /** @throws ApiError 403 `identity X is not in admins` (or sidecars). */
  require(identity: string, role: Role): void {
    if (role === 'admin' && !this.isAdmin(identity)) throw forbidden(`identity ${identity} is not in admins`);
    if (role === 'sidecar' && !this.isSidecar(identity))
      throw forbidden(`identity ${identity} is not in sidecars`);
  }
}
