/**
 * An in-process authority for tests: a temp folder with a generated CA, the authority's TLS
 * certificate, an Ed25519 signing key, a YAML config loaded through the real loader, a real SQLite
 * file, listening on 127.0.0.1:0 (API and admin). Plus an mTLS JSON client (undici) that presents
 * an SVID for any identity.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client, Dispatcher } from 'undici';
import { startAuthority, type RunningAuthority } from '../../src/cli/authority.js';
import { ManualClock, type Clock } from '../../src/clock.js';
import { loadAuthorityConfig } from '../../src/config/authority.js';
import type { HostPort } from '../../src/config/types.js';
import { MemorySink } from '../../src/log.js';
import { httpsClient, type ClientCreds } from './http-client.js';
import { sharedCa, svid, writeTlsFiles, type PemPair, type TestCa } from './pki.js';
import { removeDir, tempDir } from './tmp.js';

export const ADMIN = 'spiffe://example.org/admin/alice';
export const SIDECAR = 'spiffe://example.org/node/node-a';
export const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';
export const BACKEND = 'spiffe://example.org/ns/default/sa/backend';

/** A folder with CA, authority certificate, signing key and an authority.yaml. */
export interface AuthorityFiles {
  dir: string;
  ca: TestCa;
  configFile: string;
  signingPublicKey: KeyObject;
  /** Write authority.yaml again: `extra` YAML lines appended, other listen addresses, extra `tls` keys. */
  writeConfig(opts?: ConfigOptions): string;
}

export interface ConfigOptions {
  /** YAML lines appended to the file. */
  extra?: string;
  listen?: { api: string; admin: string };
  /** Extra keys inside the `tls` mapping, e.g. `handshakeTimeout: 300ms`. */
  tls?: string;
  /** The YAML value of `sidecars` (default `["spiffe://example.org/node/*"]`). */
  sidecars?: string;
}

export function authorityFiles(): AuthorityFiles {
  const dir = tempDir('pl-authority-');
  const ca = sharedCa();
  writeTlsFiles(dir, ca.cert, svid('spiffe://example.org/authority'), { name: 'authority', keyMode: 0o600 });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const f = (n: string): string => join(dir, n);
  writeFileSync(f('signing-key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
  });
  const configFile = f('authority.yaml');
  const writeConfig = (opts: ConfigOptions = {}): string => {
    const listen = opts.listen ?? { api: '127.0.0.1:0', admin: '127.0.0.1:0' };
    writeFileSync(
      configFile,
      [
        `listen: ${listen.api}`,
        'trustDomains: [example.org]',
        `tls: { ca: ca.pem, cert: authority.pem, key: authority-key.pem${opts.tls ? `, ${opts.tls}` : ''} }`,
        'signingKey: signing-key.pem',
        'store: { sqlite: data/authority.db }',
        'admins: ["spiffe://example.org/admin/*"]',
        `sidecars: ${opts.sidecars ?? '["spiffe://example.org/node/*"]'}`,
        'defaults: { ttl: 24h, maxLifetime: 30d, autoRenew: true, warnBefore: 72h }',
        `admin: { listen: "${listen.admin}" }`,
        'drainTimeout: 2s',
        opts.extra ?? '',
      ].join('\n') + '\n',
    );
    return configFile;
  };
  writeConfig();
  return { dir, ca, configFile, signingPublicKey: publicKey, writeConfig };
}

export interface TestAuthority extends AuthorityFiles {
  running: RunningAuthority;
  clock: Clock;
  sink: MemorySink;
  /** An mTLS client presenting an SVID for `identity` (or the given certificate). */
  client(identity: string | PemPair, ca?: string): ApiClient;
  /** Restart on the same files (same SQLite database), on a new port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export interface TestAuthorityOptions {
  /** Default: a ManualClock at 2026-11-28T10:00:00Z. */
  clock?: Clock;
  /** Extra YAML lines for authority.yaml (e.g. `limits: { maxWait: 5s, maxBodyBytes: 2048 }`). */
  extraConfig?: string;
  /** Extra keys of the `tls` mapping. */
  tls?: string;
  /** The YAML value of `sidecars`. */
  sidecars?: string;
  /** Default 60 s: a ManualClock advanced by hours fires this timer once per interval. */
  expiryInterval?: number;
}

export async function startTestAuthority(opts: TestAuthorityOptions = {}): Promise<TestAuthority> {
  const files = authorityFiles();
  files.writeConfig({
    ...(opts.extraConfig ? { extra: opts.extraConfig } : {}),
    ...(opts.tls ? { tls: opts.tls } : {}),
    ...(opts.sidecars ? { sidecars: opts.sidecars } : {}),
  });
  const clock = opts.clock ?? new ManualClock('2026-11-28T10:00:00Z');
  const sink = new MemorySink();
  const clients: ApiClient[] = [];
  const boot = (): Promise<RunningAuthority> =>
    startAuthority(loadAuthorityConfig(files.configFile), {
      clock,
      logSink: sink,
      defaultMetrics: false,
      expiryInterval: opts.expiryInterval ?? 60_000,
    });
  const t: TestAuthority = {
    ...files,
    running: await boot(),
    clock,
    sink,
    client(identity, ca = files.ca.cert) {
      const creds = typeof identity === 'string' ? svid(identity) : identity;
      const c = new ApiClient(t.running.address, { ca, ...creds });
      clients.push(c);
      return c;
    },
    async restart() {
      await t.running.shutdown();
      t.running = await boot();
    },
    async close() {
      await Promise.allSettled(clients.map((c) => c.close()));
      await t.running.shutdown();
      removeDir(files.dir);
    },
  };
  return t;
}

export interface ApiResponse {
  status: number;
  headers: Dispatcher.ResponseData['headers'];
  text: string;
  /** The body parsed as JSON (throws when it is not). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

export interface CallOptions {
  headers?: Record<string, string>;
  /** Send these bytes as the body instead of JSON-encoding `body`. */
  raw?: string | Buffer;
  contentType?: string;
  signal?: AbortSignal;
}

/**
 * A JSON client for the authority API over mTLS. Each call follows the address the client was
 * made for; `retarget` points it at a restarted authority.
 */
export class ApiClient {
  private client: Client;

  constructor(
    address: HostPort,
    private readonly creds: ClientCreds,
  ) {
    this.client = this.make(address);
  }

  private make(a: HostPort): Client {
    return httpsClient(a, this.creds, { headersTimeout: 120_000, bodyTimeout: 120_000 });
  }

  async retarget(address: HostPort): Promise<void> {
    await this.client.close().catch(() => undefined);
    this.client = this.make(address);
  }

  async call(
    method: Dispatcher.HttpMethod,
    path: string,
    body?: unknown,
    opts: CallOptions = {},
  ): Promise<ApiResponse> {
    const headers: Record<string, string> = { ...opts.headers };
    let payload: string | Buffer | undefined;
    if (opts.raw !== undefined) payload = opts.raw;
    else if (body !== undefined) payload = JSON.stringify(body);
    if (payload !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    const res = await this.client.request({
      method,
      path,
      headers,
      ...(payload !== undefined ? { body: payload } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const text = await res.body.text();
    let parsed: unknown;
    let parseError: Error | undefined;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch (err) {
      parseError = err as Error;
    }
    return {
      status: res.statusCode,
      headers: res.headers,
      text,
      get json() {
        if (parseError) throw new Error(`not JSON (${res.statusCode}): ${text.slice(0, 200)}`);
        return parsed;
      },
    };
  }

  get(path: string, opts?: CallOptions): Promise<ApiResponse> {
    return this.call('GET', path, undefined, opts);
  }

  post(path: string, body?: unknown, opts?: CallOptions): Promise<ApiResponse> {
    return this.call('POST', path, body, opts);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

/** `rows.map((r) => r[key])` for JSON rows of an answer (`pluck(res.json.licenses, 'id')`). */
export function pluck(rows: unknown, key: string): unknown[] {
  return (rows as Array<Record<string, unknown>>).map((r) => r[key]);
}

/** The service every test registers: orders with an http and a tcp port. */
export const ORDERS_SERVICE = {
  name: 'orders',
  ports: [
    { name: 'http', protocol: 'http' },
    { name: 'db', protocol: 'tcp' },
  ],
};
