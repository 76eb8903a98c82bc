/**
 * Request bodies and replies of the authority API. Bodies are read with a hard size cap (an
 * oversize body is refused as soon as its Content-Length, or its bytes, say so, never buffered
 * whole); only the media types a route accepts are parsed; every error is `{error, detail}`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, badRequest } from './api-error.js';

/** What a route does with a request body. */
export interface BodySpec {
  /** Media types accepted: JSON always, YAML for `/v1/apply`. */
  readonly types: readonly ('json' | 'yaml')[];
  /** Whether an empty body is a 400 (true) or reads as undefined (false). */
  readonly required: boolean;
}

/** A request body, parsed as far as the transport goes; routes validate the fields. */
export type BodyInput = { type: 'json'; value: unknown } | { type: 'yaml'; text: string } | undefined;

/** A handler's answer. `raw` is sent as is (a pre-serialised bundle), else `body` as JSON. */
export interface Reply {
  status: number;
  body?: unknown;
  raw?: Buffer;
  headers?: Record<string, string>;
}

const JSON_TYPES = new Set(['application/json']);
const YAML_TYPES = new Set(['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml']);

export const payloadTooLarge = (max: number): ApiError =>
  new ApiError(
    413,
    'payload_too_large',
    `the request body is over the ${max} byte limit (limits.maxBodyBytes)`,
  );

/** Media type without parameters, lower case; undefined when absent. */
function mediaTypeOf(req: IncomingMessage): { type: string; charset: string | undefined } | undefined {
  const raw = req.headers['content-type'];
  if (raw === undefined || raw.trim() === '') return undefined;
  const [type = '', ...params] = raw.split(';');
  let charset: string | undefined;
  for (const p of params) {
    const [k, v] = p.split('=');
    if (k?.trim().toLowerCase() === 'charset') charset = v?.trim().replace(/^"|"$/g, '').toLowerCase();
  }
  return { type: type.trim().toLowerCase(), charset };
}

/** Whether the request announces a body (a Content-Length above 0, or chunked). */
function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return Number(len) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

/**
 * Read the body of `req` up to `maxBytes`.
 * @throws ApiError 413 as soon as the body is known to be larger.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) return Promise.reject(payloadTooLarge(maxBytes));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > maxBytes) {
        cleanup();
        reject(payloadTooLarge(maxBytes));
        return;
      }
      chunks.push(c);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    // A client that hangs up mid-body: nothing to answer, but the handler must not wait forever.
    const onClose = (): void => onError(new Error('the client closed the connection before the body ended'));
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * Read and parse a body per `spec`: 415 for a media type the route does not take, 413 when too
 * large, 400 for bytes that are not UTF-8 JSON (or YAML text), undefined for an optional empty body.
 */
export async function readInput(req: IncomingMessage, spec: BodySpec, maxBytes: number): Promise<BodyInput> {
  if (!hasBody(req)) {
    if (spec.required) throw badRequest('a request body is required');
    return undefined;
  }
  const accepted = spec.types
    .map((t) => (t === 'json' ? 'application/json' : 'application/yaml'))
    .join(' or ');
  const media = mediaTypeOf(req);
  const kind =
    media === undefined
      ? undefined
      : JSON_TYPES.has(media.type)
        ? 'json'
        : YAML_TYPES.has(media.type)
          ? 'yaml'
          : undefined;
  if (kind === undefined || !spec.types.includes(kind))
    throw new ApiError(
      415,
      'unsupported_media_type',
      `content-type ${media ? JSON.stringify(media.type) : 'is missing'}${media ? ' is not accepted' : ''}; send ${accepted}`,
    );
  if (media?.charset !== undefined && media.charset !== 'utf-8' && media.charset !== 'utf8')
    throw new ApiError(415, 'unsupported_media_type', `charset ${media.charset} is not accepted; send UTF-8`);
  const bytes = await readBody(req, maxBytes);
  if (bytes.length === 0) {
    if (spec.required) throw badRequest('a request body is required');
    return undefined;
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw badRequest('the request body is not valid UTF-8');
  }
  if (kind === 'yaml') return { type: 'yaml', text };
  try {
    return { type: 'json', value: JSON.parse(text) as unknown };
  } catch (err) {
    throw badRequest(`the request body is not valid JSON: ${(err as Error).message}`);
  }
}

/** Write a reply; JSON bodies end with a newline so curl output reads well. */
export function send(res: ServerResponse, reply: Reply, extraHeaders?: Record<string, string>): void {
  const headers: Record<string, string | number> = {
    'cache-control': 'no-store',
    ...reply.headers,
    ...extraHeaders,
  };
  if (reply.status === 304 || (reply.body === undefined && reply.raw === undefined)) {
    res.writeHead(reply.status, headers);
    res.end();
    return;
  }
  const body = reply.raw ?? Buffer.from(JSON.stringify(reply.body) + '\n', 'utf8');
  headers['content-type'] = 'application/json; charset=utf-8';
  headers['content-length'] = body.length;
  res.writeHead(reply.status, headers);
  res.end(body);
}

/** `{error, detail}` for an ApiError. */
export function errorReply(err: ApiError, headers?: Record<string, string>): Reply {
  return {
    status: err.status,
    body: { error: err.error, detail: err.message },
    ...(headers ? { headers } : {}),
  };
}
