/**
 * Certificates for tests, generated at test time (never committed). One RSA key is reused for all
 * leaves of a CA to keep tests fast: identities come from SANs, not from key uniqueness.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TlsFiles } from '../../src/dataplane/tls-context.js';
import { buildCertificate, generateRsaKey, type PemPair } from '../../src/pki/x509.js';

export type { PemPair };

export interface LeafOptions {
  /** URI SANs; defaults to none. Use `spiffe()` for a workload SVID. */
  uris?: string[];
  dns?: string[];
  ips?: string[];
  commonName?: string;
  isCA?: boolean;
  notBefore?: Date;
  notAfter?: Date;
}

export interface TestCa extends PemPair {
  /** An RSA leaf signed by this CA. */
  issue(opts?: LeafOptions): PemPair;
  /** A leaf with exactly one SPIFFE URI SAN, plus DNS localhost and IP 127.0.0.1 for server use. */
  svid(spiffeId: string, opts?: LeafOptions): PemPair;
  /** An intermediate CA signed by this one. */
  intermediate(commonName?: string): TestCa;
}

let sharedLeafKey: string | undefined;
const leafKey = (): string => (sharedLeafKey ??= generateRsaKey());

function wrap(ca: PemPair): TestCa {
  const issue = (opts: LeafOptions = {}): PemPair =>
    buildCertificate({ commonName: opts.commonName ?? 'test leaf', ...opts, issuer: ca, key: leafKey() });
  return {
    ...ca,
    issue,
    svid: (spiffeId, opts = {}) =>
      issue({ dns: ['localhost'], ips: ['127.0.0.1'], ...opts, uris: [spiffeId, ...(opts.uris ?? [])] }),
    intermediate: (commonName = 'test intermediate CA') =>
      wrap(buildCertificate({ commonName, isCA: true, issuer: ca, key: generateRsaKey() })),
  };
}

/** A fresh self-signed root CA. */
export function createTestCa(commonName = 'portlicense test CA'): TestCa {
  return wrap(buildCertificate({ commonName, isCA: true }));
}

let sharedRoot: TestCa | undefined;
const sharedSvids = new Map<string, PemPair>();

/**
 * One CA per test file (each file gets its own module instance): RSA key generation and forge
 * signing cost a few hundred ms each, and sharing them changes nothing a test checks.
 */
export function sharedCa(): TestCa {
  return (sharedRoot ??= createTestCa());
}

/** The shared CA's SVID for `identity`, issued once. */
export function svid(identity: string): PemPair {
  let pair = sharedSvids.get(identity);
  if (!pair) sharedSvids.set(identity, (pair = sharedCa().svid(identity)));
  return pair;
}

/**
 * Write a CA certificate and a leaf into `dir`: `ca.pem`, and `cert.pem`/`key.pem`, or
 * `<name>.pem`/`<name>-key.pem` when a name is given. Returns the paths.
 */
export function writeTlsFiles(
  dir: string,
  caCert: string,
  leaf: PemPair,
  opts: { name?: string; keyMode?: number } = {},
): TlsFiles {
  const files: TlsFiles = {
    ca: join(dir, 'ca.pem'),
    cert: join(dir, opts.name ? `${opts.name}.pem` : 'cert.pem'),
    key: join(dir, opts.name ? `${opts.name}-key.pem` : 'key.pem'),
  };
  writeFileSync(files.ca, caCert);
  writeFileSync(files.cert, leaf.cert);
  writeFileSync(files.key, leaf.key, opts.keyMode === undefined ? {} : { mode: opts.keyMode });
  return files;
}

/**
 * A leaf made by the openssl CLI (not node-forge), EC P-256 or RSA, signed by `ca`: proves the sidecar
 * accepts certificates from other tools (openssl, SPIRE).
 */
export function opensslLeaf(
  ca: PemPair,
  opts: {
    spiffeId: string;
    keyType: 'ec' | 'rsa';
    days?: number;
    /** x509v3 config lines besides the SAN; default: a leaf's basicConstraints, keyUsage and EKU. */
    extensions?: string[];
  },
): PemPair {
  const dir = mkdtempSync(join(tmpdir(), 'pl-openssl-'));
  try {
    const f = (n: string): string => join(dir, n);
    writeFileSync(f('ca.pem'), ca.cert);
    writeFileSync(f('ca-key.pem'), ca.key);
    const keyArgs =
      opts.keyType === 'ec'
        ? ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f('key.pem')]
        : ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', f('key.pem')];
    execFileSync('openssl', keyArgs, { stdio: 'pipe' });
    execFileSync(
      'openssl',
      ['req', '-new', '-key', f('key.pem'), '-subj', '/CN=openssl-leaf', '-out', f('csr.pem')],
      {
        stdio: 'pipe',
      },
    );
    writeFileSync(
      f('ext.cnf'),
      [
        ...(opts.extensions ?? [
          'basicConstraints=critical,CA:FALSE',
          'keyUsage=critical,digitalSignature,keyEncipherment',
          'extendedKeyUsage=serverAuth,clientAuth',
        ]),
        `subjectAltName=URI:${opts.spiffeId},DNS:localhost,IP:127.0.0.1`,
      ].join('\n'),
    );
    execFileSync(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        f('csr.pem'),
        '-CA',
        f('ca.pem'),
        '-CAkey',
        f('ca-key.pem'),
        '-set_serial',
        '1234',
        '-days',
        String(opts.days ?? 1),
        '-sha256',
        '-extfile',
        f('ext.cnf'),
        '-out',
        f('cert.pem'),
      ],
      { stdio: 'pipe' },
    );
    return { cert: readFileSync(f('cert.pem'), 'utf8'), key: readFileSync(f('key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
