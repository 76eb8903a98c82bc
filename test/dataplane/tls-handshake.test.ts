import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Server } from 'node:net';
import { writeFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import type { PortConfig } from '../../src/config/types.js';
import {
  classifyAuthorizationError,
  createTlsListener,
  listenOn,
  originOf,
  SERVER_CIPHERS,
} from '../../src/dataplane/handshake.js';
import { TlsMaterialStore } from '../../src/dataplane/tls-context.js';
import type { Peer, PortDeps } from '../../src/dataplane/types.js';
import { createLogger, MemorySink } from '../../src/log.js';
import { PolicyStore } from '../../src/policy/store.js';
import { closed, outcome, roundTrip, tlsAttempt, tlsConnect, waitFor } from '../helpers/net.js';
import { createTestCa, opensslLeaf, type PemPair, type TestCa } from '../helpers/pki.js';
import { loadTlsFixture } from '../helpers/tls.js';
import { removeDir, tempDir } from '../helpers/tmp.js';
import { dbPortConfig } from '../helpers/policy.js';
import { RecordingTelemetry } from '../helpers/telemetry.js';

const DAY = 86_400_000;
let ca: TestCa;
let otherCa: TestCa;
let serverA: PemPair;
let serverB: PemPair;
let client: PemPair;
let foreign: PemPair;
let expired: PemPair;
let notYetValid: PemPair;

beforeAll(() => {
  ca = createTestCa();
  otherCa = createTestCa('someone else');
  serverA = ca.svid('spiffe://example.org/ns/default/sa/orders');
  serverB = ca.svid('spiffe://example.org/ns/default/sa/orders', { commonName: 'rotated' });
  client = ca.svid('spiffe://example.org/ns/default/sa/frontend');
  foreign = otherCa.svid('spiffe://example.org/x');
  expired = ca.svid('spiffe://example.org/x', {
    notBefore: new Date(Date.now() - 2 * DAY),
    notAfter: new Date(Date.now() - DAY),
  });
  notYetValid = ca.svid('spiffe://example.org/x', { notBefore: new Date(Date.now() + DAY) });
});

interface Fixture {
  port: number;
  clock: ManualClock;
  server: Server;
  telemetry: RecordingTelemetry;
  sink: MemorySink;
  tls: TlsMaterialStore;
  files: { ca: string; cert: string; key: string };
  accepted: Array<{ socket: TLSSocket; peer: Peer }>;
}

let dir: string;
let fx: Fixture | undefined;
const cleanups: Array<() => unknown> = [];

beforeEach(() => {
  dir = tempDir('pl-hs-');
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  fx = undefined;
  removeDir(dir);
});

/** A TLS listener whose accepted sockets greet with the peer identity and then echo. */
async function start(
  opts: { handshakeTimeout?: number; port?: Partial<PortConfig>; ticketKeys?: Buffer } = {},
): Promise<Fixture> {
  const { files, sink, log, tls } = loadTlsFixture(dir, ca.cert, serverA);
  const telemetry = new RecordingTelemetry();
  const port = dbPortConfig(opts.port);
  const clock = new ManualClock(Date.now());
  const deps: PortDeps = {
    port,
    policy: new PolicyStore(),
    clock,
    telemetry,
    tls,
    trustDomains: ['example.org'],
    handshakeTimeout: opts.handshakeTimeout ?? 5_000,
    ...(opts.ticketKeys ? { ticketKeys: opts.ticketKeys } : {}),
    log,
  };
  const accepted: Fixture['accepted'] = [];
  const server = createTlsListener({
    deps,
    onConnection(socket, peer) {
      accepted.push({ socket, peer });
      socket.on('error', () => {});
      socket.write(`hello ${peer.identity ?? 'nobody'}\n`);
      socket.pipe(socket);
    },
  });
  const bound = await listenOn(server, port);
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const a of accepted) a.socket.destroy();
        server.close(() => r());
      }),
    () => tls.close(),
  );
  fx = { port: bound.port, clock, server, telemetry, sink, tls, files, accepted };
  return fx;
}

const connectAs = (pair: PemPair | undefined, extra: Record<string, unknown> = {}) =>
  tlsConnect({ port: fx!.port, ca: ca.cert, ...(pair ? { cert: pair.cert, key: pair.key } : {}), ...extra });

const attemptAs = (pair: PemPair | undefined, extra: Record<string, unknown> = {}) =>
  tlsAttempt({
    port: fx!.port,
    ca: ca.cert,
    ...(pair ? { cert: pair.cert, key: pair.key } : {}),
    send: 'secret application data',
    ...extra,
  });

describe('createTlsListener: accepted callers', () => {
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`hands over a verified ${version} caller with its identity and origin`, async () => {
      await start();
      const s = await connectAs(client, { maxVersion: version });
      expect(s.getProtocol()).toBe(version);
      expect(await roundTrip(s, 'ping', 'ping')).toContain(
        'hello spiffe://example.org/ns/default/sa/frontend',
      );
      expect(fx!.accepted[0]!.peer).toEqual({
        identity: 'spiffe://example.org/ns/default/sa/frontend',
        identityError: null,
        origin: '127.0.0.1',
      });
      expect(fx!.telemetry.handshakeErrors).toEqual([]);
      s.destroy();
    });
  }

  for (const keyType of ['ec', 'rsa'] as const) {
    it(`accepts an openssl-made ${keyType.toUpperCase()} client certificate`, async () => {
      await start();
      const leaf = opensslLeaf(ca, { spiffeId: `spiffe://example.org/openssl/${keyType}`, keyType });
      const s = await connectAs(leaf);
      expect(await roundTrip(s, 'x', 'x')).toContain(`hello spiffe://example.org/openssl/${keyType}`);
      s.destroy();
    });
  }

  it('picks TLS 1.3 suites in its own order, AES-128-GCM first, and still takes what a caller limits itself to', async () => {
    await start();
    const order = 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256';
    const s = await connectAs(client, { ciphers: order });
    expect(s.getCipher().name).toBe('TLS_AES_128_GCM_SHA256');
    s.destroy();
    for (const only of ['TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']) {
      const o = await connectAs(client, { ciphers: only });
      expect(o.getCipher().name).toBe(only);
      o.destroy();
    }
    // TLS 1.2 keeps node's defaults (ECDHE with AES-GCM first).
    const v12 = await connectAs(client, { maxVersion: 'TLSv1.2' });
    expect(v12.getCipher().name).toMatch(/^ECDHE-(ECDSA|RSA)-AES128-GCM-SHA256$/);
    v12.destroy();
    expect(SERVER_CIPHERS.split(':').slice(0, 3)).toEqual([
      'TLS_AES_128_GCM_SHA256',
      'TLS_AES_256_GCM_SHA384',
      'TLS_CHACHA20_POLY1305_SHA256',
    ]);
  });

  it('hands over a verified caller without a usable identity as identity null, and logs why', async () => {
    await start();
    const s = await connectAs(ca.svid('spiffe://example.org/a', { uris: ['spiffe://example.org/b'] }));
    expect(await roundTrip(s, 'x', 'x')).toContain('hello nobody');
    const peer = fx!.accepted[0]!.peer;
    expect(peer.identity).toBeNull();
    expect(peer.identityError).toContain('more than one spiffe:// URI SAN');
    expect(fx!.sink.lines.some((l) => l.msg === 'client certificate has no usable identity')).toBe(true);
    s.destroy();
  });
});

describe('createTlsListener: refused handshakes', () => {
  const cases: Array<[string, () => PemPair | undefined, string]> = [
    ['no client certificate', () => undefined, 'no_client_cert'],
    ['a certificate of another CA', () => foreign, 'untrusted_cert'],
    ['an expired certificate', () => expired, 'expired_cert'],
    ['a certificate that is not yet valid', () => notYetValid, 'expired_cert'],
  ];
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    for (const [what, pair, reason] of cases) {
      it(`${version}: refuses ${what} as ${reason}, before reading a byte of it`, async () => {
        await start();
        const r = await attemptAs(pair(), { maxVersion: version });
        expect(r.data.length).toBe(0);
        expect(fx!.accepted).toHaveLength(0);
        await waitFor(() => fx!.telemetry.handshakeErrors.length === 1);
        expect(fx!.telemetry.handshakeErrors).toEqual([reason]);
        const line = fx!.sink.lines.find((l) => l.msg === 'TLS handshake refused');
        expect(line).toMatchObject({ level: 'warn', reason, origin: '127.0.0.1' });
      });
    }
  }

  it('closes a caller that says nothing within the handshake deadline', async () => {
    await start({ handshakeTimeout: 150 });
    const s = netConnect(fx!.port, '127.0.0.1');
    const o = await outcome(s);
    expect(o.data.length).toBe(0);
    expect(fx!.telemetry.handshakeErrors).toEqual(['handshake_timeout']);
  });

  it('does not let a trickling caller extend the deadline', async () => {
    await start({ handshakeTimeout: 200 });
    const s = netConnect(fx!.port, '127.0.0.1');
    const t0 = Date.now();
    // A ClientHello header, then one byte every 40 ms for far longer than the deadline.
    const bytes = [0x16, 0x03, 0x01, 0x01, 0x00, ...new Array<number>(100).fill(0)];
    const timer = setInterval(() => {
      const b = bytes.shift();
      if (b !== undefined && !s.destroyed) s.write(Buffer.from([b]));
    }, 40);
    await outcome(s);
    clearInterval(timer);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(fx!.telemetry.handshakeErrors).toEqual(['handshake_timeout']);
  });

  it('counts a caller that does not speak TLS as tls_error', async () => {
    await start();
    const s = netConnect(fx!.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await outcome(s);
    await waitFor(() => fx!.telemetry.handshakeErrors.length === 1);
    expect(fx!.telemetry.handshakeErrors).toEqual(['tls_error']);
    // Protocol noise from outside is a debug line, not a warning.
    expect(fx!.sink.lines.find((l) => l.msg === 'TLS handshake refused')?.level).toBe('debug');
  });

  it('refuses TLS 1.1 with a protocol alert, counted as tls_error', async () => {
    await start();
    const r = await attemptAs(client, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1' });
    expect(r.secure).toBe(false);
    expect(r.error?.code).toMatch(/ALERT_PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS/);
    await waitFor(() => fx!.telemetry.handshakeErrors.length === 1);
    expect(fx!.telemetry.handshakeErrors).toEqual(['tls_error']);
  });

  it('counts every refusal but logs a burst of them once', async () => {
    await start();
    for (let i = 0; i < 5; i++) await attemptAs(undefined);
    await waitFor(() => fx!.telemetry.handshakeErrors.length === 5);
    expect(fx!.sink.lines.filter((l) => l.msg === 'TLS handshake refused')).toHaveLength(1);
  });

  it('keeps serving other callers while refusing one', async () => {
    await start();
    const good = await connectAs(client);
    await attemptAs(foreign);
    expect(await roundTrip(good, 'still here', 'still here')).toContain('still here');
    good.destroy();
  });
});

describe('createTlsListener: resumed sessions', () => {
  /** Connect, let the server greet, and keep the session ticket. */
  async function firstSession(pair: PemPair, version: 'TLSv1.2' | 'TLSv1.3'): Promise<Buffer> {
    const s = await connectAs(pair, { maxVersion: version });
    // TLS 1.2 has its session at the end of the handshake; TLS 1.3 tickets come after it.
    const ticket =
      version === 'TLSv1.2' ? s.getSession()! : await new Promise<Buffer>((r) => s.once('session', r));
    s.destroy();
    return ticket;
  }

  it('resumes on another listener (another worker) only when both have the same ticket keys', async () => {
    const keys = randomBytes(48);
    const resumedOn = async (port: number, session: Buffer): Promise<boolean> => {
      const s = await tlsConnect({ port, ca: ca.cert, cert: client.cert, key: client.key, session });
      const reused = s.isSessionReused();
      s.destroy();
      return reused;
    };
    const a = await start({ ticketKeys: keys });
    const session = await firstSession(client, 'TLSv1.3');
    const b = await start({ ticketKeys: keys });
    const stranger = await start();
    expect(await resumedOn(a.port, session)).toBe(true);
    expect(await resumedOn(b.port, session)).toBe(true);
    expect(await resumedOn(stranger.port, session)).toBe(false);
  });

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`${version}: a session made before the CA bundle changed does not resume after it, shared ticket keys or not`, async () => {
      // With workers, every listener shares ticket keys that a reload keeps; a resumed session
      // skips chain verification, so only the session's context can tell the CA changed.
      await start({ ticketKeys: randomBytes(48) });
      const session = await firstSession(client, version);
      const again = await connectAs(client, { maxVersion: version, session });
      expect(again.isSessionReused()).toBe(true);
      again.destroy();

      // The CA that issued `client` is rotated out; the server keeps its own certificate.
      writeFileSync(fx!.files.ca, otherCa.cert);
      expect(fx!.tls.reload()).toEqual({ ok: true, changed: true });
      // (The first connection, closed as soon as its ticket came, may count a tls_error too.)
      const errors = fx!.telemetry.handshakeErrors.length;
      const accepted = fx!.accepted.length;
      const late = await attemptAs(client, { maxVersion: version, session });
      expect(late.data.length).toBe(0);
      await waitFor(() => fx!.telemetry.handshakeErrors.slice(errors).includes('untrusted_cert'));
      expect(fx!.accepted).toHaveLength(accepted);
    });

    it(`${version}: re-checks the validity of a resumed session's certificate`, async () => {
      await start();
      const shortLived = ca.svid('spiffe://example.org/short', {
        notAfter: new Date(Date.now() + 3_600_000),
      });
      const session = await firstSession(shortLived, version);
      const resumed = await connectAs(shortLived, { maxVersion: version, session });
      expect(resumed.isSessionReused()).toBe(true);
      expect(await roundTrip(resumed, 'y', 'y')).toContain('hello spiffe://example.org/short');
      resumed.destroy();

      fx!.clock.advance(2 * 3_600_000);
      const late = await attemptAs(shortLived, { maxVersion: version, session });
      expect(late.data.length).toBe(0);
      await waitFor(() => fx!.telemetry.handshakeErrors.length === 1);
      expect(fx!.telemetry.handshakeErrors).toEqual(['expired_cert']);
    });
  }
});

describe('createTlsListener: limits and reload', () => {
  it('refuses connections beyond maxConnections and logs it', async () => {
    await start({ port: { maxConnections: 1 } });
    const first = await connectAs(client);
    const second = await attemptAs(client);
    expect(second.secure).toBe(false);
    expect(fx!.sink.lines.some((l) => String(l.msg).includes('maxConnections'))).toBe(true);
    expect(await roundTrip(first, 'a', 'a')).toContain('a');
    first.destroy();
    await closed(first);
    await waitFor(() => new Promise<boolean>((r) => fx!.server.getConnections((_e, n) => r(n === 0))));
    const third = await connectAs(client);
    expect(await roundTrip(third, 'b', 'b')).toContain('b');
    third.destroy();
  });

  it('serves new connections with reloaded material while open ones continue', async () => {
    await start();
    const before = await connectAs(client);
    expect(before.getPeerX509Certificate()!.subject).toContain('test leaf');
    writeFileSync(fx!.files.cert, serverB.cert);
    writeFileSync(fx!.files.key, serverB.key);
    expect(fx!.tls.reload()).toEqual({ ok: true, changed: true });
    const after = await connectAs(client);
    expect(after.getPeerX509Certificate()!.subject).toContain('rotated');
    expect(await roundTrip(before, 'old', 'old')).toContain('old');
    expect(await roundTrip(after, 'new', 'new')).toContain('new');
    before.destroy();
    after.destroy();
  });

  it('keeps serving the old certificate when a reload fails', async () => {
    await start();
    writeFileSync(fx!.files.cert, 'broken');
    expect(fx!.tls.reload().ok).toBe(false);
    const s = await connectAs(client);
    expect(s.getPeerX509Certificate()!.subject).toContain('test leaf');
    s.destroy();
  });

  it('names the port and address when it cannot listen', async () => {
    const f = await start();
    const err = await listenOn(
      createTlsListener({ deps: { ...deps(f) }, onConnection: () => {} }),
      dbPortConfig({ listen: { host: '127.0.0.1', port: f.port } }),
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LISTEN_FAILED' });
    expect((err as Error).message).toBe(
      `port orders/db: cannot listen on 127.0.0.1:${f.port}: EADDRINUSE (address already in use: another process, or another port of this config, is bound to it)`,
    );
  });
});

describe('helpers', () => {
  it('classifies verification errors', () => {
    expect(classifyAuthorizationError('CERT_HAS_EXPIRED')).toBe('expired_cert');
    expect(classifyAuthorizationError('CERT_NOT_YET_VALID')).toBe('expired_cert');
    expect(classifyAuthorizationError('UNABLE_TO_VERIFY_LEAF_SIGNATURE')).toBe('untrusted_cert');
    expect(classifyAuthorizationError('DEPTH_ZERO_SELF_SIGNED_CERT')).toBe('untrusted_cert');
    expect(classifyAuthorizationError(undefined)).toBe('untrusted_cert');
  });

  it('reports IPv4 callers of a dual-stack listener as IPv4', () => {
    expect(originOf('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(originOf('::1')).toBe('::1');
    expect(originOf(undefined)).toBe('unknown');
  });
});

function deps(f: Fixture): PortDeps {
  return {
    port: dbPortConfig(),
    policy: new PolicyStore(),
    clock: new ManualClock(Date.now()),
    telemetry: f.telemetry,
    tls: f.tls,
    trustDomains: ['example.org'],
    handshakeTimeout: 1_000,
    log: createLogger({ sink: f.sink }),
  };
}
