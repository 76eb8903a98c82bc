/**
 * `portlicense cert issue` (SPEC §5): an X.509-SVID for one workload, signed by a CA folder made by
 * `ca init`. Every input is checked before a key is generated, and the CA is checked against the
 * request (it is a CA, its key matches, it outlives the new certificate), so the command fails with
 * a reason here instead of producing a certificate that a TLS handshake later rejects.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, sep } from 'node:path';
import { parseDuration } from '../config/duration.js';
import { PortlicenseError, UsageError } from '../errors.js';
import { parseSpiffeId, type SpiffeId } from '../policy/spiffe.js';
import { BACKDATE_MS, CA_FILES, readCaMeta } from './ca.js';
import { PRIVATE_MODE, PUBLIC_MODE, readPemFile, writeFileAtomic } from './files.js';
import { buildCertificate, generateRsaKey } from './x509.js';

/** Default certificate lifetime. */
export const DEFAULT_TTL_MS = 30 * 86_400_000;

export interface IssueCertOptions {
  /** Folder holding `ca.pem` and `ca-key.pem` (and optionally `ca.json`). */
  caDir: string;
  /** The workload's SPIFFE ID; the certificate's only URI SAN. */
  spiffeId: string;
  /** Path prefix: writes `<out>.pem` and `<out>-key.pem`; its folder is created when missing. */
  out: string;
  /** DNS SANs, for use as a server certificate reached by name. */
  dns?: string[];
  /** IP SANs (IPv4 or IPv6). */
  ips?: string[];
  /** Lifetime: a duration string (`90s`, `15m`, `24h`, `30d`) or milliseconds. Default 30d. */
  ttl?: string | number;
  /** Issue time (defaults to the system clock). */
  now?: Date | number;
}

export interface IssuedCert {
  certFile: string;
  keyFile: string;
  spiffeId: string;
  dns: string[];
  ips: string[];
  notBefore: Date;
  notAfter: Date;
  /** Hex serial number, as `openssl x509 -serial` prints it. */
  serialNumber: string;
}

/**
 * Issue a leaf certificate (X.509-SVID profile: one SPIFFE URI SAN, not a CA, EKU serverAuth and
 * clientAuth) and a fresh RSA key. Existing files at `out` are replaced atomically, so re-issuing
 * to the same prefix rotates a certificate in place.
 * @throws UsageError for a bad SPIFFE ID, DNS name, IP, ttl or out prefix, or an identity outside
 * the CA's trust domain; PortlicenseError FILE_UNREADABLE / TLS_MATERIAL_INVALID for a missing or
 * unusable CA.
 */
export function issueCert(opts: IssueCertOptions): IssuedCert {
  const { trustDomain: td } = checkSpiffeId(opts.spiffeId);
  const spiffeId = opts.spiffeId;
  const dns = unique((opts.dns ?? []).map(checkDnsName));
  const ips = unique((opts.ips ?? []).map(checkIp));
  const ttl = checkTtl(opts.ttl);
  checkOut(opts.out);

  const ca = loadCa(opts.caDir);
  const meta = readCaMeta(opts.caDir);
  if (meta && meta.trustDomain !== td) {
    throw new UsageError(
      `--spiffe-id ${spiffeId}: trust domain "${td}" is not the CA's trust domain "${meta.trustDomain}" ` +
        `(${join(opts.caDir, CA_FILES.meta)})`,
    );
  }

  const now = opts.now === undefined ? Date.now() : new Date(opts.now).getTime();
  const notBefore = new Date(now - BACKDATE_MS);
  const notAfter = new Date(now + ttl);
  const caFrom = new Date(ca.x509.validFrom);
  const caTo = new Date(ca.x509.validTo);
  if (now < caFrom.getTime() || now >= caTo.getTime()) {
    throw new PortlicenseError(
      'TLS_MATERIAL_INVALID',
      `CA certificate ${ca.certFile} is not valid now (valid ${caFrom.toISOString()} to ${caTo.toISOString()})`,
    );
  }
  if (notAfter > caTo) {
    throw new UsageError(
      `--ttl: the certificate would expire after its CA (${caTo.toISOString()}); ` +
        'a certificate that outlives its CA stops verifying when the CA expires — use a shorter --ttl',
    );
  }

  const leaf = buildCertificate({
    commonName: commonNameFor(spiffeId),
    uris: [spiffeId],
    dns,
    ips,
    notBefore,
    notAfter,
    issuer: { cert: ca.certPem, key: ca.keyPem },
    key: generateRsaKey(),
  });

  const certFile = `${opts.out}.pem`;
  const keyFile = `${opts.out}-key.pem`;
  try {
    mkdirSync(dirname(opts.out), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new PortlicenseError('INTERNAL', `cannot create ${dirname(opts.out)}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  // Key first: a reader that sees the new certificate also finds its key.
  writeFileAtomic(keyFile, leaf.key, PRIVATE_MODE);
  writeFileAtomic(certFile, leaf.cert, PUBLIC_MODE);
  return {
    certFile,
    keyFile,
    spiffeId,
    dns,
    ips,
    notBefore,
    notAfter,
    serialNumber: new X509Certificate(leaf.cert).serialNumber,
  };
}

interface LoadedCa {
  certFile: string;
  certPem: string;
  keyPem: string;
  x509: X509Certificate;
}

/** Read and cross-check the CA certificate and key. */
function loadCa(caDir: string): LoadedCa {
  const hint = `create it with "portlicense ca init --dir ${caDir} --trust-domain <your trust domain>"`;
  if (!existsSync(caDir) || !statSync(caDir).isDirectory()) {
    throw new PortlicenseError('FILE_UNREADABLE', `CA folder ${caDir}: not found (${hint})`);
  }
  const certFile = join(caDir, CA_FILES.caCert);
  const keyFile = join(caDir, CA_FILES.caKey);
  const certPem = readPemFile(certFile, 'CA certificate', hint);
  const keyPem = readPemFile(keyFile, 'CA private key', hint);

  const invalid = (msg: string, cause?: unknown): PortlicenseError =>
    new PortlicenseError('TLS_MATERIAL_INVALID', msg, { cause });
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw invalid(`CA certificate ${certFile}: cannot be parsed: ${(err as Error).message}`, err);
  }
  if (!x509.ca)
    throw invalid(`CA certificate ${certFile}: is not a CA certificate (basicConstraints CA:FALSE)`);
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    const why = keyPem.includes('ENCRYPTED')
      ? 'is encrypted (use an unencrypted key)'
      : (err as Error).message;
    throw invalid(`CA private key ${keyFile}: cannot be read: ${why}`, err);
  }
  // node-forge, which assembles the certificate, signs with RSA only.
  if (key.asymmetricKeyType !== 'rsa') {
    throw invalid(
      `CA private key ${keyFile}: is ${key.asymmetricKeyType ?? 'an unknown type'}; ` +
        'cert issue signs with an RSA CA key only (for an EC CA, issue certificates with openssl, see certs/README.md)',
    );
  }
  if (!x509.checkPrivateKey(key)) throw invalid(`CA private key ${keyFile}: does not match ${certFile}`);
  return { certFile, certPem, keyPem, x509 };
}

function checkSpiffeId(id: string): SpiffeId {
  const parsed = parseSpiffeId(id);
  if (typeof parsed === 'string') throw new UsageError(`--spiffe-id "${id}": ${parsed}`);
  if (parsed.path === '') {
    throw new UsageError(
      `--spiffe-id "${id}": names a trust domain, not a workload; add a path like spiffe://${parsed.trustDomain}/ns/default/sa/orders`,
    );
  }
  return parsed;
}

const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A host name (RFC 1123), optionally with a leading `*.` wildcard label; returned in lower case. */
function checkDnsName(raw: string): string {
  const name = raw.toLowerCase();
  if (isIP(name) !== 0) throw new UsageError(`--dns "${raw}": is an IP address; use --ip`);
  const labels = name.split('.');
  const rest = labels[0] === '*' && labels.length > 2 ? labels.slice(1) : labels;
  if (name.length > 253 || !rest.every((l) => DNS_LABEL.test(l))) {
    throw new UsageError(
      `--dns "${raw}": not a valid DNS name (labels of a-z, 0-9 and "-", not starting or ending with "-", ` +
        'separated by single dots, no trailing dot; "*." only as the whole first label)',
    );
  }
  return name;
}

/** An IPv4 or IPv6 address; IPv6 in canonical form so the certificate encodes what was meant. */
function checkIp(raw: string): string {
  const version = isIP(raw);
  if (version === 4) return raw;
  if (version === 6 && !raw.includes('%')) return new URL(`http://[${raw}]/`).hostname.slice(1, -1);
  throw new UsageError(`--ip "${raw}": not an IPv4 or IPv6 address (no zone id, no port)`);
}

function checkTtl(ttl: string | number | undefined): number {
  if (ttl === undefined) return DEFAULT_TTL_MS;
  if (typeof ttl === 'number') {
    if (!Number.isSafeInteger(ttl) || ttl <= 0)
      throw new UsageError(`--ttl ${ttl}: must be a positive number of ms`);
    return ttl;
  }
  try {
    return parseDuration(ttl);
  } catch (err) {
    throw new UsageError(`--ttl: ${(err as Error).message}`);
  }
}

function checkOut(out: string): void {
  if (out === '' || out.endsWith(sep) || out.endsWith('/')) {
    throw new UsageError(
      `--out "${out}": must be a path prefix like certs/orders (writes certs/orders.pem and certs/orders-key.pem)`,
    );
  }
  if (out.endsWith('.pem')) {
    const base = out.slice(0, -4);
    throw new UsageError(
      `--out "${out}": is a path prefix, not a file name; use ${base} (writes ${base}.pem and ${base}-key.pem)`,
    );
  }
  if (existsSync(out) && statSync(out).isDirectory()) {
    throw new UsageError(
      `--out "${out}": is a folder; give a path prefix inside it, like ${join(out, 'orders')}`,
    );
  }
}

/** The subject CN is informational (identity is the URI SAN); X.520 caps it at 64 characters. */
function commonNameFor(spiffeId: string): string {
  if (spiffeId.length <= 64) return spiffeId;
  return spiffeId.slice(spiffeId.lastIndexOf('/') + 1).slice(0, 64);
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
