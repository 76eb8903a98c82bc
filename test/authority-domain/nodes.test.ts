import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NodeTracker } from '../../src/authority/nodes.js';
import { SqliteStore } from '../../src/authority/sqlite-store.js';
import { ManualClock } from '../../src/clock.js';
import { createLogger, MemorySink, silentLogger } from '../../src/log.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const ID = 'spiffe://example.org/ns/default/sa/orders';

describe('NodeTracker', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach(removeDir));

  /** A new store file (removed after the test) and a clock at 2026-11-28T10:00:00Z. */
  const fresh = (): { file: string; store: SqliteStore; clock: ManualClock } => {
    const dir = tempDir('pl-nodes-');
    dirs.push(dir);
    const file = join(dir, 'a.db');
    return { file, store: new SqliteStore(file), clock: new ManualClock('2026-11-28T10:00:00Z') };
  };

  it('writes a new node at once, batches check-ins and new versions, and flushes them on stop', () => {
    const { file, store, clock } = fresh();
    const nodes = new NodeTracker(store, clock, 60_000, silentLogger);
    const flushing = nodes.startFlushing(5_000);
    const B = 'spiffe://example.org/ns/default/sa/other';

    nodes.synced('node-a', ID, ['orders'], 7);
    expect(store.getNode('node-a')).toMatchObject({ bundleVersion: 7, lastSync: clock.now() });

    clock.advance(1_000);
    nodes.synced('node-a', ID, ['orders'], 7); // a 304: nothing changed but the time
    expect(store.getNode('node-a')!.lastSync).toBe(clock.now() - 1_000);
    expect(nodes.list()[0]).toMatchObject({ lastSync: '2026-11-28T10:00:01Z', state: 'fresh' });
    // A change wakes every sidecar at once: their new versions wait for the flush too.
    nodes.synced('node-a', ID, ['orders', 'payments'], 8);
    expect(store.getNode('node-a')).toMatchObject({ bundleVersion: 7, services: ['orders'] });
    expect(nodes.list()[0]).toMatchObject({ bundleVersion: 8, services: ['orders', 'payments'] });

    clock.advance(4_000); // the flush timer fires
    expect(store.getNode('node-a')).toMatchObject({
      bundleVersion: 8,
      services: ['orders', 'payments'],
      lastSync: clock.now() - 4_000,
    });
    // Another identity on a name (here a new node) is written at once.
    nodes.synced('node-b', B, ['orders'], 8);
    expect(store.getNode('node-b')).toMatchObject({ identity: B });

    clock.advance(1_000);
    nodes.reported('node-a', ID, []);
    flushing.stop();
    expect(store.getNode('node-a')!.lastReport).toBe(clock.now());
    store.close();

    // A restarted authority knows the node from the store.
    const again = new NodeTracker(new SqliteStore(file), clock, 60_000, silentLogger);
    expect(again.list()).toHaveLength(2);
    expect(again.counts()).toEqual({ fresh: 2, stale: 0 });
  });

  it('forgets a node silent for forgetNodesAfter, in memory and in the store, and only that one', () => {
    const { file, store, clock } = fresh();
    const sink = new MemorySink();
    const HOURS = 3_600_000;
    const nodes = new NodeTracker(store, clock, 60_000, createLogger({ sink }), 72 * HOURS);
    const flushing = nodes.startFlushing(5_000);
    nodes.synced('gone', ID, ['orders'], 7);
    nodes.reported('gone', ID, [{ identity: ID, reason: 'no_license', count: 2 }]);
    nodes.synced('syncing', ID, ['orders'], 7);
    nodes.synced('reporting', ID, ['orders'], 7);

    // 71 h 59 min on: every node is stale, none is forgotten; two are still heard from.
    clock.advance(72 * HOURS - 60_000);
    nodes.synced('syncing', ID, ['orders'], 7);
    nodes.reported('reporting', ID, []);
    expect(nodes.list().map((n) => [n.node, n.state])).toEqual([
      ['gone', 'stale'],
      ['reporting', 'stale'],
      ['syncing', 'fresh'],
    ]);

    // A minute later `gone` has been silent for 72 h: the flush loop forgets it.
    clock.advance(60_000);
    expect(nodes.list().map((n) => n.node)).toEqual(['reporting', 'syncing']);
    expect(store.getNode('gone')).toBeUndefined();
    expect(nodes.counts()).toEqual({ fresh: 1, stale: 1 });
    const line = sink.lines.find((l) => l.msg === 'node forgotten: silent for limits.forgetNodesAfter');
    expect(line).toMatchObject({
      level: 'info',
      node: 'gone',
      identity: ID,
      lastContact: '2026-11-28T10:00:00Z',
    });
    flushing.stop();
    store.close();

    // Gone after a restart too; the name is free for anyone.
    const again = new NodeTracker(new SqliteStore(file), clock, 60_000, silentLogger);
    expect(again.list().map((n) => n.node)).toEqual(['reporting', 'syncing']);
    expect(() => again.claim('gone', 'spiffe://example.org/ns/default/sa/other')).not.toThrow();
  });

  it('forgets a backlog 500 nodes per flush round, each round one transaction', () => {
    const { store, clock } = fresh();
    const nodes = new NodeTracker(store, clock, 60_000, silentLogger, 3_600_000);
    const flushing = nodes.startFlushing(5_000);
    store.transaction(() => {
      for (let i = 0; i < 1_002; i++) nodes.synced(`node-${String(i).padStart(4, '0')}`, ID, ['orders'], 1);
    });
    clock.advance(3_600_000 - 5_000); // no round has found anyone silent for an hour yet
    expect(nodes.list()).toHaveLength(1_002);
    clock.advance(5_000);
    expect(nodes.list()).toHaveLength(502);
    expect(store.listNodes()).toHaveLength(502);
    clock.advance(5_000);
    clock.advance(5_000);
    expect(nodes.list()).toEqual([]);
    expect(store.listNodes()).toEqual([]);
    flushing.stop();
    store.close();
  });
});
