/**
 * The data plane of one process: a listener per configured port and per outbound entry, built and
 * bound the same way by the one-process sidecar (cli/sidecar.ts) and by every cluster worker
 * (cluster/worker.ts). What differs between the two is passed in: a worker serves its share of each
 * port's and outbound entry's connections and uses the ticket keys all workers share.
 */
import type { Clock } from '../clock.js';
import type { HostPort, PortConfig, SidecarConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { PolicyView } from '../policy/types.js';
import type { AccessLogger } from '../telemetry/access-log.js';
import type { SidecarMetrics } from '../telemetry/metrics.js';
import { createPortTelemetry } from '../telemetry/port-telemetry.js';
import type { UsageTracker } from '../telemetry/usage.js';
import { createHttpPort } from './http-proxy.js';
import { createOutboundListener, type OutboundListener } from './outbound.js';
import { createTcpPort } from './tcp-proxy.js';
import type { TlsMaterialStore } from './tls-context.js';
import type { PortListener } from './types.js';

export interface DataPlaneDeps {
  readonly config: SidecarConfig;
  readonly policy: PolicyView;
  readonly clock: Clock;
  readonly tls: TlsMaterialStore;
  readonly log: Logger;
  readonly metrics: SidecarMetrics;
  readonly usage: UsageTracker;
  readonly accessLog: AccessLogger;
  /**
   * This process's share of a port's or an outbound entry's `maxConnections` (a worker's);
   * default: as configured.
   */
  readonly connectionShare?: (maxConnections: number) => number;
  /** TLS session-ticket keys shared with other processes serving the same ports. */
  readonly ticketKeys?: Buffer;
}

export interface DataPlane {
  readonly ports: PortListener[];
  readonly outbound: OutboundListener[];
}

/** Create (not bind) the listeners of `config`. */
export function createDataPlane(d: DataPlaneDeps): DataPlane {
  const { config, policy, clock, tls, log, metrics } = d;
  const ports = config.ports.map((configured) => {
    const port: PortConfig = d.connectionShare
      ? { ...configured, maxConnections: d.connectionShare(configured.maxConnections) }
      : configured;
    const deps = {
      port,
      policy,
      clock,
      telemetry: createPortTelemetry(metrics, port, {
        usage: d.usage,
        accessLog: d.accessLog,
        logAllowedHttp: config.log.accessLogAllowedHttp,
      }),
      tls,
      trustDomains: config.trustDomains,
      handshakeTimeout: config.tls.handshakeTimeout,
      ...(d.ticketKeys !== undefined && { ticketKeys: d.ticketKeys }),
      log: log.child({ port: port.key }),
    };
    return port.protocol === 'http' ? createHttpPort(deps) : createTcpPort(deps);
  });
  const outbound = config.outbound.map((o) =>
    createOutboundListener({
      outbound: d.connectionShare ? { ...o, maxConnections: d.connectionShare(o.maxConnections) } : o,
      tls,
      clock,
      telemetry: metrics.outbound(o.name),
      log: log.child({ outbound: o.name }),
      handshakeTimeout: config.tls.handshakeTimeout,
    }),
  );
  return { ports, outbound };
}

/**
 * Bind every listener. Resolves the bound addresses (ports, then outbound entries, in config
 * order); when one cannot be bound, rejects with its error once all have settled, so that draining
 * afterwards leaves none of them bound.
 */
export async function bindDataPlane(dp: DataPlane): Promise<{ ports: HostPort[]; outbound: HostPort[] }> {
  const settled = await Promise.allSettled([...dp.ports, ...dp.outbound].map((l) => l.listen()));
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  const at = settled.map((r) => (r as PromiseFulfilledResult<HostPort>).value);
  return { ports: at.slice(0, dp.ports.length), outbound: at.slice(dp.ports.length) };
}

/** Close every listener at once (a start that failed). */
export async function closeDataPlane(dp: DataPlane): Promise<void> {
  await Promise.allSettled([...dp.ports.map((p) => p.drain(0)), ...dp.outbound.map((o) => o.drain(0))]);
}
