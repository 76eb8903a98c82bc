/**
 * The license and bundle wire types (SPEC §4, §5), shared by the sidecar and the authority,
 * and the decision vocabulary of SPEC §2.
 */

/** Why a request or connection was refused after the TLS handshake (SPEC §2.2–2.3). */
export type DenyReason =
  | 'bad_identity'
  | 'no_license'
  | 'expired'
  | 'not_yet_valid'
  | 'revoked'
  | 'method_not_allowed'
  | 'path_not_allowed';

export const DENY_REASONS: readonly DenyReason[] = [
  'bad_identity',
  'no_license',
  'expired',
  'not_yet_valid',
  'revoked',
  'method_not_allowed',
  'path_not_allowed',
];

/** Why a TLS handshake was refused (SPEC §2.1), label of portlicense_tls_handshake_errors_total. */
export type HandshakeErrorReason =
  'no_client_cert' | 'untrusted_cert' | 'expired_cert' | 'handshake_timeout' | 'tls_error';

/** Why an admitted TCP flow was closed by the sidecar (portlicense_connections_terminated_total). */
export type TerminationReason = 'expired' | 'revoked' | 'license_removed' | 'idle_timeout' | 'shutdown';

export type Decision = 'allow' | 'deny' | 'audit_deny';

export type PortProtocol = 'tcp' | 'http';

/** One license as it travels inside a bundle payload (SPEC §4). Times are RFC 3339 strings. */
export interface LicenseWire {
  id: string;
  subject: string;
  service: string;
  port: string;
  methods?: string[];
  paths?: string[];
  notBefore: string;
  expiresAt: string;
  revokedAt?: string;
}

export interface BundlePayload {
  version: number;
  issuedAt: string;
  node: string;
  services: string[];
  licenses: LicenseWire[];
}

export interface BundleSignature {
  alg: 'Ed25519';
  keyId: string;
  value: string;
}

export interface SignedBundle {
  payload: BundlePayload;
  signature: BundleSignature;
}

/** A path rule of a license: exact, or a `/*` prefix covering the prefix itself and all below it. */
export interface PathRule {
  readonly pattern: string;
  /** For a `/*` rule, the part before `/*` (`/api`); for an exact rule, the path itself. */
  readonly base: string;
  readonly prefix: boolean;
}

/** A license parsed for fast decisions: times in epoch milliseconds, rules pre-compiled. */
export interface CompiledLicense {
  readonly id: string;
  readonly subject: string;
  readonly service: string;
  readonly port: string;
  /** `service/port`. */
  readonly portKey: string;
  readonly notBefore: number;
  readonly expiresAt: number;
  /** Epoch ms of revocation, or null. */
  readonly revokedAt: number | null;
  /** Upper-case methods, or null for any method. */
  readonly methods: ReadonlySet<string> | null;
  /** Path rules, or null for any path. */
  readonly paths: readonly PathRule[] | null;
  readonly wire: LicenseWire;
}

/**
 * One immutable, verified bundle compiled into an index. The data path only ever reads one of
 * these; the control path builds a new one and swaps it in (see policy/store.ts).
 */
export interface PolicySnapshot {
  readonly version: number;
  /** Epoch ms of the payload's issuedAt. */
  readonly issuedAt: number;
  readonly node: string;
  readonly licenses: readonly CompiledLicense[];
  /**
   * The SPEC §2.3 decision: the admitting license, or the most specific deny reason.
   * `path` must already be normalised (policy/path.ts); omit method and path for tcp ports.
   * Synchronous, no I/O; allocation-free on the hot path for a cached identity.
   */
  decide(
    portKey: string,
    identity: string,
    now: number,
    method?: string,
    path?: string,
  ): CompiledLicense | DenyReason;
  /** Look a license up by id. */
  license(id: string): CompiledLicense | undefined;
}

/** Read side of the current snapshot, handed to the data plane. */
export interface PolicyView {
  current(): PolicySnapshot;
  /** Called after every swap with the new and previous snapshot. Returns an unsubscribe function. */
  onSwap(listener: (next: PolicySnapshot, prev: PolicySnapshot) => void): () => void;
}
