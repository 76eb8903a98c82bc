import { describe, expect, it } from 'vitest';
import { createLogger, MemorySink } from '../../src/log.js';
import { buildSnapshot, emptySnapshot } from '../../src/policy/snapshot.js';
import { PolicyStore } from '../../src/policy/store.js';
import type { PolicySnapshot } from '../../src/policy/types.js';

const snapshot = (version: number): PolicySnapshot =>
  buildSnapshot({ version, issuedAt: '2026-11-28T10:00:00Z', node: 'n', services: [], licenses: [] });

describe('PolicyStore', () => {
  it('starts with the empty snapshot, or the one it is given', () => {
    expect(new PolicyStore().current()).toBe(emptySnapshot());
    const s = snapshot(4);
    expect(new PolicyStore({ initial: s }).current()).toBe(s);
  });

  it('swaps and tells every listener the next and previous snapshot', () => {
    const store = new PolicyStore();
    const seen: [number, number][] = [];
    const off = store.onSwap((next, prev) => seen.push([next.version, prev.version]));
    store.onSwap((next) => seen.push([next.version, -1]));
    const s1 = snapshot(1);
    store.swap(s1);
    expect(store.current()).toBe(s1);
    off();
    store.swap(snapshot(2));
    expect(seen).toEqual([
      [1, 0],
      [1, -1],
      [2, -1],
    ]);
  });

  it('the same function can subscribe twice and unsubscribe each independently', () => {
    const store = new PolicyStore();
    let calls = 0;
    const fn = (): void => {
      calls++;
    };
    const off1 = store.onSwap(fn);
    store.onSwap(fn);
    off1();
    off1();
    store.swap(snapshot(1));
    expect(calls).toBe(1);
  });

  it('a throwing listener is logged and does not stop the swap or the others', () => {
    const sink = new MemorySink();
    const store = new PolicyStore({ log: createLogger({ sink }) });
    let after = 0;
    store.onSwap(() => {
      throw new Error('boom');
    });
    store.onSwap(() => after++);
    store.swap(snapshot(7));
    expect(store.current().version).toBe(7);
    expect(after).toBe(1);
    expect(sink.lines).toMatchObject([
      { level: 'error', msg: 'policy swap listener failed', error: 'boom', version: 7 },
    ]);
  });

  it('a listener may unsubscribe itself during a swap', () => {
    const store = new PolicyStore();
    let calls = 0;
    const off = store.onSwap(() => {
      calls++;
      off();
    });
    store.swap(snapshot(1));
    store.swap(snapshot(2));
    expect(calls).toBe(1);
  });
});
