/**
 * The authority's records and their API shape (SPEC §5 "License as the API and --json show it").
 * Times are epoch ms inside, RFC 3339 outside; durations ms inside, `24h` outside.
 */
import { formatDuration, formatTime } from '../config/duration.js';
import { licenseStateAt, type LicenseState } from '../policy/state.js';
import type { LicenseWire, PortProtocol } from '../policy/types.js';

export type { LicenseState } from '../policy/state.js';

export interface LicenseRecord {
  id: string;
  subject: string;
  service: string;
  port: string;
  methods: string[] | null;
  paths: string[] | null;
  notBefore: number;
  expiresAt: number;
  createdAt: number;
  ttl: number;
  maxLifetime: number;
  autoRenew: boolean;
  reason: string | null;
  revokedAt: number | null;
  revokeReason: string | null;
  /** Last grant or renewal: usage after this counts toward automatic renewal. */
  renewedAt: number;
  /** Set once the expiry of this license has been written to the audit log. */
  expiryAudited: boolean;
}

export interface UsageRow {
  licenseId: string;
  identity: string;
  origin: string;
  /** Epoch ms of the last access. */
  at: number;
  count: number;
}

export interface ServicePort {
  name: string;
  protocol: PortProtocol;
}

export interface ServiceRecord {
  name: string;
  ports: ServicePort[];
  createdAt: number;
}

export type AuditAction = 'grant' | 'renew' | 'auto_renew' | 'revoke' | 'expire' | 'service' | 'apply';

export interface AuditEntry {
  id: number;
  at: number;
  /** Identity of the caller (an admin, a sidecar for auto renewals, or `authority` for expiry). */
  actor: string;
  action: AuditAction;
  licenseId: string | null;
  subject: string | null;
  service: string | null;
  port: string | null;
  reason: string | null;
  detail: Record<string, unknown> | null;
}

export type AuditInput = Omit<AuditEntry, 'id'>;

export interface NodeRecord {
  node: string;
  identity: string;
  services: string[];
  bundleVersion: number;
  lastSync: number | null;
  lastReport: number | null;
}

export const licenseState: (l: LicenseRecord, now: number) => LicenseState = licenseStateAt;

/** Hard cap of expiresAt: a license never outlives createdAt + maxLifetime without a re-grant. */
export function hardExpiry(l: LicenseRecord): number {
  return l.createdAt + l.maxLifetime;
}

export interface LicenseJson {
  id: string;
  subject: string;
  service: string;
  port: string;
  methods: string[] | null;
  paths: string[] | null;
  notBefore: string;
  expiresAt: string;
  createdAt: string;
  ttl: string;
  maxLifetime: string;
  autoRenew: boolean;
  state: LicenseState;
  reason: string | null;
  revokedAt: string | null;
  revokeReason: string | null;
  lastAccess: { at: string; identity: string; origin: string; count: number } | null;
}

export function licenseJson(
  l: LicenseRecord,
  now: number,
  last?: UsageRow,
  totalCount?: number,
): LicenseJson {
  return {
    id: l.id,
    subject: l.subject,
    service: l.service,
    port: l.port,
    methods: l.methods,
    paths: l.paths,
    notBefore: formatTime(l.notBefore),
    expiresAt: formatTime(l.expiresAt),
    createdAt: formatTime(l.createdAt),
    ttl: formatDuration(l.ttl),
    maxLifetime: formatDuration(l.maxLifetime),
    autoRenew: l.autoRenew,
    state: licenseState(l, now),
    reason: l.reason,
    revokedAt: l.revokedAt === null ? null : formatTime(l.revokedAt),
    revokeReason: l.revokeReason,
    lastAccess: last
      ? {
          at: formatTime(last.at),
          identity: last.identity,
          origin: last.origin,
          count: totalCount ?? last.count,
        }
      : null,
  };
}

/** The bundle form of a license (SPEC §4). */
export function licenseWire(l: LicenseRecord): LicenseWire {
  const w: LicenseWire = {
    id: l.id,
    subject: l.subject,
    service: l.service,
    port: l.port,
    notBefore: formatTime(l.notBefore),
    expiresAt: formatTime(l.expiresAt),
  };
  if (l.methods) w.methods = l.methods;
  if (l.paths) w.paths = l.paths;
  if (l.revokedAt !== null) w.revokedAt = formatTime(l.revokedAt);
  return w;
}
