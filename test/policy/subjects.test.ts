import { describe, expect, it } from 'vitest';
import { SubjectResolver } from '../../src/policy/subjects.js';

/** Subjects as a bundle names them: exact IDs, and `/*` prefixes given as their key (`…/`). */
function resolver(exact: string[], prefixes: string[], max = 1_000): SubjectResolver {
  let id = 0;
  const e = new Map(exact.map((s) => [s, id++]));
  const p = new Map(prefixes.map((s) => [s, id++]));
  return new SubjectResolver(e, p, max);
}

const TD = 'spiffe://example.org/';
const NS = 'spiffe://example.org/ns/';
const PAY = 'spiffe://example.org/ns/payments/';
const BILLING = 'spiffe://example.org/ns/payments/sa/billing';

describe('SubjectResolver', () => {
  it('covers an identity by its exact subject first, then every prefix above it, shallowest first', () => {
    // ids: BILLING 0, then PAY 1, TD 2, NS 3 (declared out of depth order on purpose).
    const r = resolver([BILLING], [PAY, TD, NS]);
    expect(r.covering(BILLING)).toEqual([0, 2, 3, 1]);
    expect(r.covering('spiffe://example.org/ns/payments/sa/other')).toEqual([2, 3, 1]);
    expect(r.covering('spiffe://example.org/ns/orders/sa/x')).toEqual([2, 3]);
    expect(r.covering('spiffe://example.org/other')).toEqual([2]);
  });

  it('skips depths where no prefix is declared', () => {
    const r = resolver([], [TD, PAY]);
    expect(r.covering('spiffe://example.org/ns/payments/a/b/c/d')).toEqual([0, 1]);
    expect(r.covering('spiffe://example.org/ns/paymentsX/a')).toEqual([0]);
  });

  it('a prefix covers only identities strictly below it, at a "/" boundary', () => {
    const r = resolver([], [PAY]);
    expect(r.covering('spiffe://example.org/ns/payments/x')).toEqual([0]);
    expect(r.covering('spiffe://example.org/ns/payments/')).toEqual([]);
    expect(r.covering('spiffe://example.org/ns/payments')).toEqual([]);
    expect(r.covering('spiffe://example.org/ns/paymentsx/y')).toEqual([]);
    expect(r.covering('spiffe://example.org.evil/ns/payments/x')).toEqual([]);
  });

  it('a trust-domain prefix covers that domain only, not the bare domain ID', () => {
    const r = resolver([], [TD]);
    expect(r.covering('spiffe://example.org/a')).toEqual([0]);
    expect(r.covering('spiffe://example.org')).toEqual([]);
    expect(r.covering('spiffe://example.orgx/a')).toEqual([]);
  });

  it.each([
    'SPIFFE://example.org/ns/payments/x',
    'https://example.org/ns/payments/x',
    'example.org/ns/payments/x',
    '',
    '/',
    'spiffe:/',
  ])('no prefix covers %j, which is not under spiffe://', (identity) => {
    expect(resolver([], [TD, PAY]).covering(identity)).toEqual([]);
  });

  it('an exact subject matches only itself', () => {
    const r = resolver([BILLING], []);
    expect(r.covering(BILLING)).toEqual([0]);
    expect(r.covering(BILLING + '/x')).toEqual([]);
    expect(r.covering(BILLING.slice(0, -1))).toEqual([]);
  });

  it('remembers at most maxIdentities and stays correct after clearing', () => {
    const r = resolver([BILLING], [PAY], 3);
    const ids = Array.from({ length: 10 }, (_, i) => `${PAY}sa/svc${i}`);
    for (const id of ids) {
      expect(r.covering(id)).toEqual([1]);
      expect(r.cachedIdentities).toBeLessThanOrEqual(3);
    }
    expect(r.covering(BILLING)).toEqual([0, 1]);
    expect(r.covering(ids[0]!)).toEqual([1]);
    expect(r.cachedIdentities).toBeLessThanOrEqual(3);
    expect(resolver([], [], 0).covering(BILLING)).toEqual([]);
  });

  it('resolves many identities, each once, with the offsets staying valid as its store grows', () => {
    const exact = Array.from({ length: 3_000 }, (_, i) => `${NS}n${i % 40}/sa/s${i}`);
    const prefixes = [TD, ...Array.from({ length: 40 }, (_, n) => `${NS}n${n}/`)];
    const r = resolver(exact, prefixes, 100_000);
    const want = (i: number): number[] => [i, 3_000, 3_001 + (i % 40)];
    for (let i = 0; i < exact.length; i++) expect(r.covering(exact[i]!)).toEqual(want(i));
    expect(r.cachedIdentities).toBe(3_000);
    // Asked again (now from the cache, after the store grew many times): the same answers.
    for (let i = 0; i < exact.length; i += 7) {
      const at = r.resolve(exact[i]!);
      expect(r.ids[at]).toBe(3);
      expect([r.ids[at + 2], r.ids[at + 4], r.ids[at + 6]]).toEqual(want(i));
      expect(r.covering(exact[i]!)).toEqual(want(i));
    }
    expect(r.cachedIdentities).toBe(3_000);
  });

  it('resolve is allocation-free for a remembered identity (same offset every time)', () => {
    const r = resolver([BILLING], [PAY]);
    const at = r.resolve(BILLING);
    expect(r.resolve(BILLING)).toBe(at);
    expect(r.resolve(`${BILLING}`)).toBe(at);
    expect(r.resolve('spiffe://example.org/nothing')).toBe(0);
    expect(r.ids[0]).toBe(0);
  });
});
