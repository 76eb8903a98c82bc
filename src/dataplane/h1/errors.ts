/**
 * Why a message was refused. Parse errors are plain frozen values, one per code, not Error objects:
 * a malformed request costs no stack capture and no allocation, so garbage cannot be turned into
 * CPU load. `status` is the answer a proxy gives the client (4xx) for a request; for a response
 * from the upstream the proxy answers 502 whatever the code.
 */

/** Stable codes: callers match on these. */
export type H1ErrorCode =
  // heads (request and response)
  | 'head_too_large'
  | 'too_many_headers'
  | 'invalid_line_ending'
  | 'invalid_method'
  | 'invalid_target'
  | 'invalid_request_line'
  | 'invalid_version'
  | 'unsupported_version'
  | 'invalid_status_line'
  | 'invalid_upgrade'
  | 'interim_response_close'
  | 'invalid_header_name'
  | 'invalid_header_value'
  | 'obs_fold'
  | 'invalid_content_length'
  | 'duplicate_content_length'
  | 'content_length_overflow'
  | 'invalid_transfer_encoding'
  | 'transfer_encoding_http10'
  | 'content_length_with_transfer_encoding'
  | 'unsupported_expect'
  // bodies
  | 'invalid_chunk_size'
  | 'chunk_size_overflow'
  | 'invalid_chunk_extension'
  | 'chunk_line_too_long'
  | 'missing_chunk_crlf'
  | 'invalid_trailer'
  | 'forbidden_trailer'
  | 'trailers_too_large';

/** A refused message: the code, the status to answer a client with, and a short explanation. */
export interface H1Error {
  readonly kind: 'error';
  readonly code: H1ErrorCode;
  readonly status: 400 | 417 | 431 | 505;
  readonly message: string;
}

const STATUS: Partial<Record<H1ErrorCode, H1Error['status']>> = {
  head_too_large: 431,
  too_many_headers: 431,
  trailers_too_large: 431,
  unsupported_version: 505,
  unsupported_expect: 417,
};

const MESSAGES: Record<H1ErrorCode, string> = {
  head_too_large: 'message head larger than the limit',
  too_many_headers: 'more header fields than the limit',
  invalid_line_ending: 'line not ended by CRLF (bare CR or LF)',
  invalid_method: 'unknown or malformed method',
  invalid_target: 'malformed request target',
  invalid_request_line: 'request line is not "method SP target SP version"',
  invalid_version: 'malformed HTTP version',
  unsupported_version: 'HTTP version other than 1.0 or 1.1',
  invalid_status_line: 'malformed status line',
  invalid_upgrade: '101 without Upgrade and Connection: upgrade',
  interim_response_close: '1xx response that closes the connection before the final response',
  invalid_header_name: 'malformed header name (token, then ":" with no space before it)',
  invalid_header_value: 'control character in a header value',
  obs_fold: 'obsolete line folding',
  invalid_content_length: 'Content-Length is not a single decimal number',
  duplicate_content_length: 'more than one Content-Length',
  content_length_overflow: 'Content-Length above 2^53-1',
  invalid_transfer_encoding: 'Transfer-Encoding is empty, or chunked is missing, repeated or not last',
  transfer_encoding_http10: 'Transfer-Encoding in an HTTP/1.0 message',
  content_length_with_transfer_encoding: 'both Content-Length and Transfer-Encoding',
  unsupported_expect: 'Expect other than 100-continue',
  invalid_chunk_size: 'malformed chunk size',
  chunk_size_overflow: 'chunk size above 2^53-1',
  invalid_chunk_extension: 'malformed chunk extension',
  chunk_line_too_long: 'chunk size line longer than the limit',
  missing_chunk_crlf: 'chunk data not followed by CRLF',
  invalid_trailer: 'malformed trailer field',
  forbidden_trailer:
    'a framing field (Content-Length, Transfer-Encoding, Connection) or a forbidden name in trailers',
  trailers_too_large: 'trailer section larger than the limit',
};

/** One frozen error value per code. */
export const H1_ERRORS: Readonly<Record<H1ErrorCode, H1Error>> = Object.freeze(
  Object.fromEntries(
    (Object.keys(MESSAGES) as H1ErrorCode[]).map((code) => [
      code,
      Object.freeze({ kind: 'error', code, status: STATUS[code] ?? 400, message: MESSAGES[code] }),
    ]),
  ) as Record<H1ErrorCode, H1Error>,
);

/** "Feed me more bytes": the head is not complete yet. */
export interface NeedMore {
  readonly kind: 'more';
}

/** The one NeedMore value. */
export const NEED_MORE: NeedMore = Object.freeze({ kind: 'more' });
