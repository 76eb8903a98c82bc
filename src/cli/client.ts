/**
 * The mTLS JSON client of the CLI verbs that talk to the licensing authority (SPEC §5). It turns
 * `--authority/--cert/--key/--ca` (or their PORTLICENSE_* environment variables) into one undici
 * connection, and every failure into an error an operator can act on: what is missing is a usage
 * error before anything is sent; an unreachable authority names the URL; a TLS failure names the
 * certificate files; an authority's 4xx/5xx reads `<status> <error>: <detail>`.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { Client } from 'undici';
import { systemClock, type Clock } from '../clock.js';
import { createContext, httpsUrl, INVALID } from '../config/schema.js';
import { errorMessage, PortlicenseError, UsageError } from '../errors.js';
import { str, type FlagSpec, type Parsed } from './args.js';
import { packageInfo } from './version.js';

/** Where a command writes and what it reads from its surroundings; tests pass their own. */
export interface CliIo {
  /** Environment variables (PORTLICENSE_AUTHORITY, ...). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Standard output. */
  readonly out: (text: string) => void;
  /** "Now", for relative times in human output. */
  readonly clock: Clock;
}

/** The real process: its environment, stdout and the system clock. */
export function processIo(): CliIo {
  return { env: process.env, out: (text) => void process.stdout.write(text), clock: systemClock };
}

/** The flags every client verb accepts. */
export const CLIENT_FLAGS = {
  authority: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
} as const satisfies FlagSpec;

/** The `--help` lines for {@link CLIENT_FLAGS}. */
export const CLIENT_HELP = `Connection (flags win over the environment):
  --authority URL   authority base URL, https://...     (PORTLICENSE_AUTHORITY)
  --cert FILE       client certificate (PEM), an admin   (PORTLICENSE_CERT)
  --key FILE        its private key (PEM)                (PORTLICENSE_KEY)
  --ca FILE         CA bundle the authority chains to    (PORTLICENSE_CA)
`;

type Setting = keyof typeof CLIENT_FLAGS;

const SETTINGS: ReadonlyArray<{ name: Setting; env: string; arg: string }> = [
  { name: 'authority', env: 'PORTLICENSE_AUTHORITY', arg: 'URL' },
  { name: 'cert', env: 'PORTLICENSE_CERT', arg: 'FILE' },
  { name: 'key', env: 'PORTLICENSE_KEY', arg: 'FILE' },
  { name: 'ca', env: 'PORTLICENSE_CA', arg: 'FILE' },
];

/** A setting's value and where it came from, so messages can name the flag or the variable. */
export interface Sourced {
  readonly value: string;
  /** `--cert` or `PORTLICENSE_CERT`. */
  readonly from: string;
}

/** How to reach the authority, resolved but not yet read from disk. */
export interface ClientSettings {
  /** Base URL without a trailing `/`. */
  readonly authority: Sourced;
  readonly cert: Sourced;
  readonly key: Sourced;
  readonly ca: Sourced;
}

/**
 * Resolve the connection settings from parsed flags, falling back to the environment.
 * @throws UsageError naming every missing setting's flag and variable, or a malformed URL.
 */
export function resolveClientSettings(command: string, p: Parsed, env: CliIo['env']): ClientSettings {
  const found: Partial<Record<Setting, Sourced>> = {};
  const missing: string[] = [];
  for (const s of SETTINGS) {
    const flagValue = str(p, s.name);
    const envValue = env[s.env];
    if (flagValue !== undefined && flagValue !== '')
      found[s.name] = { value: flagValue, from: `--${s.name}` };
    else if (envValue !== undefined && envValue !== '') found[s.name] = { value: envValue, from: s.env };
    else missing.push(`  --${s.name} ${s.arg} (or ${s.env})`);
  }
  if (missing.length > 0)
    throw new UsageError(
      `${command}: missing connection settings for the authority; pass them as flags or set the environment variables:\n${missing.join('\n')}`,
    );
  const settings = found as Record<Setting, Sourced>;
  const ctx = createContext({ file: settings.authority.from });
  const url = httpsUrl().parse(settings.authority.value, '', ctx);
  if (url === INVALID)
    throw new UsageError(
      `${command}: ${settings.authority.from}: ${ctx.problems[0]?.message ?? 'invalid URL'}`,
    );
  return { ...settings, authority: { value: url, from: settings.authority.from } };
}

/** Seconds an authority request may take, connect to last byte. */
export const REQUEST_TIMEOUT_MS = 10_000;

/** A 4xx/5xx answer from the authority. Exit code 1. */
export class AuthorityResponseError extends PortlicenseError {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly detail: string,
  ) {
    super('AUTHORITY_REJECTED', `${status} ${error}: ${detail}`);
  }
}

export type Query = Record<string, string | number | undefined>;

let userAgent: string | undefined;

/**
 * One connection to the authority for the life of a command (pagination reuses it). Requests
 * and answers are JSON; each request has {@link REQUEST_TIMEOUT_MS} in total.
 */
export class AuthorityClient {
  private constructor(
    private readonly settings: ClientSettings,
    private readonly client: Client,
    private readonly basePath: string,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Read the certificate files and prepare the connection (nothing is sent yet).
   * @throws UsageError when a file cannot be read or the certificate material does not load.
   */
  static open(command: string, settings: ClientSettings, opts: { timeoutMs?: number } = {}): AuthorityClient {
    const read = (s: Sourced, what: string): Buffer => {
      try {
        return readFileSync(s.value);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why =
          code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a directory' : errorMessage(err);
        throw new UsageError(`${command}: cannot read the ${what} ${s.value} (${s.from}): ${why}`);
      }
    };
    const tls = {
      cert: read(settings.cert, 'client certificate'),
      key: read(settings.key, 'client key'),
      ca: read(settings.ca, 'CA bundle'),
    };
    try {
      createSecureContext(tls);
    } catch (err) {
      throw new UsageError(
        `${command}: the TLS material does not load: ${errorMessage(err)} (${describeFiles(settings)})`,
      );
    }
    const timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS;
    const url = new URL(settings.authority.value);
    const client = new Client(url.origin, {
      connect: { ...tls, timeout: timeoutMs },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    return new AuthorityClient(settings, client, url.pathname.replace(/\/+$/, ''), timeoutMs);
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, query, undefined);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, undefined, body ?? {});
  }

  async close(): Promise<void> {
    // Every request has been awaited by now; destroy() also ends a connection that failed its
    // handshake, which close() can wait on forever (undici 7, ERR_TLS_CERT_ALTNAME_INVALID).
    await this.client.destroy();
  }

  private async request<T>(
    method: 'GET' | 'POST',
    path: string,
    query: Query | undefined,
    body: unknown,
  ): Promise<T> {
    userAgent ??= `portlicense/${packageInfo().version}`;
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': userAgent };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let status: number;
    let text: string;
    try {
      const res = await this.client.request({
        method,
        path: this.basePath + path + queryString(query),
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      throw this.transportError(err);
    }
    const json = parseJson(text);
    if (status >= 400) {
      const e = json as { error?: unknown; detail?: unknown } | undefined;
      const error = typeof e?.error === 'string' ? e.error : 'error';
      const detail = typeof e?.detail === 'string' ? e.detail : text.trim().slice(0, 200) || '(no detail)';
      throw new AuthorityResponseError(status, error, detail);
    }
    if (json === undefined)
      throw new PortlicenseError(
        'AUTHORITY_REJECTED',
        `the authority at ${this.settings.authority.value} answered ${method} ${path} with ${status} and a body that is not JSON`,
      );
    return json as T;
  }

  /** Sort a failed request into "TLS", "timed out" or "unreachable", each with what to check. */
  private transportError(err: unknown): PortlicenseError {
    const url = this.settings.authority.value;
    const from = this.settings.authority.from;
    const check = from === '--authority' ? 'check --authority' : `check ${from} or pass --authority`;
    const cause = rootCause(err);
    // DOMExceptions (an aborted request) have numeric codes; only Node's string codes matter here.
    const rawCode: unknown = (cause as { code?: unknown }).code;
    const code = typeof rawCode === 'string' ? rawCode : '';
    const message = errorMessage(cause);
    const codeNote = code && !message.includes(code) ? ` (${code})` : '';
    const files = describeFiles(this.settings);
    if (isTlsFailure(code, message)) {
      const hint =
        code === 'ERR_TLS_CERT_ALTNAME_INVALID'
          ? `the authority's certificate does not name the host of ${this.settings.authority.from}`
          : SERVER_CERT_CODES.has(code)
            ? `the authority's certificate does not verify against the CA bundle`
            : 'the authority may have refused the client certificate';
      return new PortlicenseError(
        'AUTHORITY_UNREACHABLE',
        `TLS handshake with the authority at ${url} failed: ${message}${codeNote}; ${hint} (${files})`,
        { cause: err },
      );
    }
    if (isTimeout(err, code))
      return new PortlicenseError(
        'AUTHORITY_UNREACHABLE',
        `no answer from the authority at ${url} within ${this.timeoutMs / 1000}s (${check}; is the authority running?)`,
        { cause: err },
      );
    // TLS 1.3 clients finish their side of the handshake before the server checks the client
    // certificate, so a refused certificate shows up as a connection closed mid-request.
    if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE')
      return new PortlicenseError(
        'AUTHORITY_UNREACHABLE',
        `the authority at ${url} closed the connection: ${message}${codeNote}; if it refused the client certificate, check that it is issued by the authority's CA and not expired (${files})`,
        { cause: err },
      );
    return new PortlicenseError(
      'AUTHORITY_UNREACHABLE',
      `cannot reach the authority at ${url}: ${message}${codeNote} (${check}; is the authority running?)`,
      { cause: err },
    );
  }
}

function describeFiles(s: ClientSettings): string {
  return `client certificate ${s.cert.value}, key ${s.key.value}, CA ${s.ca.value}`;
}

function queryString(q: Query | undefined): string {
  if (!q) return '';
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) params.set(k, String(v));
  const s = params.toString();
  return s === '' ? '' : `?${s}`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function rootCause(err: unknown): unknown {
  let e = err;
  // undici wraps some socket errors; the innermost one carries the code.
  while (
    e instanceof Error &&
    e.cause instanceof Error &&
    !String((e as { code?: unknown }).code).startsWith('ERR_SSL')
  )
    e = e.cause;
  return e;
}

/** Certificate verification codes of the peer's (the authority's) chain. */
const SERVER_CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function isTlsFailure(code: string, message: string): boolean {
  return (
    SERVER_CERT_CODES.has(code) ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    /\bssl\b|tls|certificate/i.test(message)
  );
}

function isTimeout(err: unknown, code: string): boolean {
  const name = err instanceof Error ? err.name : '';
  return (
    name === 'TimeoutError' ||
    name === 'AbortError' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'ETIMEDOUT'
  );
}

/**
 * Resolve the settings, open a client, run `fn`, and always close the connection.
 * Usage errors from resolving or reading files surface before any request.
 */
export async function withAuthority<T>(
  command: string,
  p: Parsed,
  io: CliIo,
  fn: (client: AuthorityClient) => Promise<T>,
): Promise<T> {
  const client = AuthorityClient.open(command, resolveClientSettings(command, p, io.env));
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}
