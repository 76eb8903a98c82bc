/**
 * Outbound listeners with real sockets: a plaintext app on loopback, the listener under test, and a
 * real mTLS target server that requires a client certificate and records who presented it.
 */
import { writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import type { OutboundConfig } from '../../src/config/types.js';
import { PortlicenseError } from '../../src/errors.js';
import { createOutboundListener, type OutboundListener } from '../../src/dataplane/outbound.js';
import { peerIdentity } from '../../src/dataplane/identity.js';
import { TlsMaterialStore } from '../../src/dataplane/tls-context.js';
import { MemorySink } from '../../src/log.js';
import { PolicyStore } from '../../src/policy/store.js';
import { createSidecarMetrics, type SidecarMetrics } from '../../src/telemetry/metrics.js';
import { UsageTracker } from '../../src/telemetry/usage.js';
import {
  closed,
  outcome,
  readUntil,
  roundTrip,
  startDeafPort,
  startTcpServer,
  tcpConnect,
  waitFor,
  type TestServer,
} from '../helpers/net.js';
import { createTestCa, type PemPair, type TestCa } from '../helpers/pki.js';
import { loadTlsFixture } from '../helpers/tls.js';
import { removeDir, tempDir } from '../helpers/tmp.js';
import { parseExposition } from '../telemetry/helpers.js';

const TD = 'example.org';
const ORDERS = `spiffe://${TD}/ns/default/sa/orders`;
const FRONTEND = `spiffe://${TD}/ns/default/sa/frontend`;
const FRONTEND_V2 = `spiffe://${TD}/ns/default/sa/frontend-v2`;
const PAYMENTS = `spiffe://${TD}/ns/default/sa/payments`;
const DAY = 86_400_000;

let ca: TestCa;
let otherCa: TestCa;
let orders: PemPair;
let frontend: PemPair;
let frontendV2: PemPair;

beforeAll(() => {
  ca = createTestCa();
  otherCa = createTestCa('another CA');
  orders = ca.svid(ORDERS);
  frontend = ca.svid(FRONTEND);
  frontendV2 = ca.svid(FRONTEND_V2);
});

/** A TLS server requiring a client certificate of `ca`; records each client's identity. */
interface Target {
  readonly port: number;
  /** SPIFFE ID of each client that completed the handshake, in order. */
  readonly clients: string[];
  /** Application bytes received from all clients. */
  received(): number;
  close(): Promise<void>;
}

async function startTarget(
  cert: PemPair,
  handler: (s: TLSSocket) => void = (s) => s.pipe(s),
): Promise<Target> {
  const clients: string[] = [];
  const sockets = new Set<TLSSocket>();
  let received = 0;
  const server: TlsServer = createTlsServer(
    {
      ca: ca.cert,
      cert: cert.cert,
      key: cert.key,
      requestCert: true,
      rejectUnauthorized: true,
      allowHalfOpen: true,
    },
    (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
      s.on('data', (d: Buffer) => (received += d.length));
      clients.push(peerIdentity(s, [TD]).identity ?? '?');
      handler(s);
    },
  );
  // Node leaves a socket whose handshake failed open; raw sockets are tracked so close() never waits.
  server.on('tlsClientError', (_err, s) => s.destroy());
  const raw = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    raw.add(s);
    s.on('close', () => raw.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    clients,
    received: () => received,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        for (const s of raw) s.destroy();
        server.close(() => r());
      }),
  };
}

interface Fixture {
  listener: OutboundListener;
  port: number;
  clock: ManualClock;
  metrics: SidecarMetrics;
  sink: MemorySink;
  tls: TlsMaterialStore;
  files: { ca: string; cert: string; key: string };
}

let dir: string;
const cleanups: Array<() => unknown> = [];

beforeEach(() => {
  dir = tempDir('pl-outbound-');
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  removeDir(dir);
});

async function start(
  target: { port: number; host?: string },
  serverId: string,
  opts: Partial<Pick<OutboundConfig, 'connectTimeout' | 'idleTimeout' | 'maxConnections'>> & {
    handshakeTimeout?: number;
    listenPort?: number;
  } = {},
): Promise<Fixture> {
  const { files, sink, log, tls } = loadTlsFixture(dir, ca.cert, frontend);
  const clock = new ManualClock(Date.now());
  const policy = new PolicyStore();
  const metrics = createSidecarMetrics({
    policy,
    usage: new UsageTracker({ policy }),
    clock,
    defaultMetrics: false,
  });
  const outbound: OutboundConfig = {
    name: 'orders',
    listen: { host: '127.0.0.1', port: opts.listenPort ?? 0 },
    target: { host: target.host ?? '127.0.0.1', port: target.port },
    serverId,
    allowNonLoopback: false,
    connectTimeout: opts.connectTimeout ?? 5_000,
    idleTimeout: opts.idleTimeout ?? 5 * 60_000,
    maxConnections: opts.maxConnections ?? 10_000,
  };
  const listener = createOutboundListener({
    outbound,
    tls,
    clock,
    telemetry: metrics.outbound('orders'),
    log,
    handshakeTimeout: opts.handshakeTimeout ?? 5_000,
  });
  cleanups.push(() => tls.close());
  const bound = await listener.listen();
  cleanups.push(() => listener.drain(0));
  return { listener, port: bound.port, clock, metrics, sink, tls, files };
}

/** The local app: a plaintext TCP client of the listener, destroyed after the test. */
async function app(port: number): Promise<Socket> {
  const s = await tcpConnect(port);
  cleanups.push(() => s.destroy());
  return s;
}

async function counted(fx: Fixture): Promise<Record<string, number>> {
  const samples = parseExposition(await fx.metrics.registry.metrics());
  const out: Record<string, number> = {};
  for (const [k, v] of samples) {
    const m = /^portlicense_outbound_connections_total\{name="orders",result="(\w+)"\}$/.exec(k);
    if (m && v > 0) out[m[1]!] = v;
  }
  return out;
}

async function track<T extends { close(): Promise<void> }>(t: Promise<T>): Promise<T> {
  const v = await t;
  cleanups.push(() => v.close());
  return v;
}

describe('outbound: a verified server', () => {
  it('splices the app to the server both ways, presenting the sidecar certificate, with half-close', async () => {
    // Reads until the app has finished sending, then answers and closes: needs half-close both ways.
    const target = await track(
      startTarget(orders, (s) => {
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('end', () => s.end(`got:${Buffer.concat(chunks).toString()}`));
      }),
    );
    const fx = await start(target, ORDERS);
    const a = await app(fx.port);
    const reply = outcome(a);
    a.write('ping ');
    a.end('pong');
    const o = await reply;
    expect(o.error).toBeNull();
    expect(o.data.toString()).toBe('got:ping pong');
    expect(target.clients).toEqual([FRONTEND]);
    expect(await counted(fx)).toEqual({ ok: 1 });
    await waitFor(() => fx.listener.activeConnections() === 0, { what: 'connection released' });
    const s = fx.listener.stats();
    expect(s.results.ok).toBe(1);
    expect(s.lastError).toBeNull();
  });

  it('lets the server finish sending first while the app keeps sending (half-close the other way)', async () => {
    const got: Buffer[] = [];
    const target = await track(
      startTarget(orders, (s) => {
        s.end('bye');
        s.on('data', (c: Buffer) => got.push(c));
      }),
    );
    const fx = await start(target, ORDERS);
    const a = netConnect({ host: '127.0.0.1', port: fx.port, allowHalfOpen: true });
    cleanups.push(() => a.destroy());
    const ended = new Promise<void>((r) => a.once('end', r));
    expect((await readUntil(a, 'bye')).toString()).toBe('bye');
    await ended;
    a.end('late words');
    await waitFor(() => Buffer.concat(got).toString() === 'late words', {
      what: 'bytes after the server half-closed',
    });
    await closed(a);
  });

  it('keeps a long conversation going and accepts a server under a /* serverId', async () => {
    const target = await track(startTarget(orders));
    const fx = await start(target, `spiffe://${TD}/ns/default/*`);
    const a = await app(fx.port);
    for (let i = 0; i < 5; i++) expect(await roundTrip(a, `line ${i}\n`)).toBe(`line ${i}\n`);
    const big = 'x'.repeat(1 << 20);
    expect((await roundTrip(a, big)).length).toBe(big.length);
    expect(fx.listener.activeConnections()).toBe(1);
    a.end();
    await closed(a);
    expect(await counted(fx)).toEqual({ ok: 1 });
  });

  it('closes a connection with no bytes either way for idleTimeout', async () => {
    const target = await track(startTarget(orders));
    const fx = await start(target, ORDERS, { idleTimeout: 200 });
    const a = await app(fx.port);
    expect(await roundTrip(a, 'hi')).toBe('hi');
    const t0 = Date.now();
    await closed(a, 3_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    await waitFor(() => fx.listener.activeConnections() === 0, { what: 'connection released' });
    expect(fx.sink.lines.find((l) => l.msg === 'outbound connection closed')).toMatchObject({
      closeReason: 'idle_timeout',
    });
  });
});

describe('outbound: a server that fails verification is refused', () => {
  /** Connect, send a secret at once, and return how the app's connection ended. */
  async function refused(fx: Fixture) {
    const a = await app(fx.port);
    a.write('secret');
    return outcome(a);
  }

  it('refuses a server with another identity: reset, nothing sent, counted, logged with what it presented', async () => {
    const target = await track(startTarget(orders));
    const fx = await start(target, PAYMENTS);
    const o = await refused(fx);
    expect(o.error?.code).toBe('ECONNRESET');
    expect(o.data.length).toBe(0);
    expect(target.received()).toBe(0);
    expect(await counted(fx)).toEqual({ server_id_mismatch: 1 });
    const s = fx.listener.stats();
    expect(s.lastError).toMatchObject({
      result: 'server_id_mismatch',
      detail: `the server is ${ORDERS}, expected ${PAYMENTS}`,
    });
    expect(s.lastError!.presented!.uris).toEqual([ORDERS]);
    const line = fx.sink.lines.find((l) => l.result === 'server_id_mismatch');
    expect(line).toMatchObject({
      level: 'warn',
      target: `127.0.0.1:${target.port}`,
      serverId: PAYMENTS,
      presentedUris: [ORDERS],
    });
    expect(line!.presentedFingerprint).toMatch(/^[0-9A-F:]+$/);
  });

  it('refuses a server whose certificate has no SPIFFE ID, or one of a /* prefix it is not under', async () => {
    const dnsOnly = await track(startTarget(ca.issue({ dns: ['localhost'], commonName: 'dns only' })));
    const fx = await start(dnsOnly, ORDERS);
    expect((await refused(fx)).error?.code).toBe('ECONNRESET');
    expect(fx.listener.stats().lastError?.detail).toBe('the server certificate has no spiffe:// URI SAN');

    const target = await track(startTarget(orders));
    const fx2 = await start(target, `spiffe://${TD}/ns/payments/*`);
    expect((await refused(fx2)).error?.code).toBe('ECONNRESET');
    expect(await counted(fx2)).toEqual({ server_id_mismatch: 1 });
  });

  it('refuses a server whose chain does not verify against tls.ca: another CA, or expired', async () => {
    const foreign = await track(startTarget(otherCa.svid(ORDERS)));
    const fx = await start(foreign, ORDERS);
    const o = await refused(fx);
    expect(o.error?.code).toBe('ECONNRESET');
    expect(foreign.received()).toBe(0);
    expect(await counted(fx)).toEqual({ untrusted_server: 1 });
    expect(fx.listener.stats().lastError?.detail).toMatch(
      /does not verify against tls\.ca: UNABLE_TO_VERIFY_LEAF_SIGNATURE/,
    );

    const past = Date.now() - 2 * DAY;
    const expired = await track(
      startTarget(ca.svid(ORDERS, { notBefore: new Date(past - DAY), notAfter: new Date(past) })),
    );
    const fx2 = await start(expired, ORDERS);
    await refused(fx2);
    expect(fx2.listener.stats().lastError).toMatchObject({ result: 'untrusted_server' });
    expect(fx2.listener.stats().lastError?.detail).toMatch(/CERT_HAS_EXPIRED/);
  });
});

describe('outbound: a server that refuses the sidecar', () => {
  it('closes the app when the server refuses the client certificate after the handshake', async () => {
    // The target trusts another CA only. In TLS 1.3 the client is done before the server judges
    // its certificate, so the dial counts as ok; the refusal is the server's to count.
    const picky = createTlsServer({
      ca: otherCa.cert,
      cert: orders.cert,
      key: orders.key,
      requestCert: true,
      rejectUnauthorized: true,
    });
    picky.on('tlsClientError', (_e, s) => s.destroy());
    await new Promise<void>((r) => picky.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => picky.close(() => r())));
    const fx = await start({ port: (picky.address() as { port: number }).port }, ORDERS);
    const a = await app(fx.port);
    a.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    const o = await outcome(a);
    expect(o.data.length).toBe(0);
    await waitFor(() => fx.listener.activeConnections() === 0, { what: 'connection released' });
    expect(await counted(fx)).toEqual({ ok: 1 });
  });
});

describe('outbound: a target that cannot be reached', () => {
  it('counts a target that is down as dial_error and resets the app', async () => {
    const gone = await startTcpServer((s) => s.resume(), { allowHalfOpen: false });
    await gone.close();
    const fx = await start({ port: gone.port }, ORDERS);
    const a = await app(fx.port);
    const o = await outcome(a);
    expect(o.error?.code).toBe('ECONNRESET');
    expect(await counted(fx)).toEqual({ dial_error: 1 });
    expect(fx.listener.stats().lastError).toMatchObject({ result: 'dial_error', detail: 'ECONNREFUSED' });
    expect(
      fx.sink.lines.some((l) => l.msg === 'cannot reach the outbound target; closing the app connection'),
    ).toBe(true);
  });

  it('counts a target whose connect hangs past connectTimeout as dial_error, and says so', async () => {
    const deaf = await startDeafPort();
    cleanups.push(() => deaf.close());
    const fx = await start({ port: deaf.port }, ORDERS, { connectTimeout: 300 });
    const started = Date.now();
    const o = await outcome(await app(fx.port));
    expect(o.error?.code).toBe('ECONNRESET');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(await counted(fx)).toEqual({ dial_error: 1 });
    expect(fx.listener.stats().lastError).toMatchObject({
      result: 'dial_error',
      detail: 'connect timeout after 300 ms',
    });
  });

  it('counts a target that does not speak TLS, or never finishes the handshake, as tls_error', async () => {
    const plain: TestServer = await track(startTcpServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n')));
    const fx = await start(plain, ORDERS);
    expect((await outcome(await app(fx.port))).error?.code).toBe('ECONNRESET');
    expect(await counted(fx)).toEqual({ tls_error: 1 });

    const silent: TestServer = await track(startTcpServer((s) => s.resume(), { allowHalfOpen: false }));
    const fx2 = await start(silent, ORDERS, { handshakeTimeout: 200 });
    expect((await outcome(await app(fx2.port))).error?.code).toBe('ECONNRESET');
    expect(fx2.listener.stats().lastError).toMatchObject({
      result: 'tls_error',
      detail: 'TLS handshake timeout',
    });
  });

  it('abandons the dial when the app resets during it, counting nothing', async () => {
    // (A FIN is not leaving: an app may half-close before the handshake is done and still await the reply.)
    const silent: TestServer = await track(startTcpServer((s) => s.resume(), { allowHalfOpen: false }));
    const fx = await start(silent, ORDERS);
    const a = await app(fx.port);
    await waitFor(() => silent.accepted() === 1, { what: 'dial reached the target' });
    a.resetAndDestroy();
    await waitFor(() => fx.listener.activeConnections() === 0, { what: 'connection released' });
    await waitFor(() => silent.sockets[0]!.destroyed, { what: 'dial abandoned' });
    expect(await counted(fx)).toEqual({});
  });
});

describe('outbound: lifecycle', () => {
  it('applies a certificate reload to the next connection while an open one continues', async () => {
    const target = await track(startTarget(orders));
    const fx = await start(target, ORDERS);
    const first = await app(fx.port);
    expect(await roundTrip(first, 'one')).toBe('one');

    writeFileSync(fx.files.cert, frontendV2.cert);
    writeFileSync(fx.files.key, frontendV2.key);
    expect(fx.tls.reload()).toEqual({ ok: true, changed: true });

    const second = await app(fx.port);
    expect(await roundTrip(second, 'two')).toBe('two');
    expect(await roundTrip(first, 'still here')).toBe('still here');
    expect(target.clients).toEqual([FRONTEND, FRONTEND_V2]);

    // A CA reload applies too: a CA that does not sign the server makes the next dial untrusted.
    writeFileSync(fx.files.ca, otherCa.cert);
    fx.tls.reload();
    const third = await app(fx.port);
    await outcome(third);
    expect(await counted(fx)).toEqual({ ok: 2, untrusted_server: 1 });
    expect(await roundTrip(first, 'and still')).toBe('and still');
  });

  it('drains: stops accepting, lets an open connection finish until the deadline, then cuts it', async () => {
    const target = await track(startTarget(orders));
    const fx = await start(target, ORDERS);
    const a = await app(fx.port);
    expect(await roundTrip(a, 'before')).toBe('before');
    const drained = fx.listener.drain(fx.clock.now() + 1_000);
    await expect(app(fx.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(await roundTrip(a, 'during')).toBe('during');
    fx.clock.advance(1_000);
    await closed(a);
    await drained;
    expect(fx.listener.activeConnections()).toBe(0);
    expect(fx.sink.lines.find((l) => l.msg === 'outbound connection closed')).toMatchObject({
      closeReason: 'shutdown',
    });
    expect(fx.listener.drain(0)).toBe(drained);
  });

  it('fails to listen with LISTEN_FAILED naming the outbound entry', async () => {
    const target = await track(startTarget(orders));
    const first = await start(target, ORDERS);
    const err = await start(target, ORDERS, { listenPort: first.port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortlicenseError);
    expect((err as PortlicenseError).code).toBe('LISTEN_FAILED');
    expect((err as Error).message).toMatch(
      new RegExp(`^outbound orders: cannot listen on 127\\.0\\.0\\.1:${first.port}: EADDRINUSE`),
    );
  });

  it('refuses connections beyond maxConnections', async () => {
    const target = await track(startTarget(orders));
    const fx = await start(target, ORDERS, { maxConnections: 1 });
    const a = await app(fx.port);
    expect(await roundTrip(a, 'one')).toBe('one');
    const b = await app(fx.port);
    await closed(b);
    expect(await roundTrip(a, 'still one')).toBe('still one');
    expect(
      fx.sink.lines.some((l) => l.msg === 'outbound connection refused: listener at maxConnections'),
    ).toBe(true);
    expect(fx.listener.activeConnections()).toBe(1);
  });
});
