import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestCa, svid } from '../helpers/pki.js';
import { tlsAttempt, tlsConnect, waitFor } from '../helpers/net.js';
import {
  ADMIN,
  FRONTEND,
  ORDERS_SERVICE,
  SIDECAR,
  startTestAuthority,
  pluck,
  type ApiClient,
  type TestAuthority,
} from '../helpers/authority.js';

describe('authority API: TLS and authorization', () => {
  let t: TestAuthority;
  let admin: ApiClient;

  beforeEach(async () => {
    t = await startTestAuthority({ extraConfig: 'log: { level: debug }' });
    admin = t.client(ADMIN);
    await admin.post('/v1/services', ORDERS_SERVICE);
  });
  afterEach(() => t.close());

  const nothingWritten = async (): Promise<void> => {
    expect((await admin.get('/v1/licenses')).json.licenses).toEqual([]);
    expect(pluck((await admin.get('/v1/audit')).json.entries, 'action')).toEqual(['service']);
  };

  it('lets a sidecar pull bundles but not grant', async () => {
    const sidecar = t.client(SIDECAR);
    const res = await sidecar.post('/v1/licenses', { subject: FRONTEND, service: 'orders', port: 'http' });
    expect(res.status).toBe(403);
    expect(res.json).toEqual({ error: 'forbidden', detail: `identity ${SIDECAR} is not in admins` });
    expect((await sidecar.get('/v1/bundle?node=node-a&services=orders')).status).toBe(200);
    expect((await sidecar.get('/v1/services')).status).toBe(200);
    await nothingWritten();
    const line = t.sink.lines.find((l) => l.msg === 'request' && l.status === 403);
    expect(line).toMatchObject({
      method: 'POST',
      path: '/v1/licenses',
      identity: SIDECAR,
      error: 'forbidden',
    });
  });

  it('refuses an identity that is neither admin nor sidecar, except for the service list', async () => {
    const stranger = t.client(FRONTEND);
    const grant = await stranger.post('/v1/licenses', { subject: FRONTEND, service: 'orders', port: 'http' });
    expect(grant.status).toBe(403);
    expect(grant.json.detail).toBe(`identity ${FRONTEND} is not in admins`);
    const pull = await stranger.get('/v1/bundle?node=node-a&services=orders');
    expect(pull.status).toBe(403);
    expect(pull.json.detail).toBe(`identity ${FRONTEND} is not in sidecars`);
    expect((await stranger.get('/v1/licenses')).status).toBe(403);
    expect((await stranger.get('/v1/services')).status).toBe(200);
    await nothingWritten();
  });

  it('refuses a certificate of our CA without a usable identity', async () => {
    const otherDomain = t.client(t.ca.svid('spiffe://other.org/admin/alice'));
    const res = await otherDomain.get('/v1/services');
    expect(res.status).toBe(403);
    expect(res.json.detail).toMatch(/trust domain "other.org" is not accepted/);
    const noSpiffe = t.client(t.ca.issue({ dns: ['localhost'] }));
    const res2 = await noSpiffe.get('/v1/services');
    expect(res2.status).toBe(403);
    expect(res2.json.detail).toMatch(/no usable identity/);
  });

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const)
    it(`${version}: refuses the handshake for a client certificate of another CA, or none`, async () => {
      const rogue = createTestCa('rogue CA').svid(ADMIN);
      const port = t.running.address.port;
      const request = 'GET /v1/services HTTP/1.1\r\nHost: localhost\r\n\r\n';
      const foreign = await tlsAttempt({ port, ca: t.ca.cert, ...rogue, send: request, maxVersion: version });
      expect(foreign.data.length).toBe(0);
      const none = await tlsAttempt({ port, ca: t.ca.cert, send: request, maxVersion: version });
      expect(none.data.length).toBe(0);
      await expect(t.client(rogue).get('/v1/services')).rejects.toThrow();
      await waitFor(() => t.sink.lines.filter((l) => l.msg === 'TLS handshake refused').length >= 3, {
        what: 'three refusals in the log',
      });
      expect(t.sink.lines.filter((l) => l.msg === 'request')).toHaveLength(1); // the service registration only
      // Other clients are unaffected.
      expect((await admin.get('/v1/services')).status).toBe(200);
    });

  it('refuses clients below TLS 1.2', async () => {
    const creds = t.ca.svid(ADMIN);
    const old = await tlsAttempt({
      port: t.running.address.port,
      ca: t.ca.cert,
      ...creds,
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1.1',
    });
    expect(old.secure).toBe(false);
    expect(old.error).not.toBeNull();
  });

  it('reloads its certificate (SIGHUP), keeping the current one when the new files are bad', async () => {
    const next = t.ca.svid('spiffe://example.org/authority-2');
    writeFileSync(join(t.dir, 'authority.pem'), next.cert);
    t.running.reloadTls();
    const peerSan = async (): Promise<string | undefined> => {
      const s = await tlsConnect({ port: t.running.address.port, ca: t.ca.cert, ...svid(ADMIN) });
      const san = s.getPeerX509Certificate()?.subjectAltName;
      s.destroy();
      return san;
    };
    expect(await peerSan()).toContain('spiffe://example.org/authority-2');
    writeFileSync(join(t.dir, 'authority.pem'), 'not a certificate\n');
    t.running.reloadTls();
    expect(t.sink.lines.some((l) => l.msg === 'certificate reload failed; keeping the current ones')).toBe(
      true,
    );
    expect(await peerSan()).toContain('spiffe://example.org/authority-2');
  });
});
