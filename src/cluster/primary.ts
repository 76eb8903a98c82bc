/**
 * The control plane of a sidecar with `workers: N` (N > 1): this process reads the config, holds
 * the bundle source (authority sync, or bundle file and cache), sends usage reports, serves the
 * admin port and handles signals; N forked workers (worker.ts) run every port and outbound
 * listener on sockets node:cluster shares between them. This process sends each worker the policy
 * on start and on every swap, and merges their telemetry back, so /metrics, /status, /readyz and
 * the usage reports look as they do with one process.
 *
 * Lifecycle, in order: TLS material -> policy store + bundle source -> metrics -> fork workers and
 * wait until every one listens -> admin server -> ready. Shutdown: drain the workers (they finish
 * open work until drainTimeout), then the source, TLS and the admin server.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Clock } from '../clock.js';
import type { HostPort, SidecarConfig } from '../config/types.js';
import type { BundleSource } from '../control/source.js';
import { outboundStatusInput } from '../dataplane/outbound.js';
import type { TlsMaterialStore } from '../dataplane/tls-context.js';
import type { Logger } from '../log.js';
import type { PolicyStore } from '../policy/store.js';
import { formatHostPort, startAdminServer, type Readiness } from '../telemetry/admin-server.js';
import type { SidecarMetrics } from '../telemetry/metrics.js';
import { createAccessLogger } from '../telemetry/access-log.js';
import { createPortTelemetry } from '../telemetry/port-telemetry.js';
import { buildStatus } from '../telemetry/status.js';
import type { UsageTracker } from '../telemetry/usage.js';
import { policyPayload } from './messages.js';
import { WorkerPool, type SlotView } from './pool.js';
import { TelemetryMerger } from './telemetry-merge.js';

/**
 * How workers share a listening socket. Round-robin: this process accepts and hands each
 * connection to the next worker, so load spreads evenly whatever the kernel does; measured on
 * this 2-core machine against workers accepting directly (`none`), see docs/performance.md.
 * NODE_CLUSTER_SCHED_POLICY=rr|none overrides it.
 */
export const DEFAULT_SCHEDULING: 'rr' | 'none' = 'rr';

/** What cli/sidecar.ts has already built for this process (the same as for one process). */
export interface ControlPlane {
  config: SidecarConfig;
  clock: Clock;
  log: Logger;
  tls: TlsMaterialStore;
  policy: PolicyStore;
  /** Records nothing itself (this process has no listeners): it absorbs the workers' deltas. */
  usage: UsageTracker;
  metrics: SidecarMetrics;
  source: BundleSource;
}

export interface ClusterOptions {
  /** The worker entry module; default worker-main.js beside this file. */
  exec?: string;
  scheduling?: 'rr' | 'none';
  /** Restart delays of a worker that died. */
  backoff?: { base: number; max: number };
}

export interface RunningCluster {
  readonly adminAddress: HostPort;
  workers(): SlotView[];
  reloadTls(): void;
  /** Drain the workers, stop the source and the admin server. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * Fork the workers, wait until all listen, and serve the admin port. On failure every worker is
 * killed and the error (a worker's, e.g. LISTEN_FAILED naming the port) is thrown; the caller
 * closes what it built.
 */
export async function startCluster(cp: ControlPlane, opts: ClusterOptions = {}): Promise<RunningCluster> {
  const { config, clock, log, tls, policy, usage, metrics, source } = cp;
  const size = config.workers ?? 1;

  // Bind every series now, so /metrics lists them at 0 before the first worker batch (as one process does).
  const accessLog = createAccessLogger({ write: () => {} }, clock);
  for (const port of config.ports) createPortTelemetry(metrics, port, { usage, accessLog });
  for (const o of config.outbound) metrics.outbound(o.name);
  const merger = new TelemetryMerger({ metrics, usage });

  const boundPorts = new Map<string, HostPort>();
  const boundOutbound = new Map<string, HostPort>();
  // One set of session-ticket keys for every worker, for the life of this process (see ToWorker init).
  const ticketKeys = randomBytes(48).toString('base64');
  const pool = new WorkerPool({
    size,
    exec: opts.exec ?? fileURLToPath(new URL('./worker-main.js', import.meta.url)),
    scheduling: opts.scheduling ?? DEFAULT_SCHEDULING,
    log: log.child({ component: 'workers' }),
    clock,
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
    ...(config.workerHangTimeout !== undefined ? { hangTimeoutMs: config.workerHangTimeout } : {}),
    init: () => ({ pl: 1, t: 'init', config, policy: policyPayload(policy.current()), ticketKeys }),
    onListening: (_slot, ports, outbound) => {
      for (const b of ports) boundPorts.set(b.key, b.at);
      for (const b of outbound) boundOutbound.set(b.key, b.at);
    },
    onTelemetry: (id, batch) => merger.apply(id, batch),
    onExit: (id) => merger.forget(id),
  });
  const unsubscribe = policy.onSwap((next) =>
    pool.broadcast({ pl: 1, t: 'policy', policy: policyPayload(next) }),
  );

  let admin: Awaited<ReturnType<typeof startAdminServer>>;
  try {
    await pool.start();
    admin = await startAdminServer({
      listen: config.admin.listen,
      registry: metrics.registry,
      ready: () =>
        readiness(source.readiness(), pool.views(), policy.current().version, pool.unresponsiveAfterMs),
      status: () =>
        buildStatus({
          now: clock.now(),
          node: config.node,
          ports: config.ports.map((p) => ({
            service: p.service,
            name: p.name,
            protocol: p.protocol,
            listen: boundPorts.get(p.key) ?? p.listen,
            mode: p.mode,
            activeConnections: metrics.activeConnections(p.service, p.name),
          })),
          outbound: config.outbound.map((o) =>
            outboundStatusInput(o, merger.outboundStats(o.name), boundOutbound.get(o.name)),
          ),
          policy: policy.current(),
          sync: source.state(),
          usage,
          warnBefore: config.warnBefore,
          mayRenew: (id) => source.mayRenew(id),
          workers: pool.views(),
          ready: readiness(
            source.readiness(),
            pool.views(),
            policy.current().version,
            pool.unresponsiveAfterMs,
          ),
        }),
      log: log.child({ component: 'admin' }),
    });
  } catch (err) {
    unsubscribe();
    await pool.kill();
    throw err;
  }

  for (const p of config.ports)
    log.info('listening', { port: p.key, address: formatHostPort(boundPorts.get(p.key) ?? p.listen) });
  for (const o of config.outbound)
    log.info('outbound listening', {
      outbound: o.name,
      address: formatHostPort(boundOutbound.get(o.name) ?? o.listen),
      target: formatHostPort(o.target),
      serverId: o.serverId,
    });

  let stopping: Promise<void> | undefined;
  return {
    adminAddress: admin.address,
    workers: () => pool.views(),
    reloadTls: () => {
      const r = tls.reload();
      pool.broadcast({ pl: 1, t: 'reload-tls' });
      if (r.ok) log.info('certificates reloaded', { cert: config.tls.cert, workers: size });
    },
    shutdown: () =>
      (stopping ??= (async () => {
        unsubscribe();
        await pool.drain(clock.now() + config.drainTimeout);
        await admin.close();
      })()),
  };
}

/**
 * Ready when the source is, and every worker listens enforcing the current bundle version and
 * answers: a worker restarting, one that has not applied the latest bundle yet, or one silent for
 * `silentAfterMs` or more (its event loop blocked; the pool kills it at twice that) makes the node
 * unready.
 */
export function readiness(
  source: Readiness,
  workers: readonly SlotView[],
  version: number,
  silentAfterMs: number,
): Readiness {
  const reasons = [...source.reasons];
  for (const w of workers) {
    if (w.state !== 'listening')
      reasons.push(`data-plane worker ${w.slot} of ${workers.length} is not serving (${w.state})`);
    else if (w.silentMs !== null && w.silentMs >= silentAfterMs)
      reasons.push(
        `data-plane worker ${w.slot} of ${workers.length} has not answered for ${(w.silentMs / 1000).toFixed(1)} s (event loop blocked?)`,
      );
    else if (w.version !== version)
      reasons.push(
        `data-plane worker ${w.slot} of ${workers.length} enforces bundle version ${w.version ?? 'none'}, not ${version}`,
      );
  }
  return { ok: reasons.length === 0, reasons };
}
