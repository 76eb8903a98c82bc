/**
 * Who the target of an outbound connection is, and whether it is who `serverId` says it must be
 * (SPEC §5 `outbound:`): its chain verifies against `tls.ca`, and the single SPIFFE ID of its
 * certificate (X.509-SVID rules, as for callers) equals `serverId` or falls under its `/*` prefix.
 * DNS names are not checked: the identity is the SPIFFE ID, which is what lets `target` be any
 * address and still stop a hijacked name or a stray listener from impersonating the server.
 *
 * Runs once per outbound connection, right after the handshake and before a byte of the app's
 * data is sent. A refusal carries what the server presented, for the operator's log.
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { parseSubjectPattern, subjectMatches } from '../policy/spiffe.js';
import type { OutboundResult } from '../telemetry/metrics.js';
import { certificateIdentity, uriSans } from './identity.js';

/** What a server's leaf certificate said about itself, for logs and /status. */
export interface PresentedCertificate {
  /** URI SANs (the SPIFFE ID, when there is one). */
  readonly uris: readonly string[];
  readonly subject: string;
  readonly issuer: string;
  readonly fingerprint256: string;
  readonly validFrom: string;
  readonly validTo: string;
}

export type ServerCheck =
  | { readonly ok: true; readonly identity: string }
  | {
      readonly ok: false;
      readonly result: Extract<OutboundResult, 'untrusted_server' | 'server_id_mismatch'>;
      /** Why, in words: the OpenSSL verification code, or the identity that was presented. */
      readonly detail: string;
      readonly presented: PresentedCertificate | null;
    };

/** Checks one handshaken client socket against the expected server identity. */
export type ServerVerifier = (socket: TLSSocket) => ServerCheck;

/**
 * A verifier for `serverId` (an exact SPIFFE ID or a `/*` prefix, validated by the config loader).
 * The socket must have been connected with `rejectUnauthorized: false` and no hostname check, so
 * that `authorized` reflects the chain alone; sessions must not be resumed (a resumed session
 * skips verification), which is Node's client default.
 */
export function serverVerifier(serverId: string): ServerVerifier {
  const parsed = parseSubjectPattern(serverId);
  if (typeof parsed === 'string') throw new Error(`invalid serverId ${JSON.stringify(serverId)}: ${parsed}`);
  // Only the trust domain of serverId can ever match, so it is the only one accepted.
  const trustDomains = [parsed.id.trustDomain];

  return (socket) => {
    const cert = socket.getPeerX509Certificate();
    if (cert === undefined)
      return {
        ok: false,
        result: 'untrusted_server',
        detail: 'the server sent no certificate',
        presented: null,
      };
    if (!socket.authorized)
      return {
        ok: false,
        result: 'untrusted_server',
        detail: `chain does not verify against tls.ca: ${String(socket.authorizationError)}`,
        presented: presentedBy(cert),
      };
    const id = certificateIdentity(cert, trustDomains);
    if (id.error !== undefined)
      return {
        ok: false,
        result: 'server_id_mismatch',
        // identity.ts words its reasons for callers; here the certificate is the server's.
        detail: id.error.replace('the client certificate', 'the server certificate'),
        presented: presentedBy(cert),
      };
    if (!subjectMatches(serverId, id.identity))
      return {
        ok: false,
        result: 'server_id_mismatch',
        detail: `the server is ${id.identity}, expected ${serverId}`,
        presented: presentedBy(cert),
      };
    return { ok: true, identity: id.identity };
  };
}

/** The parts of a certificate an operator needs to tell which server answered. */
export function presentedBy(cert: X509Certificate): PresentedCertificate {
  const san = cert.subjectAltName;
  return {
    uris: san === undefined ? [] : (uriSans(san) ?? []),
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    fingerprint256: cert.fingerprint256,
    validFrom: cert.validFrom,
    validTo: cert.validTo,
  };
}
