/**
 * The upstream side of an http port: one undici Pool of keep-alive connections per port, and the
 * dispatch handler that streams one exchange through it — request body from the caller's
 * IncomingMessage as undici reads it, response chunks written to the caller as they arrive, with
 * backpressure both ways and nothing buffered (SPEC §2.5).
 *
 * The handler uses undici's callback interface (onConnect/onHeaders/onData/onComplete/onError/
 * onBodySent) rather than the controller interface: it is the one undici's Client drives directly,
 * so a response is never re-parsed into a header object, and it is the only one that reports
 * request body bytes as they are sent. undici is pinned to 7.x in package.json.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import type { HostPort, PortConfig } from '../config/types.js';
import type { CompiledLicense, DenyReason } from '../policy/types.js';
import type { HttpConnection, Verdict } from './http-authorize.js';
import { callerResponseHeaders } from './http-headers.js';
import { sendCanned, type GatewayReason } from './http-responses.js';
import type { HttpPortContext } from './http-context.js';
import { KEEP_ALIVE_MARGIN_MS } from './fast-upstream.js';

/** Largest upstream response head accepted (also for upgrades); beyond it the caller gets a 502. */
export const MAX_RESPONSE_HEAD = 64 * 1024;

export function upstreamOrigin(upstream: HostPort): string {
  const host = upstream.host.includes(':') ? `[${upstream.host}]` : upstream.host;
  return `http://${host}:${upstream.port}`;
}

/**
 * The connection pool toward a port's upstream: keep-alive, no pipelining, at most one upstream
 * connection per accepted caller connection, dialing bounded by `connectTimeout`, response head due
 * within `upstreamTimeout`, and the body cut when it stalls for the port's idle timeout.
 */
export function createUpstreamPool(port: PortConfig): Pool {
  return new Pool(upstreamOrigin(port.upstream), {
    connections: port.maxConnections,
    pipelining: 1,
    headersTimeout: port.upstreamTimeout,
    bodyTimeout: port.idleTimeout,
    // Idle kept connections close after upstreamIdleTimeout, or sooner when the upstream says so
    // (Keep-Alive: timeout=N, less the same margin as the fast lane's).
    keepAliveTimeout: port.upstreamIdleTimeout,
    keepAliveMaxTimeout: port.upstreamIdleTimeout,
    keepAliveTimeoutThreshold: KEEP_ALIVE_MARGIN_MS,
    maxHeaderSize: MAX_RESPONSE_HEAD,
    connect: { timeout: port.connectTimeout },
  });
}

/**
 * undici's code for "no response head within headersTimeout" (504). Everything else before a
 * response head — refused, reset, connect timeout, malformed answer — means the upstream is not
 * serving (502).
 */
const HEADERS_TIMEOUT = 'UND_ERR_HEADERS_TIMEOUT';

/** The reason given to undici when it must stop an exchange; shared, it is never shown to anyone. */
const CLIENT_GONE = new Error('caller went away');

/**
 * One request on its way through the proxy: the verdict that admitted it, the undici dispatch
 * handler, and the bookkeeping for metrics and the access log when it ends.
 */
export class Exchange implements Verdict, Dispatcher.DispatchHandler {
  license: CompiledLicense | null = null;
  reason: DenyReason | null = null;
  forward = false;
  /** Request body bytes sent upstream / response body bytes sent to the caller. */
  bytesIn = 0;
  bytesOut = 0;
  status = 0;
  /** Set once the request head is known; -1 chunked. */
  bodyLength = 0;
  path = '';
  private abortUpstream: ((err?: Error) => void) | null = null;
  private resumeUpstream: (() => void) | null = null;
  private ended = false;

  constructor(
    readonly ctx: HttpPortContext,
    readonly conn: HttpConnection,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    /** performance.now() when the request head was complete. */
    readonly started: number,
  ) {}

  get method(): string {
    return this.req.method!;
  }

  /** Send the request upstream (the verdict allowed it, or audit mode lets it through). */
  dispatch(pool: Pool, target: string, headers: string[]): void {
    const req = this.req;
    this.res.once('close', this.onResponseClose);
    if (this.bodyLength !== 0) {
      this.conn.reading = this;
      req.once('end', this.onRequestEnd);
    }
    try {
      pool.dispatch(
        {
          path: target,
          method: req.method!,
          headers,
          body: this.bodyLength === 0 ? null : req,
          // The caller decides about retries; the proxy never replays a request.
          idempotent: false,
        },
        this,
      );
    } catch (err) {
      // undici refused the request outright (it validates again what llhttp accepted).
      this.onError(err as Error);
    }
  }

  /**
   * The caller's request turned out malformed after its head was forwarded (a bad chunk): stop
   * before undici sends anything more. If its head is not written yet, it never will be.
   */
  abandon(): void {
    // A request the parser read whole was not the malformed one: a later head on the connection was.
    if (this.ended || this.req.complete) return;
    this.ended = true;
    this.abortUpstream?.(CLIENT_GONE);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.ended) abort(CLIENT_GONE);
    else this.abortUpstream = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    // 1xx (e.g. 103 Early Hints) are informational and not relayed.
    if (statusCode < 200) return true;
    this.status = statusCode;
    this.resumeUpstream = resume;
    const headers = callerResponseHeaders(rawHeaders, this.ctx.draining);
    if (statusText) this.res.writeHead(statusCode, statusText, headers);
    else this.res.writeHead(statusCode, headers);
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.bytesOut += chunk.length;
    if (this.res.write(chunk)) return true;
    this.res.once('drain', this.resumeUpstream!);
    return false;
  }

  onComplete(): void {
    this.res.end();
  }

  /** undici 7 passes the chunk it wrote (its typings say a size; both are counted right). */
  onBodySent(chunk: Buffer | string | number): void {
    this.bytesIn += typeof chunk === 'number' ? chunk : Buffer.byteLength(chunk);
  }

  onError(err: Error): void {
    if (this.ended) return;
    const res = this.res;
    if (res.headersSent) {
      // Mid-response: the caller must not take a truncated body for a whole one.
      res.destroy(err);
      return;
    }
    const code = (err as { code?: string }).code ?? '';
    const reason: GatewayReason = code === HEADERS_TIMEOUT ? 'upstream_timeout' : 'upstream_unavailable';
    this.status = reason === 'upstream_timeout' ? 504 : 502;
    this.ctx.note('warn', reason, 'upstream request failed', {
      reason,
      code,
      error: err.message,
      path: this.path,
    });
    if (this.req.destroyed) return;
    sendCanned(this.req, res, this.ctx.responses.gateway[reason], this.bodyLength, this.ctx.draining);
  }

  private readonly onRequestEnd = (): void => {
    if (this.conn.reading === this) this.conn.reading = null;
  };

  /** The caller's response is finished or the caller went away: abort upstream if still running, record. */
  private readonly onResponseClose = (): void => {
    this.ended = true;
    this.onRequestEnd();
    if (!this.res.writableFinished) this.abortUpstream?.(CLIENT_GONE);
    this.ctx.finish(this);
  };
}
