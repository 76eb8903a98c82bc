/**
 * Access-log lines of a data-plane worker say which worker wrote them (`worker`: the node:cluster
 * worker id, as on its other log lines), since every worker writes to the same stdout; the
 * single-process sidecar's lines stay as they were. Both run for real here, in-process: the same
 * config, a signed bundle, one licensed TCP flow each over mTLS.
 */
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { policyPayload, type ToPrimary, type ToWorker } from '../../src/cluster/messages.js';
import { startSidecar, type RunningSidecar } from '../../src/cli/sidecar.js';
import type { SidecarConfig } from '../../src/config/types.js';
import { MemorySink, type LogFields } from '../../src/log.js';
import { signBundle } from '../../src/policy/bundle.js';
import { buildSnapshot } from '../../src/policy/snapshot.js';
import type { BundlePayload } from '../../src/policy/types.js';
import { roundTrip, startTcpEcho, tlsConnect, waitFor, type TestServer } from '../helpers/net.js';
import { sharedCa, svid, writeTlsFiles } from '../helpers/pki.js';
import { dbLicense, iso } from '../helpers/policy.js';
import { removeDir, tempDir } from '../helpers/tmp.js';
import { dbSidecarConfig, startTestWorker } from '../helpers/worker.js';

const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';

describe('access-log lines', () => {
  let dir: string;
  let echo: TestServer;
  let config: SidecarConfig;
  let payload: BundlePayload;
  let sink: MemorySink;
  const cleanups: Array<() => unknown> = [];

  beforeEach(async () => {
    dir = tempDir('pl-access-');
    echo = await startTcpEcho();
    writeTlsFiles(dir, sharedCa().cert, svid('spiffe://example.org/ns/default/sa/orders'), {
      name: 'orders',
    });
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    writeFileSync(join(dir, 'signing.pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    const t0 = Date.now();
    payload = {
      version: 1,
      issuedAt: iso(t0),
      node: 'node-a',
      services: ['orders'],
      licenses: [dbLicense(t0, 'lic_1', FRONTEND, -1, 60)],
    };
    writeFileSync(join(dir, 'bundle.json'), JSON.stringify(signBundle(payload, privateKey)));
    config = dbSidecarConfig(dir, echo.port);
    sink = new MemorySink();
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await echo.close();
    removeDir(dir);
  });

  /** One licensed flow through `port`, closed by the client; resolves its access-log line. */
  async function flowLine(port: number): Promise<LogFields> {
    const s: TLSSocket = await tlsConnect({
      port,
      ca: sharedCa().cert,
      cert: svid(FRONTEND).cert,
      key: svid(FRONTEND).key,
    });
    cleanups.push(() => s.destroy());
    expect(await roundTrip(s, 'ping\n')).toBe('ping\n');
    s.end();
    return waitFor(() => sink.lines.find((l) => l.log === 'access'), { what: 'an access-log line' });
  }

  async function singleProcessLine(): Promise<LogFields> {
    const sidecar: RunningSidecar = await startSidecar(config, { logSink: sink });
    cleanups.push(() => sidecar.shutdown());
    const listening = sink.lines.find((l) => l.msg === 'listening' && l.port === 'orders/db');
    const address = String(listening?.address);
    return flowLine(Number(address.slice(address.lastIndexOf(':') + 1)));
  }

  async function workerLine(id: number): Promise<LogFields> {
    const { sent, exits: exited, deliver, drain } = startTestWorker({ id, logSink: sink, flushMs: 60_000 });
    cleanups.push(async () => {
      drain();
      await waitFor(() => exited.length > 0, { what: 'worker exit' });
    });
    deliver({
      pl: 1,
      t: 'init',
      config: { ...config, workers: 2 },
      policy: policyPayload(buildSnapshot(payload)),
      ticketKeys: Buffer.alloc(48, 1).toString('base64'),
    } satisfies ToWorker);
    const listening = await waitFor(() =>
      sent.find((m): m is Extract<ToPrimary, { t: 'listening' }> => m.t === 'listening'),
    );
    return flowLine(listening.ports[0]!.at.port);
  }

  /** The fields of the flow's line, written the same by a worker and by a single process. */
  const FLOW = {
    log: 'access',
    port: 'orders/db',
    kind: 'tcp',
    decision: 'allow',
    identity: FRONTEND,
    license: 'lic_1',
    bytesIn: 5,
  };

  it("a worker's line carries its node:cluster id, after the fields a single process writes", async () => {
    const line = await workerLine(5);
    expect(line).toMatchObject({ ...FLOW, worker: 5 });
    const keys = Object.keys(line);
    expect(keys.slice(0, 3)).toEqual(['time', 'log', 'port']);
    expect(keys.at(-1)).toBe('worker');
    // The worker's operational lines already said which worker wrote them; now both agree.
    expect(sink.lines.filter((l) => l.log !== 'access').every((l) => l.worker === 5)).toBe(true);
  });

  it("the single-process sidecar's line is unchanged: no worker field", async () => {
    const line = await singleProcessLine();
    expect(line).toMatchObject(FLOW);
    expect(Object.keys(line)).not.toContain('worker');
    expect(Object.keys(line).slice(0, 3)).toEqual(['time', 'log', 'port']);
  });

  it('both write the same fields in the same order, the worker adding only `worker`', async () => {
    const single = await singleProcessLine();
    sink.lines.length = 0;
    const worker = await workerLine(2);
    expect(Object.keys(worker)).toEqual([...Object.keys(single), 'worker']);
  });
});
