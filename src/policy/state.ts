/** The state of a license at a moment (SPEC §5 `state`), shared by the authority and the sidecar's /status. */

export type LicenseState = 'pending' | 'active' | 'expired' | 'revoked';

/** Times in epoch ms; `revokedAt` null when not revoked. Revocation wins over time. */
export function licenseStateAt(
  l: { readonly revokedAt: number | null; readonly notBefore: number; readonly expiresAt: number },
  now: number,
): LicenseState {
  if (l.revokedAt !== null) return 'revoked';
  if (now < l.notBefore) return 'pending';
  if (now >= l.expiresAt) return 'expired';
  return 'active';
}
