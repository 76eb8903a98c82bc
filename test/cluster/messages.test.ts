/**
 * The IPC messages of src/cluster: the policy survives the trip to a worker (through JSON, as
 * node:cluster sends it) with identical decisions, an empty policy stays deny-all, and malformed
 * or foreign messages are refused on both sides.
 */
import { describe, expect, it } from 'vitest';
import {
  asToPrimary,
  asToWorker,
  policyPayload,
  snapshotFromPayload,
  type PolicyPayload,
} from '../../src/cluster/messages.js';
import { PortlicenseError } from '../../src/errors.js';
import { emptySnapshot } from '../../src/policy/snapshot.js';
import { dbLicense, ordersSnapshot } from '../helpers/policy.js';
import { telemetryBatch } from '../helpers/worker.js';

const T0 = Date.parse('2026-11-28T10:00:00Z');
const A = 'spiffe://example.org/ns/default/sa/a';
const B = 'spiffe://example.org/ns/default/sa/b';
const TEAM = 'spiffe://example.org/ns/team/*';

/** What a worker receives: the payload after node:cluster's JSON serialization. */
const overIpc = (p: PolicyPayload): PolicyPayload => JSON.parse(JSON.stringify(p)) as PolicyPayload;

describe('policy payload', () => {
  const primary = ordersSnapshot(
    [
      dbLicense(T0, 'lic_a', A, -10, 60),
      dbLicense(T0, 'lic_b', B, -10, 60, { revokedAt: new Date(T0 - 60_000).toISOString() }),
      dbLicense(T0, 'lic_team', TEAM, 5, 60),
      dbLicense(T0, 'lic_old', A, -60, -5),
    ],
    T0,
  );

  it('rebuilds the same snapshot in a worker: version, time, licenses and every decision', () => {
    const worker = snapshotFromPayload(overIpc(policyPayload(primary)));
    expect(worker.version).toBe(primary.version);
    expect(worker.issuedAt).toBe(primary.issuedAt);
    expect(worker.node).toBe(primary.node);
    expect(worker.licenses.map((l) => l.wire)).toEqual(primary.licenses.map((l) => l.wire));
    for (const who of [A, B, 'spiffe://example.org/ns/team/x', 'spiffe://example.org/other'])
      for (const at of [T0 - 20 * 60_000, T0, T0 + 10 * 60_000, T0 + 2 * 3_600_000]) {
        const p = primary.decide('orders/db', who, at);
        const w = worker.decide('orders/db', who, at);
        expect(typeof w === 'string' ? w : w.id).toBe(typeof p === 'string' ? p : p.id);
      }
  });

  it('keeps version 0 deny-all: a worker without a bundle admits nobody', () => {
    const worker = snapshotFromPayload(overIpc(policyPayload(emptySnapshot())));
    expect(worker).toBe(emptySnapshot());
    expect(worker.decide('orders/db', A, T0)).toBe('no_license');
  });

  it('throws BUNDLE_INVALID for a payload that cannot be compiled (the worker keeps its policy)', () => {
    const bad = { ...policyPayload(primary), issuedAt: 'yesterday' };
    expect(() => snapshotFromPayload(bad)).toThrow(PortlicenseError);
    const badLicense = { ...policyPayload(primary), licenses: [{ id: 'x' }] } as unknown as PolicyPayload;
    expect(() => snapshotFromPayload(badLicense)).toThrow(/./);
  });
});

describe('message guards', () => {
  const payload = policyPayload(emptySnapshot());
  const emptyBatch = telemetryBatch();

  it('accept well-formed messages', () => {
    expect(asToWorker({ pl: 1, t: 'policy', policy: payload })).not.toBeNull();
    expect(asToWorker({ pl: 1, t: 'drain', deadline: 5 })).not.toBeNull();
    expect(asToWorker({ pl: 1, t: 'reload-tls' })).not.toBeNull();
    expect(asToWorker({ pl: 1, t: 'ping' })).not.toBeNull();
    expect(asToPrimary({ pl: 1, t: 'pong' })).not.toBeNull();
    expect(asToPrimary({ pl: 1, t: 'hello' })).not.toBeNull();
    expect(
      asToPrimary({
        pl: 1,
        t: 'listening',
        ports: [{ key: 'orders/db', at: { host: '127.0.0.1', port: 1 } }],
        outbound: [],
        version: 3,
      }),
    ).not.toBeNull();
    expect(asToPrimary({ pl: 1, t: 'fatal', code: 'LISTEN_FAILED', error: 'busy' })).not.toBeNull();
    expect(asToPrimary({ pl: 1, t: 'telemetry', batch: emptyBatch })).not.toBeNull();
  });

  it.each([
    null,
    'hello',
    { t: 'hello' },
    { pl: 2, t: 'hello' },
    { pl: 1, t: 'nonsense' },
    { cmd: 'NODE_CLUSTER', act: 'online' },
  ])('refuse %j', (msg) => {
    expect(asToWorker(msg)).toBeNull();
    expect(asToPrimary(msg)).toBeNull();
  });

  it('refuse messages with missing or mistyped fields', () => {
    expect(asToWorker({ pl: 1, t: 'policy' })).toBeNull();
    expect(asToWorker({ pl: 1, t: 'policy', policy: { ...payload, licenses: 'all' } })).toBeNull();
    expect(asToWorker({ pl: 1, t: 'init', policy: payload })).toBeNull();
    expect(asToWorker({ pl: 1, t: 'init', config: {}, policy: payload })).toBeNull(); // no ticketKeys
    expect(asToWorker({ pl: 1, t: 'drain', deadline: 'soon' })).toBeNull();
    expect(
      asToPrimary({ pl: 1, t: 'listening', ports: [{ key: 'x' }], outbound: [], version: 1 }),
    ).toBeNull();
    expect(asToPrimary({ pl: 1, t: 'policy-applied' })).toBeNull();
    expect(asToPrimary({ pl: 1, t: 'telemetry', batch: 3 })).toBeNull();
    expect(asToPrimary({ pl: 1, t: 'telemetry', batch: { ...emptyBatch, usage: undefined } })).toBeNull();
    expect(asToPrimary({ pl: 1, t: 'telemetry', batch: { ...emptyBatch, counters: {} } })).toBeNull();
    expect(asToPrimary({ pl: 1, t: 'telemetry', batch: { ...emptyBatch, merged: 0 } })).toBeNull();
    expect(asToPrimary({ pl: 1, t: 'fatal', error: 'x' })).toBeNull();
    // A worker never sends the control plane's messages, nor the other way round.
    expect(asToPrimary({ pl: 1, t: 'drain', deadline: 5 })).toBeNull();
    expect(asToWorker({ pl: 1, t: 'hello' })).toBeNull();
  });
});
