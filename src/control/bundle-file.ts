/**
 * The bundle source for air-gapped nodes (`authority.bundleFile`): a signed bundle on disk, watched
 * for changes. Like ghostunnel's certificate reloader it keeps the last good policy when a new file
 * is bad, and like every control-plane piece it reports problems as a log line and a callback
 * (metrics), never as an exception into the event loop.
 *
 * Change detection has two legs: fs.watch on the folder (so an editor's or `mv`'s rename over the
 * file is seen — a watch on the file itself dies with the old inode) and a periodic stat as a
 * fallback for filesystems where fs.watch is silent (NFS, some container mounts). The file is
 * re-opened by name on every check. Debounce and poll cadence use real timers: they pace I/O and
 * decide nothing about license time, which comes from the Clock.
 */
import type { KeyObject } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { systemClock, type Clock } from '../clock.js';
import { PortlicenseError, errorMessage, type ErrorCode } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { payloadDigestAsync, rollbackError, verifyBundleAsync } from '../policy/bundle.js';
import { buildSnapshotAsync, type AsyncSnapshotOptions } from '../policy/snapshot.js';
import type { PolicyStore } from '../policy/store.js';
import type { BundlePayload, PolicySnapshot } from '../policy/types.js';

/** Label of `portlicense_sync_failures_total{reason}` for a refused bundle file. */
export type BundleRejectReason = 'unreadable' | 'invalid' | 'signature' | 'rollback';

export interface BundleLoadedEvent {
  file: string;
  version: number;
  licenses: number;
  /** Clock time of the load. */
  at: number;
  /** False when the file changed on disk but held the bundle already in force. */
  changed: boolean;
}

export interface BundleRejectedEvent {
  file: string;
  reason: BundleRejectReason;
  error: PortlicenseError;
  at: number;
  /** The version still in force. */
  keptVersion: number;
}

export interface BundleFileSourceOptions {
  file: string;
  publicKey: KeyObject;
  store: PolicyStore;
  clock?: Clock;
  log?: Logger;
  onLoaded?: (event: BundleLoadedEvent) => void;
  onRejected?: (event: BundleRejectedEvent) => void;
  /** Quiet time after a change event before the file is read (default 100 ms). */
  debounceMs?: number;
  /** Stat poll interval, the fallback when fs.watch misses a change (default 5 s). */
  pollIntervalMs?: number;
  /** Use fs.watch (default true); false leaves only the stat poll, for filesystems where watching misbehaves. */
  watch?: boolean;
  /**
   * Snapshot options, and `sliceMs`: the longest run of verify and build work between two turns
   * of the event loop.
   */
  snapshot?: AsyncSnapshotOptions;
}

const REASONS: Partial<Record<ErrorCode, BundleRejectReason>> = {
  FILE_UNREADABLE: 'unreadable',
  BUNDLE_INVALID: 'invalid',
  BUNDLE_SIGNATURE: 'signature',
  BUNDLE_ROLLBACK: 'rollback',
};

/** The metrics label for an error thrown by start() or reported to onRejected. */
export function bundleRejectReason(err: unknown): BundleRejectReason {
  return (err instanceof PortlicenseError ? REASONS[err.code] : undefined) ?? 'invalid';
}

export class BundleFileSource {
  private readonly file: string;
  private readonly clock: Clock;
  private readonly log: Logger;
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private closed = false;
  /**
   * Bytes of the last file examined (good or bad), or why it was unreadable, to ignore repeated
   * events for the same content.
   */
  private lastSeen: Buffer | string | null = null;
  private lastStat = '';
  /**
   * The payload this source installed, and the sha256 of its canonical JSON once an equal version
   * needed it (computed only then: it costs as much as verifying the bundle).
   */
  private installed: { version: number; payload: BundlePayload; digest: string | null } | null = null;

  constructor(private readonly opts: BundleFileSourceOptions) {
    this.file = opts.file;
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.log ?? silentLogger).child({ bundleFile: opts.file });
  }

  /**
   * Load the file, install it, then start watching. A missing, unreadable, invalid, foreign or
   * older bundle rejects with a PortlicenseError naming the file (its reason: bundleRejectReason);
   * nothing is watched then unless the caller calls watch().
   */
  async start(): Promise<PolicySnapshot> {
    this.lastStat = await this.statSignature();
    let bytes: Buffer;
    try {
      bytes = await readFile(this.file);
    } catch (err) {
      throw new PortlicenseError(
        'FILE_UNREADABLE',
        `${this.file}: cannot read the bundle file: ${errorMessage(err)}`,
        { cause: err },
      );
    }
    try {
      await this.apply(bytes);
    } catch (err) {
      if (err instanceof PortlicenseError)
        throw new PortlicenseError(err.code, `${this.file}: ${err.message}`, { cause: err });
      throw err;
    }
    this.watch();
    return this.opts.store.current();
  }

  /**
   * Watch (and poll) the file. start() does this after a good load; a caller that chooses to keep
   * running on deny-all after start() failed calls it to pick the file up once it is fixed.
   * Idempotent; a no-op once closed.
   */
  watch(): void {
    if (this.closed || this.poller) return;
    if (this.opts.watch ?? true) this.watchFolder();
    this.poller = setInterval(() => void this.poll(), this.opts.pollIntervalMs ?? 5000);
    this.poller.unref();
  }

  /**
   * Re-read the file now; resolves once a read that started after this call is done (calls made
   * while one is in flight share the next one). Never rejects; a no-op once closed.
   */
  check(): Promise<void> {
    if (this.running) {
      // Read again after the check in flight, which may have read the file before it changed.
      this.again = true;
      return this.running.then(() => this.running ?? undefined);
    }
    this.running = this.checkOnce().finally(() => {
      this.running = null;
      if (this.again && !this.closed) {
        this.again = false;
        void this.check();
      }
    });
    return this.running;
  }

  /** Stop watching and polling. Idempotent; a check in flight finishes without installing anything. */
  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.poller) clearInterval(this.poller);
    if (this.debounce) clearTimeout(this.debounce);
    this.poller = this.debounce = null;
  }

  private watchFolder(): void {
    const name = basename(this.file);
    try {
      this.watcher = watch(dirname(this.file), { persistent: false }, (_event, filename) => {
        if (filename === null || filename === name) this.schedule();
      });
      this.watcher.on('error', (err) => {
        this.log.warn('bundle file watch failed; falling back to polling', { error: errorMessage(err) });
        this.watcher?.close();
        this.watcher = null;
      });
    } catch (err) {
      this.log.warn('cannot watch the bundle file folder; falling back to polling', {
        error: errorMessage(err),
      });
    }
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.check();
    }, this.opts.debounceMs ?? 100);
    this.debounce.unref();
  }

  private async poll(): Promise<void> {
    const sig = await this.statSignature();
    if (sig !== this.lastStat && !this.closed) {
      this.lastStat = sig;
      this.schedule();
    }
  }

  private async statSignature(): Promise<string> {
    try {
      const s = await stat(this.file);
      return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
    } catch (err) {
      return `error:${(err as NodeJS.ErrnoException).code ?? 'unknown'}`;
    }
  }

  private async checkOnce(): Promise<void> {
    if (this.closed) return;
    try {
      let bytes: Buffer;
      try {
        // Bytes, not text: verifyBundleAsync decodes them in slices.
        bytes = await readFile(this.file);
      } catch (err) {
        // Remembered like content, so one missing file is reported once, not on every event.
        const seen = `unreadable:${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`;
        if (this.closed || seen === this.lastSeen) return;
        this.lastSeen = seen;
        throw new PortlicenseError('FILE_UNREADABLE', `cannot read the bundle file: ${errorMessage(err)}`, {
          cause: err,
        });
      }
      const last = this.lastSeen;
      if (this.closed || (last instanceof Buffer && last.equals(bytes))) return;
      await this.apply(bytes);
    } catch (err) {
      this.reject(err);
    }
  }

  /**
   * Verify and install a bundle file's bytes; throws what verification throws. The work is
   * sliced (the event loop keeps serving meanwhile), so the version in force is checked again
   * right before the swap: a bundle installed in the meantime (by a start() racing a check(), or
   * another source on the same store) is never replaced by an older one.
   */
  private async apply(bytes: Buffer): Promise<void> {
    this.lastSeen = bytes;
    const { store, publicKey, snapshot } = this.opts;
    const payload = await verifyBundleAsync(bytes, publicKey, {
      minVersion: store.current().version,
      sliceMs: snapshot?.sliceMs,
    });
    let next: PolicySnapshot | null = null;
    for (;;) {
      if (this.closed) return;
      const inForce = store.current().version;
      if (payload.version < inForce) throw rollbackError(payload.version, inForce);
      if (payload.version === inForce) return this.sameVersion(payload);
      if (next !== null) break;
      next = await buildSnapshotAsync(payload, snapshot);
    }
    store.swap(next);
    this.installed = { version: payload.version, payload, digest: null };
    this.log.info('bundle loaded', { version: payload.version, licenses: payload.licenses.length });
    this.loaded(payload, true);
  }

  /**
   * Equal version: a no-op when it is the bundle in force; a different bundle under the same
   * version would let two nodes enforce different policies under one number, so it is refused.
   */
  private async sameVersion(payload: BundlePayload): Promise<void> {
    const installed = this.installed;
    if (installed !== null && installed.version === payload.version) {
      const sliceMs = this.opts.snapshot?.sliceMs;
      installed.digest ??= await payloadDigestAsync(installed.payload, sliceMs);
      if ((await payloadDigestAsync(payload, sliceMs)) !== installed.digest)
        throw new PortlicenseError(
          'BUNDLE_ROLLBACK',
          `bundle version ${payload.version} is already in force with different content; a changed bundle needs a higher version`,
        );
    }
    if (!this.closed) this.loaded(payload, false);
  }

  private loaded(payload: BundlePayload, changed: boolean): void {
    this.notify(() =>
      this.opts.onLoaded?.({
        file: this.file,
        version: payload.version,
        licenses: payload.licenses.length,
        at: this.clock.now(),
        changed,
      }),
    );
  }

  private reject(err: unknown): void {
    const error =
      err instanceof PortlicenseError
        ? err
        : new PortlicenseError('BUNDLE_INVALID', errorMessage(err), { cause: err });
    const reason = bundleRejectReason(error);
    const keptVersion = this.opts.store.current().version;
    this.log.warn('bundle file rejected; keeping the last good bundle', {
      reason,
      error: error.message,
      keptVersion,
    });
    this.notify(() =>
      this.opts.onRejected?.({ file: this.file, reason, error, at: this.clock.now(), keptVersion }),
    );
  }

  /** Callbacks are metrics hooks; one that throws must not break the source. */
  private notify(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error('bundle file callback failed', { error: errorMessage(err) });
    }
  }
}
