/**
 * Real-socket helpers for tests: throwaway TCP servers (echo, scripted), TCP and TLS clients, a
 * record of what a socket receives, and ways to wait for a socket or a condition without
 * sleeping. Everything binds 127.0.0.1 port 0.
 */
import { spawn } from 'node:child_process';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnectRaw, type ConnectionOptions, type TLSSocket } from 'node:tls';

export interface TestServer {
  readonly host: string;
  readonly port: number;
  readonly server: Server;
  /** Every connection accepted so far (open or closed). */
  readonly sockets: Socket[];
  /** Connections accepted so far. */
  accepted(): number;
  /** Destroy every connection and close the server. */
  close(): Promise<void>;
}

/** A TCP server running `handler` for each connection. `allowHalfOpen` defaults to true. */
export async function startTcpServer(
  handler: (socket: Socket) => void,
  opts: { allowHalfOpen?: boolean } = {},
): Promise<TestServer> {
  const sockets: Socket[] = [];
  const server = createServer({ allowHalfOpen: opts.allowHalfOpen ?? true }, (s) => {
    sockets.push(s);
    s.on('error', () => {});
    handler(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    server,
    sockets,
    accepted: () => sockets.length,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A TCP echo server: every byte comes back, and when the client half-closes, the echo finishes
 * and half-closes too.
 */
export function startTcpEcho(): Promise<TestServer> {
  return startTcpServer((s) => s.pipe(s));
}

/** A port that nothing listens on (just freed), for "upstream down" tests. */
export async function unusedPort(): Promise<number> {
  const s = await startTcpServer(() => {});
  await s.close();
  return s.port;
}

/** A node program that listens on 127.0.0.1 with an accept queue of one and prints its port. */
const LISTEN_ONCE = `const s = require('node:net').createServer();
s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => console.log(s.address().port));`;

/**
 * A port where connecting hangs, as to a blackholed address (which this network does not have): a
 * child process listens with an accept queue of one and is stopped (SIGSTOP), and the queue is
 * filled; the kernel then drops every further SYN, so a connect neither completes nor fails.
 */
export async function startDeafPort(): Promise<{ port: number; close(): Promise<void> }> {
  const child = spawn(process.execPath, ['-e', LISTEN_ONCE], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
  });
  child.kill('SIGSTOP');
  const fillers: Socket[] = [];
  const close = async (): Promise<void> => {
    for (const f of fillers) f.destroy();
    child.kill('SIGKILL');
    await exited;
  };
  // Connections complete into the queue until it is full; the first that does not is the sign.
  for (;;) {
    const s = netConnect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    fillers.push(s);
    const connected = await new Promise<boolean>((r) => {
      const t = setTimeout(() => r(false), 500);
      s.once('connect', () => {
        clearTimeout(t);
        r(true);
      });
    });
    if (!connected) return { port, close };
    if (fillers.length > 64) {
      await close();
      throw new Error('startDeafPort: the accept queue of a stopped listener never filled');
    }
  }
}

/**
 * A plain TCP connection, resolved once connected; rejects on an error before that. An 'error'
 * listener is attached so a later reset does not crash the test.
 */
export function tcpConnect(port: number, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port }, () => {
      s.off('error', reject);
      s.on('error', () => {});
      resolve(s);
    });
    s.once('error', reject);
  });
}

export interface TlsClientOptions extends Omit<ConnectionOptions, 'ca' | 'cert' | 'key'> {
  port: number;
  host?: string;
  /** CA bundle that the server certificate must chain to. */
  ca: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
}

/**
 * Connect with TLS and resolve once the handshake is done (the server may still refuse the client
 * certificate right after, TLS 1.3 style). Rejects on an error before that. Servername defaults
 * to `localhost`; an 'error' listener is attached so a later reset does not crash the test.
 */
export function tlsConnect(opts: TlsClientOptions): Promise<TLSSocket> {
  const { port, host = '127.0.0.1', ...rest } = opts;
  return new Promise((resolve, reject) => {
    const socket = tlsConnectRaw({ servername: 'localhost', ...rest, port, host }, () => {
      socket.off('error', reject);
      socket.on('error', () => {});
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

export interface Outcome {
  /** Everything the peer sent before the socket closed. */
  data: Buffer;
  /** The error that ended the socket, if any (`ECONNRESET`, a TLS alert...). */
  error: NodeJS.ErrnoException | null;
}

/** Everything a socket receives from now until it closes, and the error that ended it, if any. */
export async function outcome(socket: Socket, timeoutMs = 5_000): Promise<Outcome> {
  const rx = new Received(socket);
  await rx.closed(timeoutMs);
  return { data: rx.bytes, error: rx.error };
}

export interface TlsAttempt extends Outcome {
  /** Whether the client finished its side of the handshake. */
  secure: boolean;
}

/**
 * Connect with TLS, send `send` (if any) once the handshake is done, and report how the connection
 * ended: for connections the server is expected to refuse, during or right after the handshake.
 */
export function tlsAttempt(
  opts: TlsClientOptions & { send?: string },
  timeoutMs = 5_000,
): Promise<TlsAttempt> {
  const { port, host = '127.0.0.1', send, ...rest } = opts;
  let secure = false;
  const socket = tlsConnectRaw({ servername: 'localhost', ...rest, port, host }, () => {
    secure = true;
    if (send !== undefined) socket.write(send);
  });
  return outcome(socket, timeoutMs).then((o) => ({ ...o, secure }));
}

/**
 * Read from `socket` until `until` holds: a string or byte count that must have arrived, or a
 * predicate over everything received so far. Rejects if the socket ends first or on timeout.
 */
export function readUntil(
  socket: Socket,
  until: string | number | ((received: Buffer) => boolean),
  timeoutMs = 5_000,
): Promise<Buffer> {
  const done =
    typeof until === 'string'
      ? (b: Buffer) => b.includes(until)
      : typeof until === 'number'
        ? (b: Buffer) => b.length >= until
        : until;
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    const onData = (c: Buffer): void => {
      received = Buffer.concat([received, c]);
      if (done(received)) {
        cleanup();
        resolve(received);
      }
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error(`socket ended before the expected data; got ${JSON.stringify(received.toString())}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms; got ${JSON.stringify(received.toString())}`));
    }, timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

/**
 * Everything a socket receives from now on, kept as it arrives, with ways to wait for content or
 * for the close. Unlike `readUntil`, it never misses bytes between two waits and resolves (rather
 * than rejects) when the socket closes first: for tests that look at a whole exchange.
 */
export class Received {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  /** The socket has closed. */
  ended = false;
  /** The first error the socket reported, if any. */
  error: NodeJS.ErrnoException | null = null;

  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error ??= err;
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

  /** Resolve with everything received once the socket has closed; rejects after `timeoutMs`. */
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

/** Write `data` and read until `expect` (default: the same bytes) comes back. */
export async function roundTrip(socket: Socket, data: string, expect = data): Promise<string> {
  const reply = readUntil(socket, expect);
  socket.write(data);
  return (await reply).toString();
}

/** Resolves when the socket has closed (at once if it already has). */
export function closed(socket: Socket, timeoutMs = 5_000): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Poll `condition` until it is true (or returns a truthy value, which is resolved). Rejects with
 * `what` after the timeout. For state that changes on another socket's events, where there is
 * no event of our own to wait for.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 5_000);
  for (;;) {
    const v = await condition();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? 'condition'}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 10));
  }
}
