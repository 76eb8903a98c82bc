/**
 * The fast lane of an http port: the common request — HTTP/1.1, no Upgrade, no Expect — served
 * without Node's http.Server and without a generic client. The request head is parsed by the strict
 * parser in h1/, decided, rewritten and written to a kept upstream connection (fast-upstream.ts) in
 * one write; the request body (Content-Length or chunked) and the response body are forwarded as
 * they arrive, verbatim (chunk-size lines, extensions and trailers included), with their framing
 * checked by a BodyFramer so both connections know where each message ends and can be reused.
 *
 * A request body that breaks its framing is what llhttp refuses on the full path: the upstream
 * request is cut (its connection is never reused; the bytes of the read that broke it are not
 * forwarded), and the caller gets the full path's answer (http-proxy.ts, onClientError): 400, or
 * 431 for trailers over the head limit, and a close — or just the close when a response is already
 * under way. A body broken in the bytes that came with its head never reaches the upstream at all.
 *
 * Anything else goes to the full path at a request boundary: the connection is handed to the port's
 * http.Server with the unread bytes put back (`unshift`), and stays there. That covers requests the
 * fast lane does not serve (Upgrade, Expect, HTTP/1.0, CONNECT), every head the
 * strict parser refuses (llhttp answers it exactly as before: 400, 431), and every head check
 * that ends in a 400 (bad path, Host). The parser (h1/) refuses everything llhttp refuses, and
 * reads what both accept the same way (differential tests in test/dataplane/h1/), so the fast lane
 * only ever serves what both accept, and every refusal is the full path's. Denials, 502 and 504 are
 * answered here.
 *
 * Per connection one object with listeners bound once; per request one parse (no string per
 * field), one decision (the verdict object is reused), each head written once, as the bytes it
 * came in with fields dropped and the proxy's added (fast-heads.ts), and no timers: the head,
 * upstream and idle deadlines are checked by the port's sweep (`check`), like Node's
 * connectionsCheckingInterval. (A socket timeout would cost a timer per connection and a timer
 * update per read and per write.)
 */
import type { TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { normalizeTarget, type RequestTarget } from '../policy/path.js';
import type { CompiledLicense, DenyReason } from '../policy/types.js';
import {
  KEEP_ALIVE_MARGIN_MS,
  type UpstreamConn,
  type UpstreamOwner,
  type UpstreamPool,
} from './fast-upstream.js';
import type { HttpConnection, Verdict } from './http-authorize.js';
import type { HttpPortContext } from './http-context.js';
import {
  HeadOut,
  dropMarks,
  forwardedLines,
  licenseLine,
  requestHeadBytes,
  requestHeadText,
  responseHeadBytes,
  responseHeadText,
} from './fast-heads.js';
import {
  RESPONSE_DATED,
  callerResponseHeaders,
  plainRequestFields,
  plainResponseFields,
  targetAuthority,
  upstreamRequestHead,
  vouch,
} from './http-headers.js';
import { DISCARDABLE_BODY_BYTES, endLingering, httpDate, type CannedResponse } from './http-responses.js';
import {
  BodyFramer,
  RequestHeadParser,
  ResponseHeadParser,
  type RequestHead,
  type ResponseHead,
} from './h1/index.js';

const enum St {
  /** Between requests, or reading a request head. */
  Head,
  /** An exchange is in flight (request body and/or response under way). */
  Busy,
  /** A denied request's small body is being read and dropped. */
  Discard,
  /** Closing or closed. */
  Done,
  /** Handed to the full path. */
  Handed,
}

/**
 * Trailer names a caller may not send in a request body forwarded with its trailers: the fields the
 * proxy vouches for in the rewritten head (`upstreamRequestHead` strips them in any spelling). An
 * upstream that merges trailers into headers would otherwise take them from the caller. The
 * `x-portlicense-` prefix covers the identity and license headers and any future one.
 */
const VOUCHED_TRAILERS = ['x-portlicense-*', 'x-forwarded-for', 'x-forwarded-proto'];

/** Where request heads and response heads are written on their way out (fast-heads.ts). */
const REQUEST_OUT = new HeadOut();
const RESPONSE_OUT = new HeadOut();
/** Body bytes that arrive with a response head are written with it, up to one TLS record's worth. */
const JOINED_BODY = 16 * 1024;

const enum Resp {
  /** Waiting for (the rest of) the response head. */
  Head,
  Body,
  Complete,
}

/** What the fast lane needs from its port. */
export interface FastLanePort {
  readonly ctx: HttpPortContext;
  readonly pool: UpstreamPool;
  /** Hand a socket to the full path (the port's http.Server); `bytes` were read and are put back. */
  handover(socket: TLSSocket, bytes: Buffer | null): void;
  /** Connections in the fast lane, for the sweep and drain. */
  readonly live: Set<FastConnection>;
}

/** One caller connection while it is in the fast lane. */
export class FastConnection implements UpstreamOwner, Verdict {
  private st = St.Head;
  private readonly parser: RequestHeadParser;
  private readonly respParser: ResponseHeadParser;
  /** Frames the response body. */
  private readonly framer = new BodyFramer();
  /** Frames the request body (trailers count against the head limit, as llhttp counts them). */
  private readonly reqFramer: BodyFramer;
  /** Raw bytes of the request head being read (for a handover), from its first byte. */
  private headFirst: Buffer | null = null;
  /** The chunks after the first, for a head that spans reads. */
  private headMore: Buffer[] | null = null;
  /** Bytes after the current request, held until its response is complete (pipelining). */
  private pending: Buffer | null = null;
  /** performance.now() when the current head's first byte arrived; 0 between requests. */
  headStart = 0;
  /**
   * While the response head is awaited: performance.now() when the request, or its last body
   * bytes, went upstream, or when the new connection it waited for connected (upstreamTimeout
   * counts from there, as undici's headersTimeout does on the full path); 0 otherwise.
   */
  waitStart = 0;
  /** performance.now() at the last read from the caller or write to it. */
  private lastIo: number;

  // The exchange in flight (one at a time per connection).
  private up: UpstreamConn | null = null;
  private resp = Resp.Head;
  /** Bytes of a denied request's body still to drop (St.Discard). */
  private discardLeft = 0;
  private keepAlive = true;
  private upReusable = true;
  /** How long the upstream connection may idle after this exchange (its Keep-Alive hint), in ms. */
  private upIdleLimit = Infinity;
  started = 0;
  method = '';
  path = '';
  status = 0;
  bytesIn = 0;
  bytesOut = 0;
  bodyLength = 0;
  // Verdict, written by the authorizer.
  license: CompiledLicense | null = null;
  reason: DenyReason | null = null;
  forward = false;
  /** forwardedLines for this connection, made at its first forwarded request. */
  private forwarded: string | null = null;
  /** licenseLine of `lineFor`, the license of the last forwarded request. */
  private licenseLine = '';
  private lineFor: CompiledLicense | null = null;
  /** A response head is open in RESPONSE_OUT, not written yet (only ever within one upstream read). */
  private headOpen = false;
  /**
   * The caller's bytes holding the request head in flight (one read's worth, the head first), while
   * it may be sent again (`replayRequest`): until the response head arrives.
   */
  private replay: Buffer | null = null;
  /** Whether the upstream connection of the exchange in flight had served a request before. */
  private upKept = false;
  /** Whether any byte of the response in flight came from the upstream. */
  private heard = false;

  constructor(
    private readonly port: FastLanePort,
    readonly socket: TLSSocket,
    readonly conn: HttpConnection,
  ) {
    const { ctx } = port;
    this.parser = new RequestHeadParser({ maxHeaderSize: ctx.port.maxHeaderSize, headerStrings: false });
    this.respParser = new ResponseHeadParser({ headerStrings: false });
    this.reqFramer = new BodyFramer({
      maxTrailerSize: ctx.port.maxHeaderSize,
      forbidTrailers: VOUCHED_TRAILERS,
    });
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('close', this.onClose);
    socket.on('end', this.onEnd);
    this.lastIo = performance.now();
    port.live.add(this);
  }

  /** Whether nothing is in flight and no head is half read: drain may close it now. */
  get idle(): boolean {
    return this.st === St.Head && this.headStart === 0 && this.pending === null;
  }

  /** Whether the request body of the exchange in flight has not ended yet. */
  private get uploading(): boolean {
    return !this.reqFramer.done;
  }

  private readonly onData = (chunk: Buffer): void => {
    this.lastIo = performance.now();
    switch (this.st) {
      case St.Head:
        this.headBytes(chunk);
        return;
      case St.Busy:
        if (this.uploading) this.bodyBytes(chunk);
        else this.hold(chunk);
        return;
      case St.Discard:
        this.discardBytes(chunk);
        return;
      default:
        return;
    }
  };

  /** Keep bytes of the next request until the current response is complete; stop reading meanwhile. */
  private hold(chunk: Buffer): void {
    this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.socket.pause();
  }

  private headBytes(chunk: Buffer): void {
    // The read that brought them, or the end of the response before (pipelined bytes).
    if (this.headStart === 0) this.headStart = this.lastIo;
    if (this.headFirst === null) this.headFirst = chunk;
    else (this.headMore ??= []).push(chunk);
    const r = this.parser.execute(chunk);
    if (r.kind === 'more') return;
    if (r.kind === 'error' || !eligible(r)) {
      this.handover();
      return;
    }
    this.request(r, r.end < chunk.length ? chunk.subarray(r.end) : null);
  }

  /** Give the connection to the full path with everything read since this head began. */
  private handover(): void {
    const first = this.headFirst;
    const more = this.headMore;
    let bytes = first === null || more === null ? first : Buffer.concat([first, ...more]);
    if (this.pending !== null) bytes = bytes === null ? this.pending : Buffer.concat([bytes, this.pending]);
    this.headFirst = null;
    this.headMore = null;
    this.pending = null;
    this.st = St.Handed;
    this.detach();
    this.port.handover(this.socket, bytes);
  }

  private detach(): void {
    const s = this.socket;
    s.off('data', this.onData);
    s.off('drain', this.onDrain);
    s.off('close', this.onClose);
    s.off('end', this.onEnd);
    this.port.live.delete(this);
  }

  private request(head: RequestHead, rest: Buffer | null): void {
    const { ctx } = this.port;
    // A head that ends in a 400 is answered by the full path, with the bytes this lane has read.
    const target = normalizeTarget(head.target, head.method);
    if (target === null || target.path === '*') return this.handover();
    const fields = this.rewrittenFields(head);
    if (fields === undefined) return this.handover();
    // The caller's bytes this head was read from, for a replay (`replay`): a head read in one piece.
    const raw = this.headMore === null ? this.headFirst : null;
    this.headStart = 0;
    this.headFirst = null;
    this.headMore = null;

    this.started = performance.now();
    this.method = head.method;
    this.path = target.path;
    this.status = 0;
    this.bytesIn = 0;
    this.bytesOut = 0;
    const chunked = head.framing === 'chunked';
    this.bodyLength = chunked ? -1 : head.framing === 'length' ? head.contentLength : 0;
    this.keepAlive = head.keepAlive && !ctx.draining;
    ctx.authorizer.authorize(this.conn, head.method, target.path, ctx.clock.now(), this);
    if (!this.forward) {
      this.parser.release();
      this.deny(this.reason!, rest);
      return;
    }
    const text = this.upstreamHead(head, target, fields);
    this.parser.release();
    this.replay = this.bodyLength === 0 && replayable(head.method) ? raw : null;

    this.st = St.Busy;
    this.resp = Resp.Head;
    this.upReusable = true;
    this.upIdleLimit = Infinity;
    this.heard = false;
    const body = this.reqFramer;
    body.begin(head.framing, head.contentLength);
    // The body bytes read with the head are checked before the upstream is contacted: on the full
    // path, llhttp refuses them before undici has written anything.
    const n = rest === null ? 0 : body.execute(rest);
    if (n < 0) {
      if (fields === null) REQUEST_OUT.settle(false);
      this.badBody();
      return;
    }
    this.respParser.begin(head.method);
    const up = this.port.pool.acquire(this);
    this.up = up;
    this.upKept = up.connected;
    const sock = up.socket;
    this.waitStart = this.started; // same tick: one clock read per request
    if (rest === null) up.write(text);
    else {
      // Head and the body bytes that came with it in one write.
      sock.cork();
      up.write(text);
      this.forwardBody(rest, n);
      sock.uncork();
    }
    if (fields === null) REQUEST_OUT.settle(sock.writableLength > 0);
  }

  /**
   * How the head the parser just returned goes up: null when as its own bytes (fast-heads.ts, its
   * drop marks left in `dropMarks`), else as rewritten fields; undefined when the full path must
   * answer it (a 400: no or a conflicting Host).
   */
  private rewrittenFields(head: RequestHead): string[] | null | undefined {
    const spans = this.parser.spans();
    const authority = targetAuthority(head.target);
    if (authority === null && plainRequestFields(spans, dropMarks(spans.count))) return null;
    const uh = upstreamRequestHead(this.parser.fieldList(), this.conn.peer.origin, false, true);
    if (typeof uh === 'string' || uh.host === null) return undefined;
    if (authority !== null && authority !== uh.host.toLowerCase()) return undefined;
    return uh.headers;
  }

  /** The upstream request head for the verdict just made, from `rewrittenFields`' answer. */
  private upstreamHead(head: RequestHead, target: RequestTarget, fields: string[] | null): string | Buffer {
    const peer = this.conn.peer;
    const license = this.license;
    const chunked = this.bodyLength < 0;
    if (fields !== null) {
      vouch(fields, peer.identity, license === null ? null : license.id);
      return requestHeadText(head.method, target, fields, chunked);
    }
    if (license !== this.lineFor) {
      this.lineFor = license;
      this.licenseLine = license === null ? '' : licenseLine(license.id);
    }
    this.forwarded ??= forwardedLines(peer.origin, peer.identity);
    const spans = this.parser.spans();
    return requestHeadBytes(
      REQUEST_OUT,
      spans,
      dropMarks(spans.count),
      head.method,
      head.target,
      target,
      this.forwarded,
      this.licenseLine,
      chunked,
    );
  }

  /**
   * The kept upstream connection closed before a byte of the response: send the request again, once,
   * on a new connection, when it is one Go's net/http Transport would retry — GET, HEAD, OPTIONS or
   * TRACE without a body, on a connection that had served a request before. That is the keep-alive
   * race (the upstream closed an idle connection as the request went out on it), and such a request
   * may be sent twice (RFC 9110 §9.2.2). False when it may not: the caller gets the 502.
   */
  private replayRequest(): boolean {
    const raw = this.replay;
    this.replay = null;
    if (raw === null || this.heard || !this.upKept || this.st !== St.Busy) return false;
    const old = this.up;
    this.up = null;
    old?.destroy();
    // The same bytes, parsed and rewritten as the first time (the verdict stands).
    const head = this.parser.execute(raw);
    const target = head.kind === 'head' ? normalizeTarget(head.target, head.method) : null;
    const fields = target === null ? undefined : this.rewrittenFields(head as RequestHead);
    if (fields === undefined) {
      this.parser.release();
      return false;
    }
    const text = this.upstreamHead(head as RequestHead, target!, fields);
    this.parser.release();
    const { ctx } = this.port;
    ctx.note('info', 'upstream_retry', 'request sent again on a new upstream connection', {
      reason: 'kept connection closed before answering',
      method: this.method,
      path: this.path,
    });
    this.respParser.begin(this.method);
    this.upReusable = true; // a FIN on the old connection said otherwise of that one
    const up = this.port.pool.acquire(this, true);
    this.up = up;
    this.upKept = false;
    this.waitStart = performance.now();
    up.write(text);
    if (fields === null) REQUEST_OUT.settle(up.socket.writableLength > 0);
    return true;
  }

  /** Request body bytes from the caller while it is uploading; what follows it is the next request. */
  private bodyBytes(chunk: Buffer): void {
    const n = this.reqFramer.execute(chunk);
    if (n < 0) this.badBody();
    else this.forwardBody(chunk, n);
  }

  /** Forward the first `n` bytes of `chunk` (framed as this request's body) and hold the rest. */
  private forwardBody(chunk: Buffer, n: number): void {
    this.bytesIn = this.reqFramer.payload;
    const up = this.up;
    if (this.waitStart !== 0) this.waitStart = this.lastIo; // a slow upload is not a silent upstream
    if (n > 0 && up !== null && !up.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
      this.socket.pause();
    }
    if (n < chunk.length) this.hold(chunk.subarray(n));
  }

  /**
   * The request body broke its framing (bad chunk size or CRLF, oversize chunk line or trailers, a
   * forbidden trailer): do what the full path does when llhttp fails mid-body (http-proxy.ts,
   * onClientError). The upstream request is cut, so the upstream never takes it for whole; the
   * caller gets 400 (431 for trailers over the head limit) and a close, or only the close once a
   * response head has been written to it.
   */
  private badBody(): void {
    const { ctx } = this.port;
    const error = this.reqFramer.error!;
    const up = this.up;
    this.up = null;
    up?.destroy();
    this.waitStart = 0;
    const answered = this.resp !== Resp.Head;
    this.resp = Resp.Complete;
    this.st = St.Done;
    ctx.finish(this);
    this.detach();
    if (answered) {
      this.socket.destroy();
      return;
    }
    const answer = error.status === 431 ? ctx.responses.headersTooLarge : ctx.responses.malformed;
    ctx.note('info', `client_error_${answer.status}`, 'malformed http request refused', {
      status: answer.status,
      code: error.code,
      identity: this.conn.peer.identity,
      origin: this.conn.peer.origin,
    });
    endLingering(this.socket, answer.raw());
  }

  /**
   * Answer a denial. A body that is complete, or small, is dropped and the connection kept. A
   * chunked body's length is unknown until it ends, so it is kept only when it came whole with the
   * head; otherwise the connection closes after the answer, as on the full path.
   */
  private deny(reason: DenyReason, rest: Buffer | null): void {
    const { ctx } = this.port;
    const answer = ctx.responses.deny[reason];
    ctx.denied(this.conn, this.method, this.path, reason, this.started);
    if (this.bodyLength < 0) {
      const body = this.reqFramer;
      body.begin('chunked');
      const n = rest === null ? -1 : body.execute(rest);
      const whole = n >= 0 && body.done;
      if (!this.keepAlive || !whole) {
        this.close(answer, !whole);
        return;
      }
      this.socket.write(answer.keepAlive());
      this.next(n < rest!.length ? rest!.subarray(n) : null);
      return;
    }
    const received = rest === null ? 0 : rest.length;
    const unread = this.bodyLength - Math.min(received, this.bodyLength);
    if (!this.keepAlive || unread > DISCARDABLE_BODY_BYTES) {
      this.close(answer, unread > 0);
      return;
    }
    this.socket.write(answer.keepAlive());
    if (unread > 0) {
      this.st = St.Discard;
      this.discardLeft = unread;
      return;
    }
    this.next(rest === null || rest.length === this.bodyLength ? null : rest.subarray(this.bodyLength));
  }

  private discardBytes(chunk: Buffer): void {
    const n = Math.min(chunk.length, this.discardLeft);
    this.discardLeft -= n;
    if (this.discardLeft > 0) return;
    this.next(n < chunk.length ? chunk.subarray(n) : null);
  }

  /** The exchange is over and the connection kept: read the next request. */
  private next(bytes: Buffer | null): void {
    this.st = St.Head;
    const held = this.pending;
    this.pending = null;
    const all = bytes === null ? held : held === null ? bytes : Buffer.concat([bytes, held]);
    if (this.socket.isPaused()) this.socket.resume();
    if (all !== null) this.headBytes(all);
  }

  /** Answer with `answer` and close (lingering when the caller may still be sending). */
  private close(answer: CannedResponse | null, linger: boolean): void {
    this.st = St.Done;
    this.detach();
    const s = this.socket;
    if (answer === null) {
      s.end();
      return;
    }
    if (linger) endLingering(s, answer.raw());
    else s.end(answer.raw());
  }

  // ---- the upstream side (UpstreamOwner) ----

  upstreamConnected(): void {
    // The request waited for a new connection: upstreamTimeout counts from now, as undici's
    // headersTimeout does on the full path (the dial has its own timeout, answered 502).
    if (this.waitStart !== 0) this.waitStart = performance.now();
  }

  upstreamData(chunk: Buffer): void {
    this.lastIo = performance.now();
    this.heard = true;
    this.upstreamBytes(chunk);
  }

  /**
   * Write bytes read from the upstream to the caller. They are a view of the pool's shared read
   * buffer, valid only during `upstreamData`. A TLS write encrypts its bytes at once, unless the
   * socket is still writing earlier ones (a slow caller) or is corked: then it keeps them, so it
   * gets a copy.
   */
  private relay(bytes: Buffer): boolean {
    const s = this.socket;
    if (s.writableLength > 0 || s.writableCorked > 0) bytes = Buffer.from(bytes);
    return s.write(bytes);
  }

  private upstreamBytes(chunk: Buffer): void {
    if (this.resp === Resp.Head) {
      const head = this.respParser.execute(chunk);
      if (head.kind === 'more') return;
      if (head.kind === 'error') {
        this.gatewayError('upstream_unavailable', head.code);
        return;
      }
      const end = head.end;
      if (head.informational) {
        // 1xx (103 Early Hints, a 100 we did not ask for) are not relayed; parse what follows.
        if (end < chunk.length) this.upstreamBytes(chunk.subarray(end));
        return;
      }
      const rest = end < chunk.length ? chunk.subarray(end) : null;
      switch (this.responseHead(head, rest === null ? 0 : rest.length)) {
        case 'body':
          if (rest !== null) this.responseBody(rest);
          else this.sendHead();
          return;
        case 'none':
          this.sendHead();
          if (rest !== null) this.upReusable = false; // bytes after a body-less response: out of step
          this.resp = Resp.Complete;
          this.exchangeDone();
          return;
        default:
          return;
      }
    }
    if (this.resp === Resp.Body) this.responseBody(chunk);
    else this.upReusable = false;
  }

  /**
   * Make the caller's response head; what follows: a body, none, or nothing (it failed). The common
   * head is left open in RESPONSE_OUT (`headOpen`), with room for `following` body bytes (up to
   * JOINED_BODY) so head and body leave in one write; `sendHead` or `responseBody` writes it.
   */
  private responseHead(head: ResponseHead, following: number): 'body' | 'none' | 'failed' {
    const { ctx } = this.port;
    this.waitStart = 0;
    this.replay = null;
    if (head.framing === 'switch') {
      this.gatewayError('upstream_unavailable', 'unexpected_101');
      return 'failed';
    }
    this.status = head.status;
    const closeDelimited = head.framing === 'close';
    if (!head.keepAlive) this.upReusable = false;
    else if (head.keepAliveTimeout !== -1) {
      // The upstream closes an idle connection after that many seconds: stop handing it out a
      // margin earlier, or (too short to bother) not keep it at all. The full path does the same.
      this.upIdleLimit = head.keepAliveTimeout * 1000 - KEEP_ALIVE_MARGIN_MS;
      if (this.upIdleLimit <= 0) this.upReusable = false;
    }
    const close = !this.keepAlive || closeDelimited || ctx.draining || this.uploading;
    if (close) this.keepAlive = false;
    const chunked = head.framing === 'chunked';
    const spans = this.respParser.spans();
    const drop = dropMarks(spans.count);
    const plain = head.version === '1.1' ? plainResponseFields(spans, drop) : 0;
    if (plain !== 0) {
      const dated = (plain & RESPONSE_DATED) !== 0;
      const room = Math.min(following, JOINED_BODY);
      responseHeadBytes(RESPONSE_OUT, spans, drop, dated, httpDate(), close, chunked, room);
      this.headOpen = true;
    } else {
      const headers = callerResponseHeaders(this.respParser.fieldList(), close, httpDate(), true);
      this.socket.write(responseHeadText(head.status, head.reason, headers, chunked), 'latin1');
    }
    this.respParser.release();
    this.framer.begin(head.framing, head.contentLength);
    if (this.framer.done) return 'none';
    this.resp = Resp.Body;
    return 'body';
  }

  /** Write the response head left open in RESPONSE_OUT, if any (with the body bytes put after it). */
  private sendHead(): boolean {
    if (!this.headOpen) return true;
    this.headOpen = false;
    const s = this.socket;
    const ok = s.write(RESPONSE_OUT.close());
    RESPONSE_OUT.settle(s.writableLength > 0);
    return ok;
  }

  private responseBody(chunk: Buffer): void {
    const framer = this.framer;
    const n = framer.execute(chunk);
    if (n < 0) {
      // A response body that breaks its own framing: the caller must not take it for whole.
      if (this.headOpen) {
        this.headOpen = false;
        RESPONSE_OUT.drop();
      }
      this.abort();
      return;
    }
    this.bytesOut = framer.payload;
    let ok: boolean;
    if (this.headOpen && n <= JOINED_BODY) {
      RESPONSE_OUT.bytes(chunk, 0, n);
      ok = this.sendHead();
    } else {
      ok = this.sendHead();
      if (n > 0) ok = this.relay(n === chunk.length ? chunk : chunk.subarray(0, n)) && ok;
    }
    if (!ok) this.up?.socket.pause();
    if (!framer.done) return;
    if (n < chunk.length) this.upReusable = false;
    this.resp = Resp.Complete;
    this.exchangeDone();
  }

  upstreamEnd(): void {
    this.upReusable = false;
    if (this.resp === Resp.Body && this.framer.finish()) {
      this.resp = Resp.Complete;
      this.exchangeDone();
      return;
    }
    if (this.resp === Resp.Head) {
      if (!this.replayRequest()) this.gatewayError('upstream_unavailable', 'closed');
    } else if (this.resp === Resp.Body) this.abort();
  }

  upstreamFailed(code: string): void {
    this.up = null;
    if (this.st !== St.Busy) return;
    if (this.resp === Resp.Head) {
      if (!this.replayRequest()) this.gatewayError('upstream_unavailable', code);
    } else if (this.resp === Resp.Body) {
      if (code === 'closed' && this.framer.finish()) {
        this.resp = Resp.Complete;
        this.exchangeDone();
      } else this.abort();
    }
  }

  upstreamDrain(): void {
    if (this.st === St.Busy && this.uploading && this.socket.isPaused()) this.socket.resume();
  }

  private readonly onDrain = (): void => {
    const up = this.up;
    if (up !== null && up.socket.isPaused()) up.socket.resume();
  };

  /** The response is complete: record, keep or drop both connections, and go on. */
  private exchangeDone(): void {
    const up = this.up;
    this.up = null;
    if (up !== null) {
      if (this.upReusable && !this.uploading) this.port.pool.release(up, this.upIdleLimit);
      else up.destroy();
    }
    this.port.ctx.finish(this);
    if (this.uploading || !this.keepAlive) {
      // The caller's body is still coming (an early answer) or the connection is done.
      this.st = St.Done;
      this.detach();
      if (this.uploading) endLingering(this.socket);
      else this.socket.end();
      return;
    }
    this.next(null);
  }

  /** The upstream did not answer: 502/504 to the caller, unless a response is already under way. */
  gatewayError(reason: 'upstream_unavailable' | 'upstream_timeout', code: string): void {
    const { ctx } = this.port;
    const up = this.up;
    this.up = null;
    up?.destroy();
    this.waitStart = 0;
    this.replay = null;
    if (this.resp !== Resp.Head) {
      this.abort();
      return;
    }
    this.resp = Resp.Complete;
    this.status = reason === 'upstream_timeout' ? 504 : 502;
    ctx.note('warn', reason, 'upstream request failed', { reason, code, path: this.path });
    const answer = ctx.responses.gateway[reason];
    ctx.finish(this);
    if (this.uploading || !this.keepAlive || ctx.draining) {
      this.close(answer, this.uploading);
      return;
    }
    this.socket.write(answer.keepAlive());
    this.next(null);
  }

  /** Cut both sides mid-exchange. */
  private abort(): void {
    const up = this.up;
    this.up = null;
    up?.destroy();
    if (this.st === St.Busy) {
      this.st = St.Done;
      this.port.ctx.finish(this);
    }
    this.detach();
    this.socket.destroy();
  }

  private readonly onEnd = (): void => {
    // The caller finished sending. Between requests that is the end; mid-exchange, the caller's
    // side is closed (this listener's socket does not stay half-open), so the answer has nowhere to go.
    if (this.st === St.Busy) this.abort();
    else this.close(null, false);
  };

  private readonly onClose = (): void => {
    if (this.st === St.Busy) {
      const up = this.up;
      this.up = null;
      up?.destroy();
      this.st = St.Done;
      this.port.ctx.finish(this);
    }
    this.st = St.Done;
    this.detach();
  };

  /**
   * Called by the port's sweep with performance.now(): enforce the head and upstream deadlines, and
   * the idle timeout (no bytes either way; waiting for a response head has upstreamTimeout instead).
   */
  check(now: number): void {
    const { port } = this.port.ctx;
    if (this.headStart !== 0 && now - this.headStart > port.headersTimeout) {
      this.headStart = 0;
      this.close(this.port.ctx.responses.requestTimeout, true);
      return;
    }
    if (this.waitStart !== 0) {
      // While dialing, the connect timeout answers (502: the upstream is down), as on the full path.
      const up = this.up;
      if (up !== null && !up.connected) return;
      if (now - this.waitStart > port.upstreamTimeout)
        this.gatewayError('upstream_timeout', 'headers_timeout');
      return;
    }
    if (now - this.lastIo <= port.idleTimeout) return;
    if (this.st === St.Busy) this.abort();
    else {
      this.st = St.Done;
      this.detach();
      this.socket.destroy();
    }
  }

  /** Drain: close now if idle; otherwise the current response carries `connection: close`. */
  drain(): void {
    if (this.idle) this.close(null, false);
    else this.keepAlive = false;
  }
}

/** Methods a request may be sent again with, when it has no body (as Go's net/http Transport does). */
function replayable(method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS' || method === 'TRACE';
}

/** Whether the fast lane serves this request; everything else goes to the full path. */
function eligible(h: RequestHead): boolean {
  return h.version === '1.1' && !h.hasUpgrade && !h.expectContinue && h.method !== 'CONNECT';
}
