import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { MemorySink } from '../../src/log.js';
import { createAccessLogger } from '../../src/telemetry/access-log.js';
import { createSidecarMetrics } from '../../src/telemetry/metrics.js';
import {
  createNoopPortTelemetry,
  createPortTelemetry,
  noopPortTelemetry,
} from '../../src/telemetry/port-telemetry.js';
import type { PortTelemetry } from '../../src/telemetry/types.js';
import { UsageTracker } from '../../src/telemetry/usage.js';
import { TestPolicyView } from './helpers.js';

const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';

function setup(logAllowedHttp?: boolean) {
  const clock = new ManualClock('2026-11-28T10:00:00Z');
  const usage = new UsageTracker();
  const sink = new MemorySink();
  const metrics = createSidecarMetrics({ policy: new TestPolicyView(), usage, clock, defaultMetrics: false });
  const t = createPortTelemetry(
    metrics,
    { service: 'orders', name: 'http', protocol: 'http' },
    {
      accessLog: createAccessLogger(sink, clock),
      ...(logAllowedHttp === undefined ? {} : { logAllowedHttp }),
    },
  );
  return { clock, usage, sink, metrics, t };
}

describe('createPortTelemetry', () => {
  it('hands out usage entries from the tracker the metrics were built with', () => {
    const { usage, t } = setup();
    const e = t.usage('lic_1', FRONTEND, '10.0.0.1');
    expect(t.usage('lic_1', FRONTEND, '10.0.0.1')).toBe(e);
    e.at = 42;
    e.count = 2;
    expect(usage.lastAccess('lic_1')).toBe(e);
  });

  it('uses deps.usage when given', () => {
    const { metrics } = setup();
    const other = new UsageTracker();
    const t = createPortTelemetry(
      metrics,
      { service: 'orders', name: 'db', protocol: 'tcp' },
      {
        accessLog: createAccessLogger(new MemorySink()),
        usage: other,
      },
    );
    const e = t.usage('lic_9', FRONTEND, 'o');
    e.count = 1;
    expect(other.lastAccess('lic_9')).toBe(e);
    expect(metrics.usage.lastAccess('lic_9')).toBeUndefined();
  });

  it('records denials and access lines under the port key', () => {
    const { usage, sink, t, clock } = setup();
    t.denial(FRONTEND, 'expired', '10.0.0.1', clock.now());
    expect(usage.recentDenials()).toEqual([
      { at: clock.now(), port: 'orders/http', identity: FRONTEND, origin: '10.0.0.1', reason: 'expired' },
    ]);
    t.accessLog({
      kind: 'http',
      decision: 'deny',
      reason: 'expired',
      identity: FRONTEND,
      origin: '10.0.0.1',
      license: null,
      method: 'GET',
      path: '/api/x',
      status: 403,
      bytesIn: 0,
      bytesOut: 80,
      durationMs: 0.2,
    });
    expect(sink.lines[0]).toMatchObject({
      log: 'access',
      port: 'orders/http',
      reason: 'expired',
      status: 403,
    });
  });

  it('carries logAllowedHttp, off by default', () => {
    expect(setup().t.logAllowedHttp).toBe(false);
    expect(setup(true).t.logAllowedHttp).toBe(true);
  });
});

describe('noop telemetry', () => {
  it('accepts every call, records nothing, and still hands out working usage entries', () => {
    const all = (t: PortTelemetry): void => {
      t.decision('deny', 'no_license');
      t.connectionOpened();
      t.connectionClosed();
      t.terminated('shutdown');
      t.bytes('in', 1);
      t.requestDuration(0.1);
      t.handshakeError('tls_error');
      t.denial(null, 'bad_identity', '10.0.0.1', 0);
      t.accessLog({
        kind: 'tcp',
        decision: 'allow',
        reason: null,
        identity: FRONTEND,
        origin: 'o',
        license: 'l',
        bytesIn: 0,
        bytesOut: 0,
        durationMs: 0,
      });
    };
    expect(() => all(noopPortTelemetry)).not.toThrow();
    const e = noopPortTelemetry.usage('lic_1', FRONTEND, '10.0.0.1');
    e.at = 5;
    e.count++;
    expect(noopPortTelemetry.usage('lic_1', FRONTEND, '10.0.0.1')).toMatchObject({ at: 5, count: 1 });
    expect(noopPortTelemetry.logAllowedHttp).toBe(false);
    expect(createNoopPortTelemetry({ logAllowedHttp: true }).logAllowedHttp).toBe(true);
  });
});
