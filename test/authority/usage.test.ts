import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ManualClock } from '../../src/clock.js';
import { formatTime } from '../../src/config/duration.js';
import {
  ADMIN,
  BACKEND,
  FRONTEND,
  ORDERS_SERVICE,
  SIDECAR,
  startTestAuthority,
  type ApiClient,
  type TestAuthority,
} from '../helpers/authority.js';

const H = 3_600_000;

describe('authority API: usage reports and automatic renewal', () => {
  let t: TestAuthority;
  let admin: ApiClient;
  let sidecar: ApiClient;
  let clock: ManualClock;

  beforeEach(async () => {
    t = await startTestAuthority();
    clock = t.clock as ManualClock;
    admin = t.client(ADMIN);
    sidecar = t.client(SIDECAR);
    await admin.post('/v1/services', ORDERS_SERVICE);
  });
  afterEach(() => t.close());

  const grant = async (body: Record<string, unknown>): Promise<{ id: string; expiresAt: string }> => {
    const res = await admin.post('/v1/licenses', { service: 'orders', port: 'db', ...body });
    expect(res.status).toBe(201);
    return res.json as { id: string; expiresAt: string };
  };
  const used = (license: string, at = clock.now() - 60_000, identity = FRONTEND) => ({
    license,
    identity,
    origin: '10.0.0.7',
    lastAccess: formatTime(at),
    count: 3,
  });
  const report = (usage: unknown[], denials: unknown[] = []) =>
    sidecar.post('/v1/usage', { node: 'node-a', usage, denials });

  it('renews a license whose use was reported early once half its ttl is left, with no report then', async () => {
    const early = await grant({ subject: FRONTEND, ttl: '10h' });
    clock.advance(H);
    expect((await report([used(early.id)])).json.renewed).toEqual([]); // 9 h of 10 left
    clock.advance(5 * H); // the expiry ticker (every minute here) passes the half-way mark
    const renewed = (await admin.get(`/v1/licenses/${early.id}`)).json;
    expect(Date.parse(renewed.expiresAt as string)).toBeGreaterThan(Date.parse(early.expiresAt));
    expect((await admin.get('/v1/audit?limit=1')).json.entries[0]).toMatchObject({
      action: 'auto_renew',
      actor: 'authority',
      license: early.id,
      reason: 'used since its last renewal',
    });
    expect(
      t.sink.lines.some((l) => l.msg === 'licenses renewed automatically' && l.actor === 'authority'),
    ).toBe(true);
    const metrics = await fetch(`http://127.0.0.1:${t.running.adminAddress.port}/metrics`).then((r) =>
      r.text(),
    );
    expect(metrics).toContain('portlicense_authority_renewals_total{kind="auto"} 1');
  });

  it('renews a license in use with less than half its ttl left, and only that one', async () => {
    const inUse = await grant({ subject: FRONTEND, ttl: '10h' });
    const unused = await grant({ subject: BACKEND, ttl: '10h' });
    const fresh = await grant({ subject: 'spiffe://example.org/ns/default/sa/late', ttl: '10h' });
    clock.advance(4 * H);
    // Granted 4 h later: used, but more than half its ttl is left.
    const late = await grant({ subject: 'spiffe://example.org/ns/default/sa/other', ttl: '10h' });
    clock.advance(2 * H); // inUse and fresh: 4 h left of 10 h
    const res = await report([used(inUse.id), used(late.id), used(fresh.id, clock.now() - 7 * H)]);
    expect(res.status).toBe(200);
    // fresh was last used before its last grant/renewal: not evidence of use since.
    expect(res.json.renewed).toEqual([inUse.id]);
    expect(res.json.expiring).toEqual([]);
    expect(typeof res.json.version).toBe('number');

    const renewed = (await admin.get(`/v1/licenses/${inUse.id}`)).json;
    expect(renewed.expiresAt).toBe(formatTime(clock.now() + 10 * H));
    expect(renewed.lastAccess).toEqual({
      at: formatTime(clock.now() - 60_000),
      identity: FRONTEND,
      origin: '10.0.0.7',
      count: 3,
    });
    expect((await admin.get(`/v1/licenses/${unused.id}`)).json.expiresAt).toBe(unused.expiresAt);
    expect((await admin.get(`/v1/licenses/${fresh.id}`)).json.expiresAt).toBe(fresh.expiresAt);
    expect((await admin.get(`/v1/licenses/${late.id}`)).json.expiresAt).toBe(late.expiresAt);

    const audit = (await admin.get('/v1/audit?limit=1')).json.entries[0];
    expect(audit).toMatchObject({
      action: 'auto_renew',
      actor: SIDECAR,
      license: inUse.id,
      reason: 'in use',
    });
    const metrics = await fetch(`http://127.0.0.1:${t.running.adminAddress.port}/metrics`).then((r) =>
      r.text(),
    );
    expect(metrics).toContain('portlicense_authority_renewals_total{kind="auto"} 1');

    // Unused, it lapses: no report renews it.
    clock.advance(5 * H);
    expect((await admin.get(`/v1/licenses/${unused.id}`)).json.state).toBe('expired');
  });

  it('does not renew past the maximum lifetime, warns once and tells the sidecar', async () => {
    const capped = await grant({ subject: FRONTEND, ttl: '10h', maxLifetime: '10h' });
    const manual = await grant({ subject: BACKEND, ttl: '10h', autoRenew: false });
    clock.advance(6 * H);
    const res = await report([used(capped.id), used(manual.id, clock.now() - 1_000, BACKEND)]);
    expect(res.status).toBe(200);
    expect(res.json.renewed).toEqual([]);
    expect(res.json.expiring).toEqual([
      expect.objectContaining({
        id: capped.id,
        subject: FRONTEND,
        service: 'orders',
        port: 'db',
        expiresAt: capped.expiresAt,
        why: 'maximum lifetime 10h reached',
      }),
      expect.objectContaining({ id: manual.id, why: 'autoRenew is off' }),
    ]);
    const warnings = t.sink.lines.filter((l) => l.level === 'warn' && l.license === capped.id);
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]!.msg)).toMatch(/cannot be renewed/);
    expect((await admin.get(`/v1/licenses/${capped.id}`)).json.expiresAt).toBe(capped.expiresAt);
    clock.advance(60_000);
    await report([used(capped.id)]);
    expect(t.sink.lines.filter((l) => l.level === 'warn' && l.license === capped.id)).toHaveLength(1);
  });

  it('does not renew a license granted with a fixed expiresAt past it', async () => {
    const end = formatTime(clock.now() + 2 * H);
    const fixed = await grant({ subject: FRONTEND, expiresAt: end });
    expect(fixed.expiresAt).toBe(end);
    clock.advance(1.5 * H); // in use, half an hour left
    const res = await report([used(fixed.id)]);
    expect(res.status).toBe(200);
    expect(res.json.renewed).toEqual([]);
    expect(res.json.expiring).toEqual([expect.objectContaining({ id: fixed.id, expiresAt: end })]);
    expect((await admin.get(`/v1/licenses/${fixed.id}`)).json.expiresAt).toBe(end);
  });

  it('records the report time and sums denials per node', async () => {
    const denials = [
      { identity: FRONTEND, reason: 'no_license', count: 2 },
      { identity: null, reason: 'bad_identity', count: 1 },
    ];
    expect((await report([], denials)).status).toBe(200);
    clock.advance(1_000);
    expect((await report([], [{ identity: FRONTEND, reason: 'no_license', count: 5 }])).status).toBe(200);
    const [node] = (await admin.get('/v1/nodes')).json.nodes;
    expect(node).toMatchObject({
      node: 'node-a',
      identity: SIDECAR,
      lastReport: '2026-11-28T10:00:01Z',
      lastSync: null,
      state: 'stale',
    });
    expect(node.denials).toEqual([
      { identity: FRONTEND, reason: 'no_license', count: 7 },
      { identity: null, reason: 'bad_identity', count: 1 },
    ]);
  });

  it('accepts the sidecar overflow entry and ignores unknown licenses', async () => {
    const lic = await grant({ subject: 'spiffe://example.org/ns/default/*', ttl: '10h' });
    clock.advance(6 * H);
    const res = await report([
      { license: lic.id, identity: '*', origin: '*', lastAccess: formatTime(clock.now() - 1_000), count: 0 },
      used('lic_unknown'),
    ]);
    expect(res.status).toBe(200);
    expect(res.json.renewed).toEqual([lic.id]);
  });

  it('refuses malformed reports with a 400 naming the field, and changes nothing', async () => {
    const lic = await grant({ subject: FRONTEND, ttl: '10h' });
    clock.advance(6 * H);
    const good = used(lic.id);
    const cases: Array<[unknown, RegExp]> = [
      [{ usage: [good], denials: [] }, /node: is required/],
      [
        { node: 'node-a', usage: [{ ...good, lastAccess: 'yesterday' }], denials: [] },
        /usage\[0\]\.lastAccess: invalid time/,
      ],
      [
        { node: 'node-a', usage: [{ ...good, count: -1 }], denials: [] },
        /usage\[0\]\.count: must be an integer/,
      ],
      [{ node: 'node-a', usage: [{ ...good, count: '3' }], denials: [] }, /usage\[0\]\.count/],
      [
        { node: 'node-a', usage: [{ ...good, count: 1e12 + 1 }], denials: [] },
        /usage\[0\]\.count: must be an integer from 0 to 1000000000000/,
      ],
      [{ node: 'node-a', usage: [{ ...good, identity: 'frontend' }], denials: [] }, /usage\[0\]\.identity/],
      [{ node: 'node-a', usage: [{ ...good, extra: 1 }], denials: [] }, /usage\[0\]\.extra: unknown key/],
      [
        { node: 'node-a', usage: [good], denials: [{ identity: FRONTEND, reason: 'bored', count: 1 }] },
        /denials\[0\]\.reason/,
      ],
      [{ node: 'node-a', usage: good, denials: [] }, /usage: must be a list/],
      [{ node: 'node-a', usage: [good] }, /denials: is required/],
      [[good], /must be a mapping/],
    ];
    for (const [body, detail] of cases) {
      const res = await sidecar.post('/v1/usage', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json.detail, JSON.stringify(body)).toMatch(detail);
    }
    const show = (await admin.get(`/v1/licenses/${lic.id}`)).json;
    expect(show.lastAccess).toBeNull();
    expect(show.expiresAt).toBe(lic.expiresAt);
    expect((await admin.get('/v1/nodes')).json.nodes).toEqual([]);
  });

  it('takes reports only from sidecars', async () => {
    const lic = await grant({ subject: FRONTEND, ttl: '10h' });
    const res = await admin.post('/v1/usage', { node: 'node-a', usage: [used(lic.id)], denials: [] });
    expect(res.status).toBe(403);
    expect(res.json).toEqual({ error: 'forbidden', detail: `identity ${ADMIN} is not in sidecars` });
  });
});
