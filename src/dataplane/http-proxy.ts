/**
 * An http port (SPEC §2.5): TLS and identity from the shared handshake front, then Node's HTTP/1.1
 * server on each handshaken socket, a decision per request, and an undici pool toward the upstream.
 *
 * Connection lifecycle, in order: accept -> TLS handshake (handshake.ts) -> remember the peer ->
 * the fast lane (fast-lane.ts) serves plain HTTP/1.1 requests for as long as they come; at the
 * first request it does not serve, the connection moves to the full path for good: HTTP parse
 * (llhttp, strict: conflicting Content-Length/Transfer-Encoding, bad chunking, obs-fold, bare LF
 * and oversize heads never reach a handler) -> per request: target and head checks -> decide ->
 * 403, or forward (http-request.ts) / splice an Upgrade (http-upgrade.ts) -> close.
 *
 * PORTLICENSE_FAST_LANE=0 in the environment sends every connection to the full path (for
 * comparing the two; see docs/performance.md).
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { TimerHandle } from '../clock.js';
import type { HostPort } from '../config/types.js';
import { FlowRegistry } from './flows.js';
import { createTlsListener, listenOn } from './handshake.js';
import { HttpPortContext } from './http-context.js';
import { answerInTurn } from './http-order.js';
import { handleRequest } from './http-request.js';
import { writeRawAndClose } from './http-responses.js';
import { handleUpgrade } from './http-upgrade.js';
import { createUpstreamPool } from './http-upstream.js';
import { FastConnection } from './fast-lane.js';
import { UpstreamPool } from './fast-upstream.js';
import type { PortDeps, PortListener } from './types.js';

/** Whether plain requests take the fast lane (fast-lane.ts); read once. */
const FAST_LANE = process.env.PORTLICENSE_FAST_LANE !== '0';

/**
 * How often deadlines are checked (Node's for head/request deadlines, the fast lane's sweep for its
 * head, upstream and idle deadlines): a quarter of the shortest, at most 1 s (Node's 30 s default
 * would make a 10 s headersTimeout 40 s), at least 25 ms.
 */
function checkingInterval(shortest: number): number {
  return Math.min(1_000, Math.max(25, Math.floor(shortest / 4)));
}

/**
 * Create (not bind) the listener of an http port.
 *
 * Timeouts: the request head must be complete within `headersTimeout` (408, then close); an idle
 * keep-alive connection closes after `idleTimeout`; while a request is open, a connection with no
 * bytes either way for longer than both `idleTimeout` and `upstreamTimeout` is cut (a stalled
 * upload, an abandoned response). There is no whole-request deadline: long streamed bodies are
 * legitimate.
 */
export function createHttpPort(deps: PortDeps): PortListener {
  const { port, telemetry, clock } = deps;
  const open = new Set<TLSSocket>();
  const flows = new FlowRegistry({
    policy: deps.policy,
    clock,
    telemetry,
    log: deps.log,
    audit: port.mode === 'audit',
  });
  const ctx = new HttpPortContext(deps, createUpstreamPool(port), flows);
  const { responses } = ctx;
  const fast = {
    ctx,
    pool: new UpstreamPool(port.upstream, {
      connectTimeout: port.connectTimeout,
      idleTimeout: port.upstreamIdleTimeout,
    }),
    live: new Set<FastConnection>(),
    handover(socket: TLSSocket, bytes: Buffer | null): void {
      if (bytes !== null) socket.unshift(bytes);
      if (socket.isPaused()) socket.resume();
      server.emit('connection', socket);
    },
  };
  const sweep = setInterval(
    () => {
      if (fast.live.size === 0) return;
      const now = performance.now();
      for (const c of fast.live) c.check(now);
    },
    checkingInterval(Math.min(port.headersTimeout, port.upstreamTimeout, port.idleTimeout)),
  );
  sweep.unref();

  const server = http.createServer(
    {
      maxHeaderSize: port.maxHeaderSize,
      headersTimeout: port.headersTimeout,
      requestTimeout: 0,
      keepAliveTimeout: port.idleTimeout,
      connectionsCheckingInterval: checkingInterval(port.headersTimeout),
      insecureHTTPParser: false,
      // Checked by checkRequest instead, to answer with the same JSON as every other 400.
      requireHostHeader: false,
    },
    (req, res) => handleRequest(ctx, req, res, false),
  );
  server.timeout = Math.max(port.idleTimeout, port.upstreamTimeout) + 1_000;
  // Node keeps only the first maxHeadersCount fields (2000 by default) for the handler while its
  // parser frames the message with all of them: a Transfer-Encoding or second Host after that
  // many fields would go unseen here. maxHeaderSize bounds the head instead.
  server.maxHeadersCount = 0;
  // With a listener, Node leaves `Expect: 100-continue` to us: the interim answer is sent only
  // once the request is authorised, so a denied caller never starts its upload.
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) =>
    handleRequest(ctx, req, res, true),
  );
  // Answers written on the raw socket wait for the responses pipelined before them (http-order.ts).
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
    answerInTurn(socket as Socket, () => handleUpgrade(ctx, req, socket as TLSSocket, head)),
  );
  server.on('connect', (req: http.IncomingMessage, socket: Duplex) => {
    answerInTurn(socket as Socket, () => {
      writeRawAndClose(socket as Socket, responses.badRequest.unsupported_method);
      const conn = ctx.connection(socket as Socket);
      if (conn !== undefined) ctx.rejected(conn, 'CONNECT', req.url ?? '', 'unsupported_method');
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) =>
    onClientError(ctx, err, socket as Socket),
  );
  // The HTTP server never listens itself (sockets are handed to it); 'listening' is what starts its
  // tracking of open connections, which enforces headersTimeout and lets drain close idle ones.
  server.emit('listening');

  const tlsServer = createTlsListener({
    deps,
    onConnection(socket, peer) {
      socket.on('error', () => socket.destroy());
      // Handshakes that were under way when drain began: the port no longer serves.
      if (ctx.draining) {
        socket.destroy();
        return;
      }
      open.add(socket);
      telemetry.connectionOpened();
      socket.once('close', () => {
        open.delete(socket);
        telemetry.connectionClosed();
        if (open.size === 0) allClosed?.();
      });
      const conn = { peer, usage: null, reading: null };
      ctx.accept(socket, conn);
      if (FAST_LANE) new FastConnection(fast, socket, conn);
      else server.emit('connection', socket);
    },
  });

  let allClosed: (() => void) | undefined;
  let draining: Promise<void> | undefined;

  const cut = (): void => {
    for (const s of open) s.destroy();
  };

  return {
    port,
    listen: (): Promise<HostPort> => listenOn(tlsServer, port),
    activeConnections: () => open.size,
    drain(deadlineMs: number): Promise<void> {
      return (draining ??= (async () => {
        // Stop accepting; idle keep-alive connections close now, busy ones after their response
        // (which carries `connection: close`), spliced upgrades at the deadline at the latest.
        ctx.draining = true;
        tlsServer.close(() => {});
        server.closeIdleConnections();
        for (const c of [...fast.live]) c.drain();
        if (open.size > 0) {
          const wait = deadlineMs - clock.now();
          let timer: TimerHandle | undefined;
          const done = new Promise<void>((resolve) => (allClosed = resolve));
          if (wait <= 0) cut();
          else timer = clock.setTimer(cut, wait);
          await done;
          timer?.cancel();
        }
        server.close();
        flows.close();
        clearInterval(sweep);
        fast.pool.close();
        await ctx.pool.close();
      })());
    },
  };
}

/**
 * A request the parser refused (malformed, oversize head, head too slow): answer with JSON 400,
 * 431 or 408 on the raw socket and close it.
 */
function onClientError(ctx: HttpPortContext, err: NodeJS.ErrnoException, socket: Socket): void {
  // Called again for every chunk that arrives after a parse error: answer once.
  if (socket.writableEnded || socket.destroyed) return;
  const conn = ctx.connection(socket);
  // A body that fails to parse (bad chunk) must not reach the upstream: stop its forwarding now,
  // synchronously, before undici gets to write what was already read.
  conn?.reading?.abandon();
  // Node's own guard: a response already under way cannot be followed by an error answer.
  const busy = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || busy?.headersSent === true) {
    socket.destroy();
    return;
  }
  const { responses } = ctx;
  const answer =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? responses.headersTooLarge
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? responses.requestTimeout
        : responses.malformed;
  ctx.note('info', `client_error_${answer.status}`, 'malformed http request refused', {
    status: answer.status,
    code: err.code,
    identity: conn?.peer.identity,
    origin: conn?.peer.origin,
  });
  // In its turn, and not at all after an answer that closes the connection (http-order.ts).
  answerInTurn(socket, () => writeRawAndClose(socket, answer));
}
