import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ManualClock } from '../../src/clock.js';
import { verifyBundle } from '../../src/policy/bundle.js';
import { waitFor } from '../helpers/net.js';
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

const BUNDLE = '/v1/bundle?node=node-a&services=orders';

describe('authority API: bundles and long polls', () => {
  let t: TestAuthority;
  let admin: ApiClient;
  let sidecar: ApiClient;
  let clock: ManualClock;

  beforeEach(async () => {
    t = await startTestAuthority({ extraConfig: 'limits: { maxWait: 5s }' });
    clock = t.clock as ManualClock;
    admin = t.client(ADMIN);
    sidecar = t.client(SIDECAR);
    await admin.post('/v1/services', ORDERS_SERVICE);
    await admin.post('/v1/services', { name: 'payments', ports: [{ name: 'http', protocol: 'http' }] });
  });
  afterEach(() => t.close());

  const grant = async (subject = FRONTEND, service = 'orders', port = 'http'): Promise<string> => {
    const res = await admin.post('/v1/licenses', {
      subject,
      service,
      port,
      methods: ['GET'],
      paths: ['/api/*'],
    });
    expect(res.status).toBe(201);
    return res.json.id as string;
  };

  it('serves a bundle that verifies with the public key alone, for the node and services asked', async () => {
    const id = await grant();
    await grant(BACKEND, 'payments', 'http');
    const res = await sidecar.get(BUNDLE);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const payload = verifyBundle(res.text, t.signingPublicKey);
    expect(res.headers.etag).toBe(`"${payload.version}"`);
    expect(payload).toMatchObject({ node: 'node-a', services: ['orders'], issuedAt: '2026-11-28T10:00:00Z' });
    expect(payload.licenses).toEqual([
      {
        id,
        subject: FRONTEND,
        service: 'orders',
        port: 'http',
        methods: ['GET'],
        paths: ['/api/*'],
        notBefore: '2026-11-28T10:00:00Z',
        expiresAt: '2026-11-29T10:00:00Z',
      },
    ]);
    // Another node with the same services gets its own name in the payload.
    const other = verifyBundle(
      (await sidecar.get('/v1/bundle?node=node-b&services=orders,payments')).text,
      t.signingPublicKey,
    );
    expect(other.node).toBe('node-b');
    expect(other.services).toEqual(['orders', 'payments']);
    expect(other.licenses).toHaveLength(2);
    // A tampered copy does not verify.
    const doc = JSON.parse(res.text);
    doc.payload.licenses[0].expiresAt = '2030-01-01T00:00:00Z';
    expect(() => verifyBundle(doc, t.signingPublicKey)).toThrow(/signature/);
  });

  it('answers 304 to If-None-Match of the current version, 200 when a newer one exists', async () => {
    const first = await sidecar.get(BUNDLE);
    const v = first.json.payload.version as number;
    expect(first.headers.etag).toBe(`"${v}"`);
    const same = await sidecar.get(BUNDLE, { headers: { 'if-none-match': `"${v}"` } });
    expect(same.status).toBe(304);
    expect(same.headers.etag).toBe(`"${v}"`);
    expect(same.text).toBe('');
    // Served from the cache: the same bytes for the same version, node and services.
    expect((await sidecar.get(BUNDLE)).text).toBe(first.text);

    await grant();
    const newer = await sidecar.get(BUNDLE, { headers: { 'if-none-match': `W/"${v}"` } });
    expect(newer.status).toBe(200);
    expect(newer.headers.etag).toBe(`"${v + 1}"`);
  });

  it('refuses (409) a sidecar that holds a version above the authority, instead of a reassuring 304', async () => {
    const v = (await sidecar.get(BUNDLE)).json.payload.version as number;
    const ahead = await sidecar.get(BUNDLE, { headers: { 'if-none-match': `"${v + 50}"` } });
    expect(ahead.status).toBe(409);
    expect(ahead.json.detail).toMatch(/store was replaced or restored/);
  });

  it('warns once while a sidecar stays ahead, and again only after it has caught up and gone ahead anew', async () => {
    const v = (await sidecar.get(BUNDLE)).json.payload.version as number;
    const warnings = (): number =>
      t.sink.lines.filter(
        (l) => l.level === 'warn' && /bundle version above the authority/.test(String(l.msg)),
      ).length;
    const ahead = { headers: { 'if-none-match': `"${v + 50}"` } };
    expect((await sidecar.get(BUNDLE, ahead)).status).toBe(409);
    expect((await sidecar.get(BUNDLE, ahead)).status).toBe(409);
    expect(warnings()).toBe(1);
    // The sidecar's cache file was removed: it syncs from scratch, then (say) a stale copy returns.
    expect((await sidecar.get(BUNDLE)).status).toBe(200);
    expect((await sidecar.get(BUNDLE, ahead)).status).toBe(409);
    expect(warnings()).toBe(2);
  });

  it('holds a long poll and wakes it within ~100 ms of a change made in another request', async () => {
    const v = verifyBundle((await sidecar.get(BUNDLE)).text, t.signingPublicKey).version;
    const other = t.client('spiffe://example.org/node/node-b');
    const polls = [
      sidecar.get(`${BUNDLE}&wait=30`, { headers: { 'if-none-match': `"${v}"` } }),
      other.get('/v1/bundle?node=node-b&services=payments&wait=30', {
        headers: { 'if-none-match': `"${v}"` },
      }),
    ];
    await waitFor(() => t.running.heldPolls() === 2, { what: 'two held polls' });
    const id = await grant();
    const granted = performance.now();
    const [a, b] = await Promise.all(polls);
    expect(performance.now() - granted).toBeLessThan(100);
    expect(a!.status).toBe(200);
    expect(b!.status).toBe(200);
    const payload = verifyBundle(a!.text, t.signingPublicKey);
    expect(payload.version).toBe(v + 1);
    expect(payload.licenses.map((l) => l.id)).toEqual([id]);
    // Every change wakes every poll, even one whose services did not change: versions are global.
    expect(verifyBundle(b!.text, t.signingPublicKey).licenses).toEqual([]);
    expect(t.running.heldPolls()).toBe(0);
  });

  it('answers 304 when the wait runs out, holding at most limits.maxWait', async () => {
    const v = verifyBundle((await sidecar.get(BUNDLE)).text, t.signingPublicKey).version;
    const poll = sidecar.get(`${BUNDLE}&wait=3600`, { headers: { 'if-none-match': `"${v}"` } });
    await waitFor(() => t.running.heldPolls() === 1, { what: 'a held poll' });
    clock.advance(4_999);
    expect(t.running.heldPolls()).toBe(1);
    clock.advance(1); // maxWait is 5s
    const res = await poll;
    expect(res.status).toBe(304);
    expect(res.headers.etag).toBe(`"${v}"`);
  });

  it('releases a held poll when the client goes away', async () => {
    const v = verifyBundle((await sidecar.get(BUNDLE)).text, t.signingPublicKey).version;
    const ac = new AbortController();
    const poll = sidecar.get(`${BUNDLE}&wait=30`, {
      headers: { 'if-none-match': `"${v}"` },
      signal: ac.signal,
    });
    await waitFor(() => t.running.heldPolls() === 1, { what: 'a held poll' });
    ac.abort();
    await expect(poll).rejects.toThrow();
    await waitFor(() => t.running.heldPolls() === 0, { what: 'the poll to be released' });
    await waitFor(() => t.sink.lines.some((l) => l.msg === 'request' && l.status === 499), {
      what: 'the 499 log line',
    });
    const metrics = await fetch(`http://127.0.0.1:${t.running.adminAddress.port}/metrics`).then((r) =>
      r.text(),
    );
    expect(metrics).toContain('portlicense_authority_bundle_requests_total{result="aborted"} 1');
  });

  it('raises the version with every change and lists a revoked license with revokedAt until it expires', async () => {
    const versions = [verifyBundle((await sidecar.get(BUNDLE)).text, t.signingPublicKey).version];
    const id = await grant();
    versions.push(verifyBundle((await sidecar.get(BUNDLE)).text, t.signingPublicKey).version);
    clock.advance(60_000);
    expect((await admin.post(`/v1/licenses/${id}/renew`)).status).toBe(200);
    versions.push(verifyBundle((await sidecar.get(BUNDLE)).text, t.signingPublicKey).version);
    await admin.post(`/v1/licenses/${id}/revoke`, { reason: 'done' });
    const res = await sidecar.get(BUNDLE);
    const payload = verifyBundle(res.text, t.signingPublicKey);
    versions.push(payload.version);
    expect(versions).toEqual([versions[0], versions[0]! + 1, versions[0]! + 2, versions[0]! + 3]);
    expect(payload.licenses).toHaveLength(1);
    expect(payload.licenses[0]).toMatchObject({ id, revokedAt: '2026-11-28T10:01:00Z' });
    // Once the revoked license's expiresAt has passed it leaves the bundle.
    clock.advance(25 * 3_600_000);
    await grant(BACKEND); // a change, so the bundle is rebuilt
    expect(
      verifyBundle((await sidecar.get(BUNDLE)).text, t.signingPublicKey).licenses.map((l) => l.id),
    ).not.toContain(id);
  });

  it('records the nodes that pulled bundles, fresh then stale, and exports the gauges', async () => {
    await grant();
    const res = await sidecar.get(BUNDLE);
    const v = verifyBundle(res.text, t.signingPublicKey).version;
    const nodes = await admin.get('/v1/nodes');
    expect(nodes.status).toBe(200);
    expect(nodes.json.nodes).toEqual([
      {
        node: 'node-a',
        identity: SIDECAR,
        services: ['orders'],
        bundleVersion: v,
        lastSync: '2026-11-28T10:00:00Z',
        lastReport: null,
        state: 'fresh',
        denials: [],
      },
    ]);
    const scrape = (): Promise<string> =>
      fetch(`http://127.0.0.1:${t.running.adminAddress.port}/metrics`).then((r) => r.text());
    let metrics = await scrape();
    expect(metrics).toContain('portlicense_authority_sidecars{state="fresh"} 1');
    expect(metrics).toContain('portlicense_authority_licenses{state="active"} 1');
    expect(metrics).toContain('portlicense_authority_bundle_requests_total{result="200"} 1');

    clock.advance(2 * 5_000 + 30_001); // 2 x maxWait + 30 s
    expect((await admin.get('/v1/nodes')).json.nodes[0].state).toBe('stale');
    metrics = await scrape();
    expect(metrics).toContain('portlicense_authority_sidecars{state="stale"} 1');
    const ready = await fetch(`http://127.0.0.1:${t.running.adminAddress.port}/readyz`);
    expect(ready.status).toBe(200);
  });

  it('refuses bad bundle queries with 400 and counts them as errors', async () => {
    const cases: Array<[string, RegExp]> = [
      ['/v1/bundle?services=orders', /"node" is required/],
      ['/v1/bundle?node=node-a', /"services" is required/],
      ['/v1/bundle?node=node-a&services=Orders!', /services: must be/],
      ['/v1/bundle?node=-bad&services=orders', /node: must be/],
      ['/v1/bundle?node=node-a&services=orders&wait=soon', /"wait": must be a whole number/],
      ['/v1/bundle?node=node-a&services=orders&nodes=x', /unknown query parameter "nodes"/],
    ];
    for (const [path, detail] of cases) {
      const res = await sidecar.get(path);
      expect(res.status, path).toBe(400);
      expect(res.json.detail, path).toMatch(detail);
    }
    const metrics = await fetch(`http://127.0.0.1:${t.running.adminAddress.port}/metrics`).then((r) =>
      r.text(),
    );
    expect(metrics).toContain(`portlicense_authority_bundle_requests_total{result="error"} ${cases.length}`);
  });

  it('answers held polls with 304 and Connection: close on shutdown', async () => {
    const v = verifyBundle((await sidecar.get(BUNDLE)).text, t.signingPublicKey).version;
    const poll = sidecar.get(`${BUNDLE}&wait=30`, { headers: { 'if-none-match': `"${v}"` } });
    await waitFor(() => t.running.heldPolls() === 1, { what: 'a held poll' });
    const stopped = t.running.shutdown();
    const res = await poll;
    expect(res.status).toBe(304);
    expect(res.headers.connection).toBe('close');
    await stopped;
  });
});
