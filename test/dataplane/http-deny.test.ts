/**
 * Denials on an http port (SPEC §2.3, §2.5): each reason with its exact 403, nothing forwarded,
 * counted and logged; path tricks that must not widen a `/api/*` license; unparseable paths.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DenyReason } from '../../src/policy/types.js';
import { FRONTEND, startHttpHarness, type HttpHarness, type TestLicense } from '../helpers/http.js';
import { hasCompleteResponse, parseRaw, rawRequest } from '../helpers/http-client.js';
import { Received, tlsConnect } from '../helpers/net.js';
import { opensslLeaf, sharedCa, type PemPair } from '../helpers/pki.js';

let h: HttpHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const HOUR = 3_600_000;

function denyBody(reason: DenyReason): unknown {
  return { error: 'forbidden', reason, port: 'orders/http' };
}

interface DenyCase {
  reason: DenyReason;
  licenses: TestLicense[];
  method?: string;
  path?: string;
}

const CASES: DenyCase[] = [
  { reason: 'no_license', licenses: [] },
  {
    reason: 'no_license',
    licenses: [{ id: 'lic_other', subject: 'spiffe://example.org/ns/default/sa/other' }],
  },
  { reason: 'expired', licenses: [{ id: 'lic_1', notBefore: -2 * HOUR, expiresAt: -1 }] },
  { reason: 'not_yet_valid', licenses: [{ id: 'lic_1', notBefore: HOUR, expiresAt: 2 * HOUR }] },
  { reason: 'revoked', licenses: [{ id: 'lic_1', revokedAt: -1_000 }] },
  { reason: 'method_not_allowed', licenses: [{ id: 'lic_1', methods: ['GET'] }], method: 'DELETE' },
  { reason: 'path_not_allowed', licenses: [{ id: 'lic_1', paths: ['/api/*'] }], path: '/admin' },
];

describe('http port: deny reasons', () => {
  for (const c of CASES) {
    it(`${c.reason}${c.licenses.length > 0 ? ` (${c.licenses[0]!.id})` : ''}: exact 403, nothing forwarded`, async () => {
      h = await startHttpHarness({ licenses: c.licenses });
      const path = c.path ?? '/api/orders';
      const res = await h.client().request({ path, method: c.method ?? 'GET' });
      expect(res.statusCode).toBe(403);
      expect(res.headers['content-type']).toBe('application/json');
      expect(res.headers['x-portlicense-deny-reason']).toBe(c.reason);
      expect(await res.body.json()).toEqual(denyBody(c.reason));
      expect(h.upstream.connections).toBe(0);
      expect(h.telemetry.decisionList()).toEqual([`deny:${c.reason}`]);
      expect(h.telemetry.denials).toEqual([
        { identity: FRONTEND, reason: c.reason, origin: '127.0.0.1', at: h.clock.now() },
      ]);
      expect(h.telemetry.access).toEqual([
        expect.objectContaining({
          kind: 'http',
          decision: 'deny',
          reason: c.reason,
          identity: FRONTEND,
          license: null,
          method: c.method ?? 'GET',
          path,
          status: 403,
        }),
      ]);
    });
  }

  it('expired, as the clock passes expiresAt between two requests on one connection', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1', expiresAt: 60_000 }] });
    const client = h.client();
    const first = await client.request({ path: '/api', method: 'GET' });
    await first.body.dump();
    expect(first.statusCode).toBe(200);
    h.clock.advance(60_000);
    const second = await client.request({ path: '/api', method: 'GET' });
    expect(second.statusCode).toBe(403);
    expect(await second.body.json()).toEqual(denyBody('expired'));
    expect(h.telemetry.decisionList()).toEqual(['allow:-', 'deny:expired']);
    expect(h.upstream.requests).toHaveLength(1);
  });

  it('revoked, as a new bundle revokes the license between two requests', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1' }] });
    const client = h.client();
    const first = await client.request({ path: '/api', method: 'GET' });
    await first.body.dump();
    h.setLicenses([{ id: 'lic_1', revokedAt: 0 }]);
    const second = await client.request({ path: '/api', method: 'GET' });
    expect(second.statusCode).toBe(403);
    expect(second.headers['x-portlicense-deny-reason']).toBe('revoked');
    await second.body.dump();
  });

  const issued = (uris: string[]) => (): PemPair => sharedCa().issue({ uris, dns: ['localhost'] });
  for (const [name, make] of [
    ['no SPIFFE ID', issued([])],
    ['a foreign trust domain', issued(['spiffe://evil.org/ns/default/sa/frontend'])],
    ['two SPIFFE IDs', issued([FRONTEND, 'spiffe://example.org/ns/default/sa/second'])],
    [
      'a leaf that may sign certificates',
      (): PemPair =>
        opensslLeaf(sharedCa(), {
          spiffeId: FRONTEND,
          keyType: 'ec',
          extensions: [
            'basicConstraints=critical,CA:FALSE',
            'keyUsage=critical,digitalSignature,keyCertSign',
          ],
        }),
    ],
  ] as const) {
    it(`bad_identity (${name}): every request on the connection gets 403`, async () => {
      h = await startHttpHarness({ licenses: [{ id: 'lic_1', subject: 'spiffe://example.org/*' }] });
      const leaf = make();
      const socket = await tlsConnect({ ...h.address, ...h.credsFor(leaf) });
      const rx = new Received(socket);
      socket.write('GET /api HTTP/1.1\r\nHost: orders\r\n\r\n');
      await rx.until(hasCompleteResponse);
      socket.write('GET /api/2 HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n');
      const text = await rx.closed();
      const responses = text.split('HTTP/1.1 ').slice(1);
      expect(responses).toHaveLength(2);
      for (const r of responses) {
        expect(r.startsWith('403')).toBe(true);
        expect(r).toMatch(/x-portlicense-deny-reason: bad_identity/);
        expect(r).toContain(JSON.stringify(denyBody('bad_identity')));
      }
      expect(h.upstream.connections).toBe(0);
      expect(h.telemetry.decisionList()).toEqual(['deny:bad_identity', 'deny:bad_identity']);
      expect(h.telemetry.denials[0]).toMatchObject({ identity: null, reason: 'bad_identity' });
    });
  }
});

describe('http port: path tricks against a /api/* license', () => {
  // One port for the whole table: no case may reach the upstream, so state carries over safely.
  let port: HttpHarness;
  beforeAll(async () => {
    port = await startHttpHarness({ licenses: [{ id: 'lic_1', paths: ['/api/*'] }] });
  });
  afterAll(() => port.close());

  const TRICKS = [
    '/api/../admin',
    '/api/%2e%2e/admin',
    '/api/%2E%2E/admin',
    '/api/.%2e/admin',
    '/api/%2e./admin',
    '/api//../../admin',
    '/api/./../admin',
    '/api\\..\\admin',
    '/API/orders',
    '/apix',
    '/api%2Forders',
  ];
  for (const target of TRICKS) {
    it(`${target} is denied and never reaches the upstream`, async () => {
      const rx = await rawRequest(
        port.address,
        port.creds,
        `GET ${target} HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n`,
      );
      const r = parseRaw(await rx.closed());
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body)).toEqual(denyBody('path_not_allowed'));
      expect(port.upstream.connections).toBe(0);
    });
  }

  for (const [method, target] of [
    ['GET', '/api/%zz'],
    ['GET', '/api/%00'],
    ['GET', '/api/%'],
    ['GET', '/api/..;/admin'],
    ['GET', '/api/%C0%AF'],
    ['GET', '/api/%E2%80'],
    ['GET', '*'],
    ['OPTIONS', '*'],
  ]) {
    it(`${method} ${target} cannot be normalised or forwarded: 400 bad_path`, async () => {
      const decided = port.telemetry.decisions.length;
      const rx = await rawRequest(
        port.address,
        port.creds,
        `${method} ${target} HTTP/1.1\r\nHost: orders\r\n\r\n`,
      );
      const r = parseRaw(await rx.closed());
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body)).toEqual({ error: 'bad_request', reason: 'bad_path', port: 'orders/http' });
      expect(port.upstream.connections).toBe(0);
      // Refused before any decision.
      expect(port.telemetry.decisions).toHaveLength(decided);
    });
  }
});

describe('http port: the body of a denied request', () => {
  it('a small body is discarded and the connection kept for the next request', async () => {
    h = await startHttpHarness({ licenses: [{ id: 'lic_1', methods: ['GET'] }] });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write('POST /api HTTP/1.1\r\nHost: orders\r\nContent-Length: 11\r\n\r\nhello world');
    await rx.until(hasCompleteResponse);
    expect(parseRaw(rx.text).head).not.toMatch(/connection: close/i);
    socket.write('GET /api HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n');
    const text = await rx.closed();
    expect(text.match(/HTTP\/1\.1 (\d+)/g)).toEqual(['HTTP/1.1 403', 'HTTP/1.1 200']);
    expect(h.upstream.requests.map((r) => `${r.method} ${r.body.length}`)).toEqual(['GET 0']);
  });

  it('a large pending body is not read: 403 with connection: close, the caller can still read it', async () => {
    h = await startHttpHarness({ licenses: [] });
    const socket = await tlsConnect({ ...h.address, ...h.creds });
    const rx = new Received(socket);
    socket.write(`POST /api HTTP/1.1\r\nHost: orders\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n`);
    socket.write(Buffer.alloc(64 * 1024, 7));
    await rx.until((t) => hasCompleteResponse(t));
    const r = parseRaw(rx.text);
    expect(r.status).toBe(403);
    expect(r.head).toMatch(/connection: close/i);
    expect(JSON.parse(r.body)).toEqual(denyBody('no_license'));
    // The proxy closes its side; the caller's unsent body is never asked for.
    socket.end();
    await rx.closed();
    expect(rx.error).toBeNull();
    expect(h.upstream.connections).toBe(0);
  });

  it('a chunked body of a denied request closes the connection after the 403', async () => {
    h = await startHttpHarness({ licenses: [] });
    const rx = await rawRequest(
      h.address,
      h.creds,
      'POST /api HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n',
    );
    await rx.until(hasCompleteResponse);
    expect(parseRaw(rx.text).head).toMatch(/connection: close/i);
    rx.socket.end();
    await rx.closed();
    expect(h.upstream.connections).toBe(0);
  });
});
