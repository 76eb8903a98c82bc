/**
 * The byte-moving core of tcp ports and outbound listeners (src/dataplane/splice.ts), on real
 * sockets: every byte arrives in order both ways, and a side that stops reading stops the other
 * side's reads too (what is held in user space stays bounded), then everything flows again.
 */
import { createHash } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { Splice } from '../../src/dataplane/splice.js';
import { tlsConnect, waitFor } from '../helpers/net.js';
import { sharedCa } from '../helpers/pki.js';

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A listener on 127.0.0.1 whose accepted sockets go to `onSocket`; resolves its port. */
async function listen(onSocket: (s: Socket) => void): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    onSocket(s);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

/** A TLS listener on 127.0.0.1 (the shared CA's localhost certificate, no client certificate). */
async function listenTls(onSocket: (s: TLSSocket) => void): Promise<number> {
  const leaf = sharedCa().svid('spiffe://example.org/ns/test/sa/proxy');
  const server = createTlsServer({ cert: leaf.cert, key: leaf.key, allowHalfOpen: true }, (s) => {
    sockets.push(s);
    onSocket(s);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

interface SplicePair<S extends Socket> {
  client: S;
  upstream: Socket;
  down: S;
  up: Socket;
  closed: Promise<string>;
  start: () => void;
}

/**
 * client -> [proxy: down | Splice | up] -> upstream; resolves the four sockets. The splice starts
 * once the upstream connects, or, with `holdStart`, when the caller calls `start`. With `tls`, the
 * caller's hop is TLS, as on a tcp port.
 */
async function splicePair(holdStart?: boolean): Promise<SplicePair<Socket>>;
async function splicePair(holdStart: boolean, tls: true): Promise<SplicePair<TLSSocket>>;
async function splicePair(holdStart = false, tls = false): Promise<SplicePair<Socket>> {
  let upstream!: Socket;
  const upPort = await listen((s) => (upstream = s));
  let down!: Socket;
  let up!: Socket;
  let splice!: Splice;
  let connected = false;
  let closed!: Promise<string>;
  const proxyPort = await (tls ? listenTls : listen)((s) => {
    down = s;
    closed = new Promise((resolve) => {
      splice = new Splice(s, { idleTimeout: 10_000, onClosed: resolve });
      up = connect({ host: '127.0.0.1', port: upPort, allowHalfOpen: true });
      sockets.push(up);
      splice.attach(up);
      up.on('connect', () => {
        connected = true;
        if (!holdStart) splice.start();
      });
    });
  });
  const client = tls
    ? await tlsConnect({ port: proxyPort, ca: sharedCa().cert })
    : connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true });
  sockets.push(client);
  await waitFor(() => upstream !== undefined && down !== undefined && connected);
  return { client, upstream, down, up, closed, start: () => splice.start() };
}

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The writes the stream layer makes on `socket` from now on: 1 for a write, n for a writev of n chunks. */
function writesOf(socket: Socket): number[] {
  const writes: number[] = [];
  const w = socket as unknown as {
    _write(c: Buffer, e: BufferEncoding, cb: () => void): void;
    _writev(cs: { chunk: Buffer }[], cb: () => void): void;
  };
  const write = w._write.bind(socket);
  const writev = w._writev.bind(socket);
  w._write = (c, e, cb) => (writes.push(1), write(c, e, cb));
  w._writev = (cs, cb) => (writes.push(cs.length), writev(cs, cb));
  return writes;
}

describe('Splice', () => {
  it('stops reading the caller while the upstream does not read, and delivers every byte once it does', async () => {
    const { client, upstream, down } = await splicePair();
    upstream.pause();
    const block = Buffer.alloc(1 << 20, 7);
    let sent = 0;
    // Keep the caller writing until its own socket says the far side is full.
    while (client.write(block)) sent += block.length;
    sent += block.length;
    for (let i = 0; i < 16; i++) {
      client.write(block);
      sent += block.length;
    }
    // The proxy's reads from the caller stop well short of what was sent: kernel buffers on both
    // hops plus SPLICE_BUFFER, not the 20-odd MiB the caller queued. (What is checked is that
    // nothing more happens, so there is no event to await: a short wall-clock window it is.)
    await new Promise((r) => setTimeout(r, 300));
    const heldBack = down.bytesRead;
    expect(heldBack).toBeLessThan(sent - 8 * block.length);
    await new Promise((r) => setTimeout(r, 200));
    expect(down.bytesRead).toBe(heldBack); // not creeping: really paused

    let received = 0;
    upstream.on('data', (d: Buffer) => (received += d.length));
    upstream.resume();
    await waitFor(() => received === sent, { timeoutMs: 20_000, what: 'every byte upstream' });
  });

  it('carries both directions byte for byte and passes each FIN on', async () => {
    const { client, upstream, closed } = await splicePair();
    const up = Buffer.from(Array.from({ length: 3 << 20 }, (_, i) => (i * 31) & 0xff));
    const downBytes = Buffer.from(Array.from({ length: 2 << 20 }, (_, i) => (i * 17) & 0xff));
    const atUpstream: Buffer[] = [];
    const atClient: Buffer[] = [];
    upstream.on('data', (d: Buffer) => atUpstream.push(d));
    client.on('data', (d: Buffer) => atClient.push(d));
    const upstreamEnded = new Promise((r) => upstream.once('end', r));
    const clientEnded = new Promise((r) => client.once('end', r));
    client.end(up);
    await upstreamEnded;
    upstream.end(downBytes);
    await clientEnded;
    expect(digest(Buffer.concat(atUpstream))).toBe(digest(up));
    expect(digest(Buffer.concat(atClient))).toBe(digest(downBytes));
    client.destroy();
    expect(await closed).toBe('client_close');
  });

  it('writes what it read in one loop turn to the other side in one write, in order', async () => {
    const { client, upstream, down, up, start } = await splicePair(true);
    // Before the splice starts, the proxy's socket reads and buffers whatever arrives: three writes
    // the proxy has read one by one are three chunks waiting there, handed over in one turn at start.
    const parts = [Buffer.alloc(3000, 1), Buffer.alloc(3000, 2), Buffer.alloc(3000, 3)];
    for (let i = 0; i < parts.length; i++) {
      client.write(parts[i]!);
      await waitFor(() => down.readableLength === 3000 * (i + 1), {
        what: `chunk ${i + 1} read by the proxy`,
      });
    }
    const writes = writesOf(up);
    const received: Buffer[] = [];
    upstream.on('data', (d: Buffer) => received.push(d));
    start();
    await waitFor(() => Buffer.concat(received).length === 9000, { what: 'all three chunks upstream' });
    expect(writes).toEqual([3]);
    expect(Buffer.concat(received).equals(Buffer.concat(parts))).toBe(true);
  });

  it('stops reading the upstream while a TLS caller does not read, and delivers every byte once it does', async () => {
    const { client, upstream, up } = await splicePair(false, true);
    client.pause();
    const block = Buffer.alloc(1 << 20, 9);
    let sent = 0;
    while (upstream.write(block)) sent += block.length;
    sent += block.length;
    for (let i = 0; i < 16; i++) {
      upstream.write(block);
      sent += block.length;
    }
    // As in the first case: nothing more may happen, so a short wall-clock window.
    await new Promise((r) => setTimeout(r, 300));
    const heldBack = up.bytesRead;
    expect(heldBack).toBeLessThan(sent - 8 * block.length);
    await new Promise((r) => setTimeout(r, 200));
    expect(up.bytesRead).toBe(heldBack);

    let received = 0;
    client.on('data', (d: Buffer) => (received += d.length));
    client.resume();
    await waitFor(() => received === sent, { timeoutMs: 20_000, what: 'every byte at the caller' });
  });
});
