/**
 * `portlicense sidecar --config FILE`: wires config, TLS material, policy, bundle source,
 * telemetry, one listener per port and one per outbound entry, then runs until SIGTERM/SIGINT
 * (drain, exit 0). SIGHUP reloads certificates. With `workers: N` above 1 this process keeps the
 * control plane and the listeners run in N forked workers (src/cluster/).
 *
 * Process lifecycle, in order: load config -> load TLS material -> policy store + bundle source ->
 * telemetry -> bind listeners (ports and outbound) -> admin server -> ready. Shutdown runs it backwards.
 */
import { systemClock, type Clock } from '../clock.js';
import { loadSidecarConfig, sidecarWarnings } from '../config/sidecar.js';
import type { SidecarConfig } from '../config/types.js';
import { startBundleSource, type BundleSource } from '../control/source.js';
import { bindDataPlane, closeDataPlane, createDataPlane, type DataPlane } from '../dataplane/listeners.js';
import { outboundStatusInput, type OutboundListener } from '../dataplane/outbound.js';
import { TlsMaterialStore } from '../dataplane/tls-context.js';
import { lineAtomicSink } from '../cluster/log-sink.js';
import { startCluster, type ClusterOptions, type RunningCluster } from '../cluster/primary.js';
import type { PortListener } from '../dataplane/types.js';
import { createLogger, type Logger, type LogSink } from '../log.js';
import { PolicyStore } from '../policy/store.js';
import { createAccessLogger } from '../telemetry/access-log.js';
import { formatHostPort, startAdminServer } from '../telemetry/admin-server.js';
import { createSidecarMetrics } from '../telemetry/metrics.js';
import { buildStatus } from '../telemetry/status.js';
import { UsageTracker } from '../telemetry/usage.js';
import { allocatorInUse } from './allocator.js';
import { parseFlags, required } from './args.js';
import { checkSidecarMaterial } from './material.js';

const HELP = `Usage: portlicense sidecar --config FILE

Runs the sidecar proxy: one mTLS listener per configured port, default-deny, admitting callers
only while they hold a valid license; and one plaintext loopback listener per outbound entry,
carrying the local app's calls to remote licensed ports over mTLS with this sidecar's identity. Signals: SIGHUP reloads certificates; SIGTERM/SIGINT drain
open requests and connections (up to drainTimeout) and exit 0.
`;

export interface RunningSidecar {
  readonly config: SidecarConfig;
  readonly ports: readonly PortListener[];
  readonly outbound: readonly OutboundListener[];
  readonly adminAddress: { host: string; port: number };
  reloadTls(): void;
  /** Stop accepting, drain, close everything. Idempotent. */
  shutdown(): Promise<void>;
}

export interface SidecarOptions {
  clock?: Clock;
  logSink?: LogSink;
}

export async function startSidecar(
  config: SidecarConfig,
  opts: SidecarOptions = {},
): Promise<RunningSidecar> {
  const { clock, log, tls } = basics(config, opts);
  const policy = new PolicyStore();
  const usage = new UsageTracker({ policy });
  const metrics = createSidecarMetrics({ policy, usage, clock });
  const accessLog = createAccessLogger(opts.logSink, clock);

  const closers: Array<() => unknown> = [() => tls.close()];
  let dp: DataPlane = { ports: [], outbound: [] };
  let source: BundleSource | undefined;
  let admin: Awaited<ReturnType<typeof startAdminServer>> | undefined;
  try {
    source = await bundleSource({ config, policy, clock, log, metrics, usage, tls });
    closers.push(() => source?.close());
    dp = createDataPlane({ config, policy, clock, tls, log, metrics, usage, accessLog });
    const { ports, outbound } = dp;
    // Bind all listeners before announcing anything: one that cannot be bound fails the start.
    const at = await bindDataPlane(dp);
    const boundAt = new Map(ports.map((p, i) => [p.port.key, at.ports[i]!]));
    const outboundAt = new Map(outbound.map((o, i) => [o.outbound.name, at.outbound[i]!]));
    tls.watch();

    admin = await startAdminServer({
      listen: config.admin.listen,
      registry: metrics.registry,
      ready: () => source!.readiness(),
      status: () =>
        buildStatus({
          now: clock.now(),
          node: config.node,
          ports: ports.map((p) => ({
            service: p.port.service,
            name: p.port.name,
            protocol: p.port.protocol,
            listen: boundAt.get(p.port.key) ?? p.port.listen,
            mode: p.port.mode,
            activeConnections: p.activeConnections(),
          })),
          outbound: outbound.map((o) =>
            outboundStatusInput(o.outbound, o.stats(), outboundAt.get(o.outbound.name)),
          ),
          policy: policy.current(),
          sync: source!.state(),
          usage,
          warnBefore: config.warnBefore,
          mayRenew: (id) => source?.mayRenew(id) ?? false,
          ready: source!.readiness(),
        }),
      log: log.child({ component: 'admin' }),
    });
    for (const [key, a] of boundAt) log.info('listening', { port: key, address: `${a.host}:${a.port}` });
    for (const o of config.outbound)
      log.info('outbound listening', {
        outbound: o.name,
        address: formatHostPort(outboundAt.get(o.name) ?? o.listen),
        target: formatHostPort(o.target),
        serverId: o.serverId,
      });
    log.info('sidecar started', {
      ports: config.ports.length,
      outbound: config.outbound.length,
      admin: `${admin.address.host}:${admin.address.port}`,
      bundleVersion: policy.current().version,
      allocator: allocatorInUse(),
    });
  } catch (err) {
    await closeDataPlane(dp);
    for (const c of closers.reverse()) await Promise.resolve(c());
    throw err;
  }

  const { ports, outbound } = dp;
  let stopping: Promise<void> | undefined;
  const adminServer = admin;
  return {
    config,
    ports,
    outbound,
    adminAddress: adminServer.address,
    reloadTls: () => {
      const r = tls.reload();
      if (r.ok) log.info('certificates reloaded', { cert: config.tls.cert });
    },
    shutdown: () =>
      (stopping ??= (async () => {
        log.info('draining', { deadlineMs: config.drainTimeout });
        const deadline = clock.now() + config.drainTimeout;
        await Promise.allSettled([
          ...ports.map((p) => p.drain(deadline)),
          ...outbound.map((o) => o.drain(deadline)),
        ]);
        for (const c of closers.reverse()) await Promise.resolve(c());
        await adminServer.close();
        log.info('sidecar stopped');
      })()),
  };
}

export interface RunningClusterSidecar {
  readonly config: SidecarConfig;
  readonly adminAddress: { host: string; port: number };
  readonly cluster: RunningCluster;
  reloadTls(): void;
  /** Drain the workers, close the control plane. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * The sidecar with `workers` data-plane processes: this process is the control plane (config,
 * bundle source, usage reports, admin server, signals); src/cluster/ forks and feeds the workers.
 */
export async function startClusterSidecar(
  config: SidecarConfig,
  opts: SidecarOptions & ClusterOptions = {},
): Promise<RunningClusterSidecar> {
  const { clock, log, tls } = basics(config, opts);
  const policy = new PolicyStore();
  const usage = new UsageTracker({ policy });
  const metrics = createSidecarMetrics({ policy, usage, clock });
  const closers: Array<() => unknown> = [() => tls.close()];
  let cluster: RunningCluster;
  try {
    const source = await bundleSource({ config, policy, clock, log, metrics, usage, tls });
    closers.push(() => source.close());
    cluster = await startCluster({ config, clock, log, tls, policy, usage, metrics, source }, opts);
    tls.watch();
  } catch (err) {
    for (const c of closers.reverse()) await Promise.resolve(c());
    throw err;
  }
  log.info('sidecar started', {
    ports: config.ports.length,
    outbound: config.outbound.length,
    admin: `${cluster.adminAddress.host}:${cluster.adminAddress.port}`,
    bundleVersion: policy.current().version,
    workers: config.workers,
    allocator: allocatorInUse(),
  });

  let stopping: Promise<void> | undefined;
  return {
    config,
    adminAddress: cluster.adminAddress,
    cluster,
    reloadTls: () => cluster.reloadTls(),
    shutdown: () =>
      (stopping ??= (async () => {
        log.info('draining', { deadlineMs: config.drainTimeout, workers: config.workers });
        await cluster.shutdown();
        for (const c of closers.reverse()) await Promise.resolve(c());
        log.info('sidecar stopped');
      })()),
  };
}

/** What both the one-process and the cluster sidecar set up first: clock, logger, TLS material. */
function basics(
  config: SidecarConfig,
  opts: SidecarOptions,
): { clock: Clock; log: Logger; tls: TlsMaterialStore } {
  const clock = opts.clock ?? systemClock;
  const log: Logger = createLogger({
    level: config.log.level,
    ...(opts.logSink ? { sink: opts.logSink } : {}),
    fields: { node: config.node },
  });
  for (const w of sidecarWarnings(config)) log.warn(w.message, { key: w.path, file: config.file });
  return { clock, log, tls: TlsMaterialStore.load(config.tls, log.child({ component: 'tls' })) };
}

/** The bundle source of a sidecar: none to pull for a client-only one (see clientOnlySource). */
function bundleSource(
  deps: Omit<Parameters<typeof startBundleSource>[0], 'log'> & { log: Logger },
): Promise<BundleSource> | BundleSource {
  if (deps.config.ports.length === 0) return clientOnlySource(deps.log);
  return startBundleSource({ ...deps, log: deps.log.child({ component: 'sync' }) });
}

/**
 * A client-only sidecar (outbound entries, no ports) guards nothing, so it has no use for license
 * bundles (the authority serves them per guarded service) and pulls none. It is ready once its
 * certificate is loaded; the licenses that matter to its calls are enforced by the remote sidecars.
 */
function clientOnlySource(log: Logger): BundleSource {
  log.info('no ports to guard: not pulling license bundles (outbound only)');
  const state = { lastSuccess: null, source: 'none (no ports to guard)', lastError: null };
  return {
    readiness: () => ({ ok: true, reasons: [] }),
    state: () => state,
    mayRenew: () => false,
    close: () => {},
  };
}

export async function sidecarCommand(argv: string[]): Promise<number> {
  const p = parseFlags('sidecar', argv, { config: { type: 'string', short: 'c' } });
  if (p.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const config = loadSidecarConfig(required('sidecar', p, 'config'));
  checkSidecarMaterial(config); // bad certificates or keys: exit 2 before anything starts
  const sidecar =
    (config.workers ?? 1) > 1
      ? await startClusterSidecar(config, { logSink: lineAtomicSink() })
      : await startSidecar(config);
  return waitForSignals(sidecar);
}

/** Resolves with exit code 0 once SIGTERM/SIGINT has drained the sidecar; SIGHUP reloads TLS. */
export function waitForSignals(s: { reloadTls(): void; shutdown(): Promise<void> }): Promise<number> {
  return new Promise((resolve) => {
    const onHup = (): void => s.reloadTls();
    const onStop = (): void => {
      process.off('SIGHUP', onHup);
      // A second signal while draining cuts the drain short.
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(1));
      void s.shutdown().then(() => resolve(0));
    };
    process.on('SIGHUP', onHup);
    process.once('SIGTERM', onStop);
    process.once('SIGINT', onStop);
  });
}
