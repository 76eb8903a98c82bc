/**
 * The authority's storage interface. The API and lifecycle layers talk only to this; SQLite
 * (sqlite-store.ts) is the embedded engine. Every mutating call made inside `transaction` commits
 * durably before `transaction` returns, so the API answers only after the change is on disk.
 */
import type { AuditEntry, AuditInput, LicenseRecord, NodeRecord, ServiceRecord, UsageRow } from './model.js';

export interface LicenseFilter {
  service?: string;
  subject?: string;
  /** Only licenses whose id sorts after this (keyset pagination). */
  after?: string;
  limit?: number;
}

export interface AuthorityStore {
  /** Run `fn` atomically; the changes are durable when this returns. Nested calls join the outer one. */
  transaction<T>(fn: () => T): T;
  close(): void;

  /** The current bundle version: raised by every change that alters any bundle. */
  bundleVersion(): number;
  bumpBundleVersion(): number;

  listServices(): ServiceRecord[];
  getService(name: string): ServiceRecord | undefined;
  putService(s: ServiceRecord): void;

  getLicense(id: string): LicenseRecord | undefined;
  listLicenses(filter?: LicenseFilter): LicenseRecord[];
  /** Licenses of these services whose expiresAt is after `since` (revoked ones included). */
  licensesForServices(services: readonly string[], since: number): LicenseRecord[];
  /** Every license not revoked whose expiresAt is after `since`. */
  liveLicenses(since: number): LicenseRecord[];
  putLicense(l: LicenseRecord): void;
  /** Licenses not revoked whose expiresAt has passed and whose expiry is not yet in the audit log. */
  expiredUnaudited(now: number): LicenseRecord[];
  /**
   * Active licenses with autoRenew, short of their maximum lifetime, with less than half their ttl
   * left at `now`, and used (a usage row) after their last renewal.
   */
  usedAndDue(now: number): LicenseRecord[];

  /** Merge usage: last access is the later one, counts add. */
  addUsage(rows: readonly UsageRow[]): void;
  /** The most recent access of a license, and the total count over identities and origins. */
  lastAccess(licenseId: string): { last: UsageRow; total: number } | undefined;

  putNode(n: NodeRecord): void;
  getNode(node: string): NodeRecord | undefined;
  listNodes(): NodeRecord[];
  deleteNode(node: string): void;

  appendAudit(e: AuditInput): AuditEntry;
  /** Newest first. */
  listAudit(opts: { since?: number; limit: number; before?: number }): AuditEntry[];
}
