/**
 * Two sockets spliced both ways, with half-close and an idle timeout: the byte-moving core shared
 * by `tcp` ports (TLS caller -> plaintext upstream) and outbound listeners (plaintext app -> mTLS
 * target). Chunks read are written to the other side as they are (no copy), those of one event-loop
 * turn in one write; a side stops reading only when the other has more than SPLICE_BUFFER bytes
 * really queued, so backpressure is the kernel's.
 *
 * The owner of a Splice owns the dial: it attaches the upstream socket while that is still
 * connecting, handles the upstream's failures until `start()` (and aborts with its own reason),
 * then starts the splice once the upstream is usable. Every socket event after that is handled
 * here, and the owner learns the outcome once, in `onClosed`, when both sockets have closed.
 */
import type { Socket } from 'node:net';

export interface SpliceOptions {
  /** Close the flow after this long without a byte either way (ms, real time: a socket timer). */
  readonly idleTimeout: number;
  /** Called when the idle timeout fires, before the flow is aborted with `idle_timeout`. */
  onIdle?(): void;
  /**
   * Called once, after both sockets have closed, with the first close reason: `client_close` /
   * `upstream_close` (that side finished sending first), `idle_timeout`, `client_error: CODE`,
   * `upstream_error: CODE`, `upstream_connect_failed`, or whatever the owner passed to `abort`.
   */
  onClosed(closeReason: string): void;
}

/**
 * Bytes a side may have queued in user space before the other side stops reading. `pipe` pauses
 * whenever `write` returns false, which it does for every chunk as large as the writable
 * high-water mark (16 KiB: one TLS record) even when the kernel took it at once: a pause and a
 * resume, two epoll changes and a loop turn per record. Looking at what is still queued after the
 * write pauses only when the kernel is really behind.
 */
const SPLICE_BUFFER = 64 * 1024;

/**
 * Forward `from` to `to`, pausing `from` while `to` has a backlog; FIN follows FIN. A TLS socket
 * hands over one 16 KiB record per 'data' event, several per read from the kernel: `to` is corked at
 * the first chunk of a loop turn and uncorked when the turn's I/O is done (setImmediate), so they
 * leave in one writev, not one write(2) per record (about 1.5x the upload throughput). Nothing
 * waits for more data: the batch is whatever this turn read.
 */
function forward(from: Socket, to: Socket): void {
  let corked = false;
  const flush = (): void => {
    corked = false;
    to.uncork();
    if (to.writableLength > SPLICE_BUFFER) from.pause();
  };
  from.on('data', (chunk: Buffer) => {
    if (!corked) {
      corked = true;
      to.cork();
      setImmediate(flush);
    }
    to.write(chunk);
  });
  to.on('drain', () => {
    if (from.isPaused()) from.resume();
  });
  // end() uncorks first: a FIN never overtakes the bytes of its turn.
  from.on('end', () => to.end());
}

/** One flow between `down` (the side that connected to us) and an upstream socket. */
export class Splice {
  private up: Socket | null = null;
  private spliced = false;
  private closeReason: string | null = null;
  private openSockets = 1;
  private done = false;

  constructor(
    private readonly down: Socket,
    private readonly opts: SpliceOptions,
  ) {
    // Half-close is part of many TCP protocols: a peer that has finished sending still reads the reply.
    down.allowHalfOpen = true;
    down.setNoDelay(true);
    down.on('error', (err: NodeJS.ErrnoException) => this.abort(`client_error: ${err.code ?? err.message}`));
    down.on('end', () => this.note('client_close'));
    down.on('close', () => {
      // Clean close: this side finished both ways, so the upstream can deliver nothing more to it.
      if (this.up !== null && !this.up.readableEnded) this.abort('client_close');
      this.socketClosed();
    });
    // The timer is on the downstream socket, which every byte either way touches (a read from it
    // or a write to it): I/O inactivity, measured in real time rather than on the policy clock.
    down.setTimeout(opts.idleTimeout, () => {
      opts.onIdle?.();
      this.abort('idle_timeout');
    });
  }

  /** Whether `start()` has run: upstream errors from then on are the splice's, not the dialer's. */
  get started(): boolean {
    return this.spliced;
  }

  /**
   * Hand over the upstream socket, usually still connecting (create it with `allowHalfOpen`).
   * Until `start()`, its 'error' events are ignored here: the owner must listen and abort.
   */
  attach(up: Socket): void {
    this.up = up;
    this.openSockets++;
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (this.spliced) this.abort(`upstream_error: ${err.code ?? err.message}`);
    });
    up.on('end', () => this.note('upstream_close'));
    up.on('close', () => {
      if (!this.down.readableEnded) this.abort(this.spliced ? 'upstream_close' : 'upstream_connect_failed');
      this.socketClosed();
    });
  }

  /** The upstream is usable: move bytes both ways. */
  start(): void {
    const up = this.up;
    if (up === null || this.spliced || this.done) return;
    this.spliced = true;
    forward(this.down, up);
    forward(up, this.down);
  }

  /**
   * Close both sockets now; `reason` becomes the close reason unless one was already noted.
   * `reset` closes the downstream with a TCP RST rather than a FIN, so a plaintext peer sees a
   * failure (ECONNRESET), never a clean, empty answer; only for a plain TCP downstream (Node
   * throws for a TLS one).
   */
  abort(reason: string, reset = false): void {
    this.note(reason);
    const down = this.down;
    if (reset && !down.destroyed) down.resetAndDestroy();
    else down.destroy();
    this.up?.destroy();
  }

  private note(reason: string): void {
    this.closeReason ??= reason;
  }

  private socketClosed(): void {
    if (--this.openSockets > 0 || this.done) return;
    this.done = true;
    this.opts.onClosed(this.closeReason ?? 'closed');
  }
}
