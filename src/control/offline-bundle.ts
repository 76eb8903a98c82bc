/**
 * Builds a bundle payload from a declarative licenses file, for nodes fed by `authority.bundleFile`
 * (air-gapped, or before an authority exists). License ids are derived from the grant's content, so
 * re-signing the same file keeps ids stable and open flows are not cut by a re-sign.
 */
import { createHash } from 'node:crypto';
import type { DeclarativeFile, DeclarativeLicense } from '../config/declarative.js';
import { formatTime } from '../config/duration.js';
import type { BundlePayload, LicenseWire } from '../policy/types.js';

/** Lifetime of a license in an offline bundle that names neither `ttl` nor `expiresAt`. */
export const OFFLINE_DEFAULT_TTL_MS = 24 * 3_600_000;

export interface OfflineBundleOptions {
  version: number;
  node: string;
  now: number;
}

/** A stable `lic_…` id for a declarative grant: same subject, port and rules → same id. */
export function offlineLicenseId(l: DeclarativeLicense): string {
  const key = [l.subject, l.service, l.port, (l.methods ?? []).join(','), (l.paths ?? []).join(',')].join(
    '\n',
  );
  return 'lic_' + createHash('sha256').update(key).digest('hex').slice(0, 20);
}

export function buildOfflinePayload(decl: DeclarativeFile, opts: OfflineBundleOptions): BundlePayload {
  const licenses: LicenseWire[] = decl.licenses.map((l) => {
    const notBefore = l.notBefore ?? opts.now;
    const expiresAt = l.expiresAt ?? notBefore + (l.ttl ?? OFFLINE_DEFAULT_TTL_MS);
    const wire: LicenseWire = {
      id: offlineLicenseId(l),
      subject: l.subject,
      service: l.service,
      port: l.port,
      notBefore: formatTime(notBefore),
      expiresAt: formatTime(expiresAt),
    };
    if (l.methods && l.methods.length > 0) wire.methods = [...l.methods];
    if (l.paths && l.paths.length > 0) wire.paths = [...l.paths];
    return wire;
  });
  const services = [
    ...new Set([...decl.services.map((s) => s.name), ...licenses.map((l) => l.service)]),
  ].sort();
  return { version: opts.version, issuedAt: formatTime(opts.now), node: opts.node, services, licenses };
}
