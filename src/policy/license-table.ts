/**
 * The per-(port, subject) half of a decision, laid out for the data path: an open-addressed hash
 * table in one Int32Array, keyed by (port id, subject id), pointing at a run of license records
 * in one Float64Array (`notBefore`, `expiresAt`, revoked flag and rule id). With
 * thousands of ports and identities a decision's cost is memory latency, not instructions: a
 * lookup here touches a slot and the records next to it, where per-port Maps of arrays of license
 * objects meant a cache miss at every step.
 *
 * Built once per bundle (in slices on a running sidecar, see build()), then read-only.
 */
import type { CompiledLicense, PathRule } from './types.js';

/** Int32s per slot: port id (-1 when empty), subject id, first record, record count. */
export const SLOT = 4;
/**
 * Float64s per record: notBefore, expiresAt, meta (`rule << 1 | revoked`). Record `i` is the
 * license `licenses[i]`.
 */
export const RECORD = 3;

/** Slot of (port, subject) in a table of `mask + 1` slots: a cheap mix of both ids. */
export function slotOf(port: number, subject: number, mask: number): number {
  let h = Math.imul(port, 0x9e3779b1) ^ subject;
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  return (h ^ (h >>> 13)) & mask;
}

/**
 * The licenses of a bundle grouped by (port, subject): group `g` is (`ports[g]`, `subjects[g]`)
 * and `members[g]` holds its licenses' indexes in bundle order (which decides between licenses
 * of equal expiry). Plain numbers, so grouping 10,000 licenses leaves little for the GC.
 */
export interface Groups {
  readonly ports: readonly number[];
  readonly subjects: readonly number[];
  readonly members: readonly (readonly number[])[];
}

export class LicenseTable {
  readonly slots: Int32Array;
  readonly mask: number;
  readonly records: Float64Array;
  /** License of each record: record `i` starts at `i * RECORD`. */
  readonly licenses: readonly CompiledLicense[];
  /** Method rule of each rule id (null: any method); rules are shared by licenses that agree. */
  readonly ruleMethods: readonly (ReadonlySet<string> | null)[];
  /** Path rules of each rule id (null: any path). */
  readonly rulePaths: readonly (readonly PathRule[] | null)[];

  private constructor(
    slots: Int32Array,
    records: Float64Array,
    licenses: readonly CompiledLicense[],
    ruleMethods: readonly (ReadonlySet<string> | null)[],
    rulePaths: readonly (readonly PathRule[] | null)[],
  ) {
    this.slots = slots;
    this.mask = slots.length / SLOT - 1;
    this.records = records;
    this.licenses = licenses;
    this.ruleMethods = ruleMethods;
    this.rulePaths = rulePaths;
  }

  static readonly EMPTY = new LicenseTable(new Int32Array(SLOT).fill(-1), new Float64Array(0), [], [], []);

  /**
   * Build from `groups` of `licenses`. A generator that yields every so often, so one code path
   * serves the synchronous build and the sliced one (policy/slice.ts).
   */
  static *build(groups: Groups, licenses: readonly CompiledLicense[]): Generator<void, LicenseTable> {
    const count = groups.members.length;
    // Load at most 2/3: linear probing stays short, and the table stays small enough to cache.
    let cap = 2;
    while (cap * 2 < count * 3) cap *= 2;
    const mask = cap - 1;
    const slots = new Int32Array(cap * SLOT).fill(-1);
    const records = new Float64Array(licenses.length * RECORD);
    const ordered = new Array<CompiledLicense>(licenses.length);
    const ruleMethods: (ReadonlySet<string> | null)[] = [];
    const rulePaths: (readonly PathRule[] | null)[] = [];
    const rules = new RuleIds(ruleMethods, rulePaths);
    let next = 0;
    for (let g = 0; g < count; g++) {
      const port = groups.ports[g]!;
      const subject = groups.subjects[g]!;
      const members = groups.members[g]!;
      let s = slotOf(port, subject, mask);
      while (slots[s * SLOT] !== -1) s = (s + 1) & mask;
      const at = s * SLOT;
      slots[at] = port;
      slots[at + 1] = subject;
      slots[at + 2] = next;
      slots[at + 3] = members.length;
      for (let i = 0; i < members.length; i++) {
        const l = licenses[members[i]!]!;
        const r = next * RECORD;
        records[r] = l.notBefore;
        records[r + 1] = l.expiresAt;
        records[r + 2] = rules.of(l) * 2 + (l.revokedAt === null ? 0 : 1);
        ordered[next++] = l;
      }
      if (g % 64 === 63) yield;
    }
    return new LicenseTable(slots, records, ordered, ruleMethods, rulePaths);
  }

  /** Index in `slots` of (port, subject), or -1. */
  find(port: number, subject: number): number {
    const slots = this.slots;
    const mask = this.mask;
    for (let s = slotOf(port, subject, mask); ; s = (s + 1) & mask) {
      const at = s * SLOT;
      const p = slots[at]!;
      if (p === port && slots[at + 1] === subject) return at;
      if (p === -1) return -1;
    }
  }
}

/**
 * Numbers the distinct (methods, paths) pairs. Method sets are already shared by the compiler;
 * path lists are keyed by their patterns, so licenses with the same rules share one id.
 */
class RuleIds {
  private readonly byMethods = new Map<ReadonlySet<string> | null, Map<string, number>>();

  constructor(
    private readonly methods: (ReadonlySet<string> | null)[],
    private readonly paths: (readonly PathRule[] | null)[],
  ) {}

  of(l: CompiledLicense): number {
    let byPaths = this.byMethods.get(l.methods);
    if (byPaths === undefined) this.byMethods.set(l.methods, (byPaths = new Map<string, number>()));
    const key = l.paths === null ? '' : '\0' + l.paths.map((r) => r.pattern).join('\0');
    let id = byPaths.get(key);
    if (id === undefined) {
      id = this.methods.length;
      this.methods.push(l.methods);
      this.paths.push(l.paths);
      byPaths.set(key, id);
    }
    return id;
  }
}
