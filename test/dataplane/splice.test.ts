/**
 * The byte-moving core of tcp ports and outbound listeners (src/dataplane/splice.ts), on real
 * sockets: every byte arrives in order both ways, and a side that stops reading stops the other
 * side's reads too (what is held in user space stays bounded), then everything flows again.
 */
import { createHash } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
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

/**
 * A listener on 127.0.0.1 whose accepted sockets go to `onSocket`; resolves its port. With `tls`,
 * it speaks TLS (the shared CA's localhost certificate, no client certificate).
 */
async function listen(onSocket: (s: Socket) => void, tls = false): Promise<number> {
  const accepted = (s: Socket): void => {
    sockets.push(s);
    onSocket(s);
  };
  const leaf = tls ? sharedCa().svid('spiffe://example.org/ns/test/sa/proxy') : null;
  const server = leaf
    ? createTlsServer({ cert: leaf.cert, key: leaf.key, allowHalfOpen: true }, accepted)
    : createServer({ allowHalfOpen: true }, accepted);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

/**
 * client -> [proxy: down | Splice | up] -> upstream; resolves the four sockets. The splice starts
 * once the upstream connects, or, with `holdStart`, when the caller calls `start`. With `tls`, the
 * caller's hop is TLS, as on a tcp port.
 */
async function splicePair(
  holdStart = false,
  tls = false,
): Promise<{
  client: Socket;
  upstream: Socket;
  down: Socket;
  up: Socket;
  closed: Promise<string>;
  start: () => void;
}> {
  let upstream!: Socket;
  const upPort = await listen((s) => (upstream = s));
  let down!: Socket;
  let up!: Socket;
  let splice!: Splice;
  let connected = false;
  let closed!: Promise<string>;
  const proxyPort = await listen((s) => {
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
  }, tls);
  const client = tls
    ? await tlsConnect({ port: proxyPort, ca: sharedCa().cert })
    : connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true });
  sockets.push(client);
  await waitFor(() => upstream !== undefined && down !== undefined && connected);
  return { client, upstream, down, up, closed, start: () => splice.start() };
}

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * `sender` writes far more than the hop can hold while `receiver` does not read: the proxy's reads
 * (`proxySide`, the socket it reads `sender` from) stop well short of it, then every byte arrives
 * once `receiver` reads.
 */
async function heldBackThenDelivered(sender: Socket, proxySide: Socket, receiver: Socket): Promise<void> {
  receiver.pause();
  const block = Buffer.alloc(1 << 20, 7);
  let sent = 0;
  // Keep writing until the sender's own socket says the far side is full, then 16 MiB more.
  while (sender.write(block)) sent += block.length;
  sent += block.length;
  for (let i = 0; i < 16; i++) {
    sender.write(block);
    sent += block.length;
  }
  // The proxy's reads stop well short of what was sent: kernel buffers on both hops plus
  // SPLICE_BUFFER, not the 20-odd MiB queued. (What is checked is that nothing more happens, so
  // there is no event to await: a short wall-clock window it is.)
  await new Promise((r) => setTimeout(r, 300));
  const heldBack = proxySide.bytesRead;
  expect(heldBack).toBeLessThan(sent - 8 * block.length);
  await new Promise((r) => setTimeout(r, 200));
  expect(proxySide.bytesRead).toBe(heldBack); // not creeping: really paused

  let received = 0;
  receiver.on('data', (d: Buffer) => (received += d.length));
  receiver.resume();
  await waitFor(() => received === sent, { timeoutMs: 20_000, what: 'every byte at the receiver' });
}

describe('Splice', () => {
  it('stops reading the caller while the upstream does not read, and delivers every byte once it does', async () => {
    const { client, upstream, down } = await splicePair();
    await heldBackThenDelivered(client, down, upstream);
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
    const writes: number[] = [];
    const upWrite = up as unknown as {
      _write(c: Buffer, e: BufferEncoding, cb: () => void): void;
      _writev(cs: { chunk: Buffer }[], cb: () => void): void;
    };
    const write = upWrite._write.bind(up);
    const writev = upWrite._writev.bind(up);
    upWrite._write = (c, e, cb) => (writes.push(1), write(c, e, cb));
    upWrite._writev = (cs, cb) => (writes.push(cs.length), writev(cs, cb));
    const received: Buffer[] = [];
    upstream.on('data', (d: Buffer) => received.push(d));
    start();
    await waitFor(() => Buffer.concat(received).length === 9000, { what: 'all three chunks upstream' });
    expect(writes).toEqual([3]);
    expect(Buffer.concat(received).equals(Buffer.concat(parts))).toBe(true);
  });

  it('stops reading the upstream while a TLS caller does not read, and delivers every byte once it does', async () => {
    const { client, upstream, up } = await splicePair(false, true);
    await heldBackThenDelivered(upstream, up, client);
  });
});
