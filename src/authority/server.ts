/**
 * The authority's mTLS API listener. TLS first: a client certificate is required and must chain
 * to `tls.ca` (TLS >= 1.2), else the handshake is refused before any HTTP is read. Then, per
 * request and in this order: identity (the certificate's SPIFFE ID) -> route (404/405) ->
 * authorization (403) -> query parameters -> body (415/413/400) -> handler -> one log line.
 * Slow clients are cut by the handshake, header and request timeouts; idle sockets by the socket
 * timeout, which outlasts the longest long-poll hold.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import type { HostPort } from '../config/types.js';
import { ConfigError, errorMessage, PortlicenseError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatHostPort } from '../telemetry/admin-server.js';
import { ApiError } from './api-error.js';
import type { Authorizer } from './auth.js';
import { errorReply, readInput, send, type BodyInput, type Reply } from './http-io.js';
import { configErrorToApi, Query } from './input.js';
import type { Route, Router } from './router.js';

export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

export interface AuthorityServerOptions {
  listen: HostPort;
  tls: TlsMaterial;
  handshakeTimeout: number;
  limits: { maxBodyBytes: number; maxWait: number; maxConnections: number; headersTimeout: number };
  authorizer: Authorizer;
  router: Router;
  /** Gets one line per request. */
  log: Logger;
}

/** The whole request (head and body) must arrive within this, or headersTimeout if longer. */
const REQUEST_TIMEOUT_MS = 60_000;
/** A keep-alive connection with no request in flight is closed after this. */
const KEEP_ALIVE_MS = 65_000;
/** Nginx's "client closed request": logged for a client that left before its answer. */
const CLIENT_CLOSED = 499;

export class AuthorityServer {
  private readonly server: Server;
  private draining = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly opts: AuthorityServerOptions) {
    const { limits } = opts;
    this.server = createServer(
      {
        ...opts.tls,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        handshakeTimeout: opts.handshakeTimeout,
        headersTimeout: limits.headersTimeout,
        requestTimeout: Math.max(REQUEST_TIMEOUT_MS, limits.headersTimeout),
        // Node checks those deadlines on this beat (default 30 s); a 10 s limit needs a finer one.
        connectionsCheckingInterval: Math.min(1_000, limits.headersTimeout),
        keepAliveTimeout: KEEP_ALIVE_MS,
        maxHeaderSize: 16 * 1024,
      },
      (req, res) => {
        this.handle(req, res).catch((err: unknown) => {
          opts.log.error('request handling failed', { err });
          res.destroy();
        });
      },
    );
    this.server.maxConnections = limits.maxConnections;
    // A held long poll is silent for up to maxWait; only sockets idle beyond that are dead.
    this.server.setTimeout(limits.maxWait + 30_000, (socket) => socket.destroy());
    // https re-emits TLS failures (handshake timeout, bad certificate) as clientError: those
    // sockets never spoke HTTP and must be destroyed, not sent an HTTP answer they cannot carry.
    const secured = new WeakSet<object>();
    this.server.on('secureConnection', (socket: TLSSocket) => secured.add(socket));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException) =>
      opts.log.debug('TLS handshake refused', { reason: err.code ?? errorMessage(err) }),
    );
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (!secured.has(socket)) {
        socket.destroy();
        return;
      }
      const status =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? '431 Request Header Fields Too Large'
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? '408 Request Timeout'
            : '400 Bad Request';
      if (socket.writable && err.code !== 'ECONNRESET')
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      else socket.destroy();
    });
  }

  /** Bind. Rejects with PortlicenseError('LISTEN_FAILED') naming the address. */
  listen(): Promise<HostPort> {
    const { listen } = this.opts;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(
          new PortlicenseError(
            'LISTEN_FAILED',
            `authority API cannot listen on ${formatHostPort(listen)}: ${errorMessage(err)}`,
            { cause: err },
          ),
        );
      this.server.once('error', onError);
      this.server.listen(listen.port, listen.host, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.opts.log.error('API server error', { err }));
        const a = this.server.address() as AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  /** New certificates for new connections; open ones keep theirs. Throws on unusable material. */
  setTls(material: TlsMaterial): void {
    this.server.setSecureContext({ ...material, minVersion: 'TLSv1.2' });
  }

  /**
   * Stop accepting, let requests in flight finish (answers carry `Connection: close`) for up to
   * `drainMs`, then cut what is left. Held long polls must be released first (LongPoll.close).
   * Idempotent.
   */
  close(drainMs: number): Promise<void> {
    return (this.closing ??= new Promise<void>((resolve) => {
      this.draining = true;
      const timer = setTimeout(() => this.server.closeAllConnections(), drainMs);
      timer.unref();
      // Node closes idle keep-alive sockets here and waits for the busy ones.
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.server.closeIdleConnections();
    }));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const aborter = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) aborter.abort();
    });

    let identity: string | null = null;
    let route: Route | undefined;
    let reply: Reply;
    try {
      identity = this.opts.authorizer.identityOf(req.socket as TLSSocket);
      const m = this.opts.router.match(method, path);
      if (m.kind === 'not_found') throw new ApiError(404, 'not_found', `no route ${method} ${path}`);
      if (m.kind === 'method_not_allowed') {
        reply = errorReply(
          new ApiError(405, 'method_not_allowed', `${path} answers ${m.allow.join(', ')}, not ${method}`),
          { allow: m.allow.join(', ') },
        );
      } else {
        route = m.route;
        this.opts.authorizer.require(identity, route.role);
        const query = new Query(q === -1 ? '' : url.slice(q + 1), route.query ?? []);
        const body: BodyInput = route.body
          ? await readInput(req, route.body, this.opts.limits.maxBodyBytes)
          : undefined;
        reply = await route.handle({
          method,
          path,
          params: m.params,
          query,
          headers: req.headers,
          identity,
          body,
          signal: aborter.signal,
        });
      }
    } catch (err) {
      reply = this.errorToReply(err, method, path);
    }

    const gone = aborter.signal.aborted || res.destroyed;
    const status = gone ? CLIENT_CLOSED : reply.status;
    if (!gone) {
      // A body left unread (413, or an error before reading it) must not be parsed as the next request.
      const close = this.draining || !req.complete;
      send(res, reply, close ? { connection: 'close' } : undefined);
    }
    route?.observe?.(status);
    this.opts.log.info('request', {
      method,
      path,
      status,
      identity,
      durationMs: Math.round((performance.now() - started) * 10) / 10,
      ...(status >= 400 && reply.body && typeof reply.body === 'object'
        ? { error: (reply.body as { error?: unknown }).error }
        : {}),
    });
  }

  private errorToReply(err: unknown, method: string, path: string): Reply {
    if (err instanceof ApiError) return errorReply(err);
    if (err instanceof ConfigError) return errorReply(configErrorToApi(err));
    this.opts.log.error('request failed', { method, path, err });
    return errorReply(new ApiError(500, 'internal', `internal error: ${errorMessage(err)}`));
  }
}
