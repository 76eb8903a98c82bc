import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { BatchedSink, MemorySink } from '../../src/log.js';
import { createAccessLogger } from '../../src/telemetry/access-log.js';
import type { AccessRecord } from '../../src/telemetry/types.js';

const httpDeny: AccessRecord = {
  kind: 'http',
  decision: 'deny',
  reason: 'path_not_allowed',
  identity: 'spiffe://example.org/ns/default/sa/frontend',
  origin: '10.0.0.7',
  license: null,
  method: 'POST',
  path: '/admin',
  status: 403,
  bytesIn: 0,
  bytesOut: 97,
  durationMs: 0.4,
};

describe('access log', () => {
  it('writes one JSON line per record: time, "log":"access", the port, then the record fields', () => {
    const sink = new MemorySink();
    const log = createAccessLogger(sink, new ManualClock('2026-11-28T10:00:00Z'));
    log.write('orders/http', httpDeny);
    expect(sink.lines).toEqual([
      { time: '2026-11-28T10:00:00.000Z', log: 'access', port: 'orders/http', ...httpDeny },
    ]);
  });

  it('omits absent optional fields and keeps nulls', () => {
    const sink = new MemorySink();
    const tcp: AccessRecord = {
      kind: 'tcp',
      decision: 'allow',
      reason: null,
      identity: 'spiffe://example.org/ns/jobs/sa/batch',
      origin: '10.0.0.8',
      license: 'lic_1',
      bytesIn: 512,
      bytesOut: 2048,
      durationMs: 12_000,
      closeReason: 'revoked',
    };
    createAccessLogger(sink, new ManualClock()).forPort('orders/db')(tcp);
    const line = sink.lines[0]!;
    expect(line).toMatchObject({ log: 'access', port: 'orders/db', reason: null, closeReason: 'revoked' });
    expect(Object.keys(line)).not.toContain('method');
    expect(Object.keys(line).slice(0, 3)).toEqual(['time', 'log', 'port']);
  });

  it('escapes whatever a caller put in the path or identity', () => {
    const sink = new MemorySink();
    createAccessLogger(sink, new ManualClock()).write('orders/"http"', {
      ...httpDeny,
      path: '/a"b\\c\n{"log":"forged"}',
    });
    expect(sink.lines).toHaveLength(1);
    expect(sink.lines[0]).toMatchObject({
      port: 'orders/"http"',
      path: '/a"b\\c\n{"log":"forged"}',
      log: 'access',
    });
  });

  it('goes through the batched sink: nothing is written synchronously, a burst is one write', async () => {
    const chunks: string[] = [];
    const sink = new BatchedSink({ write: (c: string) => chunks.push(c) });
    const log = createAccessLogger(sink, new ManualClock());
    for (let i = 0; i < 100; i++) log.write('orders/http', { ...httpDeny, bytesOut: i });
    expect(chunks).toHaveLength(0);
    await new Promise((r) => setImmediate(r));
    expect(chunks).toHaveLength(1);
    const lines = chunks[0]!.trimEnd().split('\n');
    expect(lines).toHaveLength(100);
    expect(JSON.parse(lines[99]!)).toMatchObject({ log: 'access', bytesOut: 99 });
  });
});
