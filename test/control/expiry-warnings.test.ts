import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { watchExpiringInUse } from '../../src/control/expiry-warnings.js';
import { createLogger, MemorySink } from '../../src/log.js';
import { buildSnapshot } from '../../src/policy/snapshot.js';
import { PolicyStore } from '../../src/policy/store.js';
import { UsageTracker } from '../../src/telemetry/usage.js';

const H = 3_600_000;
const ID = 'spiffe://example.org/ns/default/sa/frontend';

describe('watchExpiringInUse (bundle-file mode)', () => {
  it('warns once, naming license, subject and port, for a used license entering the warning window', () => {
    const clock = new ManualClock('2026-11-28T10:00:00Z');
    const policy = new PolicyStore();
    const lic = (id: string, hours: number) => ({
      id,
      subject: ID,
      service: 'orders',
      port: 'http',
      notBefore: '2026-11-28T09:00:00Z',
      expiresAt: new Date(clock.now() + hours * H).toISOString(),
    });
    policy.swap(
      buildSnapshot({
        version: 1,
        issuedAt: '2026-11-28T10:00:00Z',
        node: 'n',
        services: ['orders'],
        licenses: [lic('lic_used', 10), lic('lic_idle', 10), lic('lic_far', 100)],
      }),
    );
    const usage = new UsageTracker({ policy });
    for (const id of ['lic_used', 'lic_far']) {
      const e = usage.entry(id, ID, '10.0.0.1');
      e.at = clock.now();
      e.count++;
    }
    const sink = new MemorySink();
    const w = watchExpiringInUse({
      policy,
      usage,
      clock,
      log: createLogger({ sink }),
      warnBefore: 24 * H,
      intervalMs: 60_000,
    });
    clock.advance(60_000);
    clock.advance(60_000);
    w.close();
    const warnings = sink.lines.filter((l) => l.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ license: 'lic_used', subject: ID, port: 'orders/http' });
    expect(clock.pendingTimers()).toBe(0);
  });
});
