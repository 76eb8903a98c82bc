import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { Registry } from 'prom-client';
import { createLogger, MemorySink, silentLogger } from '../../src/log.js';
import { createAccessLogger } from '../../src/telemetry/access-log.js';
import { startAdminServer, type AdminServer } from '../../src/telemetry/admin-server.js';
import { createSidecarMetrics } from '../../src/telemetry/metrics.js';
import { createPortTelemetry } from '../../src/telemetry/port-telemetry.js';
import {
  buildStatus,
  licenseState,
  type SidecarStatus,
  type StatusInput,
} from '../../src/telemetry/status.js';
import { UsageTracker } from '../../src/telemetry/usage.js';
import { renderStatus } from '../../src/cli/status-render.js';
import { compiled, handSnapshot, TestPolicyView } from './helpers.js';

const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';
const NOW = Date.parse('2026-11-28T10:00:00Z');

const base = {
  subject: FRONTEND,
  service: 'orders',
  port: 'http',
  notBefore: '2026-11-28T00:00:00Z',
  expiresAt: '2026-11-28T12:00:00Z',
};

let admin: AdminServer | undefined;
afterEach(async () => {
  await admin?.close();
  admin = undefined;
});

function input(usage: UsageTracker, over: Partial<StatusInput> = {}): StatusInput {
  return {
    now: NOW,
    node: 'node-a',
    ports: [
      {
        service: 'orders',
        name: 'http',
        protocol: 'http',
        listen: { host: '0.0.0.0', port: 8443 },
        mode: 'enforce',
        activeConnections: 3,
      },
    ],
    policy: handSnapshot(7, '2026-11-28T09:58:20Z', [
      { ...base, id: 'lic_b_active' },
      { ...base, id: 'lic_a_pending', notBefore: '2026-11-28T11:00:00Z' },
      { ...base, id: 'lic_c_expired', expiresAt: '2026-11-28T09:00:00Z' },
      { ...base, id: 'lic_d_revoked', revokedAt: '2026-11-28T09:30:00Z' },
      { ...base, id: 'lic_e_db', port: 'db', expiresAt: '2026-11-28T10:30:00Z' },
    ]),
    sync: { lastSuccess: NOW - 5_000, source: 'https://127.0.0.1:7443', lastError: null },
    usage,
    ...over,
  };
}

describe('buildStatus', () => {
  it('lists ports, the bundle with its age, licenses with state/time left/last access, recent denials', () => {
    const usage = new UsageTracker();
    const e = usage.entry('lic_b_active', FRONTEND, '10.0.0.1');
    e.at = NOW - 2_000;
    e.count = 4;
    const db = usage.entry('lic_e_db', FRONTEND, '10.0.0.2');
    db.at = NOW - 1_000;
    db.count = 1;
    usage.recordDenial('orders/http', null, 'bad_identity', '10.0.0.9', NOW - 500);
    usage.recordDenial('orders/http', FRONTEND, 'path_not_allowed', '10.0.0.1', NOW - 100);

    const s: SidecarStatus = buildStatus(input(usage, { warnBefore: 3_600_000 }));
    expect(s.node).toBe('node-a');
    expect(s.time).toBe('2026-11-28T10:00:00.000Z');
    expect(s.ports).toEqual([
      {
        port: 'orders/http',
        service: 'orders',
        name: 'http',
        protocol: 'http',
        listen: '0.0.0.0:8443',
        mode: 'enforce',
        activeConnections: 3,
      },
    ]);
    expect(s.bundle).toEqual({
      version: 7,
      issuedAt: '2026-11-28T09:58:20.000Z',
      ageSeconds: 100,
      lastSuccess: '2026-11-28T09:59:55.000Z',
      lastSuccessAgeSeconds: 5,
      source: 'https://127.0.0.1:7443',
      lastError: null,
    });
    expect(s.licenses.map((l) => [l.id, l.state, l.secondsLeft])).toEqual([
      ['lic_e_db', 'active', 1800],
      ['lic_a_pending', 'pending', 7200],
      ['lic_b_active', 'active', 7200],
      ['lic_c_expired', 'expired', 0],
      ['lic_d_revoked', 'revoked', 0],
    ]);
    const active = s.licenses.find((l) => l.id === 'lic_b_active')!;
    expect(active).toMatchObject({
      subject: FRONTEND,
      service: 'orders',
      port: 'http',
      notBefore: '2026-11-28T00:00:00.000Z',
      expiresAt: '2026-11-28T12:00:00.000Z',
      revokedAt: null,
      expiringSoon: false,
      lastAccess: { at: '2026-11-28T09:59:58.000Z', identity: FRONTEND, origin: '10.0.0.1', count: 4 },
    });
    expect(s.licenses.find((l) => l.id === 'lic_d_revoked')!.revokedAt).toBe('2026-11-28T09:30:00.000Z');
    expect(s.licenses.find((l) => l.id === 'lic_c_expired')!.lastAccess).toBeNull();
    // in use and within warnBefore
    expect(s.licenses.find((l) => l.id === 'lic_e_db')!.expiringSoon).toBe(true);
    // ...unless something (the authority) may still renew it: then it is not flagged.
    const renewable = buildStatus(
      input(usage, { warnBefore: 3_600_000, mayRenew: (id) => id === 'lic_e_db' }),
    );
    expect(renewable.licenses.find((l) => l.id === 'lic_e_db')!.expiringSoon).toBe(false);
    expect(s.recentDenials).toEqual([
      {
        at: '2026-11-28T09:59:59.900Z',
        port: 'orders/http',
        identity: FRONTEND,
        origin: '10.0.0.1',
        reason: 'path_not_allowed',
      },
      {
        at: '2026-11-28T09:59:59.500Z',
        port: 'orders/http',
        identity: null,
        origin: '10.0.0.9',
        reason: 'bad_identity',
      },
    ]);
  });

  it('before any bundle or sync: version 0 and nulls, no licenses', () => {
    const s = buildStatus(
      input(new UsageTracker(), {
        policy: handSnapshot(0, '1970-01-01T00:00:00Z', []),
        sync: { lastSuccess: null, lastError: 'connect ECONNREFUSED 127.0.0.1:7443' },
        ready: { ok: false, reasons: ['no bundle yet'] },
      }),
    );
    expect(s.bundle).toEqual({
      version: 0,
      issuedAt: null,
      ageSeconds: null,
      lastSuccess: null,
      lastSuccessAgeSeconds: null,
      source: null,
      lastError: 'connect ECONNREFUSED 127.0.0.1:7443',
    });
    expect(s.licenses).toEqual([]);
    expect(s.ready).toEqual({ ok: false, reasons: ['no bundle yet'] });
  });

  it('lists the data-plane workers with workers above 1, and renders them; leaves them out otherwise', () => {
    expect(buildStatus(input(new UsageTracker())).workers).toBeUndefined();
    const s = buildStatus(
      input(new UsageTracker(), {
        workers: [
          { slot: 1, state: 'listening', pid: 4101, version: 7, restarts: 0, silentMs: 0 },
          { slot: 2, state: 'listening', pid: 4102, version: 7, restarts: 2, silentMs: 5_000 },
          { slot: 3, state: 'exited', pid: null, version: null, restarts: 3, silentMs: null },
        ],
      }),
    );
    expect(s.workers).toEqual([
      { slot: 1, state: 'listening', pid: 4101, bundleVersion: 7, restarts: 0, silentSeconds: 0 },
      { slot: 2, state: 'listening', pid: 4102, bundleVersion: 7, restarts: 2, silentSeconds: 5 },
      { slot: 3, state: 'exited', pid: null, bundleVersion: null, restarts: 3, silentSeconds: null },
    ]);
    const text = renderStatus(JSON.parse(JSON.stringify(s)));
    expect(text).toContain('WORKER  STATE      PID   BUNDLE  RESTARTS  HEARTBEAT\n');
    expect(text).toContain('1       listening  4101  7       0         ok\n');
    expect(text).toContain('2       listening  4102  7       2         silent 5s\n');
    expect(text).toContain('3       exited     -     -       3         -\n');
    expect(renderStatus(buildStatus(input(new UsageTracker())))).not.toContain('WORKER');
  });

  it('licenseState follows SPEC: revoked wins, then pending, expired at expiresAt exactly', () => {
    const l = compiled({ ...base, id: 'x' });
    expect(licenseState(l, Date.parse('2026-11-27T23:59:59Z'))).toBe('pending');
    expect(licenseState(l, Date.parse('2026-11-28T00:00:00Z'))).toBe('active');
    expect(licenseState(l, Date.parse('2026-11-28T11:59:59.999Z'))).toBe('active');
    expect(licenseState(l, Date.parse('2026-11-28T12:00:00Z'))).toBe('expired');
    expect(licenseState(compiled({ ...base, id: 'y', revokedAt: '2026-11-28T01:00:00Z' }), NOW)).toBe(
      'revoked',
    );
  });

  it('warns when the admin server, with its /status, listens beyond loopback', async () => {
    const sink = new MemorySink();
    const open = async (host: string): Promise<void> => {
      const a = await startAdminServer({
        listen: { host, port: 0 },
        registry: new Registry(),
        ready: () => ({ ok: true, reasons: [] }),
        status: () => ({}),
        log: createLogger({ sink }),
      });
      await a.close();
    };
    await open('127.0.0.1');
    expect(sink.lines.filter((l) => l.level === 'warn')).toEqual([]);
    await open('0.0.0.0');
    const warn = sink.lines.filter((l) => l.level === 'warn');
    expect(warn).toHaveLength(1);
    expect(String(warn[0]!.msg)).toMatch(/beyond loopback/);
    expect(String(warn[0]!.detail)).toMatch(/caller identities/);
  });

  it('is served by the admin server from live telemetry', async () => {
    const clock = new ManualClock(NOW);
    const policy = new TestPolicyView(handSnapshot(2, '2026-11-28T09:00:00Z', [{ ...base, id: 'lic_1' }]));
    const usage = new UsageTracker({ policy });
    const metrics = createSidecarMetrics({ policy, usage, clock, defaultMetrics: false });
    const t = createPortTelemetry(
      metrics,
      { service: 'orders', name: 'http' },
      { accessLog: createAccessLogger(new MemorySink()) },
    );
    t.connectionOpened();
    const e = t.usage('lic_1', FRONTEND, '10.0.0.1');
    e.at = clock.now();
    e.count++;
    t.denial(FRONTEND, 'method_not_allowed', '10.0.0.1', clock.now());
    admin = await startAdminServer({
      listen: { host: '127.0.0.1', port: 0 },
      registry: metrics.registry,
      ready: () => ({ ok: true, reasons: [] }),
      status: () =>
        buildStatus({
          now: clock.now(),
          node: 'node-a',
          ports: [
            {
              service: 'orders',
              name: 'http',
              protocol: 'http',
              listen: { host: '127.0.0.1', port: 8443 },
              mode: 'audit',
              activeConnections: metrics.activeConnections('orders', 'http'),
            },
          ],
          policy: policy.current(),
          sync: { lastSuccess: clock.now() },
          usage,
        }),
      log: silentLogger,
    });
    const body = (await (
      await fetch(`http://127.0.0.1:${admin.address.port}/status`)
    ).json()) as SidecarStatus;
    expect(body.ports[0]).toMatchObject({ port: 'orders/http', mode: 'audit', activeConnections: 1 });
    expect(body.licenses[0]).toMatchObject({
      id: 'lic_1',
      state: 'active',
      lastAccess: { count: 1, origin: '10.0.0.1' },
    });
    expect(body.recentDenials).toEqual([
      {
        at: '2026-11-28T10:00:00.000Z',
        port: 'orders/http',
        identity: FRONTEND,
        origin: '10.0.0.1',
        reason: 'method_not_allowed',
      },
    ]);
  });
});
