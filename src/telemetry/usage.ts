/**
 * Last-access tracking (SPEC §1 "every decision is recorded") and the deltas behind usage reports
 * (SPEC §4), which drive renewal on the authority.
 *
 * The data path asks once for the entry of a (license, identity, origin), keeps the object, and
 * then only writes `at` and `count` on it; the lookup is three Map reads with no key building.
 * Everything else here — reports, /status, scrape-time gauges — runs on the control side.
 * Memory is bounded: past `maxEntries` new keys fold into one `*`/`*` entry per license, and a
 * license that has left the policy snapshot is forgotten once its last use has been reported.
 *
 * With data-plane workers (`workers: N`) each worker's tracker is drained with `takeDelta` and the
 * control plane's tracker `absorb`s the deltas into its own entries, counters and ring, so reports,
 * /status and the gauges read one set of numbers, exactly as they do in one process.
 */
import { DENY_REASONS, type DenyReason, type PolicySnapshot } from '../policy/types.js';
import type { UsageEntry } from './types.js';

/** Identity and origin of the per-license entry that absorbs keys beyond `maxEntries`. */
export const OVERFLOW_KEY = '*';

/** A denial as /status lists it. */
export interface RecentDenial {
  /** Epoch ms. */
  at: number;
  /** `service/port`. */
  port: string;
  identity: string | null;
  origin: string;
  reason: DenyReason;
}

/** Use of one (license, identity, origin) since the previous report. */
export interface UsageDelta {
  licenseId: string;
  identity: string;
  origin: string;
  /** Epoch ms of the latest access. */
  lastAccess: number;
  /** Accesses since the previous report (0 when only `lastAccess` moved, e.g. a long-lived flow). */
  count: number;
}

/** Denials of one (identity, reason) since the previous report; identity null when it was unusable. */
export interface DenialDelta {
  identity: string | null;
  reason: DenyReason;
  count: number;
}

export interface UsageReport {
  /** Epoch ms when the report was taken. */
  at: number;
  /** Epoch ms of the previous report, or null for the first one. */
  since: number | null;
  usage: UsageDelta[];
  denials: DenialDelta[];
  /** Lookups folded into `*` keys because the tracker was full, since the previous report. */
  merged: { usage: number; denials: number };
}

export interface UsageTrackerOptions {
  /** Distinct (license, identity, origin) entries kept; beyond it, a `*` entry per license. Default 10 000. */
  maxEntries?: number;
  /** Distinct identities with denial counters; beyond it, they count under `*`. Default 1 000. */
  maxDenialIdentities?: number;
  /** Size of the recent-denials ring shown by /status. Default 50. */
  recentDenials?: number;
  /** The live policy; after a report, entries of licenses no longer in it are dropped. */
  policy?: { current(): Pick<PolicySnapshot, 'license'> };
}

/**
 * What one tracker hands another: the deltas of a report, and the denials recorded since the
 * previous hand-over. A data-plane worker's tracker produces it (`takeDelta`); the control plane's
 * folds it in (`absorb`).
 */
export interface UsageTrackerDelta {
  usage: UsageDelta[];
  denials: DenialDelta[];
  /** Newest first; at most the sender's ring size. */
  recentDenials: RecentDenial[];
  /** Lookups folded into `*` keys by the sender since its previous hand-over. */
  merged: { usage: number; denials: number };
}

/** What /status and tests see of the tracker. */
export interface UsageSnapshot {
  entries: number;
  licenses: number;
  /** Since start: lookups folded into `*` keys. */
  merged: { usage: number; denials: number };
  /** Denial counts per (identity, reason), kept while the identity keeps being denied. */
  denials: DenialDelta[];
  /** Newest first. */
  recentDenials: RecentDenial[];
}

class Entry implements UsageEntry {
  at = 0;
  count = 0;
  reportedAt = 0;
  reportedCount = 0;
  constructor(
    readonly licenseId: string,
    readonly identity: string,
    readonly origin: string,
  ) {}
}

class LicenseUsage {
  readonly byIdentity = new Map<string, Map<string, Entry>>();
  overflow: Entry | null = null;
  size = 0;
}

interface DenialCell {
  count: number;
  reported: number;
}

/** Ring slot, rewritten in place so recording a denial allocates nothing. */
interface Slot {
  at: number;
  port: string;
  identity: string | null;
  origin: string;
  reason: DenyReason;
}

/** Map key for denials of a caller without a usable identity. */
const NO_IDENTITY = '';

const KNOWN_REASONS: ReadonlySet<string> = new Set(DENY_REASONS);

export class UsageTracker {
  private readonly licenses = new Map<string, LicenseUsage>();
  private readonly denials = new Map<string, Map<DenyReason, DenialCell>>();
  private readonly ring: Slot[];
  private ringNext = 0;
  private ringUsed = 0;
  /** Denials recorded since the previous `takeDelta`, capped at the ring size. */
  private fresh = 0;
  private size = 0;
  private lastReport: number | null = null;
  private merged = { usage: 0, denials: 0 };
  private mergedTotal = { usage: 0, denials: 0 };
  private readonly maxEntries: number;
  private readonly maxDenialIdentities: number;
  private readonly policy: UsageTrackerOptions['policy'];

  constructor(opts: UsageTrackerOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.maxDenialIdentities = opts.maxDenialIdentities ?? 1_000;
    this.policy = opts.policy;
    const n = Math.max(1, opts.recentDenials ?? 50);
    this.ring = Array.from({ length: n }, (): Slot => ({
      at: 0,
      port: '',
      identity: null,
      origin: '',
      reason: 'no_license',
    }));
  }

  /**
   * The entry for (license, identity, origin), created on first use. Callers keep it and write
   * `at` and `count`; when the tracker is full, new keys share the license's `*` entry.
   */
  entry(licenseId: string, identity: string, origin: string): UsageEntry {
    const lic = this.licenseOf(licenseId);
    let byOrigin = lic.byIdentity.get(identity);
    const found = byOrigin?.get(origin);
    if (found) return found;
    if (this.size >= this.maxEntries) {
      this.merged.usage++;
      this.mergedTotal.usage++;
      return overflowOf(lic, licenseId);
    }
    if (!byOrigin) {
      byOrigin = new Map();
      lic.byIdentity.set(identity, byOrigin);
    }
    const e = new Entry(licenseId, identity, origin);
    byOrigin.set(origin, e);
    lic.size++;
    this.size++;
    return e;
  }

  /** Count a denial for reports and remember it for /status. */
  recordDenial(port: string, identity: string | null, reason: DenyReason, origin: string, now: number): void {
    const slot = this.ring[this.ringNext] as Slot;
    slot.at = now;
    slot.port = port;
    slot.identity = identity;
    slot.origin = origin;
    slot.reason = reason;
    this.ringNext = (this.ringNext + 1) % this.ring.length;
    if (this.ringUsed < this.ring.length) this.ringUsed++;
    if (this.fresh < this.ring.length) this.fresh++;
    this.countDenials(identity ?? NO_IDENTITY, reason, 1);
  }

  /**
   * Add `n` denials of (key, reason); a new identity past `maxDenialIdentities` counts under `*`
   * (and as folded, unless it was `*` already: another tracker's folded denials).
   */
  private countDenials(key: string, reason: DenyReason, n: number): void {
    let cells = this.denials.get(key);
    if (!cells) {
      if (this.denials.size >= this.maxDenialIdentities && key !== OVERFLOW_KEY) {
        this.merged.denials += n;
        this.mergedTotal.denials += n;
        key = OVERFLOW_KEY;
        cells = this.denials.get(key);
      }
      if (!cells) {
        cells = new Map();
        this.denials.set(key, cells);
      }
    }
    let cell = cells.get(reason);
    if (!cell) {
      cell = { count: 0, reported: 0 };
      cells.set(reason, cell);
    }
    cell.count += n;
  }

  /** The most recent access through a license over all identities and origins, if any. */
  lastAccess(licenseId: string): Readonly<UsageEntry> | undefined {
    const lic = this.licenses.get(licenseId);
    if (!lic) return undefined;
    let best: Entry | undefined;
    const consider = (e: Entry): void => {
      if ((e.count > 0 || e.at > 0) && (!best || e.at > best.at)) best = e;
    };
    for (const byOrigin of lic.byIdentity.values()) for (const e of byOrigin.values()) consider(e);
    if (lic.overflow) consider(lic.overflow);
    return best;
  }

  /** Recent denials, newest first. */
  recentDenials(): RecentDenial[] {
    const out: RecentDenial[] = [];
    const n = this.ring.length;
    for (let i = 1; i <= this.ringUsed; i++) {
      const s = this.ring[(this.ringNext - i + n) % n] as Slot;
      out.push({ at: s.at, port: s.port, identity: s.identity, origin: s.origin, reason: s.reason });
    }
    return out;
  }

  snapshot(): UsageSnapshot {
    const denials: DenialDelta[] = [];
    for (const [key, cells] of this.denials) {
      for (const [reason, c] of cells) denials.push({ identity: identityOf(key), reason, count: c.count });
    }
    return {
      entries: this.size,
      licenses: this.licenses.size,
      merged: { ...this.mergedTotal },
      denials,
      recentDenials: this.recentDenials(),
    };
  }

  /**
   * Everything that changed since the previous call, and mark it reported. The size is bounded
   * by `maxEntries` plus one `*` entry per license, and `maxDenialIdentities + 1` identities.
   * Afterwards, licenses that left the policy snapshot are forgotten, and denial counters with
   * nothing new are dropped.
   */
  takeReport(now: number): UsageReport {
    const usage: UsageDelta[] = [];
    const snap = this.policy?.current();
    for (const [id, lic] of this.licenses) {
      for (const byOrigin of lic.byIdentity.values())
        for (const e of byOrigin.values()) collectDelta(e, usage);
      if (lic.overflow) collectDelta(lic.overflow, usage);
      if (snap && !snap.license(id)) {
        this.licenses.delete(id);
        this.size -= lic.size;
      }
    }

    const denials: DenialDelta[] = [];
    for (const [key, cells] of this.denials) {
      for (const [reason, c] of cells) {
        const delta = c.count - c.reported;
        if (delta > 0) {
          denials.push({ identity: identityOf(key), reason, count: delta });
          c.reported = c.count;
        } else {
          cells.delete(reason);
        }
      }
      if (cells.size === 0) this.denials.delete(key);
    }

    const report: UsageReport = { at: now, since: this.lastReport, usage, denials, merged: this.merged };
    this.merged = { usage: 0, denials: 0 };
    this.lastReport = now;
    return report;
  }

  /**
   * A worker's hand-over: `takeReport`'s deltas plus the denials recorded since the previous call,
   * newest first. It is for a tracker that records (a worker's) and is drained this way only, not
   * also by `takeReport`, and not one that absorbs others' deltas.
   */
  takeDelta(now: number): UsageTrackerDelta {
    const { usage, denials, merged } = this.takeReport(now);
    const recentDenials = this.recentDenials().slice(0, this.fresh);
    this.fresh = 0;
    return { usage, denials, recentDenials, merged };
  }

  /**
   * Fold another tracker's delta into this one, as if its accesses and denials had been recorded
   * here: counts add and the latest access wins, per (license, identity, origin); denial counts add
   * per (identity, reason); the ring keeps the newest recent denials of both; the sender's folded
   * lookups add to this tracker's. The next `takeReport` sends all of it once, with this tracker's
   * own, and the same bounds apply: new keys past `maxEntries` or `maxDenialIdentities` fold into
   * `*`, and the sender's own `*` keys land on this tracker's `*`. Items that are not well-formed
   * (the delta crossed a process boundary) are skipped.
   */
  absorb(delta: Readonly<UsageTrackerDelta>): void {
    for (const u of delta.usage) {
      if (!isUsageDelta(u)) continue;
      const e =
        u.identity === OVERFLOW_KEY && u.origin === OVERFLOW_KEY
          ? overflowOf(this.licenseOf(u.licenseId), u.licenseId)
          : this.entry(u.licenseId, u.identity, u.origin);
      if (u.lastAccess > e.at) e.at = u.lastAccess;
      e.count += u.count;
    }
    for (const d of delta.denials) {
      if (isDenialDelta(d) && d.count > 0) this.countDenials(d.identity ?? NO_IDENTITY, d.reason, d.count);
    }
    this.absorbRecent(delta.recentDenials.filter(isRecentDenial));
    const mu = isNonNegative(delta.merged.usage) ? delta.merged.usage : 0;
    const md = isNonNegative(delta.merged.denials) ? delta.merged.denials : 0;
    this.merged.usage += mu;
    this.merged.denials += md;
    this.mergedTotal.usage += mu;
    this.mergedTotal.denials += md;
  }

  private licenseOf(licenseId: string): LicenseUsage {
    let lic = this.licenses.get(licenseId);
    if (!lic) {
      lic = new LicenseUsage();
      this.licenses.set(licenseId, lic);
    }
    return lic;
  }

  /**
   * Keep the newest of the ring and `incoming` by time, newest first; on a tie the incoming one
   * counts as newer. Runs on the control side (a worker's batch), so sorting a few dozen is fine.
   */
  private absorbRecent(incoming: readonly RecentDenial[]): void {
    if (incoming.length === 0) return;
    const n = this.ring.length;
    const kept = [...incoming, ...this.recentDenials()].sort((a, b) => b.at - a.at).slice(0, n);
    // Rewrite the slots oldest first, so the ring reads back newest first from `ringNext`.
    for (let i = 0; i < kept.length; i++) {
      const from = kept[kept.length - 1 - i] as RecentDenial;
      const slot = this.ring[i] as Slot;
      slot.at = from.at;
      slot.port = from.port;
      slot.identity = from.identity;
      slot.origin = from.origin;
      slot.reason = from.reason;
    }
    this.ringUsed = kept.length;
    this.ringNext = kept.length % n;
  }
}

/** The license's `*` entry, created on first use; it does not count against `maxEntries`. */
function overflowOf(lic: LicenseUsage, licenseId: string): Entry {
  return (lic.overflow ??= new Entry(licenseId, OVERFLOW_KEY, OVERFLOW_KEY));
}

/** A count or a time from another process: a finite number, not negative. */
const isNonNegative = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0;

function isUsageDelta(u: UsageDelta): boolean {
  return (
    typeof u.licenseId === 'string' &&
    typeof u.identity === 'string' &&
    typeof u.origin === 'string' &&
    isNonNegative(u.lastAccess) &&
    isNonNegative(u.count)
  );
}

function isDenialDelta(d: DenialDelta): boolean {
  return (
    (d.identity === null || typeof d.identity === 'string') &&
    KNOWN_REASONS.has(d.reason) &&
    isNonNegative(d.count)
  );
}

function isRecentDenial(d: RecentDenial): boolean {
  return (
    isNonNegative(d.at) &&
    typeof d.port === 'string' &&
    (d.identity === null || typeof d.identity === 'string') &&
    typeof d.origin === 'string' &&
    KNOWN_REASONS.has(d.reason)
  );
}

function collectDelta(e: Entry, out: UsageDelta[]): void {
  if (e.count === e.reportedCount && e.at === e.reportedAt) return;
  out.push({
    licenseId: e.licenseId,
    identity: e.identity,
    origin: e.origin,
    lastAccess: e.at,
    count: e.count - e.reportedCount,
  });
  e.reportedAt = e.at;
  e.reportedCount = e.count;
}

function identityOf(key: string): string | null {
  return key === NO_IDENTITY ? null : key;
}

/**
 * Merge an unsent report with a newer one (the authority was away). At most `maxKeys` exact
 * usage keys are kept; further keys fold into their license's `*` entry, so use of every license
 * still reaches the authority and keeps renewal going. Only when the `*` entries themselves pass
 * `maxKeys` (more licenses than that) is anything dropped; the drop count is for
 * `portlicense_usage_reports_dropped_total`. Denials are bounded the same way, folding into the
 * `*` identity.
 */
export function mergeUsageReports(
  older: UsageReport,
  newer: UsageReport,
  maxKeys: number,
): { report: UsageReport; dropped: number } {
  let dropped = 0;
  const usage = new BoundedMerge<UsageDelta>(maxKeys, (cur, d) => {
    cur.count += d.count;
    cur.lastAccess = Math.max(cur.lastAccess, d.lastAccess);
  });
  const denials = new BoundedMerge<DenialDelta>(maxKeys, (cur, d) => {
    cur.count += d.count;
  });
  const addUsage = (d: UsageDelta): void => {
    const ok = usage.add(`${d.licenseId}\u0000${d.identity}\u0000${d.origin}`, d, () => ({
      key: `${d.licenseId}\u0000${OVERFLOW_KEY}\u0000${OVERFLOW_KEY}`,
      value: { ...d, identity: OVERFLOW_KEY, origin: OVERFLOW_KEY },
    }));
    if (!ok) dropped++;
  };
  const addDenial = (d: DenialDelta): void => {
    const ok = denials.add(`${d.identity ?? NO_IDENTITY}\u0000${d.reason}`, d, () => ({
      key: `${OVERFLOW_KEY}\u0000${d.reason}`,
      value: { ...d, identity: OVERFLOW_KEY },
    }));
    if (!ok) dropped++;
  };
  // Newer first: when something must fold or go, it is the older detail.
  for (const d of newer.usage) addUsage(d);
  for (const d of older.usage) addUsage(d);
  for (const d of newer.denials) addDenial(d);
  for (const d of older.denials) addDenial(d);
  return {
    report: {
      at: newer.at,
      since: older.since,
      usage: usage.values(),
      denials: denials.values(),
      merged: {
        usage: older.merged.usage + newer.merged.usage + usage.folded,
        denials: older.merged.denials + newer.merged.denials + denials.folded,
      },
    },
    dropped,
  };
}

/** Up to `max` exact keys plus up to `max` fold keys; values are copied, inputs never mutated. */
class BoundedMerge<V extends object> {
  private readonly exact = new Map<string, V>();
  private readonly fold = new Map<string, V>();
  folded = 0;

  constructor(
    private readonly max: number,
    private readonly combine: (cur: V, next: V) => void,
  ) {}

  add(key: string, value: V, foldTo: () => { key: string; value: V }): boolean {
    const cur = this.exact.get(key);
    if (cur) {
      this.combine(cur, value);
      return true;
    }
    if (this.exact.size < this.max) {
      this.exact.set(key, { ...value });
      return true;
    }
    const f = foldTo();
    // The fold key may already be an exact key (a tracker's own `*` entry).
    const into = this.exact.get(f.key) ?? this.fold.get(f.key);
    if (into) this.combine(into, f.value);
    else if (this.fold.size < this.max) this.fold.set(f.key, { ...f.value });
    else return false;
    this.folded++;
    return true;
  }

  values(): V[] {
    return [...this.exact.values(), ...this.fold.values()];
  }
}
