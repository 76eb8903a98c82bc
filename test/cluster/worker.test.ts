/**
 * A data-plane worker in-process, driven through a fake IPC channel exactly as the control plane
 * drives it: nothing listens before init; an empty policy denies; a new policy admits and a later
 * one closes the open flow; telemetry batches arrive; drain ends with `drained` and exit 0.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { policyPayload, type ToPrimary, type ToWorker } from '../../src/cluster/messages.js';
import { workerShare } from '../../src/cluster/worker.js';
import type { SidecarConfig } from '../../src/config/types.js';
import { MemorySink } from '../../src/log.js';
import { emptySnapshot } from '../../src/policy/snapshot.js';
import { closed, roundTrip, startTcpEcho, tlsConnect, waitFor, type TestServer } from '../helpers/net.js';
import { sharedCa, svid, writeTlsFiles } from '../helpers/pki.js';
import { dbLicense, ordersSnapshot } from '../helpers/policy.js';
import { removeDir, tempDir } from '../helpers/tmp.js';
import { dbSidecarConfig, startTestWorker } from '../helpers/worker.js';

const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';
/** Session-ticket keys as the control plane sends them. */
const KEYS = Buffer.alloc(48, 7).toString('base64');

describe('runWorker', () => {
  let dir: string;
  let echo: TestServer;
  let config: SidecarConfig;
  let sent: ToPrimary[];
  let exits: number[];
  let deliver: (msg: unknown) => void;
  const sockets: TLSSocket[] = [];
  let drain: (() => void) | undefined;

  beforeEach(async () => {
    dir = tempDir('pl-worker-');
    echo = await startTcpEcho();
    const ca = sharedCa();
    writeTlsFiles(dir, ca.cert, svid('spiffe://example.org/ns/default/sa/orders'), { name: 'orders' });
    writeFileSync(join(dir, 'signing.pub.pem'), 'placeholder\n');
    writeFileSync(join(dir, 'bundle.json'), 'placeholder\n');
    config = dbSidecarConfig(dir, echo.port, 'workers: 2\n');
    const w = startTestWorker({ id: 3, logSink: new MemorySink(), flushMs: 20 });
    ({ sent, exits, deliver, drain } = w);
  });

  afterEach(async () => {
    for (const s of sockets) s.destroy();
    drain?.();
    await waitFor(() => exits.length > 0 || !sent.some((m) => m.t === 'listening'), { what: 'worker exit' });
    await echo.close();
    removeDir(dir);
  });

  const next = <T extends ToPrimary['t']>(t: T, after = 0) =>
    waitFor(() => sent.slice(after).find((m): m is Extract<ToPrimary, { t: T }> => m.t === t), {
      what: `a "${t}" message`,
    });
  const connect = async (port: number) => {
    const s = await tlsConnect({
      port,
      ca: sharedCa().cert,
      cert: svid(FRONTEND).cert,
      key: svid(FRONTEND).key,
    });
    sockets.push(s);
    return s;
  };

  it('says hello, listens only after init, enforces each policy it is sent, reports and drains', async () => {
    expect(sent).toEqual([{ pl: 1, t: 'hello' }]);
    deliver({ pl: 1, t: 'policy', policy: policyPayload(emptySnapshot()) });
    deliver('not a message');
    expect(sent).toHaveLength(1);

    deliver({
      pl: 1,
      t: 'init',
      config,
      policy: policyPayload(emptySnapshot()),
      ticketKeys: KEYS,
    } satisfies ToWorker);
    const listening = await next('listening');
    expect(listening.version).toBe(0);
    const port = listening.ports[0]!.at.port;
    expect(listening.ports).toEqual([{ key: 'orders/db', at: { host: '127.0.0.1', port } }]);

    // No bundle yet: default-deny.
    await closed(await connect(port));

    const t0 = Date.now();
    const granted = ordersSnapshot([dbLicense(t0, 'lic_1', FRONTEND, -1, 60)], t0);
    deliver({ pl: 1, t: 'policy', policy: policyPayload(granted) } satisfies ToWorker);
    expect((await next('policy-applied')).version).toBe(granted.version);
    const flow = await connect(port);
    expect(await roundTrip(flow, 'ping\n')).toBe('ping\n');

    const revoked = ordersSnapshot([], t0);
    deliver({ pl: 1, t: 'policy', policy: policyPayload(revoked) } satisfies ToWorker);
    await closed(flow);

    const telemetry = await waitFor(() => {
      const batches = sent.flatMap((m) => (m.t === 'telemetry' ? [m.batch] : []));
      const sum = (decision: string) =>
        batches
          .flatMap((b) => b.counters)
          .filter((c) => c.f === 'decisions' && c.l.decision === decision)
          .reduce((n, c) => n + c.d, 0);
      return sum('allow') === 1 && sum('deny') === 1 ? batches : null;
    });
    // One use of lic_1 by frontend. The flow's close refreshes its last access with a count of 0:
    // merged into the same entry, or in a later batch of its own, depending on when batches leave.
    const usage = telemetry.flatMap((b) => b.usage);
    expect(usage.length).toBeGreaterThan(0);
    for (const u of usage) expect(u).toMatchObject({ licenseId: 'lic_1', identity: FRONTEND });
    expect(usage.reduce((n, u) => n + u.count, 0)).toBe(1);

    const before = sent.length;
    drain!();
    await next('drained', before);
    expect(exits).toEqual([0]);
  });

  it('rejects a policy it cannot compile: denies everything, cuts its flows and exits 1 to be restarted', async () => {
    const t0 = Date.now();
    const granted = ordersSnapshot([dbLicense(t0, 'lic_1', FRONTEND, -1, 60)], t0);
    deliver({
      pl: 1,
      t: 'init',
      config,
      policy: policyPayload(granted),
      ticketKeys: KEYS,
    } satisfies ToWorker);
    const port = (await next('listening')).ports[0]!.at.port;
    const open = await connect(port);
    expect(await roundTrip(open, 'before\n')).toBe('before\n');
    deliver({
      pl: 1,
      t: 'policy',
      policy: { ...policyPayload(granted), version: granted.version + 1, issuedAt: 'never' },
    } satisfies ToWorker);
    // The control plane enforces the new version: this worker may not go on with the old one.
    expect(await next('policy-rejected')).toMatchObject({ version: granted.version + 1 });
    await closed(open);
    await closed(await connect(port));
    await waitFor(() => exits.length > 0, { what: 'worker exit' });
    expect(exits).toEqual([1]);
  });

  it('applies policies in order and drops one superseded while it compiled', async () => {
    const t0 = Date.now();
    deliver({
      pl: 1,
      t: 'init',
      config,
      policy: policyPayload(emptySnapshot()),
      ticketKeys: KEYS,
    } satisfies ToWorker);
    const port = (await next('listening')).ports[0]!.at.port;
    const granted = ordersSnapshot([dbLicense(t0, 'lic_1', FRONTEND, -1, 60)], t0);
    const revoked = ordersSnapshot([], t0);
    const before = sent.length;
    // Both arrive before the first has compiled: the second wins, the first is never swapped in.
    deliver({ pl: 1, t: 'policy', policy: policyPayload(granted) } satisfies ToWorker);
    deliver({ pl: 1, t: 'policy', policy: policyPayload(revoked) } satisfies ToWorker);
    expect(await next('policy-applied', before)).toMatchObject({ version: revoked.version });
    expect(sent.slice(before).filter((m) => m.t === 'policy-applied')).toHaveLength(1);
    const s = await connect(port);
    await closed(s);
  });

  it('exits 0 at once when told to drain before it had anything to serve', () => {
    drain!();
    expect(exits).toEqual([0]);
    drain = undefined;
  });

  it('reports a listener it cannot bind as fatal, then exits 1', async () => {
    const taken = {
      ...config,
      ports: [{ ...config.ports[0]!, listen: { host: '127.0.0.1', port: echo.port } }],
    };
    deliver({
      pl: 1,
      t: 'init',
      config: taken,
      policy: policyPayload(emptySnapshot()),
      ticketKeys: KEYS,
    } satisfies ToWorker);
    const fatal = await next('fatal');
    expect(fatal.code).toBe('LISTEN_FAILED');
    expect(fatal.error).toMatch(new RegExp(`orders/db.*127\\.0\\.0\\.1:${echo.port}`));
    expect(exits).toEqual([1]);
    drain = undefined;
  });
});

describe('workerShare', () => {
  it('splits a connection cap between the workers, rounding up, at least 1', () => {
    expect(workerShare(100, 2)).toBe(50);
    expect(workerShare(101, 4)).toBe(26);
    expect(workerShare(1, 8)).toBe(1);
    expect(workerShare(100, 1)).toBe(100);
  });
});
