/**
 * Certificates made by `ca init` and `cert issue` work in a real mutual-TLS handshake, in both
 * directions, and a certificate from another CA is refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CA_FILES, initCa } from '../../src/pki/ca.js';
import { issueCert } from '../../src/pki/issue.js';
import { createTestCa, opensslLeaf } from '../helpers/pki.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const ORDERS = 'spiffe://example.org/ns/default/sa/orders';
const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';

interface Material {
  cert: string;
  key: string;
}

let dir: string;
let caPem: string;
let orders: Material;
let frontend: Material;
let server: Server | undefined;
const sockets: TLSSocket[] = [];

const load = (r: { certFile: string; keyFile: string }): Material => ({
  cert: readFileSync(r.certFile, 'utf8'),
  key: readFileSync(r.keyFile, 'utf8'),
});

beforeAll(() => {
  dir = tempDir('pl-tls-');
  initCa({ dir, trustDomain: 'example.org' });
  caPem = readFileSync(join(dir, CA_FILES.caCert), 'utf8');
  orders = load(
    issueCert({
      caDir: dir,
      spiffeId: ORDERS,
      out: join(dir, 'orders'),
      dns: ['localhost'],
      ips: ['127.0.0.1'],
    }),
  );
  frontend = load(issueCert({ caDir: dir, spiffeId: FRONTEND, out: join(dir, 'frontend') }));
});
afterAll(() => {
  removeDir(dir);
});
async function stopServer(): Promise<void> {
  for (const s of sockets.splice(0)) s.destroy();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
}
afterEach(stopServer);

/**
 * An mTLS server that requires a client certificate chaining to `ca` (or, with `reject: false`,
 * requests one and lets the test inspect the verdict) and reports each accepted connection.
 */
async function startServer(
  identity: Material,
  ca: string,
  reject = true,
): Promise<{
  port: number;
  accepted: Promise<TLSSocket>;
  refused: Promise<Error>;
  connections: () => number;
}> {
  let count = 0;
  let accept!: (socket: TLSSocket) => void;
  const accepted = new Promise<TLSSocket>((resolve) => (accept = resolve));
  let refuse!: (err: Error) => void;
  const refused = new Promise<Error>((resolve) => (refuse = resolve));
  server = createServer({ ...identity, ca, requestCert: true, rejectUnauthorized: reject }, (socket) => {
    sockets.push(socket);
    count += 1;
    accept(socket);
    socket.end('hello');
  });
  server.on('tlsClientError', refuse);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, accepted, refused, connections: () => count };
}

const peerSan = (socket: TLSSocket): string | undefined => socket.getPeerCertificate().subjectaltname;

/** Connect as `identity`, verifying the server against `ca` (host name checked against `host`). */
function dial(port: number, identity: Material, ca: string, host = 'localhost'): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      servername: host,
      ...identity,
      ca,
      rejectUnauthorized: true,
    });
    sockets.push(socket);
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function readAll(socket: TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    socket.once('end', () => resolve(data));
    socket.once('error', reject);
  });
}

describe('mutual TLS with issued certificates', () => {
  it('verifies both directions: the server sees the client SVID, the client sees the server SVID', async () => {
    const { port, accepted } = await startServer(orders, caPem);
    const socket = await dial(port, frontend, caPem);
    expect(socket.authorized).toBe(true);
    expect(peerSan(socket)).toBe(`URI:${ORDERS}, DNS:localhost, IP Address:127.0.0.1`);
    const serverSide = await accepted;
    expect(serverSide.authorized).toBe(true);
    expect(peerSan(serverSide)).toBe(`URI:${FRONTEND}`);
    expect(await readAll(socket)).toBe('hello');
  });

  it('the server certificate also verifies by IP', async () => {
    const { port } = await startServer(orders, caPem);
    const socket = await new Promise<TLSSocket>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, ...frontend, ca: caPem, rejectUnauthorized: true });
      sockets.push(s);
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
    expect(socket.authorized).toBe(true);
  });

  it('the server refuses a client certificate from another CA', async () => {
    const stranger = createTestCa().svid(FRONTEND);
    // The verdict itself, from a server that lets the connection through to inspect it.
    const lenient = await startServer(orders, caPem, false);
    await dial(lenient.port, stranger, caPem);
    const inspected = await lenient.accepted;
    expect(inspected.authorized).toBe(false);
    expect(String(inspected.authorizationError)).toMatch(
      /^UNABLE_TO_(VERIFY_LEAF_SIGNATURE|GET_ISSUER_CERT_LOCALLY)$/,
    );
    await stopServer();

    // And a strict server drops it: the connection handler never runs, the client reads nothing.
    const strict = await startServer(orders, caPem);
    let received = '';
    const socket = connect({
      host: '127.0.0.1',
      port: strict.port,
      servername: 'localhost',
      ...stranger,
      ca: caPem,
    });
    sockets.push(socket);
    socket.on('data', (d: Buffer) => (received += d.toString()));
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('close', resolve));
    await strict.refused;
    expect(received).toBe('');
    expect(strict.connections()).toBe(0);
  });

  it('the client refuses a server certificate from another CA', async () => {
    const { port } = await startServer(createTestCa().svid(ORDERS), caPem);
    await expect(dial(port, frontend, caPem)).rejects.toThrow(/self[- ]signed|unable to (get|verify)/i);
  });

  it('accepts an EC P-256 SVID made by openssl and signed by the CA, as certs/README.md describes', async () => {
    const ec = opensslLeaf(
      { cert: caPem, key: readFileSync(join(dir, CA_FILES.caKey), 'utf8') },
      {
        spiffeId: ORDERS,
        keyType: 'ec',
      },
    );
    const { port, accepted } = await startServer(ec, caPem);
    const socket = await dial(port, frontend, caPem);
    expect(socket.authorized).toBe(true);
    expect(socket.getPeerCertificate().pubkey?.length).toBe(65); // uncompressed P-256 point
    expect(peerSan(await accepted)).toBe(`URI:${FRONTEND}`);
  });
});
