/**
 * Incremental parser of HTTP/1.1 request heads for the lean proxy path: fed the client's bytes as
 * they arrive, it answers "need more", a parsed head with its body framing, or the reason to
 * refuse. It refuses everything node's strict parser (llhttp, no insecureHTTPParser) refuses —
 * the differential tests in test/dataplane/h1 prove it — and a few things more, listed there.
 */
import { H1_ERRORS, type H1Error } from './errors.js';
import { CONN_CLOSE, CONN_KEEP_ALIVE, CONN_UPGRADE } from './fields.js';
import { HeadParser } from './head-parser.js';
import { methodAt } from './methods.js';

/** How the request body is delimited. */
export type RequestFraming = 'none' | 'length' | 'chunked';

/** A complete, accepted request head. */
export interface RequestHead {
  readonly kind: 'head';
  /** One of node's http.METHODS, exactly as sent (methods are case-sensitive). */
  readonly method: string;
  /** The request target as received (origin, absolute, authority or asterisk form). */
  readonly target: string;
  readonly version: '1.0' | '1.1';
  /**
   * [name, value, name, value, ...] in received order; names as sent, values without leading/trailing
   * OWS. Empty from a parser made with `headerStrings: false` (see head-parser.ts).
   */
  readonly headers: string[];
  readonly framing: RequestFraming;
  /** Body length for framing 'length' (0 allowed); -1 otherwise. */
  readonly contentLength: number;
  /** Whether the connection may carry another request after this one (version default + Connection). */
  readonly keepAlive: boolean;
  /** Upgrade field present and Connection names "upgrade" (what makes node hand the socket over). */
  readonly upgrade: boolean;
  /** Whether an Upgrade field is present at all. */
  readonly hasUpgrade: boolean;
  /** HTTP/1.1 with Expect: 100-continue. */
  readonly expectContinue: boolean;
  /** Offset in the last buffer passed to execute() just past the head: the body or the next request starts here. */
  readonly end: number;
  /** Head size in bytes, leading empty lines included. */
  readonly size: number;
}

/** Limits of a request head. */
export interface RequestHeadOptions {
  /** Largest head, in bytes, start line to blank line (node's --max-http-header-size). Default 16384. */
  maxHeaderSize?: number;
  /** Most header fields. Default 128. */
  maxHeaders?: number;
  /** Build each head's `headers` (default true; see head-parser.ts). */
  headerStrings?: boolean;
}

/** Parses the request heads of one connection, one after the other. */
export class RequestHeadParser extends HeadParser<RequestHead> {
  constructor(opts: RequestHeadOptions = {}) {
    super(
      false,
      { maxHeaderSize: opts.maxHeaderSize ?? 16_384, maxHeaders: opts.maxHeaders ?? 128 },
      opts.headerStrings ?? true,
    );
  }

  /** Drop a partial head (for instance when the connection is reused after an error answer). */
  reset(): void {
    this.scanner.reset();
  }

  protected build(): RequestHead | H1Error {
    const sc = this.scanner;
    // The scanner checked the method and the target as they ended.
    const method = methodAt(sc.method)!;
    if (sc.major !== 1 || sc.minor > 1) return H1_ERRORS.unsupported_version;
    const headers = this.fields();
    if (!Array.isArray(headers)) return headers;
    const notes = this.notes;
    const http10 = sc.minor === 0;
    const codings = notes.codings;
    let framing: RequestFraming = 'none';
    if (codings.elements > 0) {
      if (notes.contentLength !== -1) return H1_ERRORS.content_length_with_transfer_encoding;
      // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing cannot be trusted.
      if (http10) return H1_ERRORS.transfer_encoding_http10;
      if (codings.malformed || codings.chunked !== 1 || !codings.chunkedLast) {
        return H1_ERRORS.invalid_transfer_encoding;
      }
      framing = 'chunked';
    } else if (notes.contentLength !== -1) framing = 'length';
    // node answers 417 to any other expectation on HTTP/1.1 and ignores Expect on HTTP/1.0.
    if (!http10 && notes.expect > 0 && !notes.expectContinueOnly) return H1_ERRORS.unsupported_expect;
    const conn = notes.connection;
    return {
      kind: 'head',
      method,
      target: sc.slice(sc.s2, sc.e2),
      version: http10 ? '1.0' : '1.1',
      headers,
      framing,
      contentLength: framing === 'length' ? notes.contentLength : -1,
      keepAlive: (conn & CONN_CLOSE) === 0 && (!http10 || (conn & CONN_KEEP_ALIVE) !== 0),
      upgrade: notes.upgrade && (conn & CONN_UPGRADE) !== 0,
      hasUpgrade: notes.upgrade,
      expectContinue: !http10 && notes.expect > 0,
      end: sc.end,
      size: sc.size,
    };
  }
}
