/**
 * Upgrade requests (WebSocket and the like) on an http port (SPEC §2.5): authorised exactly like
 * any request, then the request head is replayed to the upstream on a fresh connection and the two
 * sockets are spliced both ways, honouring half-close. The spliced flow is registered with the
 * FlowRegistry, so an expiry or a revoke of its license closes it like a tcp flow (SPEC §2.4).
 */
import net, { type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { CompiledLicense, DenyReason, TerminationReason } from '../policy/types.js';
import type { Flow } from './flows.js';
import type { HttpConnection, Verdict } from './http-authorize.js';
import type { HttpPortContext } from './http-context.js';
import { vouch } from './http-headers.js';
import { checkRequest } from './http-request.js';
import { writeRawAndClose } from './http-responses.js';
import { joinTarget } from '../policy/path.js';

/** Serialise a request head for a raw upstream socket (header values are latin1, as parsed). */
export function serializeHead(method: string, target: string, headers: readonly string[]): Buffer {
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (let i = 0; i + 1 < headers.length; i += 2) head += `${headers[i]!}: ${headers[i + 1]!}\r\n`;
  return Buffer.from(head + '\r\n', 'latin1');
}

/** Authorise an Upgrade request and, when allowed, splice it to the upstream. */
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
  const checked = checkRequest(req, conn.peer.origin, true);
  if (typeof checked === 'string') {
    writeRawAndClose(socket, ctx.responses.badRequest[checked]);
    ctx.rejected(conn, method, req.url!, checked);
    return;
  }
  const verdict: Verdict = { license: null, reason: null, forward: false };
  ctx.authorizer.authorize(conn, method, checked.path, ctx.clock.now(), verdict);
  if (!verdict.forward) {
    const reason = verdict.reason!;
    writeRawAndClose(socket, ctx.responses.deny[reason]);
    ctx.denied(conn, method, checked.path, reason, started);
    return;
  }
  const headers = checked.head.headers;
  vouch(headers, conn.peer.identity, verdict.license === null ? null : verdict.license.id);
  const requestHead = serializeHead(method, joinTarget(checked.path, checked.query), headers);
  new SplicedUpgrade(ctx, conn, socket, verdict, method, checked.path, started).start(requestHead, head);
}

/** One upgraded connection: caller socket <-> upstream socket. */
class SplicedUpgrade implements Flow {
  readonly identity: string;
  readonly origin: string;
  readonly portKey: string;
  license: CompiledLicense;
  private readonly auditReason: DenyReason | null;
  private readonly upstream: Socket;
  private headLength = 0;
  private status = 0;
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
  }

  start(requestHead: Buffer, head: Buffer): void {
    const { socket, upstream, ctx } = this;
    this.headLength = requestHead.length;
    upstream.write(requestHead);
    if (head.length > 0) upstream.write(head);
    upstream.once('data', (chunk: Buffer) => {
      this.status = Number(chunk.toString('latin1', 9, 12)) || 0;
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (upstream.bytesRead === 0 && !socket.destroyed) {
        ctx.note('warn', 'upstream_upgrade', 'upstream upgrade failed', {
          code: err.code,
          error: err.message,
          path: this.path,
        });
        this.status = 502;
        socket.unpipe(upstream);
        writeRawAndClose(socket, ctx.responses.gateway.upstream_unavailable);
      } else {
        socket.destroy();
      }
    });
    // Half-close: a caller that is done sending still gets the rest of the upstream's answer.
    socket.allowHalfOpen = true;
    socket.setTimeout(ctx.port.idleTimeout);
    socket.on('timeout', () => {
      ctx.telemetry.terminated('idle_timeout');
      this.terminate('idle_timeout');
    });
    socket.pipe(upstream);
    upstream.pipe(socket);
    socket.on('close', this.onClose);
    upstream.on('close', this.onClose);
    // The caller is gone: nothing more can be delivered to it.
    socket.once('close', () => upstream.destroy());
    if (this.auditReason === null) {
      ctx.flows.admit(this);
      this.registered = true;
    }
  }

  /** Close both sides now (license gone, idle, shutdown). */
  terminate(_reason: TerminationReason): void {
    this.socket.destroy();
    this.upstream.destroy();
  }

  private readonly onClose = (): void => {
    if (++this.closed < 2) return;
    const { ctx, upstream } = this;
    if (this.registered) ctx.flows.release(this);
    const bytesIn = Math.max(0, upstream.bytesWritten - this.headLength);
    const bytesOut = upstream.bytesRead;
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
