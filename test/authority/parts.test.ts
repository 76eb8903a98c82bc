import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BUNDLE_MAX_AGE_MS, BundleCache } from '../../src/authority/bundles.js';
import { LongPoll } from '../../src/authority/longpoll.js';
import type { LicenseRecord } from '../../src/authority/model.js';
import { Router, type Route } from '../../src/authority/router.js';
import { knownVersion } from '../../src/authority/sync-routes.js';
import { ManualClock } from '../../src/clock.js';
import { verifyBundle } from '../../src/policy/bundle.js';

describe('LongPoll', () => {
  it('wakes waiters below the new version, times out the others, and releases aborted ones', async () => {
    const clock = new ManualClock();
    const lp = new LongPoll(clock);
    const never = new AbortController();
    const low = lp.wait(3, 30_000, never.signal);
    const high = lp.wait(5, 10_000, never.signal);
    const gone = new AbortController();
    const aborted = lp.wait(3, 30_000, gone.signal);
    expect(lp.size).toBe(3);
    gone.abort();
    expect(await aborted).toBe('aborted');
    expect(clock.pendingTimers()).toBe(2); // the aborted waiter's timer is cancelled
    lp.notify(4);
    expect(await low).toBe('changed');
    expect(lp.size).toBe(1);
    clock.advance(10_000);
    expect(await high).toBe('timeout');
    expect(lp.size).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('answers every waiter on close, and later waits at once', async () => {
    const lp = new LongPoll(new ManualClock());
    const signal = new AbortController().signal;
    const held = lp.wait(1, 30_000, signal);
    lp.close();
    expect(await held).toBe('closing');
    expect(await lp.wait(1, 30_000, signal)).toBe('closing');
  });
});

describe('knownVersion', () => {
  it('reads the version from If-None-Match', () => {
    expect(knownVersion(undefined)).toBeUndefined();
    expect(knownVersion('"7"')).toBe(7);
    expect(knownVersion('W/"7"')).toBe(7);
    expect(knownVersion('"3", "9" ,W/"4"')).toBe(9);
    expect(knownVersion('*')).toBeUndefined();
    expect(knownVersion('"abc"')).toBeUndefined();
    expect(knownVersion('7')).toBeUndefined();
  });
});

describe('Router', () => {
  const route = (method: 'GET' | 'POST', pattern: string): Route => ({
    method,
    pattern,
    role: 'any',
    handle: () => ({ status: 200 }),
  });
  const router = new Router([
    route('GET', '/v1/licenses'),
    route('POST', '/v1/licenses'),
    route('POST', '/v1/licenses/:id/renew'),
  ]);

  it('matches patterns, decodes parameters, and tells 404 from 405', () => {
    expect(router.match('POST', '/v1/licenses/lic%5F1/renew')).toMatchObject({
      kind: 'route',
      params: { id: 'lic_1' },
    });
    expect(router.match('PUT', '/v1/licenses')).toEqual({
      kind: 'method_not_allowed',
      allow: ['GET', 'POST'],
    });
    expect(router.match('GET', '/v1/licenses/x/renew')).toEqual({
      kind: 'method_not_allowed',
      allow: ['POST'],
    });
    expect(router.match('POST', '/v1/licenses//renew')).toEqual({ kind: 'not_found' });
    expect(router.match('POST', '/v1/licenses/%E0%A4%A/renew')).toEqual({ kind: 'not_found' });
    expect(router.match('GET', '/v1/licenses/x')).toEqual({ kind: 'not_found' });
  });
});

describe('BundleCache', () => {
  const license = (id: string): LicenseRecord => ({
    id,
    subject: 'spiffe://example.org/a',
    service: 'orders',
    port: 'http',
    methods: null,
    paths: null,
    notBefore: Date.parse('2026-11-28T10:00:00Z'),
    expiresAt: Date.parse('2026-11-29T10:00:00Z'),
    createdAt: Date.parse('2026-11-28T10:00:00Z'),
    ttl: 86_400_000,
    maxLifetime: 86_400_000,
    autoRenew: true,
    reason: null,
    revokedAt: null,
    revokeReason: null,
    renewedAt: 0,
    expiryAudited: false,
  });

  it('signs once per (version, node, services), again on a new version or after the max age', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const clock = new ManualClock();
    const src = { v: 1, licenses: [license('lic_a')] };
    const cache = new BundleCache(
      { version: () => src.v, bundleLicenses: () => src.licenses },
      privateKey,
      clock,
      2,
    );
    const a = cache.get('node-a', ['orders']);
    expect(cache.get('node-a', ['orders'])).toBe(a);
    expect(cache.signed).toBe(1);
    const b = cache.get('node-b', ['orders']);
    expect(verifyBundle(b.body, publicKey).node).toBe('node-b');
    cache.get('node-c', ['orders']); // bound of 2: node-a's entry goes
    cache.get('node-a', ['orders']);
    expect(cache.signed).toBe(4);

    src.v = 2;
    src.licenses = [license('lic_a'), license('lic_b')];
    const next = cache.get('node-a', ['orders']);
    expect(next.version).toBe(2);
    expect(verifyBundle(next.body, publicKey).licenses).toHaveLength(2);
    clock.advance(BUNDLE_MAX_AGE_MS);
    const rebuilt = cache.get('node-a', ['orders']);
    expect(rebuilt).not.toBe(next);
    expect(verifyBundle(rebuilt.body, publicKey).issuedAt).toBe('2026-11-28T11:00:00Z');
  });

  it('leaves out, and reports, a stored license it cannot even write (an expiry no date holds)', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const invalid: string[] = [];
    const broken = { ...license('lic_broken'), expiresAt: 1e20 };
    const cache = new BundleCache(
      { version: () => 1, bundleLicenses: () => [broken, license('lic_ok')] },
      privateKey,
      new ManualClock(),
      2,
      (id) => invalid.push(id),
    );
    const b = verifyBundle(cache.get('node-a', ['orders']).body, publicKey);
    expect(b.licenses.map((l) => l.id)).toEqual(['lic_ok']);
    expect(invalid).toEqual(['lic_broken']);
  });
});
