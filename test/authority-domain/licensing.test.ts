import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiError } from '../../src/authority/api-error.js';
import { Licensing } from '../../src/authority/licensing.js';
import { licenseState } from '../../src/authority/model.js';
import {
  MAX_USAGE_ROWS_PER_LICENSE,
  SqliteStore,
  USED_AND_DUE_SQL,
} from '../../src/authority/sqlite-store.js';
import Database from 'better-sqlite3';
import { ManualClock } from '../../src/clock.js';
import { subjectCovers } from '../../src/policy/spiffe.js';
import { createLogger, MemorySink } from '../../src/log.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const H = 3_600_000;
const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';
const ORDERS = {
  name: 'orders',
  ports: [
    { name: 'http', protocol: 'http' as const },
    { name: 'db', protocol: 'tcp' as const },
  ],
};

/** The ApiError `fn` throws. */
function apiErrorOf(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected an ApiError, none was thrown');
}

describe('Licensing', () => {
  let dir: string;
  let store: SqliteStore;
  let clock: ManualClock;
  let sink: MemorySink;
  let lic: Licensing;
  let versions: number[];

  beforeEach(() => {
    dir = tempDir('pl-lic-');
    store = new SqliteStore(join(dir, 'a.db'));
    clock = new ManualClock('2026-11-28T10:00:00Z');
    sink = new MemorySink();
    lic = new Licensing(
      store,
      { ttl: 24 * H, maxLifetime: 30 * 24 * H, autoRenew: true, warnBefore: 72 * H },
      clock,
      createLogger({ sink }),
    );
    versions = [];
    lic.onChange((v) => versions.push(v));
    lic.putService(ORDERS, 'admin');
  });
  afterEach(() => {
    store.close();
    removeDir(dir);
  });

  it('grants with defaults, bumps the bundle version and audits who and why', () => {
    const l = lic.grant(
      { subject: FRONTEND, service: 'orders', port: 'http', reason: 'reads orders' },
      'spiffe://example.org/admin/alice',
    );
    expect(l.id).toMatch(/^lic_[0-9a-f]{24}$/);
    expect(l.expiresAt - clock.now()).toBe(24 * H);
    expect(licenseState(l, clock.now())).toBe('active');
    expect(versions).toEqual([store.bundleVersion()]);
    expect(store.bundleVersion()).toBeGreaterThan(1_700_000_000);
    const [entry] = store.listAudit({ limit: 1 });
    expect(entry).toMatchObject({
      action: 'grant',
      actor: 'spiffe://example.org/admin/alice',
      licenseId: l.id,
      reason: 'reads orders',
    });
  });

  it('refuses an unknown service or port, naming the known ones', () => {
    expect(() => lic.grant({ subject: FRONTEND, service: 'payments', port: 'http' }, 'a')).toThrow(
      /known services: orders/,
    );
    expect(() => lic.grant({ subject: FRONTEND, service: 'orders', port: 'grpc' }, 'a')).toThrow(
      /its ports: http, db/,
    );
    expect(store.listLicenses()).toHaveLength(0);
    expect(versions).toEqual([]);
  });

  it('renews manually within max lifetime and answers 409 past it', () => {
    const l = lic.grant(
      { subject: FRONTEND, service: 'orders', port: 'http', ttl: 10 * H, maxLifetime: 15 * H },
      'a',
    );
    clock.advance(4 * H);
    const r = lic.renew(l.id, 'a');
    expect(r.expiresAt).toBe(clock.now() + 10 * H);
    clock.advance(2 * H);
    const capped = lic.renew(l.id, 'a');
    expect(capped.expiresAt).toBe(l.createdAt + 15 * H);
    const err = (() => {
      try {
        lic.renew(l.id, 'a');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(409);
    expect((err as ApiError).message).toMatch(/maximum lifetime/);
  });

  it('renews an expired license only while its port can still apply it: not once it became tcp or is gone', () => {
    const ruled = lic.grant(
      {
        subject: FRONTEND,
        service: 'orders',
        port: 'http',
        ttl: 2 * H,
        methods: ['GET'],
        paths: ['/health'],
      },
      'a',
    );
    const plain = lic.grant({ subject: FRONTEND, service: 'orders', port: 'db', ttl: 2 * H }, 'a');
    clock.advance(3 * H);
    // Expired, so nothing stops the port from becoming tcp, or the db port from being dropped.
    lic.putService({ name: 'orders', ports: [{ name: 'http', protocol: 'tcp' }] }, 'admin');
    const tcp = apiErrorOf(() => lic.renew(ruled.id, 'a'));
    expect(tcp.status).toBe(409);
    expect(tcp.message).toBe(
      `license ${ruled.id} cannot be renewed: methods: only http ports have methods and paths ` +
        '(orders/http is tcp); grant a new license',
    );
    expect(apiErrorOf(() => lic.renew(plain.id, 'a')).message).toMatch(
      /cannot be renewed: service "orders" has no port "db"; its ports: http; grant a new license$/,
    );
    expect(licenseState(lic.get(ruled.id), clock.now())).toBe('expired');
    // Back to http, the expired license may be renewed (an admin's act, within its maximum lifetime).
    lic.putService(ORDERS, 'admin');
    expect(licenseState(lic.renew(ruled.id, 'a'), clock.now())).toBe('active');
  });

  it('revokes one license, and every license under a subject prefix', () => {
    const a = lic.grant(
      { subject: 'spiffe://example.org/ns/payments/sa/a', service: 'orders', port: 'http' },
      'x',
    );
    const b = lic.grant(
      { subject: 'spiffe://example.org/ns/payments/*', service: 'orders', port: 'db' },
      'x',
    );
    const c = lic.grant({ subject: FRONTEND, service: 'orders', port: 'http' }, 'x');
    const revoked = lic.revokeBySubject('spiffe://example.org/ns/payments/*', 'x', { reason: 'incident 42' });
    expect(revoked.map((l) => l.id).sort()).toEqual([a.id, b.id].sort());
    expect(lic.get(c.id).revokedAt).toBeNull();
    expect(lic.get(a.id).revokeReason).toBe('incident 42');
    // Revoked licenses stay in the bundle until they would have expired, so sidecars say "revoked".
    expect(
      lic
        .bundleLicenses(['orders'])
        .map((l) => l.id)
        .sort(),
    ).toEqual([a.id, b.id, c.id].sort());
  });

  it('apply is idempotent and reports created, changed and unchanged', () => {
    const decl = {
      hasServices: true,
      services: [ORDERS],
      licenses: [{ subject: FRONTEND, service: 'orders', port: 'http', ttl: 2 * H, methods: ['GET'] }],
    };
    const first = lic.apply(decl, 'a');
    expect(first.created).toHaveLength(1);
    expect(first.unchanged).toEqual(['service orders']);
    const v = lic.version();
    const second = lic.apply(decl, 'a');
    expect(second.created).toEqual([]);
    expect(second.changed).toEqual([]);
    expect(second.unchanged).toHaveLength(2);
    expect(lic.version()).toBe(v);
    const third = lic.apply({ ...decl, licenses: [{ ...decl.licenses[0]!, methods: ['GET', 'POST'] }] }, 'a');
    expect(third.changed[0]).toMatch(/methods/);
    expect(lic.version()).toBe(v + 1);
  });

  it('apply takes a fixed expiresAt by the rules of a grant: the hard end, the same on every apply', () => {
    const fixed = clock.now() + 24 * H;
    const decl = {
      hasServices: false,
      services: [],
      licenses: [
        { subject: FRONTEND, service: 'orders', port: 'http', expiresAt: fixed, maxLifetime: 30 * 24 * H },
      ],
    };
    const first = lic.apply(decl, 'a');
    expect(first.created).toHaveLength(1);
    const id = lic.list()[0]!.id;
    const v = lic.version();
    expect(lic.apply(decl, 'a')).toMatchObject({ created: [], changed: [] });
    expect(lic.version()).toBe(v);
    // Use near the end renews nothing past the fixed end.
    clock.advance(20 * H);
    const use = { licenseId: id, identity: FRONTEND, origin: 'o', at: clock.now(), count: 1 };
    expect(lic.ingestUsage({ usage: [use], denials: [] }, 's').renewed).toEqual([]);
    expect(lic.get(id).expiresAt).toBe(fixed);

    // A license granted with a ttl, given a fixed end by a file: that end holds against use too.
    const other = lic.grant({ subject: FRONTEND, service: 'orders', port: 'db', ttl: 24 * H }, 'a');
    const end = clock.now() + 10 * H;
    const moved = lic.apply(
      { ...decl, licenses: [{ subject: FRONTEND, service: 'orders', port: 'db', expiresAt: end }] },
      'a',
    );
    expect(moved.changed[0]).toMatch(/expiresAt/);
    clock.advance(8 * H);
    const used = { ...use, licenseId: other.id, at: clock.now() };
    expect(lic.ingestUsage({ usage: [used], denials: [] }, 's').renewed).toEqual([]);
    expect(lic.get(other.id).expiresAt).toBe(end);
  });

  it('apply refuses what a grant refuses, and never ends a license', () => {
    const l = lic.grant({ subject: FRONTEND, service: 'orders', port: 'http', ttl: 24 * H }, 'a');
    const v = lic.version();
    const with_ = (fields: Record<string, unknown>) => ({
      hasServices: false,
      services: [],
      licenses: [{ subject: FRONTEND, service: 'orders', port: 'http', ...fields }],
    });
    const past = apiErrorOf(() => lic.apply(with_({ expiresAt: clock.now() - H }), 'a'));
    expect(past.status).toBe(400);
    expect(past.message).toBe(
      `license ${l.id} would end 2026-11-28T09:00:00Z, not in the future: an apply does not end a license; revoke it instead`,
    );
    expect(apiErrorOf(() => lic.apply(with_({ expiresAt: clock.now() + 40 * 24 * H }), 'a')).message).toBe(
      `expiresAt 2027-01-07T10:00:00Z is beyond createdAt + maxLifetime (2026-12-28T10:00:00Z) of license ${l.id}`,
    );
    clock.advance(2 * H);
    expect(apiErrorOf(() => lic.apply(with_({ maxLifetime: H }), 'a')).message).toMatch(
      /would end 2026-11-28T11:00:00Z/,
    );
    expect(apiErrorOf(() => lic.apply(with_({ notBefore: clock.now() + 30 * H }), 'a')).message).toMatch(
      /^notBefore 2026-11-29T18:00:00Z is not before the expiry of license .*: it could never be active$/,
    );
    expect(lic.version()).toBe(v);
    expect(lic.get(l.id).expiresAt).toBe(l.expiresAt);
    // A notBefore it can reach is taken, not ignored.
    const later = lic.apply(with_({ notBefore: clock.now() + H }), 'a');
    expect(later.changed[0]).toMatch(/notBefore/);
    expect(licenseState(lic.get(l.id), clock.now())).toBe('pending');
  });

  it('renews automatically only licenses used since their last renewal with under half their ttl left', () => {
    const used = lic.grant({ subject: FRONTEND, service: 'orders', port: 'http', ttl: 10 * H }, 'a');
    const idle = lic.grant({ subject: FRONTEND, service: 'orders', port: 'db', ttl: 10 * H }, 'a');
    clock.advance(4 * H); // 6h left: more than half, no renewal yet
    let r = lic.ingestUsage(
      {
        usage: [{ licenseId: used.id, identity: FRONTEND, origin: '10.0.0.1', at: clock.now(), count: 3 }],
        denials: [],
      },
      'sidecar',
    );
    expect(r.renewed).toEqual([]);
    clock.advance(2 * H); // 4h left
    r = lic.ingestUsage(
      {
        usage: [{ licenseId: used.id, identity: FRONTEND, origin: '10.0.0.1', at: clock.now(), count: 1 }],
        denials: [],
      },
      'sidecar',
    );
    expect(r.renewed).toEqual([used.id]);
    expect(lic.get(used.id).expiresAt).toBe(clock.now() + 10 * H);
    expect(lic.lastAccess(used.id)).toMatchObject({ total: 4, last: { origin: '10.0.0.1' } });
    clock.advance(4 * H);
    expect(licenseState(lic.get(idle.id), clock.now())).toBe('expired');
    expect(lic.auditExpiries()).toEqual([idle.id]);
    expect(lic.auditExpiries()).toEqual([]);
    expect(store.listAudit({ limit: 10 }).map((e) => e.action)).toContain('auto_renew');
  });

  it('renews a license used early in its ttl once half of it is left, as a report then would have', () => {
    const used = lic.grant({ subject: FRONTEND, service: 'orders', port: 'http', ttl: 10 * H }, 'a');
    const idle = lic.grant({ subject: FRONTEND, service: 'orders', port: 'db', ttl: 10 * H }, 'a');
    const off = lic.grant(
      { subject: FRONTEND, service: 'orders', port: 'http', ttl: 10 * H, autoRenew: false },
      'a',
    );
    clock.advance(H);
    const at = clock.now();
    const report = {
      usage: [used, off].map((l) => ({ licenseId: l.id, identity: FRONTEND, origin: 'o', at, count: 1 })),
      denials: [],
    };
    expect(lic.ingestUsage(report, 'sidecar').renewed).toEqual([]); // 9h of 10 left
    clock.advance(3 * H);
    expect(lic.renewUsed()).toEqual([]); // 6h left: more than half
    clock.advance(2 * H); // 4h left, and no report names the license any more
    expect(lic.renewUsed()).toEqual([used.id]);
    expect(lic.get(used.id)).toMatchObject({ expiresAt: clock.now() + 10 * H, renewedAt: clock.now() });
    expect(lic.renewUsed()).toEqual([]);
    const [entry] = store.listAudit({ limit: 1 });
    expect(entry).toMatchObject({ actor: 'authority', action: 'auto_renew', licenseId: used.id });
    // Not used since that renewal: it is not renewed again, and lapses as unused.
    clock.advance(6 * H);
    expect(lic.renewUsed()).toEqual([]);
    clock.advance(4 * H);
    expect(licenseState(lic.get(used.id), clock.now())).toBe('expired');
    expect(licenseState(lic.get(idle.id), clock.now())).toBe('expired');
    expect(licenseState(lic.get(off.id), clock.now())).toBe('expired');
  });

  it('looks for licenses due a renewal through the half-ttl index, not by reading every live one', () => {
    store.close();
    const db = new Database(join(dir, 'a.db'), { readonly: true });
    try {
      const plan = db
        .prepare(`EXPLAIN QUERY PLAN ${USED_AND_DUE_SQL}`)
        .all({ now: clock.now() })
        .map((r) => (r as { detail: string }).detail);
      expect(plan[0]).toMatch(/^SEARCH l USING INDEX licenses_half_ttl/);
    } finally {
      db.close();
      store = new SqliteStore(join(dir, 'a.db'));
    }
  });

  it('does not let use by an identity the license does not cover renew it', () => {
    const l = lic.grant({ subject: FRONTEND, service: 'orders', port: 'http', ttl: 10 * H }, 'a');
    clock.advance(6 * H);
    const other = 'spiffe://example.org/ns/default/sa/mallory';
    const r = lic.ingestUsage(
      { usage: [{ licenseId: l.id, identity: other, origin: 'o', at: clock.now(), count: 1 }], denials: [] },
      's',
    );
    expect(r.renewed).toEqual([]);
    expect(lic.lastAccess(l.id)).toBeUndefined();
  });

  it('warns once when a license in use cannot be renewed', () => {
    const l = lic.grant(
      { subject: FRONTEND, service: 'orders', port: 'http', ttl: 10 * H, maxLifetime: 10 * H },
      'a',
    );
    clock.advance(8 * H);
    const report = {
      usage: [{ licenseId: l.id, identity: FRONTEND, origin: '10.0.0.1', at: clock.now(), count: 1 }],
      denials: [],
    };
    expect(lic.ingestUsage(report, 's').renewed).toEqual([]);
    lic.ingestUsage(report, 's');
    const warnings = sink.lines.filter((x) => x.msg === 'license in use will expire and cannot be renewed');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ license: l.id, subject: FRONTEND, port: 'orders/http' });
  });

  it('warns again about a license an admin renewed, as its new expiry nears', () => {
    const l = lic.grant(
      { subject: FRONTEND, service: 'orders', port: 'http', ttl: 10 * H, autoRenew: false },
      'a',
    );
    const warnings = (): number =>
      sink.lines.filter((x) => x.msg === 'license in use will expire and cannot be renewed').length;
    const use = () => ({
      usage: [{ licenseId: l.id, identity: FRONTEND, origin: 'o', at: clock.now(), count: 1 }],
      denials: [],
    });
    clock.advance(8 * H);
    lic.ingestUsage(use(), 's');
    expect(warnings()).toBe(1);
    lic.renew(l.id, 'admin');
    clock.advance(8 * H);
    lic.ingestUsage(use(), 's');
    expect(warnings()).toBe(2);
  });

  it('ignores usage for unknown licenses and clamps future timestamps', () => {
    lic.ingestUsage(
      {
        usage: [{ licenseId: 'lic_nope', identity: FRONTEND, origin: 'o', at: clock.now(), count: 1 }],
        denials: [],
      },
      's',
    );
    expect(lic.lastAccess('lic_nope')).toBeUndefined();
  });

  it('saturates use counts instead of failing: a row and a license total stop at 2^53 - 1', () => {
    // SQLite's sum() raised "integer overflow" past 2^63, and every later read of the license failed.
    const l = lic.grant({ subject: FRONTEND, service: 'orders', port: 'http' }, 'admin');
    const rows = (n: number, origin: (i: number) => string) =>
      Array.from({ length: n }, (_, i) => ({
        licenseId: l.id,
        identity: FRONTEND,
        origin: origin(i),
        at: clock.now(),
        count: Number.MAX_SAFE_INTEGER,
      }));
    store.addUsage(rows(3, () => 'one')); // one row, three times
    store.addUsage(rows(1100, (i) => `o${i}`));
    const seen = lic.lastAccess(l.id)!;
    expect(seen.total).toBe(Number.MAX_SAFE_INTEGER);
    expect(lic.list({ limit: 10 }).length).toBeGreaterThan(0);
  });
  it('keeps at most MAX_USAGE_ROWS_PER_LICENSE origins per license; further use adds to its * row', () => {
    const l = lic.grant({ subject: FRONTEND, service: 'orders', port: 'http' }, 'admin');
    const other = lic.grant({ subject: FRONTEND, service: 'orders', port: 'db' }, 'admin');
    const row = (licenseId: string, origin: string, count: number, at = clock.now()) => ({
      licenseId,
      identity: FRONTEND,
      origin,
      at,
      count,
    });
    const n = MAX_USAGE_ROWS_PER_LICENSE;
    store.addUsage(Array.from({ length: n }, (_, i) => row(l.id, `10.0.${i >> 8}.${i & 255}`, 1)));
    // Past the bound: new origins fold into `*`; a known origin still adds to its own row.
    clock.advance(1000);
    store.addUsage([row(l.id, 'new-1', 2), row(l.id, 'new-2', 3), row(l.id, '10.0.0.0', 4)]);
    clock.advance(1000);
    store.addUsage([row(l.id, 'new-3', 5, clock.now())]);
    const count = (id: string) =>
      (store['db'].prepare('SELECT count(*) AS n FROM usage WHERE license_id = ?').get(id) as { n: number })
        .n;
    expect(count(l.id)).toBe(n + 1);
    const seen = lic.lastAccess(l.id)!;
    expect(seen.total).toBe(n + 2 + 3 + 4 + 5);
    expect(seen.last).toMatchObject({ identity: '*', origin: '*', at: clock.now(), count: 10 });
    // Another license has its own bound.
    store.addUsage([row(other.id, 'new-1', 1)]);
    expect(lic.lastAccess(other.id)!.last).toMatchObject({ origin: 'new-1', count: 1 });
  });
});

describe('subjectCovers', () => {
  it('matches exact IDs and narrower prefixes under a prefix', () => {
    expect(subjectCovers('spiffe://td/ns/*', 'spiffe://td/ns/a')).toBe(true);
    expect(subjectCovers('spiffe://td/ns/*', 'spiffe://td/ns/a/*')).toBe(true);
    expect(subjectCovers('spiffe://td/ns/*', 'spiffe://td/ns/*')).toBe(true);
    expect(subjectCovers('spiffe://td/ns/*', 'spiffe://td/*')).toBe(false);
    expect(subjectCovers('spiffe://td/ns/a', 'spiffe://td/ns/ab')).toBe(false);
  });
});
