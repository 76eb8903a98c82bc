/**
 * HTTP test helpers: an upstream server that records what reached it (requests, connections,
 * upgrades), a raw TLS client for byte-exact requests (smuggling, oversize heads, dribbling), and
 * an undici client that presents a client certificate.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls, { type TLSSocket } from 'node:tls';
import { Client } from 'undici';
import { ManualClock } from '../../src/clock.js';
import type { HostPort, PortConfig } from '../../src/config/types.js';
import { createHttpPort } from '../../src/dataplane/http-proxy.js';
import { TlsMaterialStore } from '../../src/dataplane/tls-context.js';
import type { PortListener } from '../../src/dataplane/types.js';
import { createLogger, MemorySink, type Logger } from '../../src/log.js';
import { buildSnapshot } from '../../src/policy/snapshot.js';
import { PolicyStore } from '../../src/policy/store.js';
import type { LicenseWire } from '../../src/policy/types.js';
import { RecordingTelemetry } from './http-telemetry.js';
import { createTestCa, type PemPair, type TestCa } from './pki.js';

export interface RecordedRequest {
  method: string;
  url: string;
  rawHeaders: string[];
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface TestUpstream {
  readonly address: HostPort;
  readonly server: http.Server;
  /** Every request head that arrived (recorded before the handler runs; body filled by the default handler). */
  readonly requests: RecordedRequest[];
  /** Upgrade requests that arrived. */
  readonly upgrades: RecordedRequest[];
  /** TCP connections accepted so far. */
  connections: number;
  /** Bytes received on all connections so far. */
  bytesReceived(): number;
  /** Swap the request handler. */
  handle(h: UpstreamHandler): void;
  close(): Promise<void>;
}

/** Default handler: read the whole body, answer 200 with JSON `{method,url,headers,bodyLength}`. */
export const echoJson: UpstreamHandler = (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const rec = (req as IncomingMessage & { recorded?: RecordedRequest }).recorded;
    if (rec) rec.body = body;
    const out = JSON.stringify({
      method: req.method,
      url: req.url,
      headers: req.headers,
      bodyLength: body.length,
    });
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' });
    res.end(out);
  });
};

/**
 * Start a recording upstream on 127.0.0.1:0. Upgrade requests get `101` and then an echo of
 * everything the client sends (`upgradeEcho`), unless `upgrade` is given.
 */
export async function startUpstream(
  handler: UpstreamHandler = echoJson,
  opts: { upgrade?: (req: IncomingMessage, socket: Socket, head: Buffer) => void } = {},
): Promise<TestUpstream> {
  let current = handler;
  const requests: RecordedRequest[] = [];
  const upgrades: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let closedBytes = 0;
  const record = (req: IncomingMessage): RecordedRequest => ({
    method: req.method ?? '',
    url: req.url ?? '',
    rawHeaders: req.rawHeaders,
    headers: req.headers,
    body: Buffer.alloc(0),
  });
  const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    const rec = record(req);
    requests.push(rec);
    (req as IncomingMessage & { recorded?: RecordedRequest }).recorded = rec;
    current(req, res);
  });
  const up: TestUpstream = {
    address: { host: '127.0.0.1', port: 0 },
    server,
    requests,
    upgrades,
    connections: 0,
    bytesReceived: () => closedBytes + [...sockets].reduce((n, s) => n + s.bytesRead, 0),
    handle: (h) => {
      current = h;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  server.on('connection', (s: Socket) => {
    up.connections++;
    sockets.add(s);
    s.on('close', () => {
      closedBytes += s.bytesRead;
      sockets.delete(s);
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    upgrades.push(record(req));
    if (opts.upgrade) return opts.upgrade(req, socket, head);
    upgradeEcho(req, socket, head);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  (up as { address: HostPort }).address = { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
  return up;
}

/** Answer an upgrade with 101 and echo the connection's bytes back, honouring half-close. */
export function upgradeEcho(_req: IncomingMessage, socket: Socket, head: Buffer): void {
  socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n');
  if (head.length > 0) socket.write(head);
  socket.pipe(socket);
}

export interface ClientCreds {
  ca: string;
  cert: string;
  key: string;
}

/** A TLS connection to the proxy presenting `creds`, resolved once the handshake is done. */
export async function tlsConnect(addr: HostPort, creds: ClientCreds): Promise<TLSSocket> {
  const socket = tls.connect({
    host: addr.host,
    port: addr.port,
    ca: creds.ca,
    cert: creds.cert,
    key: creds.key,
    servername: 'localhost',
  });
  await once(socket, 'secureConnect');
  return socket;
}

/** Bytes a socket receives, with a way to wait for content or for the end. */
export class Received {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  ended = false;
  error: Error | null = null;

  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('error', (err) => {
      this.error = err;
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  get text(): string {
    return this.buf.toString('latin1');
  }

  get bytes(): Buffer {
    return this.buf;
  }

  /** Resolve once `pred(text)` holds or the socket closed; rejects after `timeoutMs`. */
  async until(pred: (text: string) => boolean, timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.text) && !this.ended) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting; received so far: ${JSON.stringify(this.text.slice(0, 500))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.text;
  }

  /** Resolve once the socket has closed. */
  async closed(timeoutMs = 5_000): Promise<string> {
    return this.until(() => false, timeoutMs).catch((err: Error) => {
      if (this.ended) return this.text;
      throw err;
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Poll `cond` (every few ms) until it holds; for state that has no event to wait on. */
export async function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Open a TLS connection, write `bytes`, and collect the answer. */
export async function rawRequest(
  addr: HostPort,
  creds: ClientCreds,
  bytes: string | Buffer,
): Promise<Received> {
  const socket = await tlsConnect(addr, creds);
  const rx = new Received(socket);
  socket.write(bytes);
  return rx;
}

/** Whether `text` holds one complete HTTP response with a Content-Length body. */
export function hasCompleteResponse(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const m = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
  return m === null || text.length - end - 4 >= Number(m[1]);
}

/** Status code and the body of the first response in raw `text`. */
export function parseRaw(text: string): { status: number; head: string; body: string } {
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
  return { status, head, body: end === -1 ? '' : text.slice(end + 4) };
}

/** An undici client for the proxy at `addr` that presents `creds` as its client certificate. */
export function httpsClient(addr: HostPort, creds: ClientCreds, opts: Client.Options = {}): Client {
  return new Client(`https://${addr.host}:${addr.port}`, {
    connect: { ca: creds.ca, cert: creds.cert, key: creds.key, servername: 'localhost' },
    ...opts,
  });
}

// ---------------------------------------------------------------------------------------------
// A whole http port for tests: CA, certificates, policy, clock, recording telemetry, upstream.

export const TRUST_DOMAIN = 'example.org';
export const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';
export const ORDERS = 'spiffe://example.org/ns/default/sa/orders';

/** A license as the tests write it: times in ms relative to the harness clock's start. */
export interface TestLicense {
  id: string;
  subject?: string;
  methods?: string[];
  paths?: string[];
  /** Default -1 h. */
  notBefore?: number;
  /** Default +1 h. */
  expiresAt?: number;
  /** Revoked this long after the start (usually negative). */
  revokedAt?: number;
}

export interface HttpHarness {
  readonly ca: TestCa;
  readonly dir: string;
  readonly clock: ManualClock;
  readonly t0: number;
  readonly policy: PolicyStore;
  readonly telemetry: RecordingTelemetry;
  readonly upstream: TestUpstream;
  readonly listener: PortListener;
  readonly address: HostPort;
  readonly config: PortConfig;
  readonly logs: MemorySink;
  readonly log: Logger;
  readonly tls: TlsMaterialStore;
  /** The frontend caller's credentials. */
  readonly creds: ClientCreds;
  /** Credentials of a caller with another certificate. */
  credsFor(leaf: PemPair): ClientCreds;
  /** Replace the policy with a bundle holding `licenses` (for orders/http unless they say otherwise). */
  setLicenses(licenses: TestLicense[]): void;
  client(opts?: Client.Options): Client;
  close(): Promise<void>;
}

let sharedCa: { ca: TestCa; server: PemPair; frontend: PemPair } | undefined;

/** One CA and the two common leaves per test file: key generation is the slow part of a test. */
export function testPki(): { ca: TestCa; server: PemPair; frontend: PemPair } {
  if (!sharedCa) {
    const ca = createTestCa();
    sharedCa = { ca, server: ca.svid(ORDERS), frontend: ca.svid(FRONTEND) };
  }
  return sharedCa;
}

let version = 0;

export async function startHttpHarness(
  opts: {
    port?: Partial<PortConfig>;
    licenses?: TestLicense[];
    logAllowedHttp?: boolean;
    upstreamHandler?: UpstreamHandler;
    upstream?: TestUpstream;
  } = {},
): Promise<HttpHarness> {
  const { ca, server, frontend } = testPki();
  const dir = mkdtempSync(join(tmpdir(), 'pl-http-'));
  writeFileSync(join(dir, 'ca.pem'), ca.cert);
  writeFileSync(join(dir, 'cert.pem'), server.cert);
  writeFileSync(join(dir, 'key.pem'), server.key);
  const logs = new MemorySink();
  const log = createLogger({ level: 'debug', sink: logs });
  const tlsStore = TlsMaterialStore.load(
    { ca: join(dir, 'ca.pem'), cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') },
    log,
  );
  const upstream = opts.upstream ?? (await startUpstream(opts.upstreamHandler));
  const clock = new ManualClock(Date.now());
  const t0 = clock.now();
  const policy = new PolicyStore();
  const telemetry = new RecordingTelemetry(opts.logAllowedHttp ?? false);
  const config: PortConfig = {
    name: 'http',
    service: 'orders',
    protocol: 'http',
    listen: { host: '127.0.0.1', port: 0 },
    upstream: upstream.address,
    mode: 'enforce',
    key: 'orders/http',
    upstreamTimeout: 5_000,
    maxConnections: 100,
    idleTimeout: 5_000,
    headersTimeout: 2_000,
    maxHeaderSize: 16_384,
    ...opts.port,
  };
  const iso = (ms: number): string => new Date(t0 + ms).toISOString();
  const setLicenses = (licenses: TestLicense[]): void => {
    const wire: LicenseWire[] = licenses.map((l) => ({
      id: l.id,
      subject: l.subject ?? FRONTEND,
      service: 'orders',
      port: 'http',
      ...(l.methods ? { methods: l.methods } : {}),
      ...(l.paths ? { paths: l.paths } : {}),
      notBefore: iso(l.notBefore ?? -3_600_000),
      expiresAt: iso(l.expiresAt ?? 3_600_000),
      ...(l.revokedAt !== undefined ? { revokedAt: iso(l.revokedAt) } : {}),
    }));
    policy.swap(
      buildSnapshot({
        version: ++version,
        issuedAt: iso(0),
        node: 'node-a',
        services: ['orders'],
        licenses: wire,
      }),
    );
  };
  if (opts.licenses) setLicenses(opts.licenses);
  const listener = createHttpPort({
    port: config,
    policy,
    clock,
    telemetry,
    tls: tlsStore,
    trustDomains: [TRUST_DOMAIN],
    handshakeTimeout: 2_000,
    log,
  });
  const address = await listener.listen();
  const credsFor = (leaf: PemPair): ClientCreds => ({ ca: ca.cert, cert: leaf.cert, key: leaf.key });
  const clients: Client[] = [];
  return {
    ca,
    dir,
    clock,
    t0,
    policy,
    telemetry,
    upstream,
    listener,
    address,
    config,
    logs,
    log,
    tls: tlsStore,
    creds: credsFor(frontend),
    credsFor,
    setLicenses,
    client: (o) => {
      const c = httpsClient(address, credsFor(frontend), o);
      clients.push(c);
      return c;
    },
    close: async () => {
      await Promise.all(clients.map((c) => c.destroy()));
      await listener.drain(0);
      tlsStore.close();
      if (!opts.upstream) await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
