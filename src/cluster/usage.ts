/**
 * Usage tracking split across processes. Each worker's listeners write their own UsageTracker
 * exactly as the single process does; the worker's exporter drains it as deltas, and the control
 * plane folds them into one tracker that the usage reports, the expiry warnings, the last-access
 * gauge and /status read, unchanged. Both sides subclass UsageTracker so every existing consumer
 * takes them as they are.
 */
import type { DenyReason } from '../policy/types.js';
import {
  UsageTracker,
  type DenialDelta,
  type RecentDenial,
  type UsageReport,
  type UsageSnapshot,
  type UsageTrackerOptions,
} from '../telemetry/usage.js';
import type { TelemetryBatch } from './telemetry-export.js';

/** A worker's tracker: also counts denials, so the exporter sends only the new recent ones. */
export class CountingUsageTracker extends UsageTracker {
  #fresh = 0;

  override recordDenial(
    port: string,
    identity: string | null,
    reason: DenyReason,
    origin: string,
    now: number,
  ): void {
    this.#fresh++;
    super.recordDenial(port, identity, reason, origin, now);
  }

  /** Denials recorded since the previous call, newest first (at most the ring's size). */
  takeRecentDenials(): RecentDenial[] {
    const n = this.#fresh;
    this.#fresh = 0;
    return n === 0 ? [] : this.recentDenials().slice(0, n);
  }
}

const denialKey = (d: { identity: string | null; reason: DenyReason }): string =>
  `${d.identity ?? ''}\u0000${d.reason}`;

/**
 * The control plane's tracker. It records nothing itself (it has no listeners): workers' usage
 * deltas land in its entries, their denial counts wait for the next usage report, and their
 * recent denials form one ring, newest first.
 */
export class ClusterUsageTracker extends UsageTracker {
  readonly #recentSize: number;
  #recent: RecentDenial[] = [];
  #pendingDenials = new Map<string, DenialDelta>();
  #pendingMerged = { usage: 0, denials: 0 };
  readonly #workerMergedTotal = { usage: 0, denials: 0 };
  readonly #denialTotals = new Map<string, DenialDelta>();

  constructor(opts: UsageTrackerOptions = {}) {
    super(opts);
    this.#recentSize = Math.max(1, opts.recentDenials ?? 50);
  }

  /** Fold one worker batch in. */
  absorb(batch: Pick<TelemetryBatch, 'usage' | 'denials' | 'recentDenials' | 'merged'>): void {
    for (const u of batch.usage) {
      const e = this.entry(u.licenseId, u.identity, u.origin);
      if (u.lastAccess > e.at) e.at = u.lastAccess;
      e.count += u.count;
    }
    for (const d of batch.denials) {
      addDenial(this.#pendingDenials, d);
      addDenial(this.#denialTotals, d);
    }
    if (batch.recentDenials.length > 0) {
      this.#recent = [...batch.recentDenials, ...this.#recent]
        .sort((a, b) => b.at - a.at)
        .slice(0, this.#recentSize);
    }
    this.#pendingMerged.usage += batch.merged.usage;
    this.#pendingMerged.denials += batch.merged.denials;
    this.#workerMergedTotal.usage += batch.merged.usage;
    this.#workerMergedTotal.denials += batch.merged.denials;
  }

  override takeReport(now: number): UsageReport {
    const own = super.takeReport(now);
    const denials = new Map<string, DenialDelta>();
    for (const d of own.denials) addDenial(denials, d);
    for (const d of this.#pendingDenials.values()) addDenial(denials, d);
    const merged = {
      usage: own.merged.usage + this.#pendingMerged.usage,
      denials: own.merged.denials + this.#pendingMerged.denials,
    };
    this.#pendingDenials = new Map();
    this.#pendingMerged = { usage: 0, denials: 0 };
    return { ...own, denials: [...denials.values()], merged };
  }

  override recentDenials(): RecentDenial[] {
    const own = super.recentDenials();
    if (own.length === 0) return this.#recent.slice();
    return [...own, ...this.#recent].sort((a, b) => b.at - a.at).slice(0, this.#recentSize);
  }

  override snapshot(): UsageSnapshot {
    const s = super.snapshot();
    const denials = new Map<string, DenialDelta>();
    for (const d of s.denials) addDenial(denials, d);
    for (const d of this.#denialTotals.values()) addDenial(denials, d);
    return {
      ...s,
      merged: {
        usage: s.merged.usage + this.#workerMergedTotal.usage,
        denials: s.merged.denials + this.#workerMergedTotal.denials,
      },
      denials: [...denials.values()],
      recentDenials: this.recentDenials(),
    };
  }
}

function addDenial(into: Map<string, DenialDelta>, d: DenialDelta): void {
  const key = denialKey(d);
  const cur = into.get(key);
  if (cur) cur.count += d.count;
  else into.set(key, { identity: d.identity, reason: d.reason, count: d.count });
}
