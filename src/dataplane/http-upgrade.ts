/**
 * Upgrade requests on an http port (SPEC §2.5): WebSocket only, authorised exactly like any
 * request, then handed to the upstream; the two sockets are spliced both ways (honouring
 * half-close) only once the upstream has answered `101 Switching Protocols`. The spliced flow is
 * registered with the FlowRegistry, so an expiry or a revoke of its license closes it like a tcp
 * flow (SPEC §2.4).
 *
 * Why the order matters: until the upstream has switched protocols, whatever the caller sends
 * after the upgrade request is HTTP to the upstream. Sending it early, or splicing on any answer,
 * would let a caller authorised for one path put further requests (with forged identity headers)
 * on that upstream connection, none of them decided. So the caller's bytes stay unread until the
 * `101`; any other answer is relayed with `connection: close` and both sides are closed.
 *
 * Only `Upgrade: websocket` on a bodiless HTTP/1.1 GET (RFC 6455 §4.1) is accepted; anything else
 * that Node's parser hands over as an upgrade (`h2c`, a protocol list, a second Upgrade header) is
 * a 400 `unsupported_upgrade` and the connection is closed. Serving it as a plain request instead
 * would need a second request path on a socket the HTTP server has let go of; a refusal leaves no
 * state behind for a follow-up request to ride on. An `Upgrade` without `Connection: upgrade` is
 * not an upgrade to the parser: it is an ordinary request and the header is dropped (hop-by-hop).
 */
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import net, { type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import type { TimerHandle } from '../clock.js';
import { joinTarget } from '../policy/path.js';
import type { CompiledLicense, DenyReason, TerminationReason } from '../policy/types.js';
import type { Flow } from './flows.js';
import type { HttpConnection, Verdict } from './http-authorize.js';
import type { HttpPortContext } from './http-context.js';
import { callerResponseHeaders, vouch } from './http-headers.js';
import { checkRequest, type CheckedRequest } from './http-request.js';
import { endLingering, httpDate, writeRawAndClose, type BadRequestReason } from './http-responses.js';
import { MAX_RESPONSE_HEAD } from './http-upstream.js';

/** Serialise a response head for a raw caller socket (values are latin1, as parsed). */
export function serializeResponseHead(
  status: number,
  statusText: string,
  headers: readonly string[],
): Buffer {
  let head = `HTTP/1.1 ${status} ${statusText}\r\n`;
  for (let i = 0; i + 1 < headers.length; i += 2) head += `${headers[i]!}: ${headers[i + 1]!}\r\n`;
  return Buffer.from(head + '\r\n', 'latin1');
}

/** Authorise an Upgrade request and, when allowed, hand it to the upstream. */
export function handleUpgrade(
  ctx: HttpPortContext,
  req: IncomingMessage,
  socket: TLSSocket,
  head: Buffer,
): void {
  const started = performance.now();
  const conn = ctx.connection(socket);
  if (conn === undefined) {
    socket.destroy();
    return;
  }
  const method = req.method!;
  const checked = checkUpgrade(req, conn.peer.origin);
  if (typeof checked === 'string') {
    writeRawAndClose(socket, ctx.responses.badRequest[checked]);
    ctx.rejected(conn, method, req.url!, checked);
    return;
  }
  const { path, query, head: upstreamHead } = checked;
  const verdict: Verdict = { license: null, reason: null, forward: false };
  ctx.authorizer.authorize(conn, method, path, ctx.clock.now(), verdict);
  if (!verdict.forward) {
    const reason = verdict.reason!;
    writeRawAndClose(socket, ctx.responses.deny[reason]);
    ctx.denied(conn, method, path, reason, started);
    return;
  }
  const headers = upstreamHead.headers;
  vouch(headers, conn.peer.identity, verdict.license === null ? null : verdict.license.id);
  new UpgradeFlow(ctx, conn, socket, verdict, method, path, started).start(
    joinTarget(path, query),
    headers,
    head,
  );
}

/**
 * The checks of any request, then those of a WebSocket opening handshake: a GET over HTTP/1.1
 * without a body (RFC 6455 §4.1). A body would be read by Node's parser and never reach the
 * upstream, which would then wait for it.
 */
function checkUpgrade(req: IncomingMessage, origin: string): CheckedRequest | BadRequestReason {
  const checked = checkRequest(req, origin, true);
  if (typeof checked === 'string') return checked;
  if (req.method !== 'GET' || req.httpVersionMajor !== 1 || req.httpVersionMinor !== 1)
    return 'unsupported_upgrade';
  return checked.head.bodyLength === 0 ? checked : 'unsupported_upgrade';
}

const enum Phase {
  /** Request head sent; the caller's bytes are held back until the upstream answers. */
  Waiting,
  /** The upstream answered 101: bytes flow both ways. */
  Spliced,
  /** The upstream answered something else: it goes to the caller, then both sides close. */
  Relaying,
  /** Failed or gone. */
  Done,
}

const EMPTY = Buffer.alloc(0);

/** One upgrade: caller socket <-> upstream socket, through the upstream's answer to the handshake. */
class UpgradeFlow implements Flow {
  readonly identity: string;
  readonly origin: string;
  readonly portKey: string;
  license: CompiledLicense;
  private readonly auditReason: DenyReason | null;
  private readonly upstream: Socket;
  private request: ClientRequest | null = null;
  private timer: TimerHandle | null = null;
  private phase = Phase.Waiting;
  /** What the caller sent after the request head, in the same read: only sent after a 101. */
  private held: Buffer = EMPTY;
  private status = 0;
  /** Upstream socket bytes that were the handshake (request head / response head), not payload. */
  private headIn = 0;
  private headOut = 0;
  private relayed = 0;
  private registered = false;
  private closed = 0;

  constructor(
    private readonly ctx: HttpPortContext,
    conn: HttpConnection,
    private readonly socket: TLSSocket,
    verdict: Verdict,
    readonly method: string,
    readonly path: string,
    private readonly started: number,
  ) {
    this.identity = conn.peer.identity ?? '';
    this.origin = conn.peer.origin;
    this.portKey = ctx.port.key;
    // Audit mode forwards a would-be deny: there is no license to watch, so no registry entry.
    this.license = verdict.license!;
    this.auditReason = verdict.reason;
    const up = ctx.port.upstream;
    this.upstream = net.connect({ host: up.host, port: up.port, allowHalfOpen: true, noDelay: true });
    // Dialing has the port's connectTimeout (502, as on every other path); the answer then has
    // upstreamTimeout, on the port's clock.
    this.upstream.setTimeout(ctx.port.connectTimeout, this.onConnectTimeout);
    this.upstream.once('connect', () => this.upstream.setTimeout(0));
  }

  start(target: string, headers: string[], held: Buffer): void {
    const { socket, upstream, ctx } = this;
    this.held = held;
    // Half-close: a caller that is done sending still gets the rest of the upstream's answer.
    socket.allowHalfOpen = true;
    socket.on('close', this.onClose);
    upstream.on('close', this.onClose);
    socket.once('close', this.onCallerGone);
    // Node's client reports socket errors on the request while it owns the socket; once switched,
    // this listener is the one left.
    upstream.on('error', this.onUpstreamError);
    if (this.auditReason === null) {
      ctx.flows.admit(this);
      this.registered = true;
    }
    let request: ClientRequest;
    try {
      // Node's client: llhttp parses the answer (strict, size-bounded) and frames a non-101 body.
      request = http.request({
        host: ctx.port.upstream.host,
        port: ctx.port.upstream.port,
        method: 'GET',
        path: target,
        headers,
        createConnection: () => upstream,
        maxHeaderSize: MAX_RESPONSE_HEAD,
        insecureHTTPParser: false,
      });
    } catch (err) {
      // Refused outright (it validates again what llhttp accepted): the upstream cannot be asked.
      this.onUpstreamError(err as Error);
      return;
    }
    this.request = request;
    request.on('upgrade', this.onSwitch);
    request.on('response', this.onResponse);
    request.on('error', this.onUpstreamError);
    request.end();
    this.timer = ctx.clock.setTimer(this.onHeadTimeout, ctx.port.upstreamTimeout);
  }

  /** Close both sides now (license gone, idle, shutdown). */
  terminate(_reason: TerminationReason): void {
    this.destroy();
  }

  private destroy(): void {
    this.socket.destroy();
    this.upstream.destroy();
  }

  /** Leave the Waiting phase. */
  private settle(next: Phase): void {
    this.phase = next;
    this.timer?.cancel();
    this.timer = null;
  }

  private readonly onSwitch = (res: IncomingMessage, up: Socket, upHead: Buffer): void => {
    if (this.phase !== Phase.Waiting) return;
    this.settle(Phase.Spliced);
    this.status = 101;
    const { socket, ctx } = this;
    this.headIn = up.bytesWritten;
    this.headOut = up.bytesRead - upHead.length;
    socket.write(serializeResponseHead(101, res.statusMessage ?? '', res.rawHeaders));
    if (upHead.length > 0) socket.write(upHead);
    if (this.held.length > 0) up.write(this.held);
    this.held = EMPTY;
    socket.setTimeout(ctx.port.idleTimeout);
    socket.on('timeout', this.onIdle);
    socket.pipe(up);
    up.pipe(socket);
  };

  /** Not switched: give the caller the upstream's answer, then close both sides. */
  private readonly onResponse = (res: IncomingMessage): void => {
    if (this.phase !== Phase.Waiting) return;
    this.settle(Phase.Relaying);
    const { socket, ctx } = this;
    const status = res.statusCode ?? 0;
    if (status === 101 || socket.destroyed) {
      // A 101 without Upgrade/Connection: llhttp did not take it as a switch, nor can we.
      this.fail(new Error('101 without upgrade headers'), 'upstream_unavailable');
      return;
    }
    this.status = status;
    socket.write(
      serializeResponseHead(
        status,
        res.statusMessage ?? '',
        callerResponseHeaders(res.rawHeaders, true, httpDate()),
      ),
    );
    socket.setTimeout(ctx.port.idleTimeout);
    socket.on('timeout', this.onIdle);
    res.on('data', (chunk: Buffer) => {
      this.relayed += chunk.length;
    });
    // The body goes as it came (its framing re-derived by the parser; close-delimited when it was
    // chunked), so the caller must not mistake a cut one for a whole one: destroy, never FIN.
    res.pipe(socket, { end: false });
    res.once('end', () => {
      this.upstream.destroy();
      endLingering(socket);
    });
    res.once('close', () => {
      if (!res.complete) this.destroy();
    });
  };

  private readonly onUpstreamError = (err: Error): void => {
    if (this.phase === Phase.Waiting) {
      this.settle(Phase.Done);
      this.fail(err, 'upstream_unavailable');
    } else if (this.phase !== Phase.Done) {
      // After the answer began: the caller must not take a cut answer for a whole one.
      this.phase = Phase.Done;
      this.destroy();
    }
  };

  private readonly onConnectTimeout = (): void => {
    if (this.upstream.connecting)
      this.onUpstreamError(new Error(`connect timeout after ${this.ctx.port.connectTimeout} ms`));
  };

  private readonly onHeadTimeout = (): void => {
    this.timer = null;
    if (this.phase !== Phase.Waiting) return;
    this.fail(new Error('no response head within upstreamTimeout'), 'upstream_timeout');
  };

  /** Answer 502/504 for an upstream that did not answer the handshake, and close both sides. */
  private fail(err: Error, reason: 'upstream_unavailable' | 'upstream_timeout'): void {
    const { ctx, socket } = this;
    this.phase = Phase.Done;
    this.status = reason === 'upstream_timeout' ? 504 : 502;
    ctx.note('warn', `upgrade_${reason}`, 'upstream upgrade failed', {
      reason,
      code: (err as NodeJS.ErrnoException).code,
      error: err.message,
      path: this.path,
    });
    this.request?.destroy();
    this.upstream.destroy();
    if (!socket.destroyed) writeRawAndClose(socket, ctx.responses.gateway[reason]);
  }

  private readonly onIdle = (): void => {
    // A stalled relayed answer is a dead exchange, not a licensed flow being cut: not counted.
    if (this.phase === Phase.Spliced) this.ctx.telemetry.terminated('idle_timeout');
    this.destroy();
  };

  /** The caller is gone: nothing more can be delivered to it, and nothing is owed upstream. */
  private readonly onCallerGone = (): void => {
    if (this.phase === Phase.Waiting) this.settle(Phase.Done);
    this.request?.destroy();
    this.upstream.destroy();
  };

  private readonly onClose = (): void => {
    if (++this.closed < 2) return;
    const { ctx, upstream } = this;
    if (this.registered) ctx.flows.release(this);
    const spliced = this.status === 101;
    const bytesIn = spliced ? Math.max(0, upstream.bytesWritten - this.headIn) : 0;
    const bytesOut = spliced ? Math.max(0, upstream.bytesRead - this.headOut) : this.relayed;
    ctx.telemetry.bytes('in', bytesIn);
    ctx.telemetry.bytes('out', bytesOut);
    if (this.auditReason === null && !ctx.telemetry.logAllowedHttp) return;
    ctx.telemetry.accessLog({
      kind: 'http',
      decision: this.auditReason === null ? 'allow' : 'audit_deny',
      reason: this.auditReason,
      identity: this.identity === '' ? null : this.identity,
      origin: this.origin,
      license: this.registered ? this.license.id : null,
      method: this.method,
      path: this.path,
      status: this.status,
      bytesIn,
      bytesOut,
      durationMs: performance.now() - this.started,
    });
  };
}
