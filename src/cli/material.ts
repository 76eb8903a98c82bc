/**
 * The contents of the files a config names — certificates, keys, the bundle signing key — checked
 * the way the process uses them, before it starts anything. `config validate` runs the same checks,
 * so a file it calls valid starts. A problem is a ConfigError (exit 2) naming the config file, the
 * line and key path that name the file, the file, and what is wrong with it.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { AuthorityConfig } from '../config/authority.js';
import type { SidecarConfig } from '../config/types.js';
import { readYamlFile } from '../config/yaml.js';
import { ConfigError, errorMessage, type ConfigProblem } from '../errors.js';
import { MaterialProblem, TlsMaterialStore } from '../dataplane/tls-context.js';
import type { TlsMaterial } from '../authority/server.js';
import { silentLogger } from '../log.js';
import { loadEd25519PrivateKey, loadEd25519PublicKey } from '../policy/bundle.js';

/** Problems in `file`, each with the line of its key path (read again: this is the failure path). */
function configError(file: string, problems: Array<{ path: string; message: string }>): ConfigError {
  let lineOf: (path: string) => number = () => 0;
  try {
    lineOf = readYamlFile(file).lineOf;
  } catch {
    // the file was read a moment ago; without it, no lines
  }
  return new ConfigError(problems.map((p): ConfigProblem => ({ file, line: lineOf(p.path), ...p })));
}

/**
 * A sidecar's TLS material (as `TlsMaterialStore.load` reads it at start and at every reload) and
 * the public key its bundles are verified with.
 * @throws ConfigError
 */
export function checkSidecarMaterial(config: SidecarConfig): void {
  const problems: Array<{ path: string; message: string }> = [];
  try {
    TlsMaterialStore.load(config.tls, silentLogger).close();
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof MaterialProblem)
      problems.push({ path: cause.key, message: `${cause.file}: ${cause.what}` });
    else problems.push({ path: 'tls', message: errorMessage(err) });
  }
  const key = config.authority.signingPublicKey;
  if (config.ports.length > 0 && key)
    try {
      loadEd25519PublicKey(key);
    } catch (err) {
      problems.push({ path: 'authority.signingPublicKey', message: errorMessage(err) });
    }
  if (problems.length > 0) throw configError(config.file, problems);
}

/**
 * The authority's TLS files (the CA bundle parses; the certificate and key are a pair) and its
 * Ed25519 bundle signing key.
 * @throws ConfigError
 */
export function authorityMaterial(config: AuthorityConfig): {
  tls: TlsMaterial;
  signingKey: ReturnType<typeof loadEd25519PrivateKey>;
} {
  const problems: Array<{ path: string; message: string }> = [];
  const problem = (path: string, message: string): void => {
    problems.push({ path, message });
  };
  const read = (path: string, file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      problem(path, `cannot read ${file}: ${errorMessage(err)}`);
      return '';
    }
  };
  const tls = {
    ca: read('tls.ca', config.tls.ca),
    cert: read('tls.cert', config.tls.cert),
    key: read('tls.key', config.tls.key),
  };
  if (tls.ca)
    try {
      createSecureContext({ ca: tls.ca });
    } catch (err) {
      problem('tls.ca', `${config.tls.ca} is not a usable CA bundle: ${errorMessage(err)}`);
    }
  if (tls.cert && tls.key)
    try {
      createSecureContext({ cert: tls.cert, key: tls.key });
    } catch (err) {
      problem(
        'tls.key',
        `${config.tls.cert} with ${config.tls.key} is not a usable certificate and key: ${errorMessage(err)}`,
      );
    }
  let signingKey: ReturnType<typeof loadEd25519PrivateKey> | undefined;
  try {
    signingKey = loadEd25519PrivateKey(config.signingKey);
  } catch (err) {
    problem('signingKey', errorMessage(err));
  }
  if (problems.length > 0 || !signingKey) throw configError(config.file, problems);
  return { tls, signingKey };
}
