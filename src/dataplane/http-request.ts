/**
 * One HTTP request on an http port, in order: target -> head checks -> decide -> deny, or forward
 * upstream (SPEC §2.3, §2.5, §2.6). Everything before the dispatch is synchronous; the request
 * body is not touched until the request is authorised, and never forwarded when it is not.
 */
import { performance } from 'node:perf_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { joinTarget, normalizeTarget } from '../policy/path.js';
import type { HttpConnection } from './http-authorize.js';
import type { HttpPortContext } from './http-context.js';
import { targetAuthority, upstreamRequestHead, vouch, type UpstreamHead } from './http-headers.js';
import { isClosing, trackResponse } from './http-order.js';
import { sendCanned, type BadRequestReason } from './http-responses.js';
import { Exchange } from './http-upstream.js';

/**
 * Checks shared by plain and Upgrade requests: the normalised path and query, and the upstream
 * head; or why the request is refused with 400.
 */
export interface CheckedRequest {
  readonly path: string;
  readonly query: string | null;
  readonly head: UpstreamHead;
}

/**
 * Validate what the parser let through. An absolute-form target (`GET http://host/p`) is served
 * only when its authority equals the Host header: the upstream routes on Host, so a target naming
 * another host would authorise one request and deliver another. The asterisk form (`OPTIONS *`)
 * is refused as `bad_path`: it addresses a server, not a resource, and the upstream client cannot
 * send it.
 */
export function checkRequest(
  req: IncomingMessage,
  origin: string,
  upgrade: boolean,
): CheckedRequest | BadRequestReason {
  const url = req.url!;
  const target = normalizeTarget(url, req.method);
  if (target === null || target.path === '*') return 'bad_path';
  const head = upstreamRequestHead(req.rawHeaders, origin, upgrade);
  if (typeof head === 'string') return head;
  if (head.host === null && req.httpVersionMinor === 1) return 'missing_host';
  const authority = targetAuthority(url);
  if (authority !== null && (head.host === null || authority !== head.host.toLowerCase()))
    return 'host_mismatch';
  return { path: target.path, query: target.query, head };
}

/**
 * Serve one request. `expectContinue`: the caller sent `Expect: 100-continue` and waits for the
 * interim answer before its body; it gets one only once the request is authorised.
 */
export function handleRequest(
  ctx: HttpPortContext,
  req: IncomingMessage,
  res: ServerResponse,
  expectContinue: boolean,
): void {
  const started = performance.now();
  const socket = req.socket;
  const conn = ctx.connection(socket);
  if (conn === undefined) {
    res.destroy();
    return;
  }
  // Pipelined behind an answer that closes the connection: the caller will never read this one.
  if (isClosing(socket)) return;
  trackResponse(socket, res);
  const method = req.method!;
  const checked = checkRequest(req, conn.peer.origin, false);
  if (typeof checked === 'string') {
    reject(ctx, conn, req, res, checked);
    return;
  }
  const x = new Exchange(ctx, conn, req, res, started);
  x.path = checked.path;
  x.bodyLength = checked.head.bodyLength;
  ctx.authorizer.authorize(conn, method, checked.path, ctx.clock.now(), x);
  if (!x.forward) {
    const reason = x.reason!;
    sendCanned(req, res, ctx.responses.deny[reason], x.bodyLength, ctx.draining);
    ctx.denied(conn, method, checked.path, reason, started);
    return;
  }
  const headers = checked.head.headers;
  vouch(headers, conn.peer.identity, x.license === null ? null : x.license.id);
  if (expectContinue) res.writeContinue();
  x.dispatch(ctx.pool, joinTarget(checked.path, checked.query), headers);
}

function reject(
  ctx: HttpPortContext,
  conn: HttpConnection,
  req: IncomingMessage,
  res: ServerResponse,
  reason: BadRequestReason,
): void {
  // The head could not be read safely, so neither can the body's length: close after answering.
  sendCanned(req, res, ctx.responses.badRequest[reason], -1, true);
  ctx.rejected(conn, req.method!, req.url!, reason);
}
