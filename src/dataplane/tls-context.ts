/**
 * The sidecar's TLS material (CA bundle, certificate chain, private key), checked at start-up and
 * hot-reloaded when the files change or on SIGHUP. Like ghostunnel's certloader, a reload that
 * fails keeps the material in force and says why, so a half-written rotation never becomes an
 * outage; listeners subscribe with `onReload` and swap their secure context for new connections.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { createSecureContext } from 'node:tls';
import { systemClock, type Clock } from '../clock.js';
import { errorMessage, PortlicenseError } from '../errors.js';
import type { Logger } from '../log.js';

/** Paths of the three PEM files (sidecar config `tls:`); other fields are ignored. */
export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** One checked set of material, usable as `tls` options as is. */
export interface TlsMaterial {
  /** The CA bundle that client certificates must chain to. */
  readonly ca: Buffer;
  /** The serving certificate, optionally followed by intermediates. */
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Increments with every successful reload that changed something (1 at load). */
  readonly generation: number;
  /** The serving leaf, for logs and /status. */
  readonly leaf: {
    readonly subject: string;
    readonly fingerprint256: string;
    readonly validFrom: string;
    readonly validTo: string;
  };
}

export type ReloadResult = { ok: true; changed: boolean } | { ok: false; error: string };

export interface WatchOptions {
  /** Quiet time after the last file event before reloading (a rotation writes several files). Default 250 ms. */
  debounceMs?: number;
  /** Re-read interval that catches changes fs.watch misses (network filesystems, lost watches). Default 30 s. */
  pollMs?: number;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

type Role = keyof TlsFiles;
const ROLE_LABEL: Record<Role, string> = { ca: 'tls.ca', cert: 'tls.cert', key: 'tls.key' };

/** What is wrong with one TLS file: the `cause` of load()'s TLS_MATERIAL_INVALID error. */
export class MaterialProblem extends Error {
  constructor(
    readonly role: Role,
    readonly file: string,
    readonly what: string,
  ) {
    super(`${ROLE_LABEL[role]} (${file}): ${what}`);
  }

  /** The config key that names the file: `tls.ca`, `tls.cert` or `tls.key`. */
  get key(): string {
    return ROLE_LABEL[this.role];
  }
}

interface RawFiles {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

function readAll(files: TlsFiles): RawFiles {
  const read = (role: Role): Buffer => {
    try {
      return readFileSync(files[role]);
    } catch (err) {
      throw new MaterialProblem(role, files[role], `cannot read: ${errorMessage(err)}`);
    }
  };
  return { ca: read('ca'), cert: read('cert'), key: read('key') };
}

function parseCerts(role: Role, file: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERT) ?? [];
  if (blocks.length === 0)
    throw new MaterialProblem(
      role,
      file,
      'holds no PEM certificate (expected "-----BEGIN CERTIFICATE-----")',
    );
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (err) {
      throw new MaterialProblem(role, file, `certificate #${i + 1} does not parse: ${errorMessage(err)}`);
    }
  });
}

function parseKey(file: string, pem: Buffer): KeyObject {
  const text = pem.toString('latin1');
  if (text.includes('ENCRYPTED'))
    throw new MaterialProblem(
      'key',
      file,
      'is encrypted; give an unencrypted PEM key (PKCS#8, PKCS#1 or SEC1)',
    );
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new MaterialProblem('key', file, `is not a usable PEM private key: ${errorMessage(err)}`);
  }
}

/**
 * Read and check a ca/cert/key trio by the rules `TlsMaterialStore.load` applies (the authority's
 * files too).
 * @throws MaterialProblem naming the file, its config key and what is wrong.
 */
export function checkTlsFiles(files: TlsFiles): TlsMaterial {
  return check(files, readAll(files), 1);
}

/** Check raw file contents as a whole; throws MaterialProblem naming the culprit file. */
function check(files: TlsFiles, raw: RawFiles, generation: number): TlsMaterial {
  const roots = parseCerts('ca', files.ca, raw.ca);
  if (!roots.some((c) => c.ca))
    throw new MaterialProblem(
      'ca',
      files.ca,
      "holds no CA certificate (basicConstraints CA:TRUE); give the CA that signs the callers' certificates",
    );
  const chain = parseCerts('cert', files.cert, raw.cert);
  const leaf = chain[0]!;
  const key = parseKey(files.key, raw.key);
  if (!leaf.checkPrivateKey(key))
    throw new MaterialProblem(
      'key',
      files.key,
      `does not match the certificate in ${files.cert} (${leaf.subject.replace(/\n/g, ', ')}); ` +
        'update both files together',
    );
  try {
    // What the listener will do with it: catches anything OpenSSL refuses that the checks above let through.
    createSecureContext({ ca: raw.ca, cert: raw.cert, key: raw.key });
  } catch (err) {
    throw new MaterialProblem('cert', files.cert, `rejected by OpenSSL: ${errorMessage(err)}`);
  }
  return {
    ca: raw.ca,
    cert: raw.cert,
    key: raw.key,
    generation,
    leaf: {
      subject: leaf.subject.replace(/\n/g, ', '),
      fingerprint256: leaf.fingerprint256,
      validFrom: leaf.validFrom,
      validTo: leaf.validTo,
    },
  };
}

function sameBytes(a: RawFiles, b: RawFiles): boolean {
  return a.ca.equals(b.ca) && a.cert.equals(b.cert) && a.key.equals(b.key);
}

/**
 * Holds the current TLS material. `current()` is a field read; everything else runs off the data
 * path (start-up, file events, SIGHUP).
 */
export class TlsMaterialStore {
  private material: TlsMaterial;
  private readonly listeners = new Set<(m: TlsMaterial) => void>();
  private watchers: FSWatcher[] = [];
  private debounce: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  /** Contents of the last failed attempt, so an unchanged broken file warns once, not every poll. */
  private lastFailed: RawFiles | undefined;
  private closed = false;

  private constructor(
    readonly files: TlsFiles,
    private readonly log: Logger,
    private readonly clock: Clock,
    material: TlsMaterial,
  ) {
    this.material = material;
  }

  /**
   * Read and check the files: each certificate parses, the CA file holds at least one, the key
   * is unencrypted and matches the leaf. Throws PortlicenseError('TLS_MATERIAL_INVALID') naming the
   * file, the config key and what to do.
   */
  static load(files: TlsFiles, log: Logger, opts: { clock?: Clock } = {}): TlsMaterialStore {
    const paths: TlsFiles = { ca: files.ca, cert: files.cert, key: files.key };
    let material: TlsMaterial;
    try {
      material = check(paths, readAll(paths), 1);
    } catch (err) {
      throw new PortlicenseError('TLS_MATERIAL_INVALID', `cannot load TLS material: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    const store = new TlsMaterialStore(paths, log, opts.clock ?? systemClock, material);
    store.warnIfOutsideValidity(material);
    log.info('TLS material loaded', { cert: paths.cert, ...material.leaf });
    return store;
  }

  /** The material in force. */
  current(): TlsMaterial {
    return this.material;
  }

  /**
   * Re-read the files. Unchanged contents are a no-op (`changed: false`); new valid contents are
   * swapped in and announced to `onReload` listeners; invalid ones are logged and the old material
   * stays in force.
   */
  reload(): ReloadResult {
    return this.attempt(true);
  }

  /** Call `cb` with the new material after every reload that changed it. Returns an unsubscribe function. */
  onReload(cb: (m: TlsMaterial) => void): () => void {
    const entry = (m: TlsMaterial): void => cb(m);
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  /**
   * Reload when the files change. Watches the files' folders rather than the files, so an atomic
   * rename (`mv new.pem cert.pem`, Kubernetes' `..data` symlink swap) is seen too; events are
   * debounced, and a slow poll backs fs.watch up. Idempotent.
   */
  watch(opts: WatchOptions = {}): void {
    if (this.closed || this.poll !== undefined) return;
    const debounceMs = opts.debounceMs ?? 250;
    const pollMs = opts.pollMs ?? 30_000;
    const schedule = (): void => {
      if (this.closed) return;
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => this.attempt(false), debounceMs);
      this.debounce.unref();
    };
    const paths = [this.files.ca, this.files.cert, this.files.key];
    const names = new Set(paths.map((f) => basename(f)));
    for (const dir of new Set(paths.map((f) => dirname(f)))) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          // null name: the platform did not say; `..foo`: a Kubernetes-style atomic swap.
          if (name === null || names.has(name) || name.startsWith('..')) schedule();
        });
        w.on('error', (err) =>
          this.log.debug('TLS file watch failed; polling only', { dir, error: errorMessage(err) }),
        );
        this.watchers.push(w);
      } catch (err) {
        this.log.warn('cannot watch TLS folder; polling only', { dir, pollMs, error: errorMessage(err) });
      }
    }
    this.poll = setInterval(() => this.attempt(false), pollMs);
    this.poll.unref();
  }

  /** Stop watching and forget the listeners. Idempotent. */
  close(): void {
    this.closed = true;
    for (const w of this.watchers) w.close();
    this.watchers = [];
    clearTimeout(this.debounce);
    clearInterval(this.poll);
    this.listeners.clear();
  }

  private attempt(explicit: boolean): ReloadResult {
    let raw: RawFiles | undefined;
    try {
      raw = readAll(this.files);
      const cur = this.material;
      if (sameBytes(raw, cur)) {
        // The files are back to the ones in force after a failed reload: say the warning is over.
        if (this.lastFailed !== undefined)
          this.log.info('TLS files match the certificates in force again; nothing to reload', {
            cert: this.files.cert,
            generation: cur.generation,
          });
        this.lastFailed = undefined;
        return { ok: true, changed: false };
      }
      if (!explicit && this.lastFailed !== undefined && sameBytes(raw, this.lastFailed))
        return { ok: false, error: 'unchanged since the last failed reload' };
      const next = check(this.files, raw, cur.generation + 1);
      this.material = next;
      this.lastFailed = undefined;
      this.log.info('TLS material reloaded', {
        cert: this.files.cert,
        generation: next.generation,
        ...next.leaf,
      });
      this.warnIfOutsideValidity(next);
      for (const l of [...this.listeners]) {
        try {
          l(next);
        } catch (err) {
          this.log.error('TLS reload listener failed', { error: errorMessage(err) });
        }
      }
      return { ok: true, changed: true };
    } catch (err) {
      this.lastFailed = raw;
      const error = errorMessage(err);
      this.log.warn('TLS reload failed; keeping the current certificates', {
        file: err instanceof MaterialProblem ? err.file : undefined,
        error,
      });
      return { ok: false, error };
    }
  }

  private warnIfOutsideValidity(m: TlsMaterial): void {
    const now = this.clock.now();
    if (Date.parse(m.leaf.validTo) <= now || Date.parse(m.leaf.validFrom) > now)
      this.log.warn('serving certificate is outside its validity period; callers will refuse it', {
        cert: this.files.cert,
        validFrom: m.leaf.validFrom,
        validTo: m.leaf.validTo,
      });
  }
}
