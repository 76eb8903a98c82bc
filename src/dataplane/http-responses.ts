/**
 * The answers the proxy writes itself: 403 denials (SPEC §2.5), 400 for requests it will not
 * forward, 502/504 when the upstream fails. Bodies and header lists are built once per port, so a
 * denial on the hot path is a table lookup and a write, never a JSON.stringify.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { DENY_REASONS, type DenyReason } from '../policy/types.js';
import { DENY_REASON_HEADER } from './http-headers.js';
import { markClosing } from './http-order.js';

/** Why the proxy refused to forward a request it could parse (the `reason` of a 400 body). */
export type BadRequestReason =
  | 'bad_path'
  | 'missing_host'
  | 'duplicate_host'
  | 'conflicting_content_length'
  | 'host_mismatch'
  | 'unsupported_method'
  | 'unsupported_upgrade';

/** Why the proxy answers for an upstream that did not. */
export type GatewayReason = 'upstream_unavailable' | 'upstream_timeout';

/** A prepared answer: status, header list (without Connection and Date) and body. */
export interface CannedResponse {
  readonly status: number;
  readonly headers: readonly string[];
  readonly body: Buffer;
  /** The response as raw bytes with `connection: close` and a Date, for sockets outside the HTTP server. */
  raw(): Buffer;
  /** The response as raw bytes with a Date, on a connection that stays open (the fast lane's). */
  keepAlive(): Buffer;
}

let dateSecond = -1;
let dateText = '';

/**
 * The current time as an HTTP date (IMF-fixdate, RFC 9110 §5.6.7), formatted once per second.
 * Wall-clock time, as Node's own server puts in its Date header: the answer's time, not policy time.
 */
export function httpDate(now = Date.now()): string {
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}

/**
 * A CannedResponse whose raw bytes are built once per second: RFC 9110 §6.6.1 wants a Date on every
 * 2xx-4xx answer of a server with a clock (Node's server adds one to the answers it sends itself).
 */
class Canned implements CannedResponse {
  private date = '';
  private closing = EMPTY;
  private open = EMPTY;

  constructor(
    readonly status: number,
    readonly headers: readonly string[],
    readonly body: Buffer,
    /** Status line and `headers`, CRLF-terminated. */
    private readonly head: string,
  ) {}

  raw(): Buffer {
    this.refresh();
    return this.closing;
  }

  keepAlive(): Buffer {
    this.refresh();
    return this.open;
  }

  private refresh(): void {
    const date = httpDate();
    if (date === this.date) return;
    this.date = date;
    const head = `${this.head}date: ${date}\r\n`;
    this.closing = Buffer.concat([Buffer.from(`${head}connection: close\r\n\r\n`, 'latin1'), this.body]);
    this.open = Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), this.body]);
  }
}

const EMPTY = Buffer.alloc(0);

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

function canned(status: number, body: object, extra: readonly string[] = []): CannedResponse {
  const b = Buffer.from(JSON.stringify(body));
  const headers = ['content-type', 'application/json', 'content-length', String(b.length), ...extra];
  let head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]!}: ${headers[i + 1]!}\r\n`;
  return new Canned(status, headers, b, head);
}

/** Every answer of one port, keyed by reason. */
export interface PortResponses {
  readonly deny: Readonly<Record<DenyReason, CannedResponse>>;
  readonly badRequest: Readonly<Record<BadRequestReason, CannedResponse>>;
  readonly gateway: Readonly<Record<GatewayReason, CannedResponse>>;
  /** For parse errors reported by the HTTP server itself (raw only; the socket is closed after). */
  readonly malformed: CannedResponse;
  readonly headersTooLarge: CannedResponse;
  readonly requestTimeout: CannedResponse;
}

const BAD_REQUEST_REASONS: readonly BadRequestReason[] = [
  'bad_path',
  'missing_host',
  'duplicate_host',
  'conflicting_content_length',
  'host_mismatch',
  'unsupported_method',
  'unsupported_upgrade',
];

/** Build the answers of the port `portKey` (`service/port`). */
export function portResponses(portKey: string): PortResponses {
  const deny = {} as Record<DenyReason, CannedResponse>;
  for (const reason of DENY_REASONS)
    deny[reason] = canned(403, { error: 'forbidden', reason, port: portKey }, [DENY_REASON_HEADER, reason]);
  const badRequest = {} as Record<BadRequestReason, CannedResponse>;
  for (const reason of BAD_REQUEST_REASONS)
    badRequest[reason] = canned(400, { error: 'bad_request', reason, port: portKey });
  return {
    deny,
    badRequest,
    gateway: {
      upstream_unavailable: canned(502, {
        error: 'bad_gateway',
        reason: 'upstream_unavailable',
        port: portKey,
      }),
      upstream_timeout: canned(504, { error: 'gateway_timeout', reason: 'upstream_timeout', port: portKey }),
    },
    malformed: canned(400, { error: 'bad_request', reason: 'malformed_request', port: portKey }),
    headersTooLarge: canned(431, { error: 'bad_request', reason: 'headers_too_large', port: portKey }),
    requestTimeout: canned(408, { error: 'bad_request', reason: 'request_timeout', port: portKey }),
  };
}

/**
 * Bodies up to this size that have not been read yet are read and discarded after an early answer,
 * keeping the connection; beyond it (or chunked), the connection is closed after the answer.
 */
export const DISCARDABLE_BODY_BYTES = 64 * 1024;

/**
 * How long a connection that is being closed with an unread request body keeps reading (and
 * discarding) before it is cut. Closing a socket that still has unread input makes the kernel send
 * an RST, which can destroy the answer before the caller has read it (Envoy's delayed close,
 * nginx's lingering close).
 */
export const LINGER_MS = 2_000;

/**
 * Answer a request without forwarding it (deny, 400, 502, 504). Its body is never forwarded; a
 * small or complete one is discarded and the connection kept, a large or chunked one that is
 * still pending closes the connection after the answer (lingering, see LINGER_MS).
 */
export function sendCanned(
  req: IncomingMessage,
  res: ServerResponse,
  answer: CannedResponse,
  bodyLength: number,
  close: boolean,
): void {
  const pending = bodyLength !== 0 && !req.complete;
  if (close || (pending && (bodyLength < 0 || bodyLength > DISCARDABLE_BODY_BYTES))) {
    const socket = req.socket;
    markClosing(socket);
    if (pending) lingerOnClose(socket);
    res.writeHead(answer.status, [...answer.headers, 'connection', 'close']);
  } else {
    res.writeHead(answer.status, answer.headers as string[]);
  }
  res.end(answer.body);
  // Node closes on its own too: after a refused `Expect: 100-continue`, for one.
  if (!res.shouldKeepAlive) markClosing(req.socket);
}

/**
 * Make the HTTP server's close of this socket (after a `connection: close` answer) a lingering one
 * (see `endLingering`) instead of Node's immediate destroy.
 */
function lingerOnClose(socket: Socket): void {
  socket.destroySoon = function lingeringClose(this: Socket): void {
    endLingering(this);
  };
}

/**
 * Send FIN (after `last`, if given), then keep reading and discarding input until the caller
 * closes or LINGER_MS passes, and destroy. Closing a socket with unread input makes the kernel
 * send an RST, which can destroy the answer before the caller has read it.
 */
export function endLingering(socket: Socket, last?: Buffer): void {
  if (socket.destroyed) return;
  if (last !== undefined && socket.writable) socket.end(last);
  else socket.end();
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.resume();
}

/** Write a prepared answer on a socket that no HTTP server response owns (upgrade, parse error) and close it. */
export function writeRawAndClose(socket: Socket, answer: CannedResponse): void {
  endLingering(socket, answer.raw());
}
