/**
 * A scripted licensing authority for CLI tests: a real HTTPS server with mTLS on 127.0.0.1:0 that
 * records every request (method, path, query, headers, JSON body, client identity) and answers
 * with whatever the test's script returns. Plus the certificate files a CLI needs to reach it.
 */
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { LicenseJson } from '../../src/authority/model.js';
import type { CliIo } from '../../src/cli/client.js';
import { ManualClock } from '../../src/clock.js';
import { errorMessage, exitCodeFor } from '../../src/errors.js';
import { sharedCa, svid, writeTlsFiles, type TestCa } from '../helpers/pki.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

export interface SeenRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  /** The URI SAN of the client certificate. */
  identity: string | undefined;
}

export interface Answer {
  status?: number;
  body: unknown;
}

export type Script = (req: SeenRequest) => Answer;

export interface ScriptedAuthority {
  readonly url: string;
  readonly requests: SeenRequest[];
  script(fn: Script): void;
  close(): Promise<void>;
}

export const ADMIN_ID = 'spiffe://example.org/admin/alice';

/** Certificate files in a temp dir: the CA, an admin client cert and key, and the server pair. */
export interface CertFiles {
  readonly dir: string;
  readonly ca: TestCa;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly server: { cert: string; key: string };
  /** Environment variables that point the CLI at `url` with these files. */
  env(url: string): Record<string, string>;
  /** Flags that point the CLI at `url` with these files. */
  flags(url: string): string[];
  remove(): void;
}

/** Write the shared CA and an admin client certificate into a fresh temp dir. */
export function writeCertFiles(): CertFiles {
  const ca = sharedCa();
  const dir = tempDir('pl-cli-');
  const written = writeTlsFiles(dir, ca.cert, svid(ADMIN_ID), { name: 'admin' });
  const { ca: caFile, cert: certFile, key: keyFile } = written;
  return {
    dir,
    ca,
    caFile,
    certFile,
    keyFile,
    server: svid('spiffe://example.org/authority'),
    env: (url) => ({
      PORTLICENSE_AUTHORITY: url,
      PORTLICENSE_CERT: certFile,
      PORTLICENSE_KEY: keyFile,
      PORTLICENSE_CA: caFile,
    }),
    flags: (url) => ['--authority', url, '--cert', certFile, '--key', keyFile, '--ca', caFile],
    remove: () => removeDir(dir),
  };
}

/** Start a scripted authority; by default it answers 404 to everything. */
export async function startScriptedAuthority(
  files: CertFiles,
  opts: { ca?: string; server?: { cert: string; key: string } } = {},
): Promise<ScriptedAuthority> {
  const requests: SeenRequest[] = [];
  let script: Script = (r) => ({
    status: 404,
    body: { error: 'not_found', detail: `no route ${r.method} ${r.path}` },
  });
  const server = https.createServer(
    {
      ...(opts.server ?? files.server),
      ca: opts.ca ?? files.ca.cert,
      requestCert: true,
      rejectUnauthorized: true,
    },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'https://authority');
        const text = Buffer.concat(chunks).toString('utf8');
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        const seen: SeenRequest = {
          method: req.method ?? '',
          path: url.pathname,
          query: url.searchParams,
          headers: req.headers,
          body: text === '' ? undefined : (JSON.parse(text) as unknown),
          identity: peer.subjectaltname?.replace(/^URI:/, '').split(', ')[0],
        };
        requests.push(seen);
        const answer = script(seen);
        res.writeHead(answer.status ?? 200, { 'content-type': 'application/json' });
        res.end(typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body));
      });
    },
  );
  // Raw sockets, so close() also ends connections whose TLS handshake never finished.
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    script: (fn) => {
      script = fn;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface RunResult {
  code: number;
  out: string;
  /** The message main.ts would print after `portlicense: `, when the command threw. */
  err: string;
  error: unknown;
}

/**
 * Run a command function in-process the way main.ts does: output captured, a thrown error mapped
 * to its exit code and message.
 */
export async function runCommand(
  command: (argv: string[], io: CliIo) => Promise<number>,
  argv: string[],
  opts: { env?: Record<string, string>; now?: number | string } = {},
): Promise<RunResult> {
  let out = '';
  const io: CliIo = {
    env: opts.env ?? {},
    out: (t) => void (out += t),
    clock: new ManualClock(opts.now ?? '2026-11-28T10:00:00Z'),
  };
  try {
    const code = await command(argv, io);
    return { code, out, err: '', error: undefined };
  } catch (error) {
    return { code: exitCodeFor(error), out, err: errorMessage(error), error };
  }
}

/** A license as the API shows it (SPEC §5), for canned answers. */
export function licenseJson(overrides: Partial<LicenseJson> = {}): LicenseJson {
  return {
    id: 'lic_0123456789abcdef01234567',
    subject: 'spiffe://example.org/ns/default/sa/frontend',
    service: 'orders',
    port: 'http',
    methods: null,
    paths: null,
    notBefore: '2026-11-28T10:00:00Z',
    expiresAt: '2026-11-29T10:00:00Z',
    createdAt: '2026-11-28T10:00:00Z',
    ttl: '24h',
    maxLifetime: '30d',
    autoRenew: true,
    state: 'active',
    reason: null,
    revokedAt: null,
    revokeReason: null,
    lastAccess: null,
    ...overrides,
  };
}
