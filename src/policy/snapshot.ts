/**
 * The decision engine: one verified bundle compiled into an index (SPEC §2.3). Built once per
 * bundle on the control path; read by every request and connection on the data path.
 *
 * A decision costs about the same for 10 licenses or 10,000: the port's id (one Map hit), the
 * subjects covering the identity — its exact SPIFFE ID and the `/*` prefixes above it, resolved
 * once per identity for the whole snapshot (policy/subjects.ts) — and for each of those one probe
 * of the (port, subject) table and a scan of its run of license records (policy/license-table.ts).
 * For a seen identity that is two Map hits, a probe or two, and no allocation. The identity's run
 * also remembers the probes' answers for the last port it asked for (a caller mostly calls the same
 * port again); nothing else is cached, so random pairs over thousands of ports stay cheap.
 */
import { PortlicenseError } from '../errors.js';
import { compileLicenses, compileLicensesAsync, parseRfc3339, pathsMatch } from './compile.js';
import { LicenseTable, RECORD } from './license-table.js';
import { runSliced, runToEnd, Slicer } from './slice.js';
import { SubjectResolver } from './subjects.js';
import type { BundlePayload, CompiledLicense, DenyReason, PolicySnapshot } from './types.js';

export interface SnapshotOptions {
  /**
   * Identities whose covering subjects are remembered, for the whole snapshot (default 16,384;
   * when full the memory is cleared and refills). A miss costs a Map lookup and a scan of the
   * identity's `/` boundaries.
   */
  identityCacheSize?: number;
}

export interface AsyncSnapshotOptions extends SnapshotOptions {
  /** Longest run between two turns of the event loop (default policy/slice.ts DEFAULT_SLICE_MS). */
  sliceMs?: number;
}

const DEFAULT_IDENTITY_CACHE = 16_384;

/**
 * How far a candidate got through the checks, in SPEC order; the deny reason is the one of the
 * candidate that got furthest.
 */
const REASON_AT_STAGE: readonly DenyReason[] = [
  'no_license',
  'revoked',
  'not_yet_valid',
  'expired',
  'method_not_allowed',
  'path_not_allowed',
];

class Snapshot implements PolicySnapshot {
  constructor(
    readonly version: number,
    readonly issuedAt: number,
    readonly node: string,
    readonly licenses: readonly CompiledLicense[],
    private readonly byId: ReadonlyMap<string, CompiledLicense>,
    /** Port key → port id, for the ports that have any license. */
    private readonly ports: ReadonlyMap<string, number>,
    private readonly subjects: SubjectResolver,
    private readonly table: LicenseTable,
  ) {}

  decide(
    portKey: string,
    identity: string,
    now: number,
    method?: string,
    path?: string,
  ): CompiledLicense | DenyReason {
    const port = this.ports.get(portKey);
    if (port === undefined) return 'no_license';
    const subjects = this.subjects;
    let at = subjects.cache.get(identity);
    if (at === undefined) at = subjects.remember(identity);
    const ids = subjects.ids;
    const n = ids[at]!;
    if (n === 0) return 'no_license';
    const t = this.table;
    // The run remembers the slots found for the last port asked: a caller usually talks to the
    // same port again, so a repeat skips the table probes.
    if (ids[at + 1] !== port) {
      for (let k = 0; k < n; k++) ids[at + 3 + 2 * k] = t.find(port, ids[at + 2 + 2 * k]!);
      ids[at + 1] = port;
    }
    const slots = t.slots;
    const records = t.records;
    const ruleMethods = t.ruleMethods;
    const rulePaths = t.rulePaths;
    let best = -1;
    let bestExpiry = 0;
    let stage = 0;
    // Exact subject first, then prefixes shallowest first, each run in bundle order: with strict
    // `>` below, the first of equal expiries wins. The checks go in SPEC order (stage numbers).
    for (let k = 0; k < n; k++) {
      const slot = ids[at + 3 + 2 * k]!;
      if (slot < 0) continue;
      const from = slots[slot + 2]! * RECORD;
      const to = from + slots[slot + 3]! * RECORD;
      for (let r = from; r < to; r += RECORD) {
        const meta = records[r + 2]! | 0;
        let s: number;
        if ((meta & 1) === 1) s = 1;
        else if (now < records[r]!) s = 2;
        else {
          const expiry = records[r + 1]!;
          if (now >= expiry) s = 3;
          else {
            const rule = meta >> 1;
            const methods = method === undefined ? null : ruleMethods[rule]!;
            if (methods !== null && !methods.has(method!)) s = 4;
            else if (path !== undefined && !pathsMatch(rulePaths[rule]!, path)) s = 5;
            else {
              if (best === -1 || expiry > bestExpiry) {
                best = r;
                bestExpiry = expiry;
              }
              continue;
            }
          }
        }
        if (s > stage) stage = s;
      }
    }
    return best === -1 ? REASON_AT_STAGE[stage]! : t.licenses[(best / RECORD) | 0]!;
  }

  license(id: string): CompiledLicense | undefined {
    return this.byId.get(id);
  }
}

function issuedAtOf(payload: BundlePayload): number {
  const issuedAt = parseRfc3339(payload.issuedAt);
  if (issuedAt === null)
    throw new PortlicenseError(
      'BUNDLE_INVALID',
      `bundle payload.issuedAt: ${JSON.stringify(payload.issuedAt)} is not an RFC 3339 time`,
    );
  return issuedAt;
}

/**
 * Number ports and subjects, group the licenses by (port, subject) in bundle order, and lay the
 * groups out in a LicenseTable. A generator yielding every so often: run in one go by
 * buildSnapshot, in slices by buildSnapshotAsync.
 */
function* indexSteps(
  payload: BundlePayload,
  issuedAt: number,
  licenses: readonly CompiledLicense[],
  byId: ReadonlyMap<string, CompiledLicense>,
  opts: SnapshotOptions,
): Generator<void, PolicySnapshot> {
  const ports = new Map<string, number>();
  const exact = new Map<string, number>();
  const prefixes = new Map<string, number>();
  /** Per port id: subject id → group. */
  const groupOf: Map<number, number>[] = [];
  const groups = { ports: [] as number[], subjects: [] as number[], members: [] as number[][] };
  for (let i = 0; i < licenses.length; i++) {
    const license = licenses[i]!;
    let port = ports.get(license.portKey);
    if (port === undefined) {
      ports.set(license.portKey, (port = ports.size));
      groupOf.push(new Map());
    }
    const isPrefix = license.subject.endsWith('/*');
    const key = isPrefix ? license.subject.slice(0, -1) : license.subject;
    const ids = isPrefix ? prefixes : exact;
    let subject = ids.get(key);
    if (subject === undefined) ids.set(key, (subject = exact.size + prefixes.size));
    const byPort = groupOf[port]!;
    const g = byPort.get(subject);
    if (g !== undefined) groups.members[g]!.push(i);
    else {
      byPort.set(subject, groups.members.length);
      groups.ports.push(port);
      groups.subjects.push(subject);
      groups.members.push([i]);
    }
    if (i % 64 === 63) yield;
  }
  const table = yield* LicenseTable.build(groups, licenses);
  const subjects = new SubjectResolver(exact, prefixes, opts.identityCacheSize ?? DEFAULT_IDENTITY_CACHE);
  return new Snapshot(payload.version, issuedAt, payload.node, licenses, byId, ports, subjects, table);
}

/**
 * Compile a verified payload into a snapshot. Throws PortlicenseError('BUNDLE_INVALID') when a
 * license or `issuedAt` is invalid (verifyBundle has normally caught that already).
 */
export function buildSnapshot(payload: BundlePayload, opts: SnapshotOptions = {}): PolicySnapshot {
  const issuedAt = issuedAtOf(payload);
  const byId = new Map<string, CompiledLicense>();
  const licenses = compileLicenses(payload.licenses, byId);
  return runToEnd(indexSteps(payload, issuedAt, licenses, byId, opts));
}

/**
 * buildSnapshot in slices of a few milliseconds with turns of the event loop between them, for
 * the control path of a running sidecar: same result, same errors, no long stall. Nothing is
 * swapped here; the caller swaps the result in once it resolves.
 */
export async function buildSnapshotAsync(
  payload: BundlePayload,
  opts: AsyncSnapshotOptions = {},
): Promise<PolicySnapshot> {
  const slicer = new Slicer(opts.sliceMs);
  const issuedAt = issuedAtOf(payload);
  const byId = new Map<string, CompiledLicense>();
  const licenses = await compileLicensesAsync(payload.licenses, byId, slicer);
  return runSliced(indexSteps(payload, issuedAt, licenses, byId, opts), slicer);
}

const EMPTY = new Snapshot(
  0,
  0,
  '',
  Object.freeze([]),
  new Map(),
  new Map(),
  new SubjectResolver(new Map(), new Map(), 1),
  LicenseTable.EMPTY,
);

/** Version 0: no licenses, every decision is `no_license`. What a store holds before any bundle. */
export function emptySnapshot(): PolicySnapshot {
  return EMPTY;
}
