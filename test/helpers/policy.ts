/**
 * The orders/db tcp port of data-plane tests: its config, licenses on it placed in minutes
 * around a test's time zero, and snapshots of them whose versions only go up.
 */
import type { PortConfig } from '../../src/config/types.js';
import { buildSnapshot } from '../../src/policy/snapshot.js';
import type { LicenseWire, PolicySnapshot } from '../../src/policy/types.js';

const MIN = 60_000;

/** orders/db on 127.0.0.1:0, enforcing, with the schema's timeouts and a cap of 100 connections. */
export function dbPortConfig(over: Partial<PortConfig> = {}): PortConfig {
  return {
    name: 'db',
    service: 'orders',
    protocol: 'tcp',
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: '127.0.0.1', port: 1 },
    mode: 'enforce',
    key: 'orders/db',
    upstreamTimeout: 30_000,
    connectTimeout: 5_000,
    maxConnections: 100,
    idleTimeout: 60_000,
    headersTimeout: 10_000,
    maxHeaderSize: 16_384,
    upstreamIdleTimeout: 4_000,
    ...over,
  };
}
let version = 0;

/** `ms` since the epoch as RFC 3339, the way wire licenses carry time. */
export const iso = (ms: number): string => new Date(ms).toISOString();

/** A license of `subject` on orders/db, valid from `from` to `to` minutes after `t0`. */
export function dbLicense(
  t0: number,
  id: string,
  subject: string,
  from: number,
  to: number,
  extra: Partial<LicenseWire> = {},
): LicenseWire {
  return {
    id,
    subject,
    service: 'orders',
    port: 'db',
    notBefore: iso(t0 + from * MIN),
    expiresAt: iso(t0 + to * MIN),
    ...extra,
  };
}

/** A snapshot of `licenses` for node `n` serving orders, issued at `now`, newer than the last. */
export function ordersSnapshot(licenses: LicenseWire[], now: number): PolicySnapshot {
  return buildSnapshot({ version: ++version, issuedAt: iso(now), node: 'n', services: ['orders'], licenses });
}
