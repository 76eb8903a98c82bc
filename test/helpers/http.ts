/**
 * The server side of HTTP tests: an upstream that records what reached it (requests, connections,
 * upgrades), and a whole http port (CA, certificates, policy, clock, recording telemetry,
 * upstream) to send requests through. Clients are in http-client.ts.
 */
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Client } from 'undici';
import { ManualClock } from '../../src/clock.js';
import type { HostPort, PortConfig } from '../../src/config/types.js';
import { createHttpPort } from '../../src/dataplane/http-proxy.js';
import type { TlsMaterialStore } from '../../src/dataplane/tls-context.js';
import type { PortListener } from '../../src/dataplane/types.js';
import type { Logger, MemorySink } from '../../src/log.js';
import { buildSnapshot } from '../../src/policy/snapshot.js';
import { PolicyStore } from '../../src/policy/store.js';
import type { LicenseWire } from '../../src/policy/types.js';
import { httpsClient, type ClientCreds } from './http-client.js';
import { sharedCa, svid, type PemPair, type TestCa } from './pki.js';
import { RecordingTelemetry } from './telemetry.js';
import { loadTlsFixture } from './tls.js';
import { removeDir, tempDir } from './tmp.js';

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
  const ca = sharedCa();
  const frontend = svid(FRONTEND);
  const dir = tempDir('pl-http-');
  const { sink: logs, log, tls: tlsStore } = loadTlsFixture(dir, ca.cert, svid(ORDERS));
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
    connectTimeout: 5_000,
    maxConnections: 100,
    idleTimeout: 5_000,
    headersTimeout: 2_000,
    maxHeaderSize: 16_384,
    upstreamIdleTimeout: 4_000,
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
      removeDir(dir);
    },
  };
}
