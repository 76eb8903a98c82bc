/**
 * The contents of the files a config names — certificates, keys, the bundle signing key — checked
 * the way the process uses them, before it starts anything. `config validate` runs the same checks,
 * so a file it calls valid starts. A problem is a ConfigError (exit 2) naming the config file, the
 * line and key path that name the file, the file, and what is wrong with it.
 */
import type { AuthorityConfig } from '../config/authority.js';
import type { SidecarConfig } from '../config/types.js';
import { readYamlFile } from '../config/yaml.js';
import { ConfigError, errorMessage, type ConfigProblem } from '../errors.js';
import { checkTlsFiles, MaterialProblem } from '../dataplane/tls-context.js';
import type { TlsMaterial } from '../authority/server.js';
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

/** A problem of `checkTlsFiles` as the key path and message of a config problem. */
function tlsProblem(err: unknown): { path: string; message: string } {
  return err instanceof MaterialProblem
    ? { path: err.key, message: `${err.file}: ${err.what}` }
    : { path: 'tls', message: errorMessage(err) };
}

/**
 * A sidecar's TLS material (as `TlsMaterialStore.load` reads it at start and at every reload) and
 * the public key its bundles are verified with.
 * @throws ConfigError
 */
export function checkSidecarMaterial(config: SidecarConfig): void {
  const problems: Array<{ path: string; message: string }> = [];
  try {
    checkTlsFiles(config.tls);
  } catch (err) {
    problems.push(tlsProblem(err));
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
 * The authority's TLS files (by the sidecar's rules: the CA file holds a CA, the key is
 * unencrypted and fits the certificate) and its Ed25519 bundle signing key.
 * @throws ConfigError
 */
export function authorityMaterial(config: AuthorityConfig): {
  tls: TlsMaterial;
  signingKey: ReturnType<typeof loadEd25519PrivateKey>;
} {
  const problems: Array<{ path: string; message: string }> = [];
  let tls: TlsMaterial | undefined;
  try {
    const m = checkTlsFiles(config.tls);
    tls = { ca: m.ca.toString('utf8'), cert: m.cert.toString('utf8'), key: m.key.toString('utf8') };
  } catch (err) {
    problems.push(tlsProblem(err));
  }
  let signingKey: ReturnType<typeof loadEd25519PrivateKey> | undefined;
  try {
    signingKey = loadEd25519PrivateKey(config.signingKey);
  } catch (err) {
    problems.push({ path: 'signingKey', message: errorMessage(err) });
  }
  if (problems.length > 0 || !signingKey || !tls) throw configError(config.file, problems);
  return { tls, signingKey };
}
