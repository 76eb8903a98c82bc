import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import {
  bundleRejectReason,
  BundleFileSource,
  type BundleFileSourceOptions,
  type BundleLoadedEvent,
  type BundleRejectedEvent,
} from '../../src/control/bundle-file.js';
import { PortlicenseError } from '../../src/errors.js';
import { createLogger, MemorySink } from '../../src/log.js';
import { signBundle } from '../../src/policy/bundle.js';
import { buildSnapshot } from '../../src/policy/snapshot.js';
import { PolicyStore } from '../../src/policy/store.js';
import type { BundlePayload, PolicySnapshot, SignedBundle } from '../../src/policy/types.js';
import { waitFor } from '../helpers/net.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const keys = generateKeyPairSync('ed25519');
const foreign = generateKeyPairSync('ed25519');
const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';

function payload(version: number, expiresAt = '2026-11-29T10:00:00Z'): BundlePayload {
  return {
    version,
    issuedAt: '2026-11-28T10:00:00Z',
    node: 'node-a',
    services: ['orders'],
    licenses: [
      {
        id: `lic_v${version}`,
        subject: FRONTEND,
        service: 'orders',
        port: 'http',
        notBefore: '2026-11-28T09:00:00Z',
        expiresAt,
      },
    ],
  };
}

describe('BundleFileSource', () => {
  let dir: string;
  let file: string;
  let store: PolicyStore;
  let clock: ManualClock;
  let sink: MemorySink;
  let loaded: BundleLoadedEvent[];
  let rejected: BundleRejectedEvent[];
  let swaps: number;
  const sources: BundleFileSource[] = [];

  beforeEach(() => {
    dir = tempDir('portlicense-bundle-file-');
    file = join(dir, 'bundle.json');
    store = new PolicyStore();
    clock = new ManualClock('2026-11-28T10:30:00Z');
    sink = new MemorySink();
    loaded = [];
    rejected = [];
    swaps = 0;
    store.onSwap(() => swaps++);
  });

  afterEach(() => {
    for (const s of sources.splice(0)) s.close();
    removeDir(dir);
  });

  /** Writes like an atomic writer: a temp file renamed over the target. */
  function writeAtomic(doc: SignedBundle | string): void {
    const tmp = join(dir, `.bundle.json.${Math.random().toString(36).slice(2)}`);
    writeFileSync(tmp, typeof doc === 'string' ? doc : JSON.stringify(doc, null, 2));
    renameSync(tmp, file);
  }

  const signed = (version: number, key: KeyObject = keys.privateKey): SignedBundle =>
    signBundle(payload(version), key);

  function source(over: Partial<BundleFileSourceOptions> = {}): BundleFileSource {
    const s = new BundleFileSource({
      file,
      publicKey: keys.publicKey,
      store,
      clock,
      log: createLogger({ sink }),
      onLoaded: (e) => loaded.push(e),
      onRejected: (e) => rejected.push(e),
      debounceMs: 20,
      pollIntervalMs: 50,
      ...over,
    });
    sources.push(s);
    return s;
  }

  it('loads the file at start and swaps the store', async () => {
    writeAtomic(signed(1));
    const snap = await source().start();
    expect(snap.version).toBe(1);
    expect(store.current()).toBe(snap);
    expect(typeof snap.decide('orders/http', FRONTEND, clock.now())).toBe('object');
    expect(loaded).toEqual([{ file, version: 1, licenses: 1, at: clock.now(), changed: true }]);
    expect(sink.lines).toContainEqual(
      expect.objectContaining({ level: 'info', msg: 'bundle loaded', version: 1, bundleFile: file }),
    );
  });

  it('a missing or bad file at start is an error naming the file', async () => {
    let err = await source()
      .start()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortlicenseError);
    expect((err as PortlicenseError).code).toBe('FILE_UNREADABLE');
    expect((err as PortlicenseError).message).toContain(file);

    writeAtomic(signed(1, foreign.privateKey));
    err = await source()
      .start()
      .catch((e: unknown) => e);
    expect((err as PortlicenseError).code).toBe('BUNDLE_SIGNATURE');
    expect((err as PortlicenseError).message).toContain(file);

    writeAtomic('{not json');
    err = await source()
      .start()
      .catch((e: unknown) => e);
    expect((err as PortlicenseError).code).toBe('BUNDLE_INVALID');
    expect(store.current().version).toBe(0);
  });

  it('after a failed start, watch() picks the file up once it is fixed', async () => {
    writeAtomic(signed(1, foreign.privateKey));
    const src = source();
    const err = await src.start().catch((e: unknown) => e);
    expect(bundleRejectReason(err)).toBe('signature');
    src.watch();
    src.watch();
    writeAtomic(signed(1));
    await waitFor(() => store.current().version === 1, { what: 'version 1' });
    expect(bundleRejectReason(new PortlicenseError('FILE_UNREADABLE', 'x'))).toBe('unreadable');
    expect(bundleRejectReason(new Error('x'))).toBe('invalid');
  });

  it('refuses at start a file older than the bundle already in force', async () => {
    store.swap(buildSnapshot(payload(5)));
    writeAtomic(signed(4));
    const err = await source()
      .start()
      .catch((e: unknown) => e);
    expect((err as PortlicenseError).code).toBe('BUNDLE_ROLLBACK');
    expect(store.current().version).toBe(5);
  });

  it('picks up a newer bundle renamed over the file', async () => {
    writeAtomic(signed(1));
    await source().start();
    writeAtomic(signed(2));
    await waitFor(() => store.current().version === 2, { what: 'version 2' });
    expect(loaded.map((e) => e.version)).toEqual([1, 2]);
    expect(store.current().license('lic_v2')).toBeDefined();
  });

  it('picks up a bundle rewritten in place', async () => {
    writeAtomic(signed(1));
    await source().start();
    writeFileSync(file, JSON.stringify(signed(2)));
    await waitFor(() => store.current().version === 2, { what: 'version 2' });
  });

  it('rejects a tampered bundle, keeps the last good one and logs why', async () => {
    writeAtomic(signed(1));
    await source().start();
    const tampered = signed(2);
    tampered.payload.licenses[0]!.expiresAt = '2036-01-01T00:00:00Z';
    writeAtomic(tampered);
    await waitFor(() => rejected.length === 1, { what: 'a rejection' });
    expect(rejected[0]).toMatchObject({ file, reason: 'signature', keptVersion: 1, at: clock.now() });
    expect(rejected[0]!.error.code).toBe('BUNDLE_SIGNATURE');
    expect(store.current().version).toBe(1);
    expect(sink.lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        msg: 'bundle file rejected; keeping the last good bundle',
        bundleFile: file,
        reason: 'signature',
        keptVersion: 1,
      }),
    );
    // A good newer bundle afterwards still gets through.
    writeAtomic(signed(3));
    await waitFor(() => store.current().version === 3, { what: 'version 3' });
  });

  it('sorts every rejection by reason', async () => {
    writeAtomic(signed(5));
    const src = source();
    await src.start();
    const cases: [string | SignedBundle | null, BundleRejectedEvent['reason']][] = [
      [signed(4), 'rollback'],
      [signed(6, foreign.privateKey), 'signature'],
      ['{"payload":', 'invalid'],
      [null, 'unreadable'],
    ];
    for (const [doc, reason] of cases) {
      if (doc === null) rmSync(file);
      else writeAtomic(doc);
      await src.check();
      expect(rejected.at(-1)?.reason).toBe(reason);
      expect(store.current().version).toBe(5);
    }
    expect(rejected).toHaveLength(4);
    expect(swaps).toBe(1);
  });

  it('an equal version with identical content is a no-op; with different content it is refused', async () => {
    writeAtomic(signed(3));
    const src = source();
    await src.start();
    const before = store.current();
    writeAtomic(JSON.stringify(signed(3))); // same payload, different formatting
    await src.check();
    expect(store.current()).toBe(before);
    expect(loaded.at(-1)).toMatchObject({ version: 3, changed: false });
    expect(rejected).toHaveLength(0);

    writeAtomic(signBundle(payload(3, '2027-01-01T00:00:00Z'), keys.privateKey));
    await src.check();
    expect(rejected.at(-1)).toMatchObject({ reason: 'rollback', keptVersion: 3 });
    expect(rejected.at(-1)!.error.message).toMatch(/already in force with different content/);
    expect(store.current()).toBe(before);
    expect(swaps).toBe(1);
  });

  it.each([
    ['verified', 1],
    ['built', 2],
  ])(
    'a slow older bundle is never swapped in over a newer one installed while it was %s',
    async (_stage, atRead) => {
      // Another writer installs version 6 while this source prepares version 5: right after the
      // source reads the version in force when it starts verifying (read 1), or when it starts
      // building (read 2). The source reads it once more right before its swap.
      class RacedStore extends PolicyStore {
        reads = 0;
        override current(): PolicySnapshot {
          if (++this.reads === atRead) queueMicrotask(() => this.swap(buildSnapshot(payload(6))));
          return super.current();
        }
      }
      const raced = new RacedStore();
      const versions: number[] = [];
      raced.onSwap((next) => versions.push(next.version));
      const big = payload(5);
      big.licenses = Array.from({ length: 2_000 }, (_, i) => ({ ...big.licenses[0]!, id: `lic_big_${i}` }));
      writeAtomic(signBundle(big, keys.privateKey));
      const err = await source({ store: raced })
        .start()
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PortlicenseError);
      expect((err as PortlicenseError).code).toBe('BUNDLE_ROLLBACK');
      expect((err as PortlicenseError).message).toBe(
        `${file}: bundle version 5 is older than the version in force (6); keeping 6`,
      );
      // Refused by the check after the race, not by the one that came before it.
      expect(raced.reads).toBe(atRead + 1);
      expect(versions).toEqual([6]);
      expect(raced.current().version).toBe(6);
    },
  );

  it('two sources racing on one store end on the newer bundle, whatever finishes first', async () => {
    const versions: number[] = [];
    store.onSwap((next) => versions.push(next.version));
    const big = payload(5);
    big.licenses = Array.from({ length: 5_000 }, (_, i) => ({ ...big.licenses[0]!, id: `lic_big_${i}` }));
    const bigFile = join(dir, 'big.json');
    writeFileSync(bigFile, JSON.stringify(signBundle(big, keys.privateKey)));
    writeAtomic(signed(6));
    const slow = source({ file: bigFile, snapshot: { sliceMs: 0 } })
      .start()
      .then(
        () => null,
        (e: unknown) => e,
      );
    await source().start();
    const err = await slow;
    // Either the big one lost the race (refused) or it was in before the small one (replaced).
    if (err === null) expect(versions).toEqual([5, 6]);
    else {
      expect((err as PortlicenseError).code).toBe('BUNDLE_ROLLBACK');
      expect(versions).toEqual([6]);
    }
    expect(store.current().version).toBe(6);
  });

  it('the stat poll alone picks up changes when fs.watch is off', async () => {
    writeAtomic(signed(1));
    await source({ watch: false, pollIntervalMs: 20 }).start();
    writeAtomic(signed(2));
    await waitFor(() => store.current().version === 2, { what: 'version 2 via polling' });
  });

  it('survives a callback that throws', async () => {
    writeAtomic(signed(1));
    const src = source({
      onLoaded: () => {
        throw new Error('metrics down');
      },
    });
    await src.start();
    writeAtomic(signed(2));
    await src.check();
    expect(store.current().version).toBe(2);
    expect(sink.lines).toContainEqual(
      expect.objectContaining({ level: 'error', msg: 'bundle file callback failed' }),
    );
  });

  it('does nothing once closed', async () => {
    writeAtomic(signed(1));
    const src = source();
    await src.start();
    src.close();
    src.close();
    writeAtomic(signed(2));
    await src.check();
    expect(store.current().version).toBe(1);
  });
});
