import { describe, expect, it } from 'vitest';
import {
  mergeUsageReports,
  OVERFLOW_KEY,
  UsageTracker,
  type RecentDenial,
  type UsageReport,
  type UsageTrackerDelta,
} from '../../src/telemetry/usage.js';
import { handSnapshot, TestPolicyView } from './helpers.js';

const A = 'spiffe://example.org/ns/default/sa/a';
const B = 'spiffe://example.org/ns/default/sa/b';
const T0 = Date.parse('2026-11-28T10:00:00Z');

function lic(id: string) {
  return {
    id,
    subject: 'spiffe://example.org/*',
    service: 'orders',
    port: 'http',
    notBefore: '2026-11-28T00:00:00Z',
    expiresAt: '2026-11-29T00:00:00Z',
  };
}

function touch(t: UsageTracker, license: string, identity: string, origin: string, at: number, times = 1) {
  const e = t.entry(license, identity, origin);
  e.at = at;
  e.count += times;
  return e;
}

describe('UsageTracker entries', () => {
  it('hands out the same entry object for the same key, so the data path can keep it', () => {
    const t = new UsageTracker();
    const e = t.entry('lic_1', A, '10.0.0.1');
    expect(t.entry('lic_1', A, '10.0.0.1')).toBe(e);
    expect(t.entry('lic_1', A, '10.0.0.2')).not.toBe(e);
    expect(t.entry('lic_2', A, '10.0.0.1')).not.toBe(e);
    expect(e).toMatchObject({ licenseId: 'lic_1', identity: A, origin: '10.0.0.1', at: 0, count: 0 });
  });

  it('lastAccess is the latest entry of a license over identities and origins; none before use', () => {
    const t = new UsageTracker();
    expect(t.lastAccess('lic_1')).toBeUndefined();
    t.entry('lic_1', A, '10.0.0.9'); // looked up but never used
    expect(t.lastAccess('lic_1')).toBeUndefined();
    touch(t, 'lic_1', A, '10.0.0.1', T0 + 5);
    touch(t, 'lic_1', B, '10.0.0.2', T0 + 9, 3);
    touch(t, 'lic_1', A, '10.0.0.3', T0 + 7);
    touch(t, 'lic_2', A, '10.0.0.1', T0 + 50);
    expect(t.lastAccess('lic_1')).toMatchObject({ identity: B, origin: '10.0.0.2', at: T0 + 9, count: 3 });
  });

  it('past maxEntries, new keys share one "*" entry per license and are counted as merged', () => {
    const t = new UsageTracker({ maxEntries: 2 });
    touch(t, 'lic_1', A, 'o1', T0 + 1);
    touch(t, 'lic_1', A, 'o2', T0 + 2);
    const o3 = touch(t, 'lic_1', A, 'o3', T0 + 3);
    const o4 = touch(t, 'lic_1', B, 'o4', T0 + 4);
    const other = touch(t, 'lic_2', A, 'o1', T0 + 5);
    expect(o3).toBe(o4);
    expect(o3).toMatchObject({ licenseId: 'lic_1', identity: OVERFLOW_KEY, origin: OVERFLOW_KEY, count: 2 });
    expect(other).toMatchObject({ licenseId: 'lic_2', identity: OVERFLOW_KEY });
    // existing keys still resolve to their own entries
    expect(t.entry('lic_1', A, 'o1').at).toBe(T0 + 1);
    expect(t.lastAccess('lic_1')).toMatchObject({ identity: OVERFLOW_KEY, at: T0 + 4 });
    const s = t.snapshot();
    expect(s.entries).toBe(2);
    expect(s.merged.usage).toBe(3);
    const r = t.takeReport(T0 + 10);
    expect(r.usage).toHaveLength(4);
    expect(r.merged).toEqual({ usage: 3, denials: 0 });
    expect(r.usage).toContainEqual({
      licenseId: 'lic_1',
      identity: '*',
      origin: '*',
      lastAccess: T0 + 4,
      count: 2,
    });
  });
});

describe('UsageTracker reports', () => {
  it('reports deltas since the previous report, and nothing when nothing changed', () => {
    const t = new UsageTracker();
    const e = touch(t, 'lic_1', A, '10.0.0.1', T0 + 1, 5);
    touch(t, 'lic_1', B, '10.0.0.2', T0 + 2, 1);
    t.entry('lic_1', B, '10.0.0.3'); // never used: not reported
    const r1 = t.takeReport(T0 + 10);
    expect(r1.at).toBe(T0 + 10);
    expect(r1.since).toBeNull();
    expect(r1.usage).toEqual([
      { licenseId: 'lic_1', identity: A, origin: '10.0.0.1', lastAccess: T0 + 1, count: 5 },
      { licenseId: 'lic_1', identity: B, origin: '10.0.0.2', lastAccess: T0 + 2, count: 1 },
    ]);

    e.at = T0 + 20;
    e.count += 2;
    const r2 = t.takeReport(T0 + 30);
    expect(r2.since).toBe(T0 + 10);
    expect(r2.usage).toEqual([
      { licenseId: 'lic_1', identity: A, origin: '10.0.0.1', lastAccess: T0 + 20, count: 2 },
    ]);

    const r3 = t.takeReport(T0 + 40);
    expect(r3.usage).toEqual([]);
    expect(r3.denials).toEqual([]);
  });

  it('reports a moved last-access time with count 0 (a long-lived flow still in use)', () => {
    const t = new UsageTracker();
    const e = touch(t, 'lic_1', A, '10.0.0.1', T0, 1);
    t.takeReport(T0 + 1);
    e.at = T0 + 60_000;
    expect(t.takeReport(T0 + 60_001).usage).toEqual([
      { licenseId: 'lic_1', identity: A, origin: '10.0.0.1', lastAccess: T0 + 60_000, count: 0 },
    ]);
  });

  it('counts denials by (identity, reason) and reports their deltas; idle counters are dropped', () => {
    const t = new UsageTracker();
    t.recordDenial('orders/http', A, 'no_license', '10.0.0.1', T0);
    t.recordDenial('orders/http', A, 'no_license', '10.0.0.2', T0 + 1);
    t.recordDenial('orders/db', A, 'expired', '10.0.0.1', T0 + 2);
    t.recordDenial('orders/http', null, 'bad_identity', '10.0.0.5', T0 + 3);
    const r1 = t.takeReport(T0 + 10);
    expect(r1.denials).toEqual([
      { identity: A, reason: 'no_license', count: 2 },
      { identity: A, reason: 'expired', count: 1 },
      { identity: null, reason: 'bad_identity', count: 1 },
    ]);
    t.recordDenial('orders/http', A, 'no_license', '10.0.0.1', T0 + 11);
    expect(t.takeReport(T0 + 20).denials).toEqual([{ identity: A, reason: 'no_license', count: 1 }]);
    // cumulative while the identity keeps being denied; reasons idle for a whole report are gone
    expect(t.snapshot().denials).toEqual([{ identity: A, reason: 'no_license', count: 3 }]);
    t.takeReport(T0 + 30);
    expect(t.snapshot().denials).toEqual([]);
  });

  it('bounds denial identities: beyond the limit they count under "*"', () => {
    const t = new UsageTracker({ maxDenialIdentities: 2 });
    for (let i = 0; i < 5; i++)
      t.recordDenial('orders/http', `spiffe://example.org/x/${i}`, 'no_license', 'o', T0);
    const r = t.takeReport(T0 + 1);
    expect(r.denials).toHaveLength(3);
    expect(r.denials).toContainEqual({ identity: OVERFLOW_KEY, reason: 'no_license', count: 3 });
    expect(r.merged.denials).toBe(3);
  });

  it('keeps a ring of recent denials, newest first, of bounded size', () => {
    const t = new UsageTracker({ recentDenials: 3 });
    expect(t.recentDenials()).toEqual([]);
    for (let i = 0; i < 5; i++) t.recordDenial('orders/http', A, 'revoked', `10.0.0.${i}`, T0 + i);
    expect(t.recentDenials()).toEqual([
      { at: T0 + 4, port: 'orders/http', identity: A, origin: '10.0.0.4', reason: 'revoked' },
      { at: T0 + 3, port: 'orders/http', identity: A, origin: '10.0.0.3', reason: 'revoked' },
      { at: T0 + 2, port: 'orders/http', identity: A, origin: '10.0.0.2', reason: 'revoked' },
    ]);
    // the report does not empty the ring
    t.takeReport(T0 + 10);
    expect(t.snapshot().recentDenials).toHaveLength(3);
  });

  it('forgets licenses that left the snapshot, but only after their last use was reported', () => {
    const policy = new TestPolicyView(handSnapshot(1, '2026-11-28T09:00:00Z', [lic('lic_1'), lic('lic_2')]));
    const t = new UsageTracker({ policy, maxEntries: 2 });
    touch(t, 'lic_1', A, 'o', T0 + 1);
    touch(t, 'lic_2', A, 'o', T0 + 2);
    policy.swap(handSnapshot(2, '2026-11-28T10:00:00Z', [lic('lic_2')]));
    const r = t.takeReport(T0 + 10);
    expect(r.usage.map((u) => u.licenseId)).toEqual(['lic_1', 'lic_2']);
    expect(t.lastAccess('lic_1')).toBeUndefined();
    expect(t.lastAccess('lic_2')).toBeDefined();
    expect(t.snapshot()).toMatchObject({ entries: 1, licenses: 1 });
    // the freed slot is usable again
    expect(t.entry('lic_2', B, 'o').identity).toBe(B);
  });
});

/** A delta as another tracker hands it over; only the given parts are non-empty. */
function delta(over: Partial<UsageTrackerDelta> = {}): UsageTrackerDelta {
  return { usage: [], denials: [], recentDenials: [], merged: { usage: 0, denials: 0 }, ...over };
}

function denied(at: number, identity: string | null, origin = 'o'): RecentDenial {
  return { at, port: 'orders/http', identity, origin, reason: 'no_license' };
}

describe('UsageTracker.absorb', () => {
  it('merges overlapping entries: counts add, the last access is the latest of both', () => {
    const t = new UsageTracker();
    const own = touch(t, 'lic_1', A, 'o1', T0 + 50, 2);
    touch(t, 'lic_1', B, 'o2', T0 + 10, 1);
    t.absorb(
      delta({
        usage: [
          { licenseId: 'lic_1', identity: A, origin: 'o1', lastAccess: T0 + 20, count: 3 },
          { licenseId: 'lic_1', identity: B, origin: 'o2', lastAccess: T0 + 90, count: 4 },
          { licenseId: 'lic_2', identity: A, origin: 'o1', lastAccess: T0 + 5, count: 1 },
        ],
      }),
    );
    // The data path's entry object is the one that moved: it keeps writing into the merged sum.
    expect(own).toMatchObject({ at: T0 + 50, count: 5 });
    expect(t.lastAccess('lic_1')).toMatchObject({ identity: B, at: T0 + 90, count: 5 });
    expect(t.takeReport(T0 + 100).usage).toEqual([
      { licenseId: 'lic_1', identity: A, origin: 'o1', lastAccess: T0 + 50, count: 5 },
      { licenseId: 'lic_1', identity: B, origin: 'o2', lastAccess: T0 + 90, count: 5 },
      { licenseId: 'lic_2', identity: A, origin: 'o1', lastAccess: T0 + 5, count: 1 },
    ]);
  });

  it('adds denial deltas to the counts of (identity, reason), unusable identities included', () => {
    const t = new UsageTracker();
    t.recordDenial('orders/http', A, 'no_license', 'o', T0);
    t.recordDenial('orders/http', null, 'bad_identity', 'o', T0);
    t.absorb(
      delta({
        denials: [
          { identity: A, reason: 'no_license', count: 4 },
          { identity: null, reason: 'bad_identity', count: 2 },
          { identity: B, reason: 'revoked', count: 1 },
        ],
      }),
    );
    t.absorb(delta({ denials: [{ identity: A, reason: 'no_license', count: 1 }] }));
    const expected = [
      { identity: A, reason: 'no_license', count: 6 },
      { identity: null, reason: 'bad_identity', count: 3 },
      { identity: B, reason: 'revoked', count: 1 },
    ];
    expect(t.snapshot().denials).toEqual(expected);
    expect(t.takeReport(T0 + 1).denials).toEqual(expected);
  });

  it('keeps the newest N recent denials of its own and every sender, newest first', () => {
    const t = new UsageTracker({ recentDenials: 4 });
    t.recordDenial('orders/db', A, 'expired', 'own', T0 + 3);
    t.absorb(delta({ recentDenials: [denied(T0 + 6, 'w1'), denied(T0 + 2, 'w1')] }));
    t.absorb(delta({ recentDenials: [denied(T0 + 5, 'w2'), denied(T0 + 3, 'w2'), denied(T0 + 1, 'w2')] }));
    // Equal times: the one absorbed later counts as newer.
    expect(t.recentDenials().map((d) => [d.at - T0, d.identity])).toEqual([
      [6, 'w1'],
      [5, 'w2'],
      [3, 'w2'],
      [3, A],
    ]);
    expect(t.recentDenials()[3]).toEqual({
      at: T0 + 3,
      port: 'orders/db',
      identity: A,
      origin: 'own',
      reason: 'expired',
    });
    // Recording goes on at the head of the merged ring, and the ring stays bounded.
    t.recordDenial('orders/http', B, 'revoked', 'own', T0 + 7);
    expect(t.recentDenials().map((d) => d.at - T0)).toEqual([7, 6, 5, 3]);
    t.absorb(delta({ recentDenials: [] }));
    expect(t.snapshot().recentDenials).toHaveLength(4);
  });

  it('a report after a merge sends its own and the merged state exactly once', () => {
    const t = new UsageTracker();
    touch(t, 'lic_1', A, 'o1', T0 + 1, 2);
    t.recordDenial('orders/http', A, 'expired', 'o1', T0 + 2);
    t.absorb(
      delta({
        usage: [{ licenseId: 'lic_1', identity: B, origin: 'o2', lastAccess: T0 + 3, count: 7 }],
        denials: [{ identity: B, reason: 'no_license', count: 2 }],
        merged: { usage: 3, denials: 1 },
      }),
    );
    const r1 = t.takeReport(T0 + 10);
    expect(r1.usage).toEqual([
      { licenseId: 'lic_1', identity: A, origin: 'o1', lastAccess: T0 + 1, count: 2 },
      { licenseId: 'lic_1', identity: B, origin: 'o2', lastAccess: T0 + 3, count: 7 },
    ]);
    expect(r1.denials).toEqual([
      { identity: A, reason: 'expired', count: 1 },
      { identity: B, reason: 'no_license', count: 2 },
    ]);
    expect(r1.merged).toEqual({ usage: 3, denials: 1 });
    expect(t.takeReport(T0 + 20)).toMatchObject({
      since: T0 + 10,
      usage: [],
      denials: [],
      merged: { usage: 0, denials: 0 },
    });
    // What came later is reported once more, as a delta.
    t.absorb(
      delta({ usage: [{ licenseId: 'lic_1', identity: B, origin: 'o2', lastAccess: T0 + 25, count: 1 }] }),
    );
    expect(t.takeReport(T0 + 30).usage).toEqual([
      { licenseId: 'lic_1', identity: B, origin: 'o2', lastAccess: T0 + 25, count: 1 },
    ]);
    expect(t.snapshot().merged).toEqual({ usage: 3, denials: 1 });
  });

  it('reports exactly what one tracker would have, when two hand their deltas over', () => {
    const single = new UsageTracker();
    const workers = [new UsageTracker(), new UsageTracker()];
    const control = new UsageTracker();
    const events: Array<[number, string, string, number]> = [
      [0, A, 'o1', 3],
      [1, A, 'o1', 2],
      [1, B, 'o2', 1],
      [0, B, 'o2', 4],
    ];
    events.forEach(([w, id, origin, n], i) => {
      for (const t of [single, workers[w]!]) touch(t, 'lic_1', id, origin, T0 + i, n);
      for (const t of [single, workers[w]!]) t.recordDenial('orders/http', id, 'revoked', origin, T0 + i);
    });
    for (const w of workers)
      control.absorb(JSON.parse(JSON.stringify(w.takeDelta(T0 + 10))) as UsageTrackerDelta);
    const want = single.takeReport(T0 + 10);
    const got = control.takeReport(T0 + 10);
    const byKey = (u: { licenseId: string; identity: string; origin: string }) =>
      `${u.licenseId} ${u.identity} ${u.origin}`;
    expect([...got.usage].sort((a, b) => byKey(a).localeCompare(byKey(b)))).toEqual(
      [...want.usage].sort((a, b) => byKey(a).localeCompare(byKey(b))),
    );
    expect(got.denials).toEqual(want.denials);
    expect(control.recentDenials()).toEqual(single.recentDenials());
  });

  it('keeps its bounds: new keys past the limits fold into "*", a sender\'s "*" lands on its own "*"', () => {
    const t = new UsageTracker({ maxEntries: 1, maxDenialIdentities: 1 });
    touch(t, 'lic_1', A, 'o1', T0 + 1);
    t.recordDenial('orders/http', A, 'no_license', 'o', T0);
    t.absorb(
      delta({
        usage: [
          { licenseId: 'lic_1', identity: B, origin: 'o2', lastAccess: T0 + 5, count: 2 },
          { licenseId: 'lic_1', identity: OVERFLOW_KEY, origin: OVERFLOW_KEY, lastAccess: T0 + 9, count: 4 },
        ],
        denials: [
          { identity: B, reason: 'no_license', count: 3 },
          { identity: OVERFLOW_KEY, reason: 'no_license', count: 2 },
        ],
        merged: { usage: 4, denials: 2 },
      }),
    );
    const r = t.takeReport(T0 + 10);
    expect(r.usage).toEqual([
      { licenseId: 'lic_1', identity: A, origin: 'o1', lastAccess: T0 + 1, count: 1 },
      { licenseId: 'lic_1', identity: OVERFLOW_KEY, origin: OVERFLOW_KEY, lastAccess: T0 + 9, count: 6 },
    ]);
    expect(r.denials).toEqual([
      { identity: A, reason: 'no_license', count: 1 },
      { identity: OVERFLOW_KEY, reason: 'no_license', count: 5 },
    ]);
    // The sender's own folds, plus B's usage key and B's 3 denials folded here.
    expect(r.merged).toEqual({ usage: 4 + 1, denials: 2 + 3 });
    expect(t.snapshot().entries).toBe(1);
  });

  it('skips malformed items from another process and keeps the well-formed ones', () => {
    const t = new UsageTracker();
    const bad = {
      usage: [
        { licenseId: 'lic_1', identity: A, origin: 'o', lastAccess: T0, count: Number.NaN },
        { licenseId: 'lic_1', identity: A, origin: 'o', lastAccess: T0, count: -3 },
        { licenseId: 'lic_1', identity: 7, origin: 'o', lastAccess: T0, count: 1 },
        { licenseId: 'lic_1', identity: A, origin: 'o', lastAccess: 'now', count: 1 },
        { licenseId: 'lic_1', identity: A, origin: 'o', lastAccess: T0 + 1, count: 2 },
      ],
      denials: [
        { identity: A, reason: 'because', count: 1 },
        { identity: A, reason: 'revoked', count: Infinity },
        { identity: A, reason: 'revoked', count: 1 },
      ],
      recentDenials: [{ at: 'yesterday', port: 'orders/http', identity: A, origin: 'o', reason: 'revoked' }],
      merged: { usage: -1, denials: Number.NaN },
    } as unknown as UsageTrackerDelta;
    t.absorb(bad);
    const r = t.takeReport(T0 + 10);
    expect(r.usage).toEqual([{ licenseId: 'lic_1', identity: A, origin: 'o', lastAccess: T0 + 1, count: 2 }]);
    expect(r.denials).toEqual([{ identity: A, reason: 'revoked', count: 1 }]);
    expect(r.merged).toEqual({ usage: 0, denials: 0 });
    expect(t.recentDenials()).toEqual([]);
  });
});

describe('UsageTracker.takeDelta', () => {
  it('hands over the report deltas and the denials recorded since the previous call, once', () => {
    const t = new UsageTracker({ recentDenials: 2 });
    touch(t, 'lic_1', A, 'o', T0 + 1, 3);
    t.recordDenial('orders/http', A, 'no_license', 'o', T0 + 2);
    t.recordDenial('orders/http', B, 'revoked', 'o', T0 + 3);
    t.recordDenial('orders/http', null, 'bad_identity', 'o', T0 + 4);
    const d = t.takeDelta(T0 + 10);
    expect(d.usage).toEqual([{ licenseId: 'lic_1', identity: A, origin: 'o', lastAccess: T0 + 1, count: 3 }]);
    expect(d.denials).toHaveLength(3);
    expect(d.recentDenials.map((x) => x.identity)).toEqual([null, B]);
    expect(t.takeDelta(T0 + 20)).toEqual(delta());
  });
});

describe('mergeUsageReports', () => {
  const report = (
    at: number,
    usage: UsageReport['usage'],
    denials: UsageReport['denials'] = [],
  ): UsageReport => ({
    at,
    since: at - 10,
    usage,
    denials,
    merged: { usage: 1, denials: 0 },
  });

  it('sums counts, keeps the latest access, and spans both periods', () => {
    const older = report(
      T0 + 10,
      [{ licenseId: 'l', identity: A, origin: 'o', lastAccess: T0 + 5, count: 2 }],
      [{ identity: null, reason: 'bad_identity', count: 1 }],
    );
    const newer = report(
      T0 + 20,
      [
        { licenseId: 'l', identity: A, origin: 'o', lastAccess: T0 + 15, count: 3 },
        { licenseId: 'l', identity: B, origin: 'o', lastAccess: T0 + 12, count: 1 },
      ],
      [{ identity: null, reason: 'bad_identity', count: 4 }],
    );
    const { report: m, dropped } = mergeUsageReports(older, newer, 100);
    expect(dropped).toBe(0);
    expect(m.at).toBe(T0 + 20);
    expect(m.since).toBe(T0);
    expect(m.usage).toContainEqual({
      licenseId: 'l',
      identity: A,
      origin: 'o',
      lastAccess: T0 + 15,
      count: 5,
    });
    expect(m.usage).toHaveLength(2);
    expect(m.denials).toEqual([{ identity: null, reason: 'bad_identity', count: 5 }]);
    expect(m.merged.usage).toBe(2);
    // inputs are not mutated
    expect(older.usage[0]!.count).toBe(2);
  });

  it('folds keys past the bound into "*" per license, and drops (and counts) only past the fold bound', () => {
    const older = report(T0 + 10, [
      { licenseId: 'l1', identity: A, origin: 'o1', lastAccess: T0 + 1, count: 1 },
      { licenseId: 'l1', identity: A, origin: 'o2', lastAccess: T0 + 2, count: 1 },
      { licenseId: 'l1', identity: B, origin: 'o3', lastAccess: T0 + 4, count: 2 },
      { licenseId: 'l2', identity: A, origin: 'o1', lastAccess: T0 + 3, count: 1 },
      { licenseId: 'l3', identity: A, origin: 'o1', lastAccess: T0 + 3, count: 1 },
      { licenseId: 'l4', identity: A, origin: 'o1', lastAccess: T0 + 3, count: 1 },
    ]);
    const newer = report(T0 + 20, [
      { licenseId: 'l1', identity: B, origin: 'o1', lastAccess: T0 + 11, count: 1 },
    ]);
    const { report: m, dropped } = mergeUsageReports(older, newer, 2);
    expect(m.usage).toEqual([
      { licenseId: 'l1', identity: B, origin: 'o1', lastAccess: T0 + 11, count: 1 },
      { licenseId: 'l1', identity: A, origin: 'o1', lastAccess: T0 + 1, count: 1 },
      { licenseId: 'l1', identity: '*', origin: '*', lastAccess: T0 + 4, count: 3 },
      { licenseId: 'l2', identity: '*', origin: '*', lastAccess: T0 + 3, count: 1 },
    ]);
    expect(dropped).toBe(2);
    expect(m.merged.usage).toBe(1 + 1 + 3);
  });

  it('folds into a tracker\'s own "*" entry instead of duplicating it', () => {
    const older = report(T0 + 10, [
      { licenseId: 'l1', identity: '*', origin: '*', lastAccess: T0 + 1, count: 4 },
      { licenseId: 'l1', identity: A, origin: 'o1', lastAccess: T0 + 2, count: 1 },
    ]);
    const newer = report(T0 + 20, [
      { licenseId: 'l1', identity: B, origin: 'o1', lastAccess: T0 + 11, count: 1 },
    ]);
    const { report: m, dropped } = mergeUsageReports(older, newer, 2);
    expect(dropped).toBe(0);
    expect(m.usage).toEqual([
      { licenseId: 'l1', identity: B, origin: 'o1', lastAccess: T0 + 11, count: 1 },
      { licenseId: 'l1', identity: '*', origin: '*', lastAccess: T0 + 2, count: 5 },
    ]);
  });

  it('bounds denial keys the same way', () => {
    const older = report(
      T0 + 10,
      [],
      [
        { identity: A, reason: 'no_license', count: 1 },
        { identity: B, reason: 'no_license', count: 2 },
        { identity: null, reason: 'bad_identity', count: 1 },
      ],
    );
    const { report: m, dropped } = mergeUsageReports(older, report(T0 + 20, []), 1);
    expect(m.denials).toEqual([
      { identity: A, reason: 'no_license', count: 1 },
      { identity: '*', reason: 'no_license', count: 2 },
    ]);
    expect(dropped).toBe(1);
  });
});
