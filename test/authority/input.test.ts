import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect as netConnect } from 'node:net';
import { hasCompleteResponse, parseRaw, rawRequest } from '../helpers/http-client.js';
import { outcome, tlsAttempt, tlsConnect, waitFor } from '../helpers/net.js';
import {
  ADMIN,
  FRONTEND,
  ORDERS_SERVICE,
  startTestAuthority,
  pluck,
  type ApiClient,
  type TestAuthority,
} from '../helpers/authority.js';
import { svid } from '../helpers/pki.js';

describe('authority API: bad input gets a clear answer and changes nothing', () => {
  let t: TestAuthority;
  let admin: ApiClient;
  let version: number;

  beforeEach(async () => {
    t = await startTestAuthority({ extraConfig: 'limits: { maxBodyBytes: 2048 }' });
    admin = t.client(ADMIN);
    await admin.post('/v1/services', ORDERS_SERVICE);
    version = t.running.licensing.version();
  });
  afterEach(() => t.close());

  const nothingWritten = async (): Promise<void> => {
    expect((await admin.get('/v1/licenses')).json.licenses).toEqual([]);
    expect(pluck((await admin.get('/v1/audit')).json.entries, 'action')).toEqual(['service']);
    expect(t.running.licensing.version()).toBe(version);
  };
  const grantBody = { subject: FRONTEND, service: 'orders', port: 'http' };

  it('answers 400 naming what is wrong in a grant', async () => {
    const cases: Array<[string | Record<string, unknown>, RegExp]> = [
      ['{"subject": "spiffe://example.org/a",', /not valid JSON/],
      [{ ...grantBody, colour: 'blue' }, /colour: unknown key "colour"/],
      [{ ...grantBody, ttl: 5 }, /ttl: must be a duration with a unit, like 5s/],
      [{ ...grantBody, ttl: '1x' }, /ttl: invalid duration "1x"/],
      [
        { ...grantBody, subject: 'frontend' },
        /subject: invalid subject "frontend": must start with "spiffe:\/\/"/,
      ],
      [{ ...grantBody, paths: ['api'] }, /paths\[0\]: must start with "\/"/],
      [{ ...grantBody, ttl: '48h', maxLifetime: '24h' }, /ttl \(48h\) must not exceed maxLifetime \(24h\)/],
      [{ ...grantBody, notBefore: 'tomorrow' }, /notBefore: invalid time/],
      [{ service: 'orders' }, /subject: is required.*port: is required/],
      ['[]', /must be a mapping/],
      ['"x"', /must be a mapping/],
    ];
    for (const [body, detail] of cases) {
      const res =
        typeof body === 'string'
          ? await admin.post('/v1/licenses', undefined, { raw: body })
          : await admin.post('/v1/licenses', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json.error).toBe('bad_request');
      expect(res.json.detail, JSON.stringify(body)).toMatch(detail);
    }
    await nothingWritten();
  });

  it('answers 413 for an oversize body, by Content-Length or by bytes', async () => {
    const big = { ...grantBody, reason: 'x'.repeat(4096) };
    const res = await admin.post('/v1/licenses', big);
    expect(res.status).toBe(413);
    expect(res.json.error).toBe('payload_too_large');
    expect(res.json.detail).toMatch(/2048 byte limit/);

    // Chunked: no Content-Length, the limit is enforced while reading.
    const chunk = JSON.stringify(big);
    const rx = await rawRequest(
      t.running.address,
      { ca: t.ca.cert, ...svid(ADMIN) },
      `POST /v1/licenses HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n` +
        `${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`,
    );
    const answer = parseRaw(await rx.until(hasCompleteResponse));
    expect(answer.status).toBe(413);
    expect(answer.head.toLowerCase()).toContain('connection: close');
    rx.socket.destroy();
    await nothingWritten();
  });

  it('answers 415 for a media type the route does not take, 400 for a missing or non-UTF-8 body', async () => {
    const text = await admin.post('/v1/licenses', undefined, {
      raw: JSON.stringify(grantBody),
      contentType: 'text/plain',
    });
    expect(text.status).toBe(415);
    expect(text.json).toMatchObject({ error: 'unsupported_media_type' });
    expect(text.json.detail).toMatch(/send application\/json/);
    const yaml = await admin.post('/v1/licenses', undefined, {
      raw: 'subject: x',
      contentType: 'application/yaml',
    });
    expect(yaml.status).toBe(415);
    const latin1 = await admin.post('/v1/licenses', undefined, {
      raw: JSON.stringify(grantBody),
      contentType: 'application/json; charset=iso-8859-1',
    });
    expect(latin1.status).toBe(415);
    const empty = await admin.post('/v1/licenses');
    expect(empty.status).toBe(400);
    expect(empty.json.detail).toMatch(/body is required/);
    const bad = await admin.post('/v1/licenses', undefined, { raw: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]) });
    expect(bad.status).toBe(400);
    expect(bad.json.detail).toMatch(/UTF-8/);
    await nothingWritten();
  });

  it('answers 400 for a bad renew or revoke body and leaves the license alone', async () => {
    const lic = (await admin.post('/v1/licenses', grantBody)).json;
    const cases: Array<[string, unknown, RegExp]> = [
      ['renew', { ttl: 'soon' }, /ttl: invalid duration/],
      ['renew', { ttll: '1h' }, /unknown key "ttll" \(did you mean "ttl"\?\)/],
      ['revoke', { reason: 42 }, /reason: must be a string/],
      ['revoke', { why: 'x' }, /unknown key "why"/],
    ];
    for (const [verb, body, detail] of cases) {
      const res = await admin.post(`/v1/licenses/${lic.id}/${verb}`, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json.detail).toMatch(detail);
    }
    const show = (await admin.get(`/v1/licenses/${lic.id}`)).json;
    expect(show).toMatchObject({ state: 'active', expiresAt: lic.expiresAt });
    expect((await admin.post('/v1/revoke', { subject: 'spiffe://example.org/ns/*/x' })).status).toBe(400);
  });

  it('answers 404 for an unknown route and 405 with Allow for a wrong method', async () => {
    const missing = await admin.get('/v1/licence');
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({ error: 'not_found', detail: 'no route GET /v1/licence' });
    expect((await admin.get('/v1/licenses/')).status).toBe(404);
    const wrong = await admin.call('DELETE', '/v1/licenses');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('POST, GET');
    expect(wrong.json.error).toBe('method_not_allowed');
    expect((await admin.post('/v1/nodes')).status).toBe(405);
    const query = await admin.get('/v1/nodes?x=1');
    expect(query.status).toBe(400);
    expect(query.json.detail).toMatch(/takes none/);
  });

  it('refuses smuggling and oversize heads at the HTTP layer', async () => {
    const creds = { ca: t.ca.cert, ...svid(ADMIN) };
    const body = JSON.stringify(grantBody);
    const smuggle = await rawRequest(
      t.running.address,
      creds,
      `POST /v1/licenses HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
        `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
    );
    expect(parseRaw(await smuggle.closed()).status).toBe(400);
    const huge = await rawRequest(
      t.running.address,
      creds,
      `GET /v1/services HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(parseRaw(await huge.closed()).status).toBe(431);
    await nothingWritten();
  });
});

describe('authority API: slow and excess clients', () => {
  let t: TestAuthority;

  beforeEach(async () => {
    t = await startTestAuthority({
      tls: 'handshakeTimeout: 300ms',
      extraConfig: 'limits: { headersTimeout: 300ms, maxConnections: 2 }',
    });
  });
  afterEach(() => t.close());

  it('closes a client that never starts the handshake', async () => {
    const socket = netConnect(t.running.address.port, '127.0.0.1');
    const o = await outcome(socket);
    expect(o.data.length).toBe(0);
  });

  it('answers 408 to a request head that dribbles in too slowly', async () => {
    const rx = await rawRequest(
      t.running.address,
      { ca: t.ca.cert, ...svid(ADMIN) },
      'GET /v1/services HTTP/1.1\r\nHost: local',
    );
    const answer = parseRaw(await rx.closed());
    expect(answer.status).toBe(408);
  });

  it('refuses connections beyond limits.maxConnections, and serves again once they close', async () => {
    const creds = { ca: t.ca.cert, ...svid(ADMIN) };
    const held = [
      await tlsConnect({ ...t.running.address, ...creds }),
      await tlsConnect({ ...t.running.address, ...creds }),
    ];
    const extra = await tlsAttempt({ port: t.running.address.port, ca: t.ca.cert, ...svid(ADMIN) });
    expect(extra.secure).toBe(false);
    for (const s of held) s.destroy();
    await waitFor(
      async () =>
        (
          await t
            .client(ADMIN)
            .get('/v1/services')
            .catch(() => undefined)
        )?.status === 200,
      {
        what: 'a free connection slot',
      },
    );
  });
});
