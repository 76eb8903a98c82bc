/**
 * Shared set-up for benchmarks: certificates, a signed bundle, a sidecar config, and the real
 * sidecar and upstreams as child processes pinned to one core (the load stays on the other).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCertificate } from '../src/pki/x509.js';
import { signBundle } from '../src/policy/bundle.js';

export const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
export const ALLOWED = 'spiffe://example.org/ns/bench/sa/client';
export const DENIED = 'spiffe://example.org/ns/bench/sa/stranger';

export interface BenchPki {
  dir: string;
  ca: Buffer;
  client: { cert: Buffer; key: Buffer };
  stranger: { cert: Buffer; key: Buffer };
}

export function makePki(): BenchPki {
  const dir = mkdtempSync(join(tmpdir(), 'pl-bench-'));
  const ca = buildCertificate({ commonName: 'bench CA', isCA: true });
  const server = buildCertificate({
    commonName: 'server',
    uris: ['spiffe://example.org/ns/bench/sa/server'],
    dns: ['localhost'],
    ips: ['127.0.0.1'],
    issuer: ca,
  });
  const client = buildCertificate({ commonName: 'client', uris: [ALLOWED], issuer: ca });
  const stranger = buildCertificate({ commonName: 'stranger', uris: [DENIED], issuer: ca });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  writeFileSync(join(dir, 'ca.pem'), ca.cert);
  writeFileSync(join(dir, 'server.pem'), server.cert);
  writeFileSync(join(dir, 'server-key.pem'), server.key);
  writeFileSync(join(dir, 'signing.pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
  const now = Date.now();
  const lic = (port: string) => ({
    id: `lic_bench_${port}`,
    subject: ALLOWED,
    service: 'bench',
    port,
    notBefore: new Date(now - 60_000).toISOString(),
    expiresAt: new Date(now + 3_600_000).toISOString(),
  });
  const bundle = signBundle(
    {
      version: 1,
      issuedAt: new Date(now).toISOString(),
      node: 'bench',
      services: ['bench'],
      licenses: [lic('http'), lic('tcp')],
    },
    privateKey,
  );
  writeFileSync(join(dir, 'bundle.json'), JSON.stringify(bundle));
  return {
    dir,
    ca: Buffer.from(ca.cert),
    client: { cert: Buffer.from(client.cert), key: Buffer.from(client.key) },
    stranger: { cert: Buffer.from(stranger.cert), key: Buffer.from(stranger.key) },
  };
}

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Pin a child to a CPU with taskset when the machine has more than one core. */
export function pinned(cpu: number, argv: string[]): [string, string[]] {
  return cpus().length > 1 ? ['taskset', ['-c', String(cpu), ...argv]] : [argv[0]!, argv.slice(1)];
}

export function spawnPinned(cpu: number, argv: string[], opts: { cwd?: string } = {}): ChildProcess {
  const [cmd, args] = pinned(cpu, argv);
  return spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'inherit'] });
}

export function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(
      () => reject(new Error(`timed out waiting for ${pattern}: ${buf.slice(-500)}`)),
      timeoutMs,
    );
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const m = pattern.exec(buf);
      if (m) {
        clearTimeout(t);
        child.stdout!.resume();
        resolve(m[0]);
      }
    });
  });
}

export function writeSidecarConfig(
  pki: BenchPki,
  p: { http: number; tcp: number; admin: number; httpUp: number; tcpUp: number },
): string {
  const file = join(pki.dir, 'sidecar.yaml');
  writeFileSync(
    file,
    `node: bench
trustDomains: [example.org]
tls: { ca: ca.pem, cert: server.pem, key: server-key.pem }
authority: { bundleFile: bundle.json, signingPublicKey: signing.pub.pem }
ports:
  - { name: http, service: bench, protocol: http, listen: 127.0.0.1:${p.http}, upstream: 127.0.0.1:${p.httpUp} }
  - { name: tcp, service: bench, protocol: tcp, listen: 127.0.0.1:${p.tcp}, upstream: 127.0.0.1:${p.tcpUp} }
admin: { listen: 127.0.0.1:${p.admin} }
log: { level: warn }
`,
  );
  return file;
}
