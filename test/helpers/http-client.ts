/**
 * HTTP clients for tests: raw requests over TLS for byte-exact input (smuggling, oversize heads,
 * dribbling) with a parser for the raw answer, and an undici client that presents a client
 * certificate.
 */
import { Client } from 'undici';
import type { HostPort } from '../../src/config/types.js';
import { Received, tlsConnect } from './net.js';

/** What a caller presents: the CA its peer must chain to, its certificate and key (PEM). */
export interface ClientCreds {
  ca: string;
  cert: string;
  key: string;
}

/** Open a TLS connection, write `bytes`, and collect the answer. */
export async function rawRequest(
  addr: HostPort,
  creds: ClientCreds,
  bytes: string | Buffer,
): Promise<Received> {
  const rx = new Received(await tlsConnect({ ...addr, ...creds }));
  rx.socket.write(bytes);
  return rx;
}

/** Whether `text` holds one complete HTTP response with a Content-Length body. */
export function hasCompleteResponse(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const m = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
  return m === null || text.length - end - 4 >= Number(m[1]);
}

/** Status code and the body of the first response in raw `text`. */
export function parseRaw(text: string): { status: number; head: string; body: string } {
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
  return { status, head, body: end === -1 ? '' : text.slice(end + 4) };
}

/** An undici client for the server at `addr` that presents `creds` as its client certificate. */
export function httpsClient(addr: HostPort, creds: ClientCreds, opts: Client.Options = {}): Client {
  return new Client(`https://${addr.host}:${addr.port}`, {
    connect: { ca: creds.ca, cert: creds.cert, key: creds.key, servername: 'localhost' },
    ...opts,
  });
}

export interface SimpleResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One GET on a fresh client presenting `creds`, closed afterwards. */
export async function httpsGet(
  addr: HostPort,
  creds: ClientCreds,
  path: string,
  headers: Record<string, string> = {},
): Promise<SimpleResponse> {
  const c = httpsClient(addr, creds);
  try {
    const r = await c.request({ method: 'GET', path, headers });
    return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
  } finally {
    await c.close();
  }
}
