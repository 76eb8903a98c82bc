/**
 * createDataPlane: one listener per port and per outbound entry, each given this process's share of
 * its connection cap (a cluster worker's), and the config's dial and idle settings as written.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import type { SidecarConfig } from '../../src/config/types.js';
import { workerShare } from '../../src/cluster/worker.js';
import { createDataPlane, type DataPlaneDeps } from '../../src/dataplane/listeners.js';
import { MemorySink } from '../../src/log.js';
import { PolicyStore } from '../../src/policy/store.js';
import { createAccessLogger } from '../../src/telemetry/access-log.js';
import { createSidecarMetrics } from '../../src/telemetry/metrics.js';
import { UsageTracker } from '../../src/telemetry/usage.js';
import { dbPortConfig } from '../helpers/policy.js';
import { createTestCa } from '../helpers/pki.js';
import { loadTlsFixture, type TlsFixture } from '../helpers/tls.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const ORDERS = 'spiffe://example.org/ns/default/sa/orders';

let dir: string;
let fixture: TlsFixture;

beforeAll(() => {
  dir = tempDir('pl-listeners-');
  const ca = createTestCa();
  fixture = loadTlsFixture(dir, ca.cert, ca.svid(ORDERS));
});

afterAll(() => {
  fixture.tls.close();
  removeDir(dir);
});

function deps(over: Partial<DataPlaneDeps> = {}): DataPlaneDeps {
  const clock = new ManualClock(Date.now());
  const policy = new PolicyStore();
  const usage = new UsageTracker({ policy });
  const config: SidecarConfig = {
    file: `${dir}/sidecar.yaml`,
    node: 'node-a',
    trustDomains: ['example.org'],
    tls: { ...fixture.files, handshakeTimeout: 10_000 },
    authority: {
      bundleFile: `${dir}/bundle.json`,
      signingPublicKey: `${dir}/k.pem`,
      wait: 30_000,
      reportInterval: 15_000,
      maxStaleness: 600_000,
    },
    ports: [dbPortConfig({ maxConnections: 101, connectTimeout: 1_500 })],
    outbound: [
      {
        name: 'payments',
        listen: { host: '127.0.0.1', port: 0 },
        target: { host: 'payments.internal', port: 8443 },
        serverId: 'spiffe://example.org/ns/default/sa/payments',
        allowNonLoopback: false,
        connectTimeout: 2_500,
        idleTimeout: 1_800_000,
        maxConnections: 10,
      },
    ],
    admin: { listen: { host: '127.0.0.1', port: 0 } },
    log: { level: 'info', accessLogAllowedHttp: false },
    drainTimeout: 15_000,
    warnBefore: 72 * 3_600_000,
  };
  return {
    config,
    policy,
    clock,
    tls: fixture.tls,
    log: fixture.log,
    metrics: createSidecarMetrics({ policy, usage, clock, defaultMetrics: false }),
    usage,
    accessLog: createAccessLogger(new MemorySink(), clock),
    ...over,
  };
}

describe('createDataPlane', () => {
  it('gives each listener its entry as configured in one process', () => {
    const dp = createDataPlane(deps());
    expect(dp.ports.map((p) => [p.port.maxConnections, p.port.connectTimeout])).toEqual([[101, 1_500]]);
    expect(dp.outbound.map((o) => o.outbound)).toEqual([
      expect.objectContaining({ connectTimeout: 2_500, idleTimeout: 1_800_000, maxConnections: 10 }),
    ]);
  });

  it("gives a worker its share of every port's and outbound entry's connection cap, nothing else changed", () => {
    const dp = createDataPlane(deps({ connectionShare: (n) => workerShare(n, 4) }));
    expect(dp.ports[0]!.port).toMatchObject({ maxConnections: 26, connectTimeout: 1_500 });
    expect(dp.outbound[0]!.outbound).toMatchObject({
      maxConnections: 3,
      connectTimeout: 2_500,
      idleTimeout: 1_800_000,
    });
  });
});
