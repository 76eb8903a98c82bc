/**
 * Strict, incremental HTTP/1.1 parsing for the lean proxy path: request heads, response heads, and
 * body framing, as pure code over Buffers (no sockets, no streams, no copies of body bytes).
 *
 * How an engine drives one client connection (test/dataplane/h1/drive.ts is the runnable version):
 *
 * ```ts
 * const heads = new RequestHeadParser({ maxHeaderSize: port.maxHeaderSize });
 * const body = new BodyFramer({ maxTrailerSize: port.maxHeaderSize });
 * let inBody = false;
 * socket.on('data', (chunk: Buffer) => {
 *   let off = 0;
 *   while (off < chunk.length) {
 *     if (!inBody) {
 *       const r = heads.execute(chunk, off);
 *       if (r.kind === 'more') return;                  // the parser kept the partial head
 *       if (r.kind === 'error') return refuse(r.status, r.code); // 400/417/431/505, then close
 *       decideAndWriteHead(r);                          // authorize, rewrite, write upstream
 *       body.begin(r.framing, r.contentLength);
 *       off = r.end;
 *       inBody = !body.done;
 *     } else {
 *       const n = body.execute(chunk, off);
 *       if (n < 0) return abort(body.error!);           // forward none of this chunk
 *       upstream.write(chunk.subarray(off, off + n));   // verbatim
 *       off += n;
 *       inBody = !body.done;
 *     }
 *     // between messages: close after !r.keepAlive; hand the socket over after r.upgrade
 *   }
 * });
 * ```
 * The upstream side is the same with ResponseHeadParser (begin(method) per request; after an
 * informational head, parse the next head) and framing 'close' finished by BodyFramer.finish().
 */
export {
  RequestHeadParser,
  type RequestHead,
  type RequestHeadOptions,
  type RequestFraming,
} from './request-head.js';
export {
  ResponseHeadParser,
  type ResponseHead,
  type ResponseHeadOptions,
  type ResponseFraming,
} from './response-head.js';
export { BodyFramer, type BodyFraming, type BodyFramerOptions } from './body-framer.js';
export { H1_ERRORS, NEED_MORE, type H1Error, type H1ErrorCode, type NeedMore } from './errors.js';
export { METHODS } from './methods.js';
