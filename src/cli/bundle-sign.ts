/**
 * `portlicense bundle sign`: a signed bundle from a licenses YAML, for `authority.bundleFile`.
 * Without --version the new version is one above the version already in --out, so re-signing
 * always moves sidecars forward (they refuse a lower version as a rollback).
 */
import { readFileSync } from 'node:fs';
import { loadDeclarativeFile } from '../config/declarative.js';
import { UsageError, errorMessage } from '../errors.js';
import { buildOfflinePayload } from '../control/offline-bundle.js';
import { writeFileAtomic } from '../pki/files.js';
import { loadEd25519PrivateKey, signBundle } from '../policy/bundle.js';
import { parseFlags, required, str } from './args.js';

const HELP = `Usage: portlicense bundle sign --key FILE --in LICENSES.yaml --out BUNDLE.json [--version N] [--node NAME]

Signs the licenses of a declarative file (SPEC §5) with the Ed25519 key (PKCS#8 PEM) into a bundle
that sidecars load with authority.bundleFile. Licenses without ttl or expiresAt last 24h from now.
--version defaults to one above the version in an existing --out file (or 1); a --version not
above it is refused, since sidecars would refuse that bundle as a rollback.
`;

/** The version of the bundle in `outFile`, or undefined when there is none to read. */
function currentVersion(outFile: string): number | undefined {
  try {
    const doc = JSON.parse(readFileSync(outFile, 'utf8')) as { payload?: { version?: unknown } };
    const v = doc.payload?.version;
    return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

export async function bundleSignCommand(argv: string[]): Promise<number> {
  const p = parseFlags('bundle sign', argv, {
    key: { type: 'string' },
    in: { type: 'string' },
    out: { type: 'string' },
    version: { type: 'string' },
    node: { type: 'string' },
  });
  if (p.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const keyFile = required('bundle sign', p, 'key');
  const inFile = required('bundle sign', p, 'in');
  const outFile = required('bundle sign', p, 'out');
  const v = str(p, 'version');
  if (v !== undefined && !/^[0-9]{1,15}$/.test(v))
    throw new UsageError(`bundle sign: --version must be a whole number, got "${v}"`);
  let key: ReturnType<typeof loadEd25519PrivateKey>;
  try {
    key = loadEd25519PrivateKey(keyFile);
  } catch (err) {
    throw new UsageError(`bundle sign: --key ${errorMessage(err)}`);
  }
  const decl = loadDeclarativeFile(inFile);
  const current = currentVersion(outFile);
  if (v !== undefined && current !== undefined && Number(v) <= current)
    // Sidecars keep the bundle they have over one that is not newer (a rollback, or nothing new).
    throw new UsageError(
      `bundle sign: --version ${v} is not above the version of ${outFile} (${current}), which sidecars ` +
        `would refuse as a rollback; give --version ${current + 1} or more, or leave --version out`,
    );
  const version = v !== undefined ? Number(v) : (current ?? 0) + 1;
  const payload = buildOfflinePayload(decl, { version, node: str(p, 'node') ?? 'offline', now: Date.now() });
  const signed = signBundle(payload, key);
  writeFileAtomic(outFile, JSON.stringify(signed, null, 2) + '\n', 0o644);
  process.stdout.write(
    `${outFile}: bundle version ${version}, ${payload.licenses.length} license(s), key ${signed.signature.keyId}\n`,
  );
  return Promise.resolve(0);
}
