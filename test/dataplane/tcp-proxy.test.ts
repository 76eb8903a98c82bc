/** The tcp port end to end: real TLS callers, a real upstream, ManualClock for license time. */
import { writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import type { PortConfig } from '../../src/config/types.js';
import { createTcpPort, type TcpPortOptions } from '../../src/dataplane/tcp-proxy.js';
import { TlsMaterialStore } from '../../src/dataplane/tls-context.js';
import type { PortListener } from '../../src/dataplane/types.js';
import { createLogger, MemorySink } from '../../src/log.js';
import { PolicyStore } from '../../src/policy/store.js';
import type { LicenseWire } from '../../src/policy/types.js';
import {
  closed,
  outcome,
  readUntil,
  roundTrip,
  startTcpEcho,
  startTcpServer,
  tlsAttempt,
  tlsConnect,
  startDeafPort,
  unusedPort,
  waitFor,
  type TestServer,
} from '../helpers/net.js';
import { buildCertificate } from '../../src/pki/x509.js';
import { createTestCa, type PemPair, type TestCa } from '../helpers/pki.js';
import { loadTlsFixture } from '../helpers/tls.js';
import { removeDir, tempDir } from '../helpers/tmp.js';
import { dbLicense, dbPortConfig, iso, ordersSnapshot } from '../helpers/policy.js';
import { RecordingTelemetry } from '../helpers/telemetry.js';

const MIN = 60_000;
const DAY = 86_400_000;
const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';

let ca: TestCa;
/** A self-signed certificate: no CA vouches for it. */
let selfSigned: PemPair;
let serverA: PemPair;
let serverB: PemPair;
let frontend: PemPair;

beforeAll(() => {
  ca = createTestCa();
  serverA = ca.svid('spiffe://example.org/ns/default/sa/orders');
  serverB = ca.svid('spiffe://example.org/ns/default/sa/orders', { commonName: 'rotated' });
  frontend = ca.svid(FRONTEND);
  selfSigned = buildCertificate({ commonName: 'self-signed', uris: [FRONTEND], key: frontend.key });
});

interface Fixture {
  listener: PortListener;
  port: number;
  clock: ManualClock;
  /** Test time zero: licenses are placed relative to it. */
  t0: number;
  policy: PolicyStore;
  telemetry: RecordingTelemetry;
  sink: MemorySink;
  tls: TlsMaterialStore;
  files: { ca: string; cert: string; key: string };
  upstream: TestServer;
}

interface StartOptions {
  mode?: 'enforce' | 'audit';
  port?: Partial<PortConfig>;
  /** Licenses for FRONTEND on orders/db; default one valid for 10 minutes. */
  licenses?: (t0: number) => LicenseWire[];
  upstream?: TestServer;
  tcp?: TcpPortOptions;
  handshakeTimeout?: number;
}

let dir: string;
let fx: Fixture;
const cleanups: Array<() => unknown> = [];

beforeEach(() => {
  dir = tempDir('pl-tcp-');
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  removeDir(dir);
});

/** A license of FRONTEND valid from `from` to `to` minutes after `t0`. */
const lic = (t0: number, id: string, from: number, to: number, extra?: Partial<LicenseWire>) =>
  dbLicense(t0, id, FRONTEND, from, to, extra);

function publish(licenses: LicenseWire[]): void {
  fx.policy.swap(ordersSnapshot(licenses, fx.clock.now()));
}

async function start(opts: StartOptions = {}): Promise<Fixture> {
  const { files, sink, log, tls } = loadTlsFixture(dir, ca.cert, serverA);
  const upstream = opts.upstream ?? (await startTcpEcho());
  const clock = new ManualClock(Date.now());
  const t0 = clock.now();
  const policy = new PolicyStore();
  const telemetry = new RecordingTelemetry();
  const port = dbPortConfig({
    upstream: { host: upstream.host, port: upstream.port },
    mode: opts.mode ?? 'enforce',
    ...opts.port,
  });
  const listener = createTcpPort(
    {
      port,
      policy,
      clock,
      telemetry,
      tls,
      trustDomains: ['example.org'],
      handshakeTimeout: opts.handshakeTimeout ?? 5_000,
      log,
    },
    opts.tcp,
  );
  cleanups.push(
    () => upstream.close(),
    () => tls.close(),
  );
  const bound = await listener.listen();
  cleanups.push(() => listener.drain(0));
  fx = { listener, port: bound.port, clock, t0, policy, telemetry, sink, tls, files, upstream };
  publish(opts.licenses ? opts.licenses(t0) : [lic(t0, 'lic_a', 0, 10)]);
  return fx;
}

const connect = (pair: PemPair = frontend, extra: Record<string, unknown> = {}) =>
  tlsConnect({ port: fx.port, ca: ca.cert, cert: pair.cert, key: pair.key, ...extra });

const attempt = (pair: PemPair | undefined, send = 'hello upstream') =>
  tlsAttempt({ port: fx.port, ca: ca.cert, ...(pair ? { cert: pair.cert, key: pair.key } : {}), send });

/** The access-log line of the one finished flow, once it is written. */
const accessRecord = () => waitFor(() => fx.telemetry.access[0], { what: 'access log line' });

describe('tcp port: allowed flows', () => {
  it('splices an allowed caller to the upstream and records the flow', async () => {
    await start();
    const s = await connect();
    expect(await roundTrip(s, 'hello')).toBe('hello');
    expect(await roundTrip(s, 'world')).toBe('world');
    expect(fx.listener.activeConnections()).toBe(1);
    expect(fx.telemetry.active).toBe(1);
    s.end();
    await closed(s);
    const rec = await accessRecord();
    expect(rec).toMatchObject({
      kind: 'tcp',
      decision: 'allow',
      reason: null,
      identity: FRONTEND,
      origin: '127.0.0.1',
      license: 'lic_a',
      bytesIn: 10,
      bytesOut: 10,
      closeReason: 'client_close',
    });
    expect(fx.telemetry.decisions).toEqual([{ decision: 'allow', reason: null }]);
    expect(fx.telemetry.bytesIn).toBe(10);
    expect(fx.telemetry.bytesOut).toBe(10);
    expect(fx.telemetry.usageOf('lic_a', FRONTEND)).toMatchObject({ count: 1, at: fx.t0 });
    expect(fx.telemetry.active).toBe(0);
    expect(fx.listener.activeConnections()).toBe(0);
  });

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`honours half-close over ${version}: a caller that has finished sending still gets the reply`, async () => {
      // The upstream answers only once the request is complete (it has seen our FIN).
      const upstream = await startTcpServer((sock) => {
        const chunks: Buffer[] = [];
        sock.on('data', (c: Buffer) => chunks.push(c));
        sock.on('end', () => sock.end(`got:${Buffer.concat(chunks).toString()}`));
      });
      await start({ upstream });
      const s = await connect(frontend, { maxVersion: version });
      const o = outcome(s);
      s.end('request');
      expect((await o).data.toString()).toBe('got:request');
      expect((await accessRecord()).closeReason).toBe('client_close');
    });
  }

  it('passes the upstream closing first on to the caller', async () => {
    const upstream = await startTcpServer((sock) => sock.end('bye'));
    await start({ upstream });
    const s = await connect();
    const o = await outcome(s);
    expect(o.data.toString()).toBe('bye');
    expect((await accessRecord()).closeReason).toBe('upstream_close');
  });

  it('publishes bytes and refreshes last access of long flows periodically', async () => {
    await start({ tcp: { statsInterval: 5_000 } });
    const s = await connect();
    await roundTrip(s, 'abc');
    fx.clock.advance(5_000);
    expect(fx.telemetry.bytesIn).toBe(3);
    expect(fx.telemetry.bytesOut).toBe(3);
    expect(fx.telemetry.usageOf('lic_a', FRONTEND)!.at).toBe(fx.t0 + 5_000);
    expect(fx.telemetry.usageOf('lic_a', FRONTEND)!.count).toBe(1);
    s.destroy();
    await accessRecord();
    expect(fx.telemetry.bytesIn).toBe(3);
  });

  it('closes the caller when the upstream cannot be reached, without a byte', async () => {
    const port = await unusedPort();
    await start({ port: { upstream: { host: '127.0.0.1', port } } });
    const s = await connect();
    s.write('anyone?');
    const o = await outcome(s);
    expect(o.data.length).toBe(0);
    expect((await accessRecord()).closeReason).toBe('upstream_connect_failed: ECONNREFUSED');
    expect(fx.sink.lines.some((l) => l.msg === 'cannot connect to the upstream; closing the caller')).toBe(
      true,
    );
    expect(fx.listener.activeConnections()).toBe(0);
  });

  it('closes the caller when connecting to the upstream hangs past connectTimeout, and says so', async () => {
    const deaf = await startDeafPort();
    cleanups.push(() => deaf.close());
    await start({ port: { upstream: { host: '127.0.0.1', port: deaf.port }, connectTimeout: 300 } });
    const s = await connect();
    const started = Date.now();
    s.write('anyone?');
    const o = await outcome(s);
    expect(o.data.length).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect((await accessRecord()).closeReason).toBe('upstream_connect_timeout');
    expect(
      fx.sink.lines.find((l) => l.msg === 'cannot connect to the upstream; closing the caller'),
    ).toMatchObject({
      upstream: `127.0.0.1:${deaf.port}`,
      error: 'connect timeout after 300 ms',
    });
    expect(fx.listener.activeConnections()).toBe(0);
  });
});

describe('tcp port: refused callers never reach the upstream', () => {
  it('refuses failed handshakes by reason', async () => {
    const expired = ca.svid(FRONTEND, {
      notBefore: new Date(Date.now() - 2 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const notYetValid = ca.svid(FRONTEND, { notBefore: new Date(Date.now() + DAY) });
    await start({ handshakeTimeout: 1_000 });
    // The silent caller waits out its deadline while the others are refused.
    const silent = outcome(netConnect(fx.port, '127.0.0.1'));
    await attempt(undefined);
    await attempt(selfSigned);
    await attempt(expired);
    await attempt(notYetValid);
    await silent;
    await waitFor(() => fx.telemetry.handshakeErrors.length === 5);
    expect([...fx.telemetry.handshakeErrors].sort()).toEqual([
      'expired_cert',
      'expired_cert',
      'handshake_timeout',
      'no_client_cert',
      'untrusted_cert',
    ]);
    expect(fx.upstream.accepted()).toBe(0);
    expect(fx.telemetry.decisions).toEqual([]);
  });

  it('denies callers without a usable identity: bad_identity', async () => {
    await start();
    const bad: Array<[string, PemPair]> = [
      ['two SPIFFE URIs', ca.svid(FRONTEND, { uris: ['spiffe://example.org/other'] })],
      ['no URI SAN', ca.issue({ dns: ['localhost'] })],
      ['a CA certificate', ca.issue({ uris: [FRONTEND], isCA: true })],
      ['another trust domain', ca.svid('spiffe://evil.org/ns/default/sa/frontend')],
      ['a SPIFFE ID with a query', ca.svid(`${FRONTEND}?admin=1`)],
    ];
    for (const [what, pair] of bad) {
      const r = await attempt(pair);
      expect(r.secure, what).toBe(true);
      expect(r.data.length, what).toBe(0);
    }
    expect(fx.telemetry.countDecisions('deny', 'bad_identity')).toBe(bad.length);
    expect(fx.telemetry.denials.map((d) => [d.identity, d.reason])).toEqual(
      bad.map(() => [null, 'bad_identity']),
    );
    expect(fx.telemetry.access.every((a) => a.decision === 'deny' && a.closeReason === 'denied')).toBe(true);
    expect(fx.upstream.accepted()).toBe(0);
  });

  it('denies a caller without a license: no_license, and the upstream sees no connection', async () => {
    await start({ licenses: () => [] });
    const r = await attempt(frontend, 'SELECT * FROM orders');
    expect(r.secure).toBe(true);
    expect(r.data.length).toBe(0);
    expect(fx.upstream.accepted()).toBe(0);
    expect(fx.telemetry.decisions).toEqual([{ decision: 'deny', reason: 'no_license' }]);
    expect(fx.telemetry.denials).toMatchObject([
      { identity: FRONTEND, reason: 'no_license', origin: '127.0.0.1' },
    ]);
    expect(fx.telemetry.access).toMatchObject([
      { decision: 'deny', reason: 'no_license', identity: FRONTEND, license: null, bytesIn: 0, bytesOut: 0 },
    ]);
  });

  it('gives the most specific reason: expired, not_yet_valid, revoked', async () => {
    await start({ licenses: (t0) => [lic(t0, 'old', -20, -10)] });
    await attempt(frontend);
    publish([lic(fx.t0, 'later', 10, 20)]);
    await attempt(frontend);
    publish([lic(fx.t0, 'gone', 0, 10, { revokedAt: iso(fx.t0) })]);
    await attempt(frontend);
    expect(fx.telemetry.decisions.map((d) => d.reason)).toEqual(['expired', 'not_yet_valid', 'revoked']);
    expect(fx.upstream.accepted()).toBe(0);
  });
});

describe('tcp port: mid-flow enforcement', () => {
  it('closes the flow when its license expires', async () => {
    await start();
    const s = await connect();
    await roundTrip(s, 'before');
    fx.clock.advance(10 * MIN);
    await closed(s);
    expect(fx.telemetry.terminations).toEqual(['expired']);
    expect(await accessRecord()).toMatchObject({ license: 'lic_a', closeReason: 'expired' });
  });

  it('keeps the flow on a second license when the first expires', async () => {
    await start({ licenses: (t0) => [lic(t0, 'first', 0, 10), lic(t0, 'second', 5, 30)] });
    const s = await connect();
    fx.clock.advance(10 * MIN);
    expect(await roundTrip(s, 'still open')).toBe('still open');
    expect(fx.telemetry.terminations).toEqual([]);
    s.end();
    expect((await accessRecord()).license).toBe('second');
  });

  it('closes the flow when a policy swap removes its license', async () => {
    await start();
    const s = await connect();
    await roundTrip(s, 'x');
    publish([]);
    await closed(s);
    expect(fx.telemetry.terminations).toEqual(['license_removed']);
    expect((await accessRecord()).closeReason).toBe('license_removed');
  });

  it('closes the flow when its license is revoked', async () => {
    await start();
    const s = await connect();
    await roundTrip(s, 'x');
    publish([lic(fx.t0, 'lic_a', 0, 10, { revokedAt: iso(fx.clock.now()) })]);
    await closed(s);
    expect(fx.telemetry.terminations).toEqual(['revoked']);
    expect((await accessRecord()).closeReason).toBe('revoked');
  });

  it('closes a flow with no bytes either way for idleTimeout', async () => {
    await start({ port: { idleTimeout: 300 } });
    const s = await connect();
    await roundTrip(s, 'x');
    await closed(s);
    expect(fx.telemetry.terminations).toEqual(['idle_timeout']);
    expect((await accessRecord()).closeReason).toBe('idle_timeout');
  });

  it('counts bytes towards the caller as activity', async () => {
    // The upstream talks every 30 ms for twice the idle timeout; the caller never writes.
    const upstream = await startTcpServer((sock) => {
      const t = setInterval(() => sock.write('.'), 30);
      sock.on('close', () => clearInterval(t));
    });
    await start({ upstream, port: { idleTimeout: 300 } });
    const s = await connect();
    await readUntil(s, 20);
    expect(s.destroyed).toBe(false);
    expect(fx.telemetry.terminations).toEqual([]);
    s.destroy();
  });
});

describe('tcp port: audit mode', () => {
  it('lets a would-be denial through, counted audit_deny, and never cuts the flow', async () => {
    await start({ mode: 'audit', licenses: () => [] });
    const s = await connect();
    expect(await roundTrip(s, 'audited')).toBe('audited');
    expect(fx.telemetry.decisions).toEqual([{ decision: 'audit_deny', reason: 'no_license' }]);
    expect(fx.telemetry.denials).toEqual([]);
    s.end();
    expect(await accessRecord()).toMatchObject({
      decision: 'audit_deny',
      reason: 'no_license',
      license: null,
    });
  });

  it('leaves a flow open past its license expiry', async () => {
    await start({ mode: 'audit' });
    const s = await connect();
    fx.clock.advance(10 * MIN);
    expect(await roundTrip(s, 'still')).toBe('still');
    expect(fx.telemetry.terminations).toEqual([]);
    expect(fx.telemetry.countDecisions('audit_deny', 'expired')).toBe(1);
    s.destroy();
  });
});

describe('tcp port: limits, reload, drain', () => {
  it('refuses connections beyond maxConnections', async () => {
    await start({ port: { maxConnections: 1 } });
    const first = await connect();
    await roundTrip(first, 'a');
    const second = await attempt(frontend);
    expect(second.secure).toBe(false);
    expect(fx.upstream.accepted()).toBe(1);
    expect(await roundTrip(first, 'b')).toBe('b');
    first.destroy();
  });

  it('reloads the server certificate under an open flow', async () => {
    await start();
    const before = await connect();
    await roundTrip(before, 'x');
    writeFileSync(fx.files.cert, serverB.cert);
    writeFileSync(fx.files.key, serverB.key);
    expect(fx.tls.reload()).toEqual({ ok: true, changed: true });
    const after = await connect();
    expect(after.getPeerX509Certificate()!.subject).toContain('rotated');
    expect(before.getPeerX509Certificate()!.subject).toContain('test leaf');
    expect(await roundTrip(before, 'old flow')).toBe('old flow');
    expect(await roundTrip(after, 'new flow')).toBe('new flow');
    before.destroy();
    after.destroy();
  });

  it('drains: stops accepting, lets flows finish, cuts the rest at the deadline', async () => {
    await start();
    const finishing = await connect();
    const lingering = await connect();
    await roundTrip(finishing, 'a');
    await roundTrip(lingering, 'b');
    const drained = fx.listener.drain(fx.clock.now() + 5_000);
    expect(fx.listener.drain(fx.clock.now() + 5_000)).toBe(drained);
    const refused = await outcome(netConnect(fx.port, '127.0.0.1'));
    expect(refused.error?.code).toBe('ECONNREFUSED');
    expect(await roundTrip(lingering, 'still here')).toBe('still here');
    finishing.end();
    await closed(finishing);
    await waitFor(() => fx.listener.activeConnections() === 1);
    fx.clock.advance(5_000);
    await closed(lingering);
    await drained;
    expect(fx.listener.activeConnections()).toBe(0);
    expect(fx.telemetry.terminations).toEqual(['shutdown']);
    expect(fx.telemetry.access.map((a) => a.closeReason).sort()).toEqual(['client_close', 'shutdown']);
  });

  it('drains at once when nothing is open', async () => {
    await start();
    await fx.listener.drain(fx.clock.now() + 60_000);
    expect(fx.listener.activeConnections()).toBe(0);
  });

  it('names the port and address when it cannot listen', async () => {
    await start();
    const taken = fx.port;
    const other = createTcpPort({
      port: { ...fx.listener.port, listen: { host: '127.0.0.1', port: taken } },
      policy: fx.policy,
      clock: fx.clock,
      telemetry: fx.telemetry,
      tls: fx.tls,
      trustDomains: ['example.org'],
      handshakeTimeout: 1_000,
      log: createLogger({ sink: fx.sink }),
    });
    const err = await other.listen().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LISTEN_FAILED' });
    expect((err as Error).message).toMatch(
      new RegExp(
        `^port orders/db: cannot listen on 127\\.0\\.0\\.1:${taken}: EADDRINUSE \\(address already in use`,
      ),
    );
    await other.drain(0);
  });
});
