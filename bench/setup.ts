/**
 * The benchmark's world: an ECDSA P-256 PKI made with openssl (CA, a server certificate, the
 * allowed and the denied client), a signed license bundle, and a sidecar config. Everything lives
 * in one temp folder that is removed at the end.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { signBundle } from '../src/policy/bundle.js';
import type { LicenseWire } from '../src/policy/types.js';

export const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
/** The package's launcher (bin/portlicense): what `npx portlicense` runs. */
export const LAUNCHER = fileURLToPath(new URL('../bin/portlicense', import.meta.url));
/** The OpenSSL settings the launcher gives node (bin/openssl.cnf). */
export const OPENSSL_CNF = fileURLToPath(new URL('../bin/openssl.cnf', import.meta.url));
export const TRUST_DOMAIN = 'example.org';
export const ALLOWED = 'spiffe://example.org/ns/bench/sa/client';
export const DENIED = 'spiffe://example.org/ns/bench/sa/stranger';
/** Subject CNs: nginx cannot read a URI SAN, so it matches the allowed client by CN. */
export const ALLOWED_CN = 'bench-client';
export const DENIED_CN = 'bench-stranger';
export const SERVICE = 'bench';
/** The license that admits the allowed identity on the http port; the sidecar names it upstream. */
export const HTTP_LICENSE = 'lic_bench_http';

export interface KeyPairFiles {
  cert: string;
  key: string;
}

export interface BenchPki {
  dir: string;
  ca: string;
  server: KeyPairFiles;
  /** server certificate and key in one file (haproxy's `crt`). */
  serverCombined: string;
  client: KeyPairFiles;
  stranger: KeyPairFiles;
  signingKey: KeyObject;
  signingPub: string;
  /** Upper-case hex of the DER GeneralName `[6] URI` of the allowed identity (haproxy matches it). */
  allowedSanHex: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function ecKey(dir: string, file: string): void {
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
}

function leaf(dir: string, name: string, cn: string, ext: string[]): KeyPairFiles {
  const key = `${name}-key.pem`;
  const cert = `${name}.pem`;
  ecKey(dir, key);
  writeFileSync(join(dir, `${name}.ext`), ['[v3]', ...ext, ''].join('\n'));
  openssl(dir, ['req', '-new', '-key', key, '-subj', `/CN=${cn}`, '-out', `${name}.csr`]);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca-key.pem',
    '-set_serial',
    String(Date.now() * 1000 + Math.floor(Math.random() * 1000)),
    '-days',
    '2',
    '-sha256',
    '-extfile',
    `${name}.ext`,
    '-extensions',
    'v3',
    '-out',
    cert,
  ]);
  return { cert: join(dir, cert), key: join(dir, key) };
}

/** DER of a GeneralName uniformResourceIdentifier: context tag [6], length, bytes. */
function sanHex(uri: string): string {
  const bytes = Buffer.from(uri, 'utf8');
  if (bytes.length > 127) throw new Error('bench identities must be shorter than 128 bytes');
  return Buffer.concat([Buffer.from([0x86, bytes.length]), bytes])
    .toString('hex')
    .toUpperCase();
}

/** A CA and three leaves, ECDSA P-256, valid for two days. */
export function makePki(): BenchPki {
  const dir = mkdtempSync(join(tmpdir(), 'pl-bench-'));
  ecKey(dir, 'ca-key.pem');
  openssl(dir, [
    'req',
    '-x509',
    '-new',
    '-key',
    'ca-key.pem',
    '-subj',
    '/CN=portlicense bench CA',
    '-days',
    '2',
    '-sha256',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    'ca.pem',
  ]);
  const svid = (uri: string, eku: string, extra = ''): string[] => [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    `extendedKeyUsage=${eku}`,
    `subjectAltName=URI:${uri}${extra}`,
  ];
  const server = leaf(
    dir,
    'server',
    'bench-server',
    svid(
      `spiffe://${TRUST_DOMAIN}/ns/bench/sa/server`,
      'serverAuth,clientAuth',
      ',DNS:localhost,IP:127.0.0.1',
    ),
  );
  const client = leaf(dir, 'client', ALLOWED_CN, svid(ALLOWED, 'clientAuth'));
  const stranger = leaf(dir, 'stranger', DENIED_CN, svid(DENIED, 'clientAuth'));
  const serverCombined = join(dir, 'server-combined.pem');
  writeFileSync(serverCombined, readFileSync(server.cert, 'utf8') + readFileSync(server.key, 'utf8'));

  const allowedSanHex = sanHex(ALLOWED);
  const der = (f: string): string => new X509Certificate(readFileSync(f)).raw.toString('hex').toUpperCase();
  if (!der(client.cert).includes(allowedSanHex) || der(stranger.cert).includes(allowedSanHex))
    throw new Error('bench PKI: the allowed URI SAN is not where haproxy will look for it');

  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const signingPub = join(dir, 'signing.pub.pem');
  writeFileSync(signingPub, publicKey.export({ type: 'spki', format: 'pem' }));
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    server,
    serverCombined,
    client,
    stranger,
    signingKey: privateKey,
    signingPub,
    allowedSanHex,
  };
}

/**
 * `count` licenses for service `bench`: the allowed identity on ports http and tcp, then filler
 * licenses for other identities (exact and `/*` prefix subjects, some with method and path
 * rules), as a real node's bundle would hold.
 */
export function benchLicenses(count: number, now = Date.now()): LicenseWire[] {
  const window = {
    notBefore: new Date(now - 60_000).toISOString(),
    expiresAt: new Date(now + 86_400_000).toISOString(),
  };
  const out: LicenseWire[] = [
    { id: HTTP_LICENSE, subject: ALLOWED, service: SERVICE, port: 'http', ...window },
    { id: 'lic_bench_tcp', subject: ALLOWED, service: SERVICE, port: 'tcp', ...window },
  ];
  for (let i = 0; out.length < count; i++) {
    const prefix = i % 10 === 0;
    const l: LicenseWire = {
      id: `lic_fill_${i}`,
      subject: prefix
        ? `spiffe://${TRUST_DOMAIN}/ns/team${i}/*`
        : `spiffe://${TRUST_DOMAIN}/ns/team${i % 97}/sa/svc${i}`,
      service: SERVICE,
      port: i % 3 === 0 ? 'tcp' : 'http',
      ...window,
    };
    if (l.port === 'http' && i % 2 === 0) {
      l.methods = ['GET', 'POST'];
      l.paths = [`/api/v${i % 5}/*`, '/healthz'];
    }
    out.push(l);
  }
  return out.slice(0, count);
}

/** Sign `licenses` into a bundle file in `dir`; returns its path. */
export function writeBundle(pki: BenchPki, file: string, licenses: LicenseWire[], version = 1): string {
  const bundle = signBundle(
    { version, issuedAt: new Date().toISOString(), node: 'bench', services: [SERVICE], licenses },
    pki.signingKey,
  );
  const path = join(pki.dir, file);
  writeFileSync(path, JSON.stringify(bundle));
  return path;
}

export interface SidecarPorts {
  http: number;
  tcp: number;
  admin: number;
  upHttp: number;
  upTcp: number;
}

/** A sidecar config in the PKI folder with ports http and tcp in front of the upstreams. */
export function writeSidecarConfig(pki: BenchPki, name: string, bundleFile: string, p: SidecarPorts): string {
  const file = join(pki.dir, `${name}.yaml`);
  writeFileSync(
    file,
    `node: bench
trustDomains: [${TRUST_DOMAIN}]
tls: { ca: ca.pem, cert: server.pem, key: server-key.pem }
authority: { bundleFile: ${bundleFile}, signingPublicKey: signing.pub.pem }
ports:
  - { name: http, service: ${SERVICE}, protocol: http, listen: 127.0.0.1:${p.http}, upstream: 127.0.0.1:${p.upHttp} }
  - { name: tcp, service: ${SERVICE}, protocol: tcp, listen: 127.0.0.1:${p.tcp}, upstream: 127.0.0.1:${p.upTcp} }
admin: { listen: 127.0.0.1:${p.admin} }
log: { level: warn }
`,
  );
  return file;
}

/** Ports `freePort` has handed out in this process. */
const handedOut = new Set<number>();

/**
 * A port that was free a moment ago, and not one this process was handed before: the kernel may
 * give the port it just released to the next bind, and a port handed out is not bound until its
 * process starts (a run once died on a sidecar whose admin port was its tcp port). Ports bound
 * by others meanwhile are the usual race, fine on a quiet loopback.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 100; tries++) {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const { port } = s.address() as AddressInfo;
    await new Promise<void>((r) => s.close(() => r()));
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('freePort: the kernel kept handing out ports this run already uses');
}
