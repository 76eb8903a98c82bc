/**
 * Signed bundles (SPEC §4 bundle format). A bundle depends only on the bundle version, the node
 * that asks and its services, so each (version, node, services) is signed and serialised once
 * and then served from memory: a thousand sidecars re-polling after a change cost a thousand
 * cache hits, not a thousand signatures. A new version makes every older entry useless; they are
 * dropped when the first bundle of the new version is built. Entries are also rebuilt after
 * {@link BUNDLE_MAX_AGE_MS}, so a version that stays current for days still drops licenses that
 * have been expired for 24 h (the content changes, the meaning does not: no version bump).
 */
import type { KeyObject } from 'node:crypto';
import type { Clock } from '../clock.js';
import { formatTime } from '../config/duration.js';
import { errorMessage } from '../errors.js';
import { signBundle } from '../policy/bundle.js';
import { compileLicense } from '../policy/compile.js';
import type { BundlePayload, LicenseWire } from '../policy/types.js';
import { licenseWire, type LicenseRecord } from './model.js';

/** What the cache needs of the licensing layer. */
export interface BundleSource {
  version(): number;
  bundleLicenses(services: readonly string[]): LicenseRecord[];
}

export interface BuiltBundle {
  readonly version: number;
  /** Epoch ms when it was signed. */
  readonly builtAt: number;
  /** The signed bundle document as JSON bytes, ready to send. */
  readonly body: Buffer;
}

/** A cached bundle older than this is signed again on the next request. */
export const BUNDLE_MAX_AGE_MS = 3_600_000;

/** Default bound of cached (node, services) entries of the current version. */
export const DEFAULT_BUNDLE_CACHE_ENTRIES = 10_000;

export class BundleCache {
  private readonly entries = new Map<string, BuiltBundle>();
  private cachedVersion = 0;
  /** Bundles signed since start (cache misses), for tests and logs. */
  signed = 0;

  constructor(
    private readonly source: BundleSource,
    private readonly signingKey: KeyObject,
    private readonly clock: Clock,
    private readonly maxEntries = DEFAULT_BUNDLE_CACHE_ENTRIES,
    /** Told about a stored license a sidecar would refuse; it is left out of the bundle. */
    private readonly onInvalid: (id: string, error: string) => void = () => {},
  ) {}

  /**
   * The bundle form of the licenses, each checked by the same compiler the sidecars run: one
   * license that slipped past input validation must not make every bundle of its service fail.
   */
  private wire(records: readonly LicenseRecord[]): LicenseWire[] {
    const out: LicenseWire[] = [];
    for (const r of records) {
      try {
        const w = licenseWire(r);
        compileLicense(w);
        out.push(w);
      } catch (err) {
        this.onInvalid(r.id, errorMessage(err));
      }
    }
    return out;
  }

  /** The current bundle for `node` serving `services` (in the order asked; payload.services is that list). */
  get(node: string, services: readonly string[]): BuiltBundle {
    // Version and licenses are read in one synchronous step: no change can land in between.
    const version = this.source.version();
    if (version !== this.cachedVersion) {
      this.entries.clear();
      this.cachedVersion = version;
    }
    const key = `${node}\u0000${services.join(',')}`;
    const now = this.clock.now();
    const hit = this.entries.get(key);
    if (hit && now - hit.builtAt < BUNDLE_MAX_AGE_MS) return hit;
    if (hit) this.entries.delete(key);
    const payload: BundlePayload = {
      version,
      issuedAt: formatTime(now),
      node,
      services: [...services],
      licenses: this.wire(this.source.bundleLicenses(services)),
    };
    const body = Buffer.from(JSON.stringify(signBundle(payload, this.signingKey)), 'utf8');
    const built: BuiltBundle = { version, builtAt: now, body };
    this.signed++;
    // Map keeps insertion order: the oldest entry goes first.
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, built);
    return built;
  }
}
