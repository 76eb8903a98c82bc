/** `portlicense ca init` and `portlicense cert issue`: thin flag parsing over src/pki. */
import { initCa } from '../pki/ca.js';
import { issueCert } from '../pki/issue.js';
import { PortlicenseError, UsageError } from '../errors.js';
import { flag, list, parseFlags, required, str } from './args.js';

const CA_HELP = `Usage: portlicense ca init --dir DIR --trust-domain TD [--force]

Creates a CA (ca.pem, ca-key.pem), the authority's TLS certificate (authority.pem,
authority-key.pem) and the Ed25519 bundle-signing key pair (bundle-signing-key.pem,
bundle-signing.pub.pem) in DIR. Refuses to replace an existing CA without --force.
`;

const ISSUE_HELP = `Usage: portlicense cert issue --ca-dir DIR --spiffe-id ID --out PREFIX [--dns NAME...] [--ip IP...] [--ttl DURATION]

Issues a workload certificate (X.509-SVID: one SPIFFE URI SAN, serverAuth + clientAuth) signed by
the CA in DIR, written to PREFIX.pem and PREFIX-key.pem. --ttl defaults to 30d.
`;

export async function caInitCommand(argv: string[]): Promise<number> {
  const p = parseFlags('ca init', argv, {
    dir: { type: 'string' },
    'trust-domain': { type: 'string' },
    force: { type: 'boolean' },
  });
  if (p.values.help) {
    process.stdout.write(CA_HELP);
    return 0;
  }
  const result = initCa({
    dir: required('ca init', p, 'dir'),
    trustDomain: required('ca init', p, 'trust-domain'),
    force: flag(p, 'force'),
  });
  process.stdout.write(
    `CA for trust domain ${result.trustDomain}; authority identity ${result.authorityId}; bundle signing key id ${result.signingKeyId}\n`,
  );
  for (const f of result.files) process.stdout.write(`  wrote ${f}\n`);
  return Promise.resolve(0);
}

export async function certIssueCommand(argv: string[]): Promise<number> {
  const p = parseFlags('cert issue', argv, {
    'ca-dir': { type: 'string' },
    'spiffe-id': { type: 'string' },
    out: { type: 'string' },
    dns: { type: 'string', multiple: true },
    ip: { type: 'string', multiple: true },
    ttl: { type: 'string' },
  });
  if (p.values.help) {
    process.stdout.write(ISSUE_HELP);
    return 0;
  }
  const ttl = str(p, 'ttl');
  let cert: ReturnType<typeof issueCert>;
  try {
    cert = issueCert({
      caDir: required('cert issue', p, 'ca-dir'),
      spiffeId: required('cert issue', p, 'spiffe-id'),
      out: required('cert issue', p, 'out'),
      dns: list(p, 'dns'),
      ips: list(p, 'ip'),
      ...(ttl !== undefined ? { ttl } : {}),
    });
  } catch (err) {
    // A --ca-dir that holds no usable CA is a bad argument (exit 2), as a bad --spiffe-id is.
    if (
      err instanceof PortlicenseError &&
      (err.code === 'FILE_UNREADABLE' || err.code === 'TLS_MATERIAL_INVALID')
    )
      throw new UsageError(`cert issue: --ca-dir: ${err.message}`);
    throw err;
  }
  process.stdout.write(
    `${cert.spiffeId}: wrote ${cert.certFile} and ${cert.keyFile} (valid until ${cert.notAfter.toISOString()})\n`,
  );
  return Promise.resolve(0);
}
