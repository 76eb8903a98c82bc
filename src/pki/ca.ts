/**
 * `portlicense ca init` (SPEC §5): a development PKI in one folder — a self-signed root, the
 * authority's TLS certificate, and the Ed25519 key pair that signs bundles. Everything is generated
 * in memory first, so a failure writes nothing, and an existing CA is never replaced by accident:
 * replacing it silently would untrust every certificate already issued from it.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PortlicenseError, UsageError } from '../errors.js';
import { keyIdOf } from '../policy/bundle.js';
import { parseSpiffeId } from '../policy/spiffe.js';
import { PRIVATE_MODE, PUBLIC_MODE, writeFileAtomic } from './files.js';
import { buildCertificate, generateRsaKey } from './x509.js';

/** File names inside a CA folder; other tools (`cert issue`, `dev`, example configs) use these. */
export const CA_FILES = {
  caCert: 'ca.pem',
  caKey: 'ca-key.pem',
  authorityCert: 'authority.pem',
  authorityKey: 'authority-key.pem',
  signingKey: 'bundle-signing-key.pem',
  signingPublicKey: 'bundle-signing.pub.pem',
  /** `{ "trustDomain": ... }`, so `cert issue` can refuse identities of another trust domain. */
  meta: 'ca.json',
} as const;

const DAY_MS = 86_400_000;
/** Root lifetime: long enough that a dev setup never meets it. */
export const CA_LIFETIME_MS = 3650 * DAY_MS;
/** Authority TLS certificate lifetime. */
export const AUTHORITY_LIFETIME_MS = 365 * DAY_MS;
/** Certificates start this much before "now", so a peer whose clock lags a little accepts them. */
export const BACKDATE_MS = 60_000;
/** Max length of a trust domain name (SPIFFE ID spec). */
const MAX_TRUST_DOMAIN_BYTES = 255;

export interface InitCaOptions {
  /** Folder to write into; created (mode 0700) when missing. */
  dir: string;
  /** Lower-case trust domain, e.g. `example.org`. */
  trustDomain: string;
  /** Replace an existing CA in `dir`. */
  force?: boolean;
  /** Issue time (defaults to the system clock). */
  now?: Date | number;
}

export interface InitCaResult {
  /** Paths of the files written, in the order written. */
  files: string[];
  trustDomain: string;
  /** SPIFFE ID in the authority's certificate. */
  authorityId: string;
  caNotAfter: Date;
  authorityNotAfter: Date;
  /** Key id of the bundle-signing key, as it appears in a signed bundle's `signature.keyId`. */
  signingKeyId: string;
}

/** Metadata stored next to the CA. */
export interface CaMeta {
  trustDomain: string;
}

/** SPIFFE ID of the licensing authority in trust domain `td`. */
export function authorityIdFor(td: string): string {
  return `spiffe://${td}/portlicense/authority`;
}

/**
 * Check a trust domain name: lower-case a-z, 0-9, `.`, `-`, `_`, at most 255 bytes.
 * @throws UsageError naming the problem.
 */
export function validateTrustDomain(td: string): void {
  const parsed = parseSpiffeId(`spiffe://${td}`);
  if (typeof parsed === 'string' || parsed.path !== '' || td.length > MAX_TRUST_DOMAIN_BYTES) {
    throw new UsageError(
      `--trust-domain "${td}": must be a lower-case name of a-z, 0-9, ".", "-", "_" ` +
        `(at most ${MAX_TRUST_DOMAIN_BYTES} characters), like example.org`,
    );
  }
}

/**
 * Create a development CA in `opts.dir`: `ca.pem`/`ca-key.pem` (RSA root, 10 years),
 * `authority.pem`/`authority-key.pem` (SVID `spiffe://<td>/portlicense/authority`, DNS localhost,
 * IP 127.0.0.1, 1 year), `bundle-signing-key.pem`/`bundle-signing.pub.pem` (Ed25519, PKCS#8 and
 * SPKI PEM) and `ca.json`. Private keys are mode 0600; every file is written atomically.
 * @throws UsageError for a bad trust domain, or when CA files exist and `force` is not set.
 */
export function initCa(opts: InitCaOptions): InitCaResult {
  validateTrustDomain(opts.trustDomain);
  const { dir, trustDomain } = opts;
  const path = (name: string): string => join(dir, name);

  if (existsSync(dir) && !statSync(dir).isDirectory()) {
    throw new UsageError(`--dir ${dir}: exists and is not a folder`);
  }
  if (!opts.force) {
    const existing = Object.values(CA_FILES).filter((name) => existsSync(path(name)));
    const consequence =
      'use --force to replace it (certificates issued by the old CA will no longer be trusted)';
    if (existing.length === 1) {
      throw new UsageError(`${path(existing[0]!)} already exists; refusing to overwrite it: ${consequence}`);
    }
    if (existing.length > 1) {
      throw new UsageError(`${dir} already holds a CA (${existing.join(', ')}); ${consequence}`);
    }
  }

  const now = opts.now === undefined ? Date.now() : new Date(opts.now).getTime();
  const notBefore = new Date(now - BACKDATE_MS);
  const caNotAfter = new Date(now + CA_LIFETIME_MS);
  const authorityNotAfter = new Date(now + AUTHORITY_LIFETIME_MS);
  const authorityId = authorityIdFor(trustDomain);

  const ca = buildCertificate({
    commonName: `portlicense dev CA (${trustDomain})`,
    // X.509-SVID: a signing certificate should carry the trust domain's ID, without a path.
    uris: [`spiffe://${trustDomain}`],
    isCA: true,
    notBefore,
    notAfter: caNotAfter,
    key: generateRsaKey(),
  });
  const authority = buildCertificate({
    commonName: 'portlicense authority',
    uris: [authorityId],
    dns: ['localhost'],
    ips: ['127.0.0.1'],
    notBefore,
    notAfter: authorityNotAfter,
    issuer: ca,
    key: generateRsaKey(),
  });
  const signing = generateKeyPairSync('ed25519');
  const signingKey = signing.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const signingPublicKey = signing.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const meta: CaMeta = { trustDomain };

  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new PortlicenseError('INTERNAL', `cannot create ${dir}: ${(err as Error).message}`, { cause: err });
  }
  // Keys before certificates and ca.json last: an interrupted run leaves no certificate without its key.
  const plan: [string, string, number][] = [
    [CA_FILES.caKey, ca.key, PRIVATE_MODE],
    [CA_FILES.authorityKey, authority.key, PRIVATE_MODE],
    [CA_FILES.signingKey, signingKey, PRIVATE_MODE],
    [CA_FILES.caCert, ca.cert, PUBLIC_MODE],
    [CA_FILES.authorityCert, authority.cert, PUBLIC_MODE],
    [CA_FILES.signingPublicKey, signingPublicKey, PUBLIC_MODE],
    [CA_FILES.meta, `${JSON.stringify(meta, null, 2)}\n`, PUBLIC_MODE],
  ];
  const files: string[] = [];
  for (const [name, data, mode] of plan) {
    writeFileAtomic(path(name), data, mode);
    files.push(path(name));
  }
  return {
    files,
    trustDomain,
    authorityId,
    caNotAfter,
    authorityNotAfter,
    signingKeyId: keyIdOf(signing.publicKey),
  };
}

/**
 * The metadata of the CA in `dir`, or undefined when it has none (a CA made by another tool).
 * @throws PortlicenseError TLS_MATERIAL_INVALID when `ca.json` exists but is not valid.
 */
export function readCaMeta(dir: string): CaMeta | undefined {
  const file = join(dir, CA_FILES.meta);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PortlicenseError('FILE_UNREADABLE', `${file}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const td = (parsed as { trustDomain?: unknown } | undefined)?.trustDomain;
  if (typeof td !== 'string' || typeof parseSpiffeId(`spiffe://${td}`) === 'string') {
    throw new PortlicenseError(
      'TLS_MATERIAL_INVALID',
      `${file}: expected {"trustDomain": "<lower-case name>"}; fix it or delete it to skip the trust-domain check`,
    );
  }
  return { trustDomain: td };
}
