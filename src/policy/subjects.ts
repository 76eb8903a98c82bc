/**
 * Identity → the license subjects that cover it, resolved once per identity for a whole snapshot.
 * Which subjects cover an identity (its exact subject, and the `/*` prefixes above it) depends
 * only on the identity and on the subjects the bundle names, never on the port; so a snapshot
 * answers it once per identity, remembers the answer in one bounded map, and every decision on
 * any port reuses it: one Map hit and no allocation for a seen identity, whatever the number of
 * licenses or ports (see policy/snapshot.ts for the per-port half).
 */

/** Length of `spiffe://`: a `/` at or after it is a path boundary (a trust domain holds none). */
const SCHEME_LENGTH = 9;

const NO_IDS: readonly number[] = Object.freeze([]);

/**
 * The subjects of one snapshot, numbered: exact SPIFFE IDs and `/*` prefix keys (the subject
 * without its `*`, so `spiffe://td/ns/payments/`), plus a bounded cache of identity → covering
 * subject ids.
 *
 * The cache stores, per identity, an offset into `ids`, where a run
 * `[count, port, id1, slot1, ..., idN, slotN]` sits: the covering subject ids, the exact
 * subject first, then the prefixes shallowest first (the order that decides between licenses of
 * equal expiry); and a memo the decision loop owns: the last port id asked for (-1: none) and, per
 * subject, the slot its probe of the license table found for that port. Offset 0 is the shared
 * empty run of an identity nothing covers.
 */
export class SubjectResolver {
  /** The runs; read it after resolve(), which may replace it when it grows. */
  ids = new Int32Array(256);
  private used = 2;
  /** Identity → offset of its run in `ids`; read directly by the decision loop (see resolve()). */
  readonly cache = new Map<string, number>();
  /**
   * Prefix key → the ids of every prefix that covers the identities below it, shallowest first and
   * ending with its own. An identity's covering prefixes are exactly the chain of the deepest one
   * that covers it, so a lookup stops at the first key it finds.
   */
  private readonly chains = new Map<string, readonly number[]>();
  /** Lengths of the prefix keys, so a lookup slices an identity only where some key could match. */
  private readonly lengths = new Set<number>();
  private readonly maxIdentities: number;

  /**
   * @param exact exact subject → id.
   * @param prefixes prefix key (ends with `/`) → id.
   * @param maxIdentities identities remembered (at least 1); when full the cache is cleared and
   *   refills with what is in use, which keeps the bound without per-hit bookkeeping.
   */
  constructor(
    private readonly exact: ReadonlyMap<string, number>,
    prefixes: ReadonlyMap<string, number>,
    maxIdentities: number,
  ) {
    this.maxIdentities = Math.max(1, maxIdentities);
    for (const k of prefixes.keys()) this.lengths.add(k.length);
    for (const [k, id] of prefixes) {
      const chain: number[] = [];
      for (let i = k.indexOf('/', SCHEME_LENGTH); i !== -1 && i < k.length - 1; i = k.indexOf('/', i + 1)) {
        const shorter = this.lengths.has(i + 1) ? prefixes.get(k.slice(0, i + 1)) : undefined;
        if (shorter !== undefined) chain.push(shorter);
      }
      chain.push(id);
      this.chains.set(k, Object.freeze(chain));
    }
  }

  /** How many identities are remembered now (at most maxIdentities). */
  get cachedIdentities(): number {
    return this.cache.size;
  }

  /**
   * Offset in `ids` of the run of the subjects covering `identity`. Allocation-free for a
   * remembered identity.
   */
  resolve(identity: string): number {
    const at = this.cache.get(identity);
    return at !== undefined ? at : this.remember(identity);
  }

  /** The covering subject ids as a list, for tests and diagnostics (not the hot path). */
  covering(identity: string): number[] {
    const at = this.resolve(identity);
    const out: number[] = [];
    for (let k = 0; k < this.ids[at]!; k++) out.push(this.ids[at + 2 + 2 * k]!);
    return out;
  }

  /** resolve() for an identity not in `cache`. */
  remember(identity: string): number {
    if (this.cache.size >= this.maxIdentities) {
      this.cache.clear();
      this.used = 2;
    }
    const exact = this.exact.get(identity);
    const chain = this.prefixChain(identity);
    const count = chain.length + (exact === undefined ? 0 : 1);
    let at = 0;
    if (count > 0) {
      at = this.used;
      this.reserve(2 + 2 * count);
      let w = at;
      this.ids[w++] = count;
      this.ids[w++] = -1;
      if (exact !== undefined) {
        this.ids[w++] = exact;
        this.ids[w++] = -1;
      }
      for (let i = 0; i < chain.length; i++) {
        this.ids[w++] = chain[i]!;
        this.ids[w++] = -1;
      }
      this.used = w;
    }
    this.cache.set(identity, at);
    return at;
  }

  private reserve(n: number): void {
    if (this.used + n <= this.ids.length) return;
    let size = this.ids.length * 2;
    while (size < this.used + n) size *= 2;
    const grown = new Int32Array(size);
    grown.set(this.ids.subarray(0, this.used));
    this.ids = grown;
  }

  /** The chain of the deepest prefix that covers `identity`: O(path depth), independent of the key count. */
  private prefixChain(identity: string): readonly number[] {
    if (this.chains.size === 0 || !identity.startsWith('spiffe://')) return NO_IDS;
    // Deepest first: the first key found carries all the shallower ones in its chain. Starting
    // before the last character leaves at least one character below the key.
    for (
      let i = identity.lastIndexOf('/', identity.length - 2);
      i >= SCHEME_LENGTH;
      i = identity.lastIndexOf('/', i - 1)
    ) {
      if (!this.lengths.has(i + 1)) continue;
      const chain = this.chains.get(identity.slice(0, i + 1));
      if (chain !== undefined) return chain;
    }
    return NO_IDS;
  }
}
