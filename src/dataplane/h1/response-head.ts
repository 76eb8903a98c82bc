/**
 * Incremental parser of HTTP/1.1 response heads from the upstream, deciding how the response body
 * is delimited per RFC 9112 §6.3 from the request method and the status. Anything it refuses is,
 * for the proxy, a bad gateway: the upstream broke the protocol.
 */
import { H1_ERRORS, type H1Error } from './errors.js';
import { CONN_CLOSE, CONN_KEEP_ALIVE, CONN_UPGRADE } from './fields.js';
import { HeadParser } from './head-parser.js';

/**
 * How the response body is delimited: 'none' (HEAD, 1xx, 204, 304), 'length', 'chunked', 'close'
 * (read until the upstream closes), or 'switch' (101, or 2xx to CONNECT: the connection now
 * carries another protocol).
 */
export type ResponseFraming = 'none' | 'length' | 'chunked' | 'close' | 'switch';

/** A complete, accepted response head. */
export interface ResponseHead {
  readonly kind: 'head';
  readonly version: '1.0' | '1.1';
  /** 100-599. */
  readonly status: number;
  readonly reason: string;
  /**
   * [name, value, ...] in received order, values without leading/trailing OWS. Empty from a parser
   * made with `headerStrings: false` (see head-parser.ts).
   */
  readonly headers: string[];
  readonly framing: ResponseFraming;
  /** Body length for framing 'length'; -1 otherwise. */
  readonly contentLength: number;
  /** 1xx other than 101: a final response head follows on the same connection. */
  readonly informational: boolean;
  /** Whether the upstream connection may carry another request after this response. */
  readonly keepAlive: boolean;
  /**
   * How long the upstream says it keeps the connection open while idle (its Keep-Alive `timeout`,
   * the smallest if several), in seconds; -1 when it did not say.
   */
  readonly keepAliveTimeout: number;
  /** Offset in the last buffer passed to execute() just past the head. */
  readonly end: number;
  readonly size: number;
}

/** Limits of a response head. */
export interface ResponseHeadOptions {
  /** Largest head in bytes. Default 65536. */
  maxHeaderSize?: number;
  /** Most header fields. Default 256. */
  maxHeaders?: number;
  /** Build each head's `headers` (default true; see head-parser.ts). */
  headerStrings?: boolean;
}

/**
 * Parses the response heads of one upstream connection (`begin` per request). After an
 * informational (1xx) head, call `execute` again for the final head of the same request.
 */
export class ResponseHeadParser extends HeadParser<ResponseHead> {
  private method = 'GET';

  constructor(opts: ResponseHeadOptions = {}) {
    super(
      true,
      { maxHeaderSize: opts.maxHeaderSize ?? 65_536, maxHeaders: opts.maxHeaders ?? 256 },
      opts.headerStrings ?? true,
    );
  }

  /** Start reading the response to a request with `method` (the framing depends on it). */
  begin(method: string): void {
    this.method = method;
    this.scanner.reset();
  }

  protected build(): ResponseHead | H1Error {
    const sc = this.scanner;
    if (sc.major !== 1 || sc.minor > 1) return H1_ERRORS.unsupported_version;
    const status = sc.status;
    if (status < 100 || status > 599) return H1_ERRORS.invalid_status_line;
    const headers = this.fields();
    if (!Array.isArray(headers)) return headers;
    const notes = this.notes;
    const http10 = sc.minor === 0;
    const codings = notes.codings;
    const hasLength = notes.contentLength !== -1;
    if (codings.elements > 0) {
      if (hasLength) return H1_ERRORS.content_length_with_transfer_encoding;
      if (http10) return H1_ERRORS.transfer_encoding_http10;
      if (codings.malformed || codings.chunked > 1) return H1_ERRORS.invalid_transfer_encoding;
    }
    let framing: ResponseFraming;
    if (status === 101 || (this.method === 'CONNECT' && status >= 200 && status < 300)) framing = 'switch';
    else if (this.method === 'HEAD' || status < 200 || status === 204 || status === 304) framing = 'none';
    else if (codings.elements > 0) framing = codings.chunkedLast ? 'chunked' : 'close';
    else if (hasLength) framing = 'length';
    else framing = 'close';
    const conn = notes.connection;
    // RFC 9110 §15.2.2 and §7.8: a 101 names the new protocol; without it there is nothing to switch to.
    if (status === 101 && !(notes.upgrade && (conn & CONN_UPGRADE) !== 0)) return H1_ERRORS.invalid_upgrade;
    const keepAlive =
      framing !== 'close' &&
      framing !== 'switch' &&
      (conn & CONN_CLOSE) === 0 &&
      (!http10 || (conn & CONN_KEEP_ALIVE) !== 0);
    const informational = status < 200 && status !== 101;
    // A final response must follow an interim one on this connection; llhttp stops there instead.
    if (informational && !keepAlive) return H1_ERRORS.interim_response_close;
    return {
      kind: 'head',
      version: http10 ? '1.0' : '1.1',
      status,
      reason: sc.slice(sc.s2, sc.e2),
      headers,
      framing,
      contentLength: framing === 'length' ? notes.contentLength : -1,
      informational,
      keepAlive,
      keepAliveTimeout: keepAlive ? notes.keepAliveTimeout : -1,
      end: sc.end,
      size: sc.size,
    };
  }
}
