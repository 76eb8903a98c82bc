import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ManualClock } from '../../src/clock.js';
import { formatTime } from '../../src/config/duration.js';
import { STATE_SCAN_ROWS } from '../../src/authority/license-routes.js';
import {
  ADMIN,
  BACKEND,
  FRONTEND,
  ORDERS_SERVICE,
  SIDECAR,
  startTestAuthority,
  pluck,
  type ApiClient,
  type TestAuthority,
} from '../helpers/authority.js';

const H = 3_600_000;

describe('authority API: services and licenses', () => {
  let t: TestAuthority;
  let admin: ApiClient;
  let clock: ManualClock;

  beforeEach(async () => {
    t = await startTestAuthority();
    clock = t.clock as ManualClock;
    admin = t.client(ADMIN);
    expect((await admin.post('/v1/services', ORDERS_SERVICE)).status).toBe(201);
  });
  afterEach(() => t.close());

  it('registers services idempotently and lists them to any verified identity', async () => {
    const again = await admin.post('/v1/services', ORDERS_SERVICE);
    expect(again.status).toBe(200);
    expect(again.json.outcome).toBe('unchanged');
    const list = await t.client(FRONTEND).get('/v1/services');
    expect(list.status).toBe(200);
    expect(list.json.services).toEqual([
      { name: 'orders', ports: ORDERS_SERVICE.ports, createdAt: '2026-11-28T10:00:00Z' },
    ]);
  });

  it('grant -> list -> show -> renew -> revoke', async () => {
    const grant = await admin.post('/v1/licenses', {
      subject: FRONTEND,
      service: 'orders',
      port: 'http',
      ttl: '10h',
      maxLifetime: '30d',
      methods: ['get'],
      paths: ['/api/*'],
      reason: 'frontend reads orders',
    });
    expect(grant.status).toBe(201);
    const lic = grant.json;
    expect(grant.headers.location).toBe(`/v1/licenses/${lic.id}`);
    expect(lic).toMatchObject({
      subject: FRONTEND,
      service: 'orders',
      port: 'http',
      methods: ['GET'],
      paths: ['/api/*'],
      notBefore: '2026-11-28T10:00:00Z',
      expiresAt: '2026-11-28T20:00:00Z',
      createdAt: '2026-11-28T10:00:00Z',
      ttl: '10h',
      maxLifetime: '30d',
      autoRenew: true,
      state: 'active',
      reason: 'frontend reads orders',
      revokedAt: null,
      revokeReason: null,
      lastAccess: null,
    });

    const list = await admin.get('/v1/licenses?service=orders');
    expect(list.status).toBe(200);
    expect(pluck(list.json.licenses, 'id')).toEqual([lic.id]);
    expect(list.json.next).toBeNull();

    const show = await admin.get(`/v1/licenses/${lic.id}`);
    expect(show.status).toBe(200);
    expect(show.json).toEqual(lic);

    clock.advance(6 * H);
    const renew = await admin.post(`/v1/licenses/${lic.id}/renew`, { reason: 'still needed' });
    expect(renew.status).toBe(200);
    expect(renew.json.expiresAt).toBe('2026-11-29T02:00:00Z');

    const revoke = await admin.post(`/v1/licenses/${lic.id}/revoke`, { reason: 'compromised' });
    expect(revoke.status).toBe(200);
    expect(revoke.json).toMatchObject({
      state: 'revoked',
      revokedAt: '2026-11-28T16:00:00Z',
      revokeReason: 'compromised',
    });
    // Revoking again answers the same license, and does not write a second audit entry.
    const again = await admin.post(`/v1/licenses/${lic.id}/revoke`);
    expect(again.status).toBe(200);
    expect(again.json.revokedAt).toBe('2026-11-28T16:00:00Z');

    expect((await admin.get('/v1/licenses?state=revoked')).json.licenses).toHaveLength(1);
    expect((await admin.get('/v1/licenses?state=active')).json.licenses).toHaveLength(0);

    const audit = await admin.get('/v1/audit');
    expect(audit.status).toBe(200);
    expect(pluck(audit.json.entries, 'action')).toEqual(['revoke', 'renew', 'grant', 'service']);
    for (const e of audit.json.entries) expect(e.actor).toBe(ADMIN);
    expect(audit.json.entries[0]).toMatchObject({
      license: lic.id,
      reason: 'compromised',
      at: '2026-11-28T16:00:00Z',
    });

    const metrics = await fetch(`http://127.0.0.1:${t.running.adminAddress.port}/metrics`).then((r) =>
      r.text(),
    );
    expect(metrics).toContain('portlicense_authority_renewals_total{kind="manual"} 1');
    expect(metrics).toContain('portlicense_authority_revocations_total 1');
    expect(metrics).toContain('portlicense_authority_licenses{state="revoked"} 1');

    const changes = t.sink.lines.filter((l) => /^license (granted|renewed|revoked)$/.test(String(l.msg)));
    expect(changes.map((l) => l.msg)).toEqual(['license granted', 'license renewed', 'license revoked']);
    const requests = t.sink.lines.filter((l) => l.msg === 'request');
    expect(requests.at(-1)).toMatchObject({ method: 'GET', path: '/v1/audit', status: 200, identity: ADMIN });
  });

  it('refuses a grant for an unknown service or port, naming the known ones', async () => {
    const svc = await admin.post('/v1/licenses', { subject: FRONTEND, service: 'payments', port: 'http' });
    expect(svc.status).toBe(400);
    expect(svc.json.error).toBe('bad_request');
    expect(svc.json.detail).toMatch(/unknown service "payments".*known services: orders/);
    const port = await admin.post('/v1/licenses', { subject: FRONTEND, service: 'orders', port: 'grpc' });
    expect(port.status).toBe(400);
    expect(port.json.detail).toMatch(/no port "grpc".*its ports: http, db/);
    const tcpRules = await admin.post('/v1/licenses', {
      subject: FRONTEND,
      service: 'orders',
      port: 'db',
      methods: ['GET'],
    });
    expect(tcpRules.status).toBe(400);
    expect(tcpRules.json.detail).toMatch(/only http ports/);
    expect((await admin.get('/v1/licenses')).json.licenses).toEqual([]);
  });

  it('refuses a ttl beyond 10 years, on grant, apply and renew, and a notBefore it could never reach', async () => {
    // An unbounded ttl made an expiry no date can hold: every bundle of the service failed to build.
    const grant = await admin.post('/v1/licenses', {
      subject: FRONTEND,
      service: 'orders',
      port: 'db',
      ttl: '100000000d',
    });
    expect(grant.status).toBe(400);
    expect(grant.json.detail).toMatch(/ttl: must be at most 3650d/);
    const apply = await admin.post('/v1/apply', {
      licenses: [{ subject: FRONTEND, service: 'orders', port: 'db', ttl: '100000000d' }],
    });
    expect(apply.status).toBe(400);
    expect(apply.json.detail).toMatch(/ttl: must be at most 3650d/);
    const late = await admin.post('/v1/licenses', {
      subject: FRONTEND,
      service: 'orders',
      port: 'db',
      notBefore: formatTime(clock.now() + 40 * 24 * H),
    });
    expect(late.status).toBe(400);
    expect(late.json.detail).toMatch(/notBefore .* could never be active/);
    const ok = await admin.post('/v1/licenses', {
      subject: FRONTEND,
      service: 'orders',
      port: 'db',
      ttl: '1h',
    });
    expect(ok.status).toBe(201);
    const renew = await admin.post(`/v1/licenses/${ok.json.id}/renew`, { ttl: '100000000d' });
    expect(renew.status).toBe(400);
    expect((await t.client(SIDECAR).get('/v1/bundle?node=node-a&services=orders')).status).toBe(200);
    expect((await admin.get('/v1/licenses')).json.licenses).toHaveLength(1);
  });

  it('keeps method and path rules off tcp ports: in an apply of licenses alone, and when a port becomes tcp', async () => {
    // A tcp port decides without method or path: a rule there would admit every connection.
    const apply = await admin.post('/v1/apply', {
      licenses: [{ subject: FRONTEND, service: 'orders', port: 'db', methods: ['GET'] }],
    });
    expect(apply.status).toBe(400);
    expect(apply.json.detail).toMatch(
      /methods: only http ports have methods and paths \(orders\/db is tcp\)/,
    );
    const ruled = await admin.post('/v1/licenses', {
      subject: FRONTEND,
      service: 'orders',
      port: 'http',
      paths: ['/api/*'],
    });
    expect(ruled.status).toBe(201);
    const toTcp = await admin.post('/v1/services', {
      name: 'orders',
      ports: [
        { name: 'http', protocol: 'tcp' },
        { name: 'db', protocol: 'tcp' },
      ],
    });
    expect(toTcp.status).toBe(400);
    expect(toTcp.json.detail).toMatch(new RegExp(`orders/http cannot become tcp: license ${ruled.json.id}`));
    expect((await admin.get('/v1/services')).json.services[0].ports[0].protocol).toBe('http');
    expect((await admin.get('/v1/licenses')).json.licenses).toHaveLength(1);
  });

  it('answers 409 for a renewal past the maximum lifetime, 404 for an unknown license', async () => {
    const lic = (
      await admin.post('/v1/licenses', {
        subject: FRONTEND,
        service: 'orders',
        port: 'db',
        ttl: '10h',
        maxLifetime: '12h',
      })
    ).json;
    clock.advance(2 * H);
    const first = await admin.post(`/v1/licenses/${lic.id}/renew`);
    expect(first.status).toBe(200);
    expect(first.json.expiresAt).toBe('2026-11-28T22:00:00Z');
    const second = await admin.post(`/v1/licenses/${lic.id}/renew`);
    expect(second.status).toBe(409);
    expect(second.json).toMatchObject({ error: 'conflict' });
    expect(second.json.detail).toMatch(/maximum lifetime/);
    const shorter = (
      await admin.post('/v1/licenses', { subject: BACKEND, service: 'orders', port: 'db', ttl: '10h' })
    ).json;
    const short = await admin.post(`/v1/licenses/${shorter.id}/renew`, { ttl: '1h' });
    expect(short.status).toBe(409);
    expect(short.json.detail).toMatch(/cannot be renewed with ttl 1h: .* not after its current expiry/);
    expect(short.json.detail).not.toMatch(/maximum lifetime/);
    const missing = await admin.post('/v1/licenses/lic_nope/renew');
    expect(missing.status).toBe(404);
    expect((await admin.get('/v1/licenses/lic_nope')).status).toBe(404);
  });

  it('revokes every license of a subject prefix at once, optionally per service', async () => {
    await admin.post('/v1/services', { name: 'payments', ports: [{ name: 'http', protocol: 'http' }] });
    const grant = async (subject: string, service: string, port: string): Promise<string> =>
      (await admin.post('/v1/licenses', { subject, service, port })).json.id as string;
    const a = await grant(FRONTEND, 'orders', 'http');
    const b = await grant(FRONTEND, 'payments', 'http');
    const c = await grant(BACKEND, 'orders', 'db');
    const d = await grant('spiffe://example.org/ns/default/*', 'orders', 'db');
    const other = await grant('spiffe://example.org/ns/payments/sa/api', 'orders', 'http');

    const svcOnly = await admin.post('/v1/revoke', {
      subject: FRONTEND,
      service: 'payments',
      reason: 'moved',
    });
    expect(svcOnly.status).toBe(200);
    expect(pluck(svcOnly.json.revoked, 'id')).toEqual([b]);

    const prefix = await admin.post('/v1/revoke', {
      subject: 'spiffe://example.org/ns/default/*',
      reason: 'namespace gone',
    });
    expect(prefix.status).toBe(200);
    const ids = (pluck(prefix.json.revoked, 'id') as string[]).sort();
    expect(ids).toEqual([a, c, d].sort());
    for (const l of prefix.json.revoked)
      expect(l).toMatchObject({ state: 'revoked', revokeReason: 'namespace gone' });
    expect((await admin.get(`/v1/licenses/${other}`)).json.state).toBe('active');

    const unknownSvc = await admin.post('/v1/revoke', { subject: FRONTEND, service: 'nope' });
    expect(unknownSvc.status).toBe(400);
    expect(unknownSvc.json.detail).toMatch(/known services: orders, payments/);
  });

  it('applies a declarative file idempotently (YAML or JSON) without bumping the version twice', async () => {
    const yaml = [
      'services:',
      '  - name: orders',
      '    ports: [ { name: http, protocol: http }, { name: db, protocol: tcp } ]',
      '  - name: payments',
      '    ports: [ { name: http, protocol: http } ]',
      'licenses:',
      `  - subject: ${FRONTEND}`,
      '    service: orders',
      '    port: http',
      '    ttl: 24h',
      '    methods: [GET]',
      '    reason: frontend reads orders',
      `  - { subject: "${BACKEND}", service: payments, port: http }`,
    ].join('\n');
    const first = await admin.post('/v1/apply', undefined, { raw: yaml, contentType: 'application/yaml' });
    expect(first.status).toBe(200);
    expect(first.json.created).toHaveLength(3); // payments + 2 licenses
    expect(first.json.unchanged).toEqual(['service orders']);
    const v1 = first.json.version as number;

    const second = await admin.post('/v1/apply', undefined, { raw: yaml, contentType: 'application/yaml' });
    expect(second.status).toBe(200);
    expect(second.json.created).toEqual([]);
    expect(second.json.changed).toEqual([]);
    expect(second.json.unchanged).toHaveLength(4);
    expect(second.json.version).toBe(v1);
    expect(t.sink.lines.some((l) => l.msg === 'apply: nothing changed')).toBe(true);

    const json = await admin.post('/v1/apply', {
      licenses: [
        {
          subject: FRONTEND,
          service: 'orders',
          port: 'http',
          ttl: '24h',
          methods: ['GET', 'POST'],
          reason: 'frontend reads orders',
        },
      ],
    });
    expect(json.status).toBe(200);
    expect(json.json.changed).toHaveLength(1);
    expect(json.json.changed[0]).toMatch(/methods/);
    expect(json.json.version).toBe(v1 + 1);

    const bad = await admin.post('/v1/apply', undefined, {
      raw: 'licenses:\n  - subject: not-spiffe\n    service: orders\n    port: http\n',
      contentType: 'text/yaml',
    });
    expect(bad.status).toBe(400);
    expect(bad.json.detail).toMatch(/line 2: licenses\[0\]\.subject/);
  });

  it('answers a YAML apply nested beyond any license file with 400, as often as it is sent', async () => {
    // Such a body (100 KB) once crashed the whole authority on its second or third try.
    const deep = `licenses: ${'['.repeat(50_000)}${']'.repeat(50_000)}\n`;
    for (let i = 0; i < 3; i++) {
      const res = await admin.post('/v1/apply', undefined, { raw: deep, contentType: 'application/yaml' });
      expect(res.status).toBe(400);
      expect(res.json.detail).toMatch(/^line 1: YAML: more than 64 "\[" or "\{" open at once/);
    }
    expect((await admin.get('/v1/services')).status).toBe(200);
  });

  it('paginates licenses with limit and after', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await admin.post('/v1/licenses', {
        subject: `spiffe://example.org/ns/default/sa/app${i}`,
        service: 'orders',
        port: 'db',
      });
      ids.push(res.json.id as string);
    }
    ids.sort();
    await admin.post(`/v1/licenses/${ids[1]}/revoke`);
    const seen: string[] = [];
    let next: string | null = null;
    let pages = 0;
    do {
      const res = await admin.get(`/v1/licenses?state=active&limit=2${next ? `&after=${next}` : ''}`);
      expect(res.status).toBe(200);
      seen.push(...(pluck(res.json.licenses, 'id') as string[]));
      next = res.json.next;
      pages++;
    } while (next !== null && pages < 10);
    expect(seen).toEqual(ids.filter((_, i) => i !== 1));
    expect(pages).toBe(2);
    expect((await admin.get('/v1/licenses?limit=0')).status).toBe(400);
    expect((await admin.get('/v1/licenses?limit=1001')).status).toBe(400);
    expect(
      (
        await admin.get(
          `/v1/licenses?subject=${encodeURIComponent('spiffe://example.org/ns/default/sa/app3')}`,
        )
      ).json.licenses,
    ).toHaveLength(1);
    const typo = await admin.get('/v1/licenses?servce=orders');
    expect(typo.status).toBe(400);
    expect(typo.json.detail).toMatch(/unknown query parameter "servce" \(did you mean "service"\?\)/);
    expect((await admin.get('/v1/licenses?state=gone')).status).toBe(400);
  });

  it('reads at most STATE_SCAN_ROWS rows per request for a state filter, then goes on from the last one read', async () => {
    // One pending license among more than STATE_SCAN_ROWS active ones (ids are random, so it may
    // stand anywhere): found by following `next`, each request reading a bounded number of rows.
    const subjects = Array.from(
      { length: STATE_SCAN_ROWS + 50 },
      (_, i) => `spiffe://example.org/ns/bulk/sa/a${i}`,
    );
    t.running.licensing.apply(
      {
        hasServices: false,
        services: [],
        licenses: subjects.map((subject) => ({ subject, service: 'orders', port: 'db' })),
      },
      ADMIN,
    );
    const future = await admin.post('/v1/licenses', {
      subject: FRONTEND,
      service: 'orders',
      port: 'db',
      notBefore: formatTime(clock.now() + H),
    });
    let next: string | null = null;
    const found: string[] = [];
    let pages = 0;
    do {
      const res = await admin.get(`/v1/licenses?state=pending&limit=5${next ? `&after=${next}` : ''}`);
      expect(res.status).toBe(200);
      expect(res.json.licenses.length).toBeLessThanOrEqual(5);
      found.push(...(pluck(res.json.licenses, 'id') as string[]));
      next = res.json.next;
      pages++;
    } while (next !== null && pages < 10);
    expect(found).toEqual([future.json.id]);
    // STATE_SCAN_ROWS + 51 rows, read STATE_SCAN_ROWS at a time: two requests.
    expect(pages).toBe(2);
  });

  it('pages the audit log newest first, with since', async () => {
    for (let i = 0; i < 3; i++) {
      clock.advance(H);
      await admin.post('/v1/licenses', { subject: FRONTEND, service: 'orders', port: 'db', reason: `r${i}` });
    }
    const page = await admin.get('/v1/audit?limit=2');
    expect(pluck(page.json.entries, 'reason')).toEqual(['r2', 'r1']);
    const rest = await admin.get(`/v1/audit?limit=2&before=${page.json.next}`);
    expect(pluck(rest.json.entries, 'action')).toEqual(['grant', 'service']);
    expect(rest.json.next).toBeNull();
    const since = await admin.get('/v1/audit?since=2026-11-28T12:00:00Z');
    expect(pluck(since.json.entries, 'reason')).toEqual(['r2', 'r1']);
    expect((await admin.get('/v1/audit?since=yesterday')).status).toBe(400);
  });

  it('writes each expiry to the audit log as the clock passes it', async () => {
    const lic = (
      await admin.post('/v1/licenses', { subject: FRONTEND, service: 'orders', port: 'db', ttl: '2h' })
    ).json;
    clock.advance(2 * H + 60_000);
    const audit = (await admin.get('/v1/audit?limit=1')).json.entries[0];
    expect(audit).toMatchObject({ action: 'expire', actor: 'authority', license: lic.id });
    expect(t.sink.lines.some((l) => l.msg === 'license expired' && l.license === lic.id)).toBe(true);
    expect((await admin.get(`/v1/licenses/${lic.id}`)).json.state).toBe('expired');
  });
});
