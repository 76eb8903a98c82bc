/** FlowRegistry: mid-flow enforcement (SPEC §2.4) without sockets; time is a ManualClock. */
import { beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { FlowRegistry, type Flow } from '../../src/dataplane/flows.js';
import { createLogger, MemorySink } from '../../src/log.js';
import { PolicyStore } from '../../src/policy/store.js';
import type { LicenseWire, PolicySnapshot, TerminationReason } from '../../src/policy/types.js';
import { dbLicense, iso, ordersSnapshot } from '../helpers/policy.js';
import { RecordingTelemetry } from '../helpers/telemetry.js';

const MIN = 60_000;
const PORT = 'orders/db';
const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';
const BATCH = 'spiffe://example.org/ns/default/sa/batch';

let clock: ManualClock;
/** The test's time zero, fixed when it starts. */
let t0: number;
let policy: PolicyStore;
let telemetry: RecordingTelemetry;
let sink: MemorySink;

/** A license valid from `from` to `to` minutes after the test's start. */
const lic = (id: string, subject: string, from: number, to: number, extra?: Partial<LicenseWire>) =>
  dbLicense(t0, id, subject, from, to, extra);

const snapshot = (licenses: LicenseWire[]): PolicySnapshot => ordersSnapshot(licenses, clock.now());

/** `s` with its decide() calls counted. */
function counting(s: PolicySnapshot): { snapshot: PolicySnapshot; decisions: () => number } {
  let n = 0;
  const snapshot: PolicySnapshot = Object.create(s, {
    decide: {
      value: (...args: Parameters<PolicySnapshot['decide']>) => {
        n++;
        return s.decide(...args);
      },
    },
  }) as PolicySnapshot;
  return { snapshot, decisions: () => n };
}

interface TestFlow extends Flow {
  ended: TerminationReason[];
}

/** A flow admitted the way the tcp port admits one: by the current decision. */
function admit(
  registry: FlowRegistry,
  identity: string,
  onTerminate?: (f: TestFlow) => void,
  request?: { method: string; path: string },
): TestFlow {
  const d = policy.current().decide(PORT, identity, clock.now(), request?.method, request?.path);
  if (typeof d === 'string') throw new Error(`test setup: ${identity} is denied ${d}`);
  const f: TestFlow = {
    identity,
    origin: '10.0.0.7',
    portKey: PORT,
    license: d,
    ...request,
    ended: [],
    terminate(reason) {
      f.ended.push(reason);
      onTerminate?.(f);
    },
  };
  registry.admit(f);
  return f;
}

function registry(audit = false): FlowRegistry {
  return new FlowRegistry({ policy, clock, telemetry, log: createLogger({ sink, level: 'debug' }), audit });
}

beforeEach(() => {
  clock = new ManualClock();
  t0 = clock.now();
  policy = new PolicyStore();
  telemetry = new RecordingTelemetry();
  sink = new MemorySink();
});

describe('FlowRegistry: expiry', () => {
  it('keeps one timer per license, however many flows it admitted', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10), lic('b', BATCH, 0, 20)]));
    const r = registry();
    for (let i = 0; i < 5; i++) admit(r, FRONTEND);
    admit(r, BATCH);
    expect(r.size()).toBe(6);
    expect(clock.pendingTimers()).toBe(2);
  });

  it('closes the flows of an expired license, counts and logs each', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10)]));
    const r = registry();
    const flows = [admit(r, FRONTEND), admit(r, FRONTEND)];
    clock.advance(10 * MIN - 1);
    expect(flows[0]!.ended).toEqual([]);
    clock.advance(1);
    expect(flows.map((f) => f.ended)).toEqual([['expired'], ['expired']]);
    expect(telemetry.terminations).toEqual(['expired', 'expired']);
    expect(r.size()).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
    const line = sink.lines.find((l) => String(l.msg).startsWith('flow closed'));
    expect(line).toMatchObject({ license: 'a', identity: FRONTEND, origin: '10.0.0.7', reason: 'expired' });
  });

  it('rebinds a flow to another valid license when the first expires', () => {
    // b only starts when a is half-way through, so a admits the flow.
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10), lic('b', FRONTEND, 5, 30)]));
    const r = registry();
    const f = admit(r, FRONTEND);
    expect(f.license.id).toBe('a');
    clock.advance(10 * MIN);
    expect(f.ended).toEqual([]);
    expect(f.license.id).toBe('b');
    expect(telemetry.terminations).toEqual([]);
    clock.advance(20 * MIN);
    expect(f.ended).toEqual(['expired']);
  });

  it('tolerates a flow that releases itself while being terminated', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10)]));
    const r = registry();
    const flows = [admit(r, FRONTEND, (f) => r.release(f)), admit(r, FRONTEND, (f) => r.release(f))];
    clock.advance(10 * MIN);
    expect(flows.every((f) => f.ended.length === 1)).toBe(true);
    expect(r.size()).toBe(0);
  });
});

describe('FlowRegistry: policy swaps', () => {
  it('closes flows whose license left the bundle: license_removed', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10), lic('b', BATCH, 0, 10)]));
    const r = registry();
    const gone = admit(r, FRONTEND);
    const kept = admit(r, BATCH);
    policy.swap(snapshot([lic('b', BATCH, 0, 10)]));
    expect(gone.ended).toEqual(['license_removed']);
    expect(kept.ended).toEqual([]);
    expect(telemetry.terminations).toEqual(['license_removed']);
  });

  it('closes flows of a revoked license: revoked', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10)]));
    const r = registry();
    const f = admit(r, FRONTEND);
    clock.advance(MIN);
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10, { revokedAt: iso(clock.now()) })]));
    expect(f.ended).toEqual(['revoked']);
    expect(telemetry.terminations).toEqual(['revoked']);
  });

  it('follows a renewal: the flow outlives the old expiry and the timer moves', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10)]));
    const r = registry();
    const f = admit(r, FRONTEND);
    policy.swap(snapshot([lic('a', FRONTEND, 0, 40)]));
    expect(f.license.expiresAt).toBe(t0 + 40 * MIN);
    expect(clock.pendingTimers()).toBe(1);
    clock.advance(39 * MIN);
    expect(f.ended).toEqual([]);
    clock.advance(MIN);
    expect(f.ended).toEqual(['expired']);
  });

  it('re-decides each flow of a prefix license on its own', () => {
    const prefix = 'spiffe://example.org/ns/default/*';
    policy.swap(snapshot([lic('p', prefix, 0, 10), lic('own', BATCH, 5, 60)]));
    const r = registry();
    const a = admit(r, FRONTEND);
    const b = admit(r, BATCH);
    expect([a.license.id, b.license.id]).toEqual(['p', 'p']);
    clock.advance(6 * MIN);
    policy.swap(
      snapshot([lic('p', prefix, 0, 10, { revokedAt: iso(clock.now()) }), lic('own', BATCH, 5, 60)]),
    );
    expect(a.ended).toEqual(['revoked']);
    expect(b.ended).toEqual([]);
    expect(b.license.id).toBe('own');
  });

  it('leaves flows alone on a swap that does not touch their license', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10)]));
    const r = registry();
    const f = admit(r, FRONTEND);
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10), lic('c', BATCH, 0, 5)]));
    expect(f.ended).toEqual([]);
    expect(f.license).toBe(policy.current().license('a'));
  });
});

describe('FlowRegistry: upgraded http requests', () => {
  const ws = { method: 'GET', path: '/ws/orders' };
  const rules = { methods: ['GET'], paths: ['/ws/*'] };

  it('keeps the flow when a new bundle carries the same rules', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10, rules)]));
    const r = registry();
    const f = admit(r, FRONTEND, undefined, ws);
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10, { methods: ['GET'], paths: ['/ws/*'] })]));
    expect(f.ended).toEqual([]);
  });

  it('closes the flow when the license no longer covers its path', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10, rules)]));
    const r = registry();
    const f = admit(r, FRONTEND, undefined, ws);
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10, { methods: ['GET'], paths: ['/api/*'] })]));
    expect(f.ended).toEqual(['license_removed']);
  });
});

describe('FlowRegistry: audit mode', () => {
  it('leaves a flow open that enforce mode would close, counting audit_deny', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10)]));
    const r = registry(true);
    const f = admit(r, FRONTEND);
    clock.advance(10 * MIN);
    expect(f.ended).toEqual([]);
    expect(telemetry.terminations).toEqual([]);
    expect(telemetry.decisions).toEqual([{ decision: 'audit_deny', reason: 'expired' }]);
    expect(
      sink.lines.some((l) => l.level === 'warn' && String(l.msg).startsWith('audit: flow would be closed')),
    ).toBe(true);
    expect(r.size()).toBe(0);
  });
});

describe('FlowRegistry: lifecycle and scale', () => {
  it('cancels the timer when the last flow of a license is released', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10)]));
    const r = registry();
    const f = admit(r, FRONTEND);
    const g = admit(r, FRONTEND);
    r.release(f);
    r.release(f);
    expect(clock.pendingTimers()).toBe(1);
    r.release(g);
    expect(clock.pendingTimers()).toBe(0);
    expect(r.size()).toBe(0);
  });

  it('stops listening to swaps after close()', () => {
    policy.swap(snapshot([lic('a', FRONTEND, 0, 10)]));
    const r = registry();
    const f = admit(r, FRONTEND);
    r.close();
    expect(clock.pendingTimers()).toBe(0);
    policy.swap(snapshot([]));
    expect(f.ended).toEqual([]);
  });

  it('handles 10k flows: an unrelated swap decides nothing, a revocation decides each flow once', () => {
    const licenses = Array.from({ length: 100 }, (_, i) =>
      lic(`l${i}`, `spiffe://example.org/w/${i}`, 0, 60),
    );
    policy.swap(snapshot(licenses));
    const r = registry();
    const flows: TestFlow[] = [];
    for (let i = 0; i < 10_000; i++) flows.push(admit(r, `spiffe://example.org/w/${i % 100}`));
    expect(clock.pendingTimers()).toBe(100);

    const unrelated = counting(snapshot([...licenses, lic('new', BATCH, 0, 5)]));
    policy.swap(unrelated.snapshot);
    expect(unrelated.decisions()).toBe(0);
    expect(
      flows.every((f) => f.ended.length === 0 && f.license === unrelated.snapshot.license(f.license.id)),
    ).toBe(true);

    const revoked = counting(snapshot(licenses.map((l) => ({ ...l, revokedAt: iso(clock.now()) }))));
    const t = performance.now();
    policy.swap(revoked.snapshot);
    const elapsed = performance.now() - t;
    expect(revoked.decisions()).toBe(10_000);
    expect(flows.every((f) => f.ended[0] === 'revoked')).toBe(true);
    expect(r.size()).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
    // Very generous: catches a quadratic walk, not a busy machine.
    expect(elapsed).toBeLessThan(5_000);
  });
});
