/**
 * The upstream side of the fast lane (fast-lane.ts): plain TCP connections to one port's upstream,
 * kept alive between requests and handed to one exchange at a time. Each connection binds its
 * socket listeners once, when it is dialed, and forwards every event to whoever owns it now, so
 * a request on a kept connection adds no listener, closure or timer.
 *
 * An idle connection that the upstream closes (or that sends anything) leaves the pool at once; one
 * idle longer than `idleTimeout` is closed by us first, before a typical upstream keep-alive timeout
 * (Node's is 5 s) can close it under a request. An upstream that says how long it keeps a connection
 * (`Keep-Alive: timeout=N`) has it closed sooner when N is shorter: the exchange passes the limit to
 * `release`. The pool is LIFO: the most recently used connection is the least likely to have been
 * closed by the other side.
 *
 * Only dialing uses a socket timer (the connect timeout). Idle connections are closed by one sweep
 * per pool, so handing a kept connection out and back costs no timer change per request.
 *
 * Reads bypass the socket's stream machinery (`onread`): the kernel copies into one buffer shared by
 * every upstream socket of the process and the owner is called with a view of it, so a read
 * allocates nothing and schedules nothing. The view is valid only during `upstreamData`.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { HostPort } from '../config/types.js';

/** The exchange currently using an upstream connection. */
export interface UpstreamOwner {
  upstreamConnected(): void;
  /**
   * Bytes from the upstream. `chunk` is a view of the shared read buffer, overwritten by the next
   * read: whatever must outlive this call has to be copied.
   */
  upstreamData(chunk: Buffer): void;
  /** The upstream finished sending (FIN). */
  upstreamEnd(): void;
  /** The connection failed or closed while owned; `code` is an errno code or a short reason. */
  upstreamFailed(code: string): void;
  /** The upstream socket can take more of the request body. */
  upstreamDrain(): void;
}

export interface UpstreamPoolOptions {
  /** How long dialing may take before the owner is told `connect_timeout`. */
  readonly connectTimeout: number;
  /** An idle kept connection is closed after this long. Default 4 s. */
  readonly idleTimeout?: number;
  /** Idle connections kept at most (more are closed when released). Default 64. */
  readonly maxIdle?: number;
}

/**
 * How much sooner than an upstream's `Keep-Alive: timeout=N` its idle connections stop being handed
 * out, so that a request is not sent just as the upstream closes the connection. Node's own http
 * Agent keeps the same second; the full path passes it to undici (`keepAliveTimeoutThreshold`).
 */
export const KEEP_ALIVE_MARGIN_MS = 1_000;

/**
 * The read buffer of every upstream socket: one read at a time is handed to its owner synchronously,
 * so they can share it. 64 KiB is what libuv asks for per read.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export class UpstreamConn {
  owner: UpstreamOwner | null = null;
  /** Whether the TCP connection is established. */
  connected = false;
  /** Set once the socket is destroyed or the upstream sent FIN: never reused. */
  dead = false;
  /** In the pool's idle list. */
  idle = false;
  /** performance.now() after which it is too old to hand out (set when it goes back to the idle list). */
  idleUntil = 0;

  /** Read through `onread` (READ_BUFFER): it emits no 'data'. */
  readonly socket: Socket;

  /** Dial `target`; the owner hears `upstreamConnected` once it is established. */
  constructor(
    target: HostPort,
    connectTimeout: number,
    private readonly pool: UpstreamPool,
  ) {
    const onread = { buffer: READ_BUFFER, callback: this.onRead };
    const socket = connect({ host: target.host, port: target.port, noDelay: true, onread });
    this.socket = socket;
    socket.setTimeout(connectTimeout);
    socket.on('connect', this.onConnect);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    socket.on('drain', this.onDrain);
    socket.on('timeout', this.onTimeout);
  }

  write(data: string | Buffer): boolean {
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
  }

  private readonly onConnect = (): void => {
    this.connected = true;
    this.socket.setTimeout(0); // the connect timeout's; idle ones are the pool's sweep
    this.owner?.upstreamConnected();
  };

  /** `onread`: `n` bytes are at the start of READ_BUFFER. */
  private readonly onRead = (n: number): boolean => {
    if (this.owner !== null) this.owner.upstreamData(READ_BUFFER.subarray(0, n));
    else this.destroy(); // unsolicited bytes on an idle connection: it is out of step
    return true;
  };

  private readonly onEnd = (): void => {
    this.dead = true;
    if (this.owner !== null) this.owner.upstreamEnd();
    else this.destroy();
  };

  private readonly onError = (err: NodeJS.ErrnoException): void => {
    this.fail(err.code ?? err.message);
  };

  private readonly onClose = (): void => {
    this.fail('closed');
  };

  private readonly onDrain = (): void => {
    this.owner?.upstreamDrain();
  };

  /** The connect timeout (the only socket timer). */
  private readonly onTimeout = (): void => {
    this.fail('connect_timeout');
  };

  private fail(code: string): void {
    this.dead = true;
    this.pool.forget(this);
    const owner = this.owner;
    this.owner = null;
    if (!this.socket.destroyed) this.socket.destroy();
    owner?.upstreamFailed(code);
  }

  /** Close without telling the owner (the owner is the one closing it). */
  destroy(): void {
    this.dead = true;
    this.owner = null;
    this.pool.forget(this);
    if (!this.socket.destroyed) this.socket.destroy();
  }
}

/** Keep-alive connections to one upstream address. */
export class UpstreamPool {
  private readonly idle: UpstreamConn[] = [];
  private readonly all = new Set<UpstreamConn>();
  private readonly idleTimeout: number;
  private readonly maxIdle: number;
  private closed = false;
  private sweep: NodeJS.Timeout | null = null;

  constructor(
    private readonly target: HostPort,
    private readonly opts: UpstreamPoolOptions,
  ) {
    this.idleTimeout = opts.idleTimeout ?? 4_000;
    this.maxIdle = opts.maxIdle ?? 64;
  }

  /**
   * A connection for `owner`: a kept one (already connected: the owner may write at once) or a new
   * one still dialing (`upstreamConnected` follows; writes before it are queued by the socket).
   * A kept connection is the one already `connected`. `fresh`: always a new one.
   */
  acquire(owner: UpstreamOwner, fresh = false): UpstreamConn {
    // A connection that dies leaves the list at once (forget); `dead` also covers the FIN seen
    // while it was being handed back. One past its idle limit that the sweep (every quarter of
    // idleTimeout) has not reached yet is closed here rather than handed out.
    const now = this.idle.length === 0 ? 0 : performance.now();
    let c = fresh ? undefined : this.idle.pop();
    while (c !== undefined && (c.dead || c.idleUntil <= now)) {
      c.idle = false;
      c.destroy();
      c = this.idle.pop();
    }
    if (c !== undefined) {
      c.idle = false;
      c.owner = owner;
      return c;
    }
    c = new UpstreamConn(this.target, this.opts.connectTimeout, this);
    c.owner = owner;
    this.all.add(c);
    return c;
  }

  /**
   * Give back a connection whose exchange ended cleanly; it is kept for the next request, for at most
   * `idleTimeout`, or `limit` ms if that is shorter (the upstream's own keep-alive, less a margin).
   */
  release(c: UpstreamConn, limit = Infinity): void {
    c.owner = null;
    if (c.dead || this.closed || !c.connected || this.idle.length >= this.maxIdle) {
      c.destroy();
      return;
    }
    // The exchange may have paused it for a slow caller: an idle connection reads, so it sees the
    // upstream close it (or send what it should not), and the next owner gets its response.
    if (c.socket.isPaused()) c.socket.resume();
    c.idle = true;
    c.idleUntil = performance.now() + Math.min(limit, this.idleTimeout);
    this.idle.push(c);
    this.sweep ??= setInterval(this.closeExpired, Math.max(50, Math.floor(this.idleTimeout / 4))).unref();
  }

  /** Whether the sweep's timer is armed: only while some connection is idle. */
  get sweeping(): boolean {
    return this.sweep !== null;
  }

  /**
   * Close connections past their idle limit. Limits differ between connections (an upstream's
   * Keep-Alive hint), so the whole list (at most `maxIdle`) is looked at, keeping the others' order.
   */
  private readonly closeExpired = (): void => {
    const now = performance.now();
    const idle = this.idle;
    let kept = 0;
    for (let i = 0; i < idle.length; i++) {
      const c = idle[i]!;
      if (c.idleUntil > now) idle[kept++] = c;
      else {
        c.idle = false;
        c.destroy(); // forget() finds it no longer marked idle, so leaves the list to this loop
      }
    }
    idle.length = kept;
    // Nothing left to expire: no timer until a connection is handed back again.
    if (this.idle.length === 0 && this.sweep !== null) {
      clearInterval(this.sweep);
      this.sweep = null;
    }
  };

  /** Drop a connection from the books (it closed or was destroyed). */
  forget(c: UpstreamConn): void {
    this.all.delete(c);
    if (c.idle) {
      const i = this.idle.indexOf(c);
      if (i !== -1) this.idle.splice(i, 1);
      c.idle = false;
    }
  }

  /** Close every connection (idle ones now; in-use ones too: call after the exchanges ended). */
  close(): void {
    this.closed = true;
    if (this.sweep !== null) clearInterval(this.sweep);
    for (const c of [...this.all]) c.destroy();
    this.idle.length = 0;
  }
}
