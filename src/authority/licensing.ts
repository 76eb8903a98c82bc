/**
 * The license lifecycle of SPEC §3: grant, manual and automatic renewal, revocation, declarative
 * apply, usage ingestion, expiry bookkeeping. Every change is one store transaction with its audit
 * entry and, when it alters any bundle, a bundle-version bump; listeners learn of the new version
 * after the commit (long polls wake on it).
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { AuthorityConfig } from '../config/authority.js';
import type { DeclarativeFile, DeclarativeLicense, DeclarativeService } from '../config/declarative.js';
import { formatDuration, formatTime } from '../config/duration.js';
import type { Logger } from '../log.js';
import { subjectCovers, subjectMatches } from '../policy/spiffe.js';
import { badRequest, conflict, notFound } from './api-error.js';
import {
  hardExpiry,
  licenseState,
  type AuditInput,
  type LicenseRecord,
  type LicenseState,
  type ServiceRecord,
  type UsageRow,
} from './model.js';
import type { AuthorityStore, LicenseFilter } from './store.js';

/** Revoked licenses stay listed until they would have expired, expired ones this long (SPEC §4). */
export const EXPIRED_RETENTION_MS = 24 * 3_600_000;

export interface ApplyResult {
  created: string[];
  changed: string[];
  unchanged: string[];
}

export interface UsageReportInput {
  usage: UsageRow[];
  denials: Array<{ identity: string | null; reason: string; count: number }>;
}

export type Defaults = AuthorityConfig['defaults'];

/** A declared license's HTTP rules as stored: an empty list is no rule (null). */
function rulesOf(spec: DeclarativeLicense): Pick<LicenseRecord, 'methods' | 'paths'> {
  return {
    methods: spec.methods && spec.methods.length > 0 ? [...spec.methods] : null,
    paths: spec.paths && spec.paths.length > 0 ? [...spec.paths] : null,
  };
}

/** Where a license applies, and its HTTP rules: what `checkPort` looks at. */
type LicenseTarget = Pick<DeclarativeLicense, 'service' | 'port' | 'methods' | 'paths'>;

export function newLicenseId(): string {
  return 'lic_' + randomBytes(12).toString('hex');
}

export class Licensing {
  private readonly listeners = new Set<(version: number) => void>();
  /** Licenses already warned about (in use, expiring, cannot renew), so the warning is logged once. */
  private readonly warned = new Set<string>();

  constructor(
    private readonly store: AuthorityStore,
    private readonly defaults: Defaults,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Called with the new bundle version after every committed change that alters bundles. */
  onChange(fn: (version: number) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  version(): number {
    return this.store.bundleVersion();
  }

  /** Run a change; bump the version when `bumps` says so; notify after the commit. */
  private change<T>(fn: () => { value: T; bumps: boolean }): T {
    let bumped = false;
    const value = this.store.transaction(() => {
      const r = fn();
      if (r.bumps) {
        this.store.bumpBundleVersion();
        bumped = true;
      }
      return r.value;
    });
    if (bumped) {
      const v = this.store.bundleVersion();
      for (const l of this.listeners) l(v);
    }
    return value;
  }

  private audit(e: Omit<AuditInput, 'at'>): void {
    this.store.appendAudit({ at: this.clock.now(), ...e });
  }

  // --- services ---------------------------------------------------------------------------

  putService(s: DeclarativeService, actor: string): 'created' | 'changed' | 'unchanged' {
    return this.change(() => {
      const outcome = this.putServiceTx(s, actor);
      return { value: outcome, bumps: false };
    });
  }

  private putServiceTx(s: DeclarativeService, actor: string): 'created' | 'changed' | 'unchanged' {
    const existing = this.store.getService(s.name);
    const ports = s.ports.map((p) => ({ name: p.name, protocol: p.protocol }));
    if (existing && JSON.stringify(existing.ports) === JSON.stringify(ports)) return 'unchanged';
    const now = this.clock.now();
    const tcp = new Set(ports.filter((p) => p.protocol === 'tcp').map((p) => p.name));
    const ruled =
      tcp.size === 0
        ? undefined
        : this.store
            .listLicenses({ service: s.name })
            .find(
              (l) => tcp.has(l.port) && l.revokedAt === null && l.expiresAt > now && (l.methods || l.paths),
            );
    if (ruled)
      throw badRequest(
        `port ${s.name}/${ruled.port} cannot become tcp: license ${ruled.id} on it has method or path rules, ` +
          'which a tcp port cannot apply; revoke it first',
      );
    const rec: ServiceRecord = { name: s.name, ports, createdAt: existing?.createdAt ?? this.clock.now() };
    this.store.putService(rec);
    this.audit({
      actor,
      action: 'service',
      licenseId: null,
      subject: null,
      service: s.name,
      port: null,
      reason: null,
      detail: { ports, previous: existing?.ports ?? null },
    });
    return existing ? 'changed' : 'created';
  }

  listServices(): ServiceRecord[] {
    return this.store.listServices();
  }

  // --- licenses ---------------------------------------------------------------------------

  /**
   * The license's port exists, and only an http port gets method or path rules: a tcp port
   * decides without them, so a rule there would admit every connection it seemed to narrow.
   */
  private checkPort(spec: LicenseTarget): void {
    const problem = this.portProblem(spec);
    if (problem !== null) throw badRequest(problem);
  }

  /** What `checkPort` refuses, or null. */
  private portProblem(spec: LicenseTarget): string | null {
    const { service, port } = spec;
    const services = this.store.listServices();
    const svc = services.find((s) => s.name === service);
    if (!svc) {
      const known =
        services.map((s) => s.name).join(', ') || 'none; register one with POST /v1/services or apply';
      return `unknown service "${service}"; known services: ${known}`;
    }
    const p = svc.ports.find((x) => x.name === port);
    if (!p)
      return `service "${service}" has no port "${port}"; its ports: ${svc.ports.map((x) => x.name).join(', ')}`;
    const rule = spec.methods?.length ? 'methods' : spec.paths?.length ? 'paths' : null;
    if (p.protocol === 'tcp' && rule !== null)
      return `${rule}: only http ports have methods and paths (${service}/${port} is tcp)`;
    return null;
  }

  private build(spec: DeclarativeLicense, now: number): LicenseRecord {
    let ttl = spec.ttl ?? this.defaults.ttl;
    let maxLifetime = spec.maxLifetime ?? Math.max(this.defaults.maxLifetime, ttl);
    const notBefore = spec.notBefore ?? now;
    const createdAt = now;
    const cap = createdAt + maxLifetime;
    const expiresAt = spec.expiresAt ?? Math.min(Math.max(notBefore, now) + ttl, cap);
    if (spec.expiresAt !== undefined && spec.expiresAt > cap)
      throw badRequest(
        `expiresAt ${formatTime(spec.expiresAt)} is beyond createdAt + maxLifetime (${formatTime(cap)})`,
      );
    if (expiresAt <= now) throw badRequest(`expiresAt ${formatTime(expiresAt)} is not in the future`);
    if (notBefore >= expiresAt)
      throw badRequest(
        `notBefore ${formatTime(notBefore)} is not before the license's expiry (${formatTime(expiresAt)}, ` +
          `createdAt + maxLifetime at most): it could never be active`,
      );
    if (spec.expiresAt !== undefined) {
      // A fixed end is the hard one: use renews nothing past it (it is warned about instead).
      maxLifetime = spec.expiresAt - createdAt;
      ttl = Math.min(ttl, maxLifetime);
    }
    return {
      id: newLicenseId(),
      subject: spec.subject,
      service: spec.service,
      port: spec.port,
      ...rulesOf(spec),
      notBefore,
      expiresAt,
      createdAt,
      ttl,
      maxLifetime,
      autoRenew: spec.autoRenew ?? this.defaults.autoRenew,
      reason: spec.reason ?? null,
      revokedAt: null,
      revokeReason: null,
      renewedAt: now,
      expiryAudited: false,
    };
  }

  /**
   * A live license as `spec` declares it (apply), by the rules `build` grants with, from the
   * license's own createdAt: a fixed `expiresAt` is checked against the maximum lifetime (declared,
   * or the default) and becomes the hard end, so applying the same file again changes nothing and
   * use never renews past it; omitted fields keep their values. An apply never ends a license (an
   * end not in the future is a 400: revoke it instead).
   */
  private updated(existing: LicenseRecord, spec: DeclarativeLicense, now: number): LicenseRecord {
    const { createdAt } = existing;
    let ttl = spec.ttl ?? existing.ttl;
    let maxLifetime = spec.maxLifetime ?? existing.maxLifetime;
    let expiresAt: number;
    if (spec.expiresAt !== undefined) {
      const cap = createdAt + (spec.maxLifetime ?? Math.max(this.defaults.maxLifetime, ttl));
      if (spec.expiresAt > cap)
        throw badRequest(
          `expiresAt ${formatTime(spec.expiresAt)} is beyond createdAt + maxLifetime (${formatTime(cap)}) ` +
            `of license ${existing.id}`,
        );
      expiresAt = spec.expiresAt;
      maxLifetime = spec.expiresAt - createdAt;
      ttl = Math.min(ttl, maxLifetime);
    } else expiresAt = Math.min(existing.expiresAt, createdAt + maxLifetime);
    if (expiresAt <= now)
      throw badRequest(
        `license ${existing.id} would end ${formatTime(expiresAt)}, not in the future: an apply does not ` +
          'end a license; revoke it instead',
      );
    const notBefore = spec.notBefore ?? existing.notBefore;
    if (notBefore >= expiresAt)
      throw badRequest(
        `notBefore ${formatTime(notBefore)} is not before the expiry of license ${existing.id} ` +
          `(${formatTime(expiresAt)}): it could never be active`,
      );
    return {
      ...existing,
      ...rulesOf(spec),
      notBefore,
      expiresAt,
      ttl,
      maxLifetime,
      autoRenew: spec.autoRenew ?? existing.autoRenew,
      reason: spec.reason ?? existing.reason,
    };
  }

  grant(spec: DeclarativeLicense, actor: string): LicenseRecord {
    this.checkPort(spec);
    return this.change(() => {
      const l = this.build(spec, this.clock.now());
      this.store.putLicense(l);
      this.audit({
        actor,
        action: 'grant',
        licenseId: l.id,
        subject: l.subject,
        service: l.service,
        port: l.port,
        reason: l.reason,
        detail: { expiresAt: formatTime(l.expiresAt), ttl: formatDuration(l.ttl) },
      });
      return { value: l, bumps: true };
    });
  }

  get(id: string): LicenseRecord {
    const l = this.store.getLicense(id);
    if (!l) throw notFound(`no license "${id}"`);
    return l;
  }

  list(filter: LicenseFilter & { state?: LicenseState } = {}): LicenseRecord[] {
    const { state, ...rest } = filter;
    const now = this.clock.now();
    const all = this.store.listLicenses(rest);
    return state === undefined ? all : all.filter((l) => licenseState(l, now) === state);
  }

  lastAccess(id: string): { last: UsageRow; total: number } | undefined {
    return this.store.lastAccess(id);
  }

  /** Manual renewal: expiresAt = now + ttl, capped by maxLifetime; 409 when nothing can be added. */
  renew(id: string, actor: string, opts: { ttl?: number; reason?: string } = {}): LicenseRecord {
    return this.change(() => {
      const l = this.get(id);
      const now = this.clock.now();
      if (l.revokedAt !== null)
        throw conflict(`license ${id} is revoked (${l.revokeReason ?? 'no reason given'}); grant a new one`);
      // Its port may have changed since the grant (an expired license is not in the way of a port
      // becoming tcp): a renewal must not bring back rules its port cannot apply, or a port that is gone.
      const gone = this.portProblem({
        service: l.service,
        port: l.port,
        methods: l.methods ?? undefined,
        paths: l.paths ?? undefined,
      });
      if (gone !== null) throw conflict(`license ${id} cannot be renewed: ${gone}; grant a new license`);
      const ttl = opts.ttl ?? l.ttl;
      const cap = hardExpiry(l);
      const target = Math.min(Math.max(now, l.notBefore) + ttl, cap);
      if (target < cap && target <= l.expiresAt)
        // Renewing never shortens a license: say so rather than blame the maximum lifetime.
        throw conflict(
          `license ${id} cannot be renewed with ttl ${formatDuration(ttl)}: it would end ${formatTime(target)}, ` +
            `not after its current expiry ${formatTime(l.expiresAt)}; give a longer ttl, or revoke it to end it sooner`,
        );
      if (target <= l.expiresAt || target <= now)
        throw conflict(
          `license ${id} cannot be renewed: it has reached its maximum lifetime (${formatDuration(l.maxLifetime)} from ` +
            `${formatTime(l.createdAt)}, i.e. ${formatTime(cap)}); an admin must grant a new license`,
        );
      const next: LicenseRecord = { ...l, expiresAt: target, renewedAt: now, expiryAudited: false };
      this.store.putLicense(next);
      this.warned.delete(id); // a new expiry, to be warned about in its turn
      this.audit({
        actor,
        action: 'renew',
        licenseId: id,
        subject: l.subject,
        service: l.service,
        port: l.port,
        reason: opts.reason ?? null,
        detail: { from: formatTime(l.expiresAt), to: formatTime(target) },
      });
      return { value: next, bumps: true };
    });
  }

  revoke(id: string, actor: string, reason: string | null): LicenseRecord {
    return this.change(() => {
      const l = this.get(id);
      if (l.revokedAt !== null) return { value: l, bumps: false };
      const next = this.revokeTx(l, actor, reason);
      return { value: next, bumps: true };
    });
  }

  private revokeTx(l: LicenseRecord, actor: string, reason: string | null): LicenseRecord {
    const next: LicenseRecord = { ...l, revokedAt: this.clock.now(), revokeReason: reason };
    this.store.putLicense(next);
    this.audit({
      actor,
      action: 'revoke',
      licenseId: l.id,
      subject: l.subject,
      service: l.service,
      port: l.port,
      reason,
      detail: null,
    });
    return next;
  }

  /**
   * Revoke every live license whose subject is covered by `pattern` (an exact ID, or a `/*`
   * prefix that also takes licenses granted to narrower prefixes below it).
   */
  revokeBySubject(
    pattern: string,
    actor: string,
    opts: { service?: string; reason: string | null },
  ): LicenseRecord[] {
    return this.change(() => {
      const now = this.clock.now();
      const hit = this.store
        .liveLicenses(now)
        .filter(
          (l) =>
            (opts.service === undefined || l.service === opts.service) && subjectCovers(pattern, l.subject),
        );
      const out = hit.map((l) => this.revokeTx(l, actor, opts.reason));
      return { value: out, bumps: out.length > 0 };
    });
  }

  /** Declarative apply: idempotent; reports what it created, changed and left alone. */
  apply(decl: DeclarativeFile, actor: string): ApplyResult {
    const result: ApplyResult = { created: [], changed: [], unchanged: [] };
    return this.change(() => {
      let bumps = false;
      for (const s of decl.services) {
        const outcome = this.putServiceTx(s, actor);
        result[outcome === 'created' ? 'created' : outcome === 'changed' ? 'changed' : 'unchanged'].push(
          `service ${s.name}`,
        );
      }
      const now = this.clock.now();
      for (const spec of decl.licenses) {
        this.checkPort(spec);
        const label = `license ${spec.subject} -> ${spec.service}/${spec.port}`;
        const existing = this.store
          .listLicenses({ service: spec.service, subject: spec.subject })
          .find((l) => l.port === spec.port && l.revokedAt === null && l.expiresAt > now);
        if (!existing) {
          const l = this.build(spec, now);
          this.store.putLicense(l);
          this.audit({
            actor,
            action: 'apply',
            licenseId: l.id,
            subject: l.subject,
            service: l.service,
            port: l.port,
            reason: l.reason,
            detail: { outcome: 'created' },
          });
          result.created.push(`${label} (${l.id})`);
          bumps = true;
          continue;
        }
        const next = this.updated(existing, spec, now);
        const diff = (Object.keys(next) as (keyof LicenseRecord)[]).filter(
          (k) => JSON.stringify(next[k]) !== JSON.stringify(existing[k]),
        );
        if (diff.length === 0) {
          result.unchanged.push(`${label} (${existing.id})`);
          continue;
        }
        this.store.putLicense(next);
        this.warned.delete(next.id);
        this.audit({
          actor,
          action: 'apply',
          licenseId: next.id,
          subject: next.subject,
          service: next.service,
          port: next.port,
          reason: next.reason,
          detail: { outcome: 'changed', fields: diff },
        });
        result.changed.push(`${label} (${existing.id}: ${diff.join(', ')})`);
        bumps = true;
      }
      return { value: result, bumps };
    });
  }

  // --- usage and renewal ------------------------------------------------------------------

  /**
   * Ingest a usage report and renew, in the same transaction, every license that was used since
   * its last renewal, has autoRenew and has less than half its ttl left (SPEC §3).
   */
  ingestUsage(report: UsageReportInput, actor: string): { renewed: string[] } {
    return this.change(() => {
      const now = this.clock.now();
      // Only use by an identity the license covers counts (or a sidecar's folded `*` entry):
      // a report must not keep alive a license that nobody it names could have used.
      const known = report.usage.filter((u) => {
        const l = this.store.getLicense(u.licenseId);
        return l !== undefined && (u.identity === '*' || subjectMatches(l.subject, u.identity));
      });
      this.store.addUsage(known.map((u) => ({ ...u, at: Math.min(u.at, now) })));
      const lastUse = new Map<string, number>();
      for (const u of known)
        lastUse.set(u.licenseId, Math.max(lastUse.get(u.licenseId) ?? 0, Math.min(u.at, now)));
      const renewed: string[] = [];
      for (const [id, at] of lastUse) {
        const l = this.store.getLicense(id)!;
        if (licenseState(l, now) !== 'active' || at <= l.renewedAt) continue;
        const left = l.expiresAt - now;
        if (left >= l.ttl / 2) continue;
        const target = Math.min(now + l.ttl, hardExpiry(l));
        if (!l.autoRenew || target <= l.expiresAt) {
          this.warnUnrenewable(l, now);
          continue;
        }
        this.autoRenewTx(l, target, now, actor, 'in use');
        renewed.push(id);
      }
      return { value: { renewed }, bumps: renewed.length > 0 };
    });
  }

  /**
   * Renew, as a report would have, licenses used since their last renewal that now have less than
   * half their ttl left: a use reported while more than half was left renewed nothing then, and
   * without more use no later report names the license (SPEC §3: used since the last renewal,
   * under half the ttl left). Run by the expiry ticker. Returns the ids renewed.
   */
  renewUsed(): string[] {
    return this.change(() => {
      const now = this.clock.now();
      const renewed: string[] = [];
      for (const l of this.store.usedAndDue(now)) {
        const target = Math.min(now + l.ttl, hardExpiry(l));
        if (target <= l.expiresAt) continue;
        this.autoRenewTx(l, target, now, 'authority', 'used since its last renewal');
        renewed.push(l.id);
      }
      return { value: renewed, bumps: renewed.length > 0 };
    });
  }

  /** Renew `l` to `target` because it is in use: stored and audited (inside a change). */
  private autoRenewTx(l: LicenseRecord, target: number, now: number, actor: string, reason: string): void {
    this.store.putLicense({ ...l, expiresAt: target, renewedAt: now });
    this.audit({
      actor,
      action: 'auto_renew',
      licenseId: l.id,
      subject: l.subject,
      service: l.service,
      port: l.port,
      reason,
      detail: { from: formatTime(l.expiresAt), to: formatTime(target) },
    });
  }

  private warnUnrenewable(l: LicenseRecord, now: number): void {
    if (l.expiresAt - now > this.defaults.warnBefore || this.warned.has(l.id)) return;
    this.warned.add(l.id);
    this.log.warn('license in use will expire and cannot be renewed', {
      license: l.id,
      subject: l.subject,
      port: `${l.service}/${l.port}`,
      expiresAt: formatTime(l.expiresAt),
      why: l.autoRenew ? `maximum lifetime ${formatDuration(l.maxLifetime)} reached` : 'autoRenew is off',
    });
  }

  /** Licenses whose expiry has passed but is not yet in the audit log get an `expire` entry. */
  auditExpiries(): string[] {
    return this.change(() => {
      const now = this.clock.now();
      const due = this.store.expiredUnaudited(now);
      for (const l of due) {
        this.store.putLicense({ ...l, expiryAudited: true });
        this.audit({
          actor: 'authority',
          action: 'expire',
          licenseId: l.id,
          subject: l.subject,
          service: l.service,
          port: l.port,
          reason: l.autoRenew
            ? 'not used since its last renewal, or maximum lifetime reached'
            : 'autoRenew off',
          detail: { expiresAt: formatTime(l.expiresAt) },
        });
        this.warned.delete(l.id);
      }
      return { value: due.map((l) => l.id), bumps: false };
    });
  }

  /** Licenses for a bundle: the given services', live or revoked until expiry, expired for 24 h. */
  bundleLicenses(services: readonly string[]): LicenseRecord[] {
    const now = this.clock.now();
    return this.store
      .licensesForServices(services, now - EXPIRED_RETENTION_MS)
      .filter((l) => l.revokedAt === null || l.expiresAt > now);
  }

  /** Licenses in use (or not) that expire within warnBefore and cannot be renewed further. */
  expiringCount(): number {
    const now = this.clock.now();
    return this.store
      .liveLicenses(now)
      .filter(
        (l) =>
          l.expiresAt - now <= this.defaults.warnBefore && (!l.autoRenew || l.expiresAt >= hardExpiry(l)),
      ).length;
  }
}
