/**
 * AuthorityStore on SQLite (better-sqlite3): one file, WAL journal, synchronous=FULL so a commit
 * is on disk before the API answers (a kill -9, or a power cut, right after a 2xx loses nothing).
 * Schema migrations run at open, each in its own transaction, recorded in user_version.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { PortlicenseError, errorMessage } from '../errors.js';
import type { AuditEntry, AuditInput, LicenseRecord, NodeRecord, ServiceRecord, UsageRow } from './model.js';
import type { AuthorityStore, LicenseFilter } from './store.js';

/**
 * Use counts saturate here: a report's count is at most MAX_REPORTED_COUNT, and what the store keeps
 * for a row or sums for a license never passes this (a whole number a double holds exactly).
 */
const MAX_USE_COUNT = Number.MAX_SAFE_INTEGER;
/**
 * Distinct (identity, origin) usage rows kept per license; use from further pairs adds to the
 * license's `*` row (the same key a sidecar folds its own overflow into).
 */
export const MAX_USAGE_ROWS_PER_LICENSE = 1_000;

/**
 * Licenses due a renewal for use since their last one (AuthorityStore.usedAndDue). The first line is
 * the licenses_half_ttl index (the same expression and conditions): only licenses past half their
 * ttl are read, not every live one, though it runs every second.
 */
export const USED_AND_DUE_SQL = `SELECT * FROM licenses l
  WHERE l.expires_at - l.ttl / 2 <= @now AND l.auto_renew = 1 AND l.expiry_audited = 0 AND l.revoked_at IS NULL
    AND l.expires_at > @now AND (l.expires_at - @now) * 2 < l.ttl AND l.not_before <= @now
    AND l.expires_at < l.created_at + l.max_lifetime
    AND EXISTS (SELECT 1 FROM usage u WHERE u.license_id = l.id AND u.at > l.renewed_at)
  ORDER BY l.id`;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   -- Versions start at the creation time in seconds, so a new store that replaces an old one
   -- issues versions above anything the old one did and sidecars accept its bundles.
   INSERT INTO meta (key, value) VALUES ('bundle_version', CAST(strftime('%s', 'now') AS TEXT));
   CREATE TABLE services (name TEXT PRIMARY KEY, ports TEXT NOT NULL, created_at INTEGER NOT NULL);
   CREATE TABLE licenses (
     id TEXT PRIMARY KEY, subject TEXT NOT NULL, service TEXT NOT NULL, port TEXT NOT NULL,
     methods TEXT, paths TEXT, not_before INTEGER NOT NULL, expires_at INTEGER NOT NULL,
     created_at INTEGER NOT NULL, ttl INTEGER NOT NULL, max_lifetime INTEGER NOT NULL,
     auto_renew INTEGER NOT NULL, reason TEXT, revoked_at INTEGER, revoke_reason TEXT,
     renewed_at INTEGER NOT NULL, expiry_audited INTEGER NOT NULL DEFAULT 0);
   CREATE INDEX licenses_service ON licenses (service, expires_at);
   CREATE INDEX licenses_subject ON licenses (subject);
   CREATE TABLE usage (license_id TEXT NOT NULL, identity TEXT NOT NULL, origin TEXT NOT NULL,
     at INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (license_id, identity, origin));
   CREATE TABLE nodes (node TEXT PRIMARY KEY, identity TEXT NOT NULL, services TEXT NOT NULL,
     bundle_version INTEGER NOT NULL, last_sync INTEGER, last_report INTEGER);
   CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL,
     action TEXT NOT NULL, license_id TEXT, subject TEXT, service TEXT, port TEXT, reason TEXT, detail TEXT);
   CREATE INDEX audit_at ON audit (at);`,
  `CREATE INDEX licenses_expiry_unaudited ON licenses (expires_at) WHERE expiry_audited = 0 AND revoked_at IS NULL;`,
  // When a live autoRenew license reaches half its ttl (usedAndDue, every second): past it only.
  `CREATE INDEX licenses_half_ttl ON licenses (expires_at - ttl / 2)
     WHERE auto_renew = 1 AND expiry_audited = 0 AND revoked_at IS NULL;`,
];

interface LicenseRow {
  id: string;
  subject: string;
  service: string;
  port: string;
  methods: string | null;
  paths: string | null;
  not_before: number;
  expires_at: number;
  created_at: number;
  ttl: number;
  max_lifetime: number;
  auto_renew: number;
  reason: string | null;
  revoked_at: number | null;
  revoke_reason: string | null;
  renewed_at: number;
  expiry_audited: number;
}

const toLicense = (r: LicenseRow): LicenseRecord => ({
  id: r.id,
  subject: r.subject,
  service: r.service,
  port: r.port,
  methods: r.methods === null ? null : (JSON.parse(r.methods) as string[]),
  paths: r.paths === null ? null : (JSON.parse(r.paths) as string[]),
  notBefore: r.not_before,
  expiresAt: r.expires_at,
  createdAt: r.created_at,
  ttl: r.ttl,
  maxLifetime: r.max_lifetime,
  autoRenew: r.auto_renew === 1,
  reason: r.reason,
  revokedAt: r.revoked_at,
  revokeReason: r.revoke_reason,
  renewedAt: r.renewed_at,
  expiryAudited: r.expiry_audited === 1,
});

interface AuditRow {
  id: number;
  at: number;
  actor: string;
  action: string;
  license_id: string | null;
  subject: string | null;
  service: string | null;
  port: string | null;
  reason: string | null;
  detail: string | null;
}

const toAudit = (r: AuditRow): AuditEntry => ({
  id: r.id,
  at: r.at,
  actor: r.actor,
  action: r.action as AuditEntry['action'],
  licenseId: r.license_id,
  subject: r.subject,
  service: r.service,
  port: r.port,
  reason: r.reason,
  detail: r.detail === null ? null : (JSON.parse(r.detail) as Record<string, unknown>),
});

interface NodeRow {
  node: string;
  identity: string;
  services: string;
  bundle_version: number;
  last_sync: number | null;
  last_report: number | null;
}

export class SqliteStore implements AuthorityStore {
  private readonly db: Database.Database;
  private readonly stmt;

  /** Open (creating the file and its folder if needed) and migrate. */
  constructor(file: string) {
    try {
      if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
      this.db = new Database(file);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('foreign_keys = ON');
      this.db.pragma('busy_timeout = 5000');
      this.migrate();
    } catch (err) {
      throw new PortlicenseError(
        'INTERNAL',
        `store ${file}: cannot open the SQLite database: ${errorMessage(err)} (check the path in store.sqlite and its permissions)`,
        { cause: err },
      );
    }
    const db = this.db;
    this.stmt = {
      getMeta: db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value',
      ),
      listServices: db.prepare<[], { name: string; ports: string; created_at: number }>(
        'SELECT * FROM services ORDER BY name',
      ),
      getService: db.prepare<[string], { name: string; ports: string; created_at: number }>(
        'SELECT * FROM services WHERE name = ?',
      ),
      putService: db.prepare(
        'INSERT INTO services (name, ports, created_at) VALUES (@name, @ports, @created_at) ON CONFLICT(name) DO UPDATE SET ports = excluded.ports',
      ),
      getLicense: db.prepare<[string], LicenseRow>('SELECT * FROM licenses WHERE id = ?'),
      putLicense: db.prepare(
        `INSERT OR REPLACE INTO licenses (id, subject, service, port, methods, paths, not_before, expires_at, created_at, ttl,
           max_lifetime, auto_renew, reason, revoked_at, revoke_reason, renewed_at, expiry_audited)
         VALUES (@id, @subject, @service, @port, @methods, @paths, @not_before, @expires_at, @created_at, @ttl,
           @max_lifetime, @auto_renew, @reason, @revoked_at, @revoke_reason, @renewed_at, @expiry_audited)`,
      ),
      expiredUnaudited: db.prepare<[number], LicenseRow>(
        'SELECT * FROM licenses WHERE expiry_audited = 0 AND revoked_at IS NULL AND expires_at <= ? ORDER BY expires_at',
      ),
      usedAndDue: db.prepare<{ now: number }, LicenseRow>(USED_AND_DUE_SQL),
      liveLicenses: db.prepare<[number], LicenseRow>(
        'SELECT * FROM licenses WHERE revoked_at IS NULL AND expires_at > ?',
      ),
      addUsage: db.prepare(
        `INSERT INTO usage (license_id, identity, origin, at, count) VALUES (@licenseId, @identity, @origin, @at, @count)
         ON CONFLICT(license_id, identity, origin) DO UPDATE SET at = max(at, excluded.at),
           count = min(count + excluded.count, ${MAX_USE_COUNT})`,
      ),
      usageRowExists: db.prepare<[string, string, string], { one: number }>(
        'SELECT 1 AS one FROM usage WHERE license_id = ? AND identity = ? AND origin = ?',
      ),
      usageRows: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM usage WHERE license_id = ?'),
      lastAccess: db.prepare<
        [string],
        { license_id: string; identity: string; origin: string; at: number; count: number }
      >('SELECT * FROM usage WHERE license_id = ? ORDER BY at DESC LIMIT 1'),
      totalCount: db.prepare<[string], { total: number | null }>(
        // total(), not sum(): a float that cannot overflow, where sum() fails the whole query.
        `SELECT min(total(count), ${MAX_USE_COUNT}) AS total FROM usage WHERE license_id = ?`,
      ),
      putNode: db.prepare(
        `INSERT OR REPLACE INTO nodes (node, identity, services, bundle_version, last_sync, last_report)
         VALUES (@node, @identity, @services, @bundle_version, @last_sync, @last_report)`,
      ),
      getNode: db.prepare<[string], NodeRow>('SELECT * FROM nodes WHERE node = ?'),
      listNodes: db.prepare<[], NodeRow>('SELECT * FROM nodes ORDER BY node'),
      deleteNode: db.prepare<[string]>('DELETE FROM nodes WHERE node = ?'),
      appendAudit: db.prepare(
        `INSERT INTO audit (at, actor, action, license_id, subject, service, port, reason, detail)
         VALUES (@at, @actor, @action, @licenseId, @subject, @service, @port, @reason, @detail)`,
      ),
    };
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > MIGRATIONS.length)
      throw new Error(
        `schema version ${current} is newer than this portlicense understands (${MIGRATIONS.length}); upgrade portlicense`,
      );
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  transaction<T>(fn: () => T): T {
    return this.db.inTransaction ? fn() : this.db.transaction(fn).immediate();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  bundleVersion(): number {
    return Number(this.stmt.getMeta.get('bundle_version')!.value);
  }

  bumpBundleVersion(): number {
    const next = this.bundleVersion() + 1;
    this.stmt.setMeta.run('bundle_version', String(next));
    return next;
  }

  listServices(): ServiceRecord[] {
    return this.stmt.listServices.all().map((r) => ({
      name: r.name,
      ports: JSON.parse(r.ports) as ServiceRecord['ports'],
      createdAt: r.created_at,
    }));
  }

  getService(name: string): ServiceRecord | undefined {
    const r = this.stmt.getService.get(name);
    return (
      r && { name: r.name, ports: JSON.parse(r.ports) as ServiceRecord['ports'], createdAt: r.created_at }
    );
  }

  putService(s: ServiceRecord): void {
    this.stmt.putService.run({ name: s.name, ports: JSON.stringify(s.ports), created_at: s.createdAt });
  }

  getLicense(id: string): LicenseRecord | undefined {
    const r = this.stmt.getLicense.get(id);
    return r && toLicense(r);
  }

  listLicenses(filter: LicenseFilter = {}): LicenseRecord[] {
    const where: string[] = [];
    const args: Record<string, unknown> = {};
    if (filter.service !== undefined) {
      where.push('service = @service');
      args.service = filter.service;
    }
    if (filter.subject !== undefined) {
      where.push('subject = @subject');
      args.subject = filter.subject;
    }
    if (filter.after !== undefined) {
      where.push('id > @after');
      args.after = filter.after;
    }
    const sql =
      'SELECT * FROM licenses' +
      (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
      ' ORDER BY id' +
      (filter.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(filter.limit))}` : '');
    return this.db.prepare<Record<string, unknown>, LicenseRow>(sql).all(args).map(toLicense);
  }

  licensesForServices(services: readonly string[], since: number): LicenseRecord[] {
    if (services.length === 0) return [];
    const marks = services.map(() => '?').join(',');
    return this.db
      .prepare<unknown[], LicenseRow>(
        `SELECT * FROM licenses WHERE service IN (${marks}) AND expires_at > ? ORDER BY id`,
      )
      .all(...services, since)
      .map(toLicense);
  }

  expiredUnaudited(now: number): LicenseRecord[] {
    return this.stmt.expiredUnaudited.all(now).map(toLicense);
  }

  usedAndDue(now: number): LicenseRecord[] {
    return this.stmt.usedAndDue.all({ now }).map(toLicense);
  }

  liveLicenses(since: number): LicenseRecord[] {
    return this.stmt.liveLicenses.all(since).map(toLicense);
  }

  putLicense(l: LicenseRecord): void {
    this.stmt.putLicense.run({
      id: l.id,
      subject: l.subject,
      service: l.service,
      port: l.port,
      methods: l.methods === null ? null : JSON.stringify(l.methods),
      paths: l.paths === null ? null : JSON.stringify(l.paths),
      not_before: l.notBefore,
      expires_at: l.expiresAt,
      created_at: l.createdAt,
      ttl: l.ttl,
      max_lifetime: l.maxLifetime,
      auto_renew: l.autoRenew ? 1 : 0,
      reason: l.reason,
      revoked_at: l.revokedAt,
      revoke_reason: l.revokeReason,
      renewed_at: l.renewedAt,
      expiry_audited: l.expiryAudited ? 1 : 0,
    });
  }

  /**
   * Past MAX_USAGE_ROWS_PER_LICENSE distinct (identity, origin) rows, use from a new pair is added
   * to the license's `*` row (one more row): a sidecar reporting ever new origins cannot grow the
   * store without bound, and the license's last access and total stay right.
   */
  addUsage(rows: readonly UsageRow[]): void {
    const { usageRowExists, usageRows, addUsage } = this.stmt;
    /** Rows per license, counted once per call and kept up to date as rows are added. */
    const counts = new Map<string, number>();
    for (const r of rows) {
      if (usageRowExists.get(r.licenseId, r.identity, r.origin) !== undefined) {
        addUsage.run(r);
        continue;
      }
      const n = counts.get(r.licenseId) ?? usageRows.get(r.licenseId)?.n ?? 0;
      if (n >= MAX_USAGE_ROWS_PER_LICENSE) {
        addUsage.run({ ...r, identity: '*', origin: '*' });
        continue;
      }
      counts.set(r.licenseId, n + 1);
      addUsage.run(r);
    }
  }

  lastAccess(licenseId: string): { last: UsageRow; total: number } | undefined {
    const r = this.stmt.lastAccess.get(licenseId);
    if (!r) return undefined;
    const total = this.stmt.totalCount.get(licenseId)?.total ?? r.count;
    return {
      last: { licenseId: r.license_id, identity: r.identity, origin: r.origin, at: r.at, count: r.count },
      total,
    };
  }

  putNode(n: NodeRecord): void {
    this.stmt.putNode.run({
      node: n.node,
      identity: n.identity,
      services: JSON.stringify(n.services),
      bundle_version: n.bundleVersion,
      last_sync: n.lastSync,
      last_report: n.lastReport,
    });
  }

  getNode(node: string): NodeRecord | undefined {
    const r = this.stmt.getNode.get(node);
    return r && toNode(r);
  }

  listNodes(): NodeRecord[] {
    return this.stmt.listNodes.all().map(toNode);
  }

  deleteNode(node: string): void {
    this.stmt.deleteNode.run(node);
  }

  appendAudit(e: AuditInput): AuditEntry {
    const info = this.stmt.appendAudit.run({
      ...e,
      detail: e.detail === null ? null : JSON.stringify(e.detail),
    });
    return { ...e, id: Number(info.lastInsertRowid) };
  }

  listAudit(opts: { since?: number; limit: number; before?: number }): AuditEntry[] {
    const where: string[] = [];
    const args: Record<string, unknown> = { limit: Math.max(1, Math.floor(opts.limit)) };
    if (opts.since !== undefined) {
      where.push('at >= @since');
      args.since = opts.since;
    }
    if (opts.before !== undefined) {
      where.push('id < @before');
      args.before = opts.before;
    }
    const sql = `SELECT * FROM audit${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT @limit`;
    return this.db.prepare<Record<string, unknown>, AuditRow>(sql).all(args).map(toAudit);
  }
}

function toNode(r: NodeRow): NodeRecord {
  return {
    node: r.node,
    identity: r.identity,
    services: JSON.parse(r.services) as string[],
    bundleVersion: r.bundle_version,
    lastSync: r.last_sync,
    lastReport: r.last_report,
  };
}
