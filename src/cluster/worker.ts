/**
 * One data-plane worker (`workers: N`): the port and outbound listeners of the config, on sockets
 * node:cluster shares between the workers, deciding against the policy the control plane sends.
 * It keeps its own PolicyStore (a swap re-checks its open flows, as in one process), its own TLS
 * material (watched, and reloaded on the control plane's SIGHUP), and its own metric cells and
 * usage tracker, which the exporter sends to the control plane off the data path.
 *
 * Lifecycle, in order: hello -> init (config + policy) -> load TLS -> listeners -> bind ->
 * `listening` -> serve (policy, reload-tls, telemetry every second) -> drain -> final telemetry
 * -> `drained` -> exit 0. Until the first policy arrives nothing is bound; a policy that cannot be
 * compiled keeps the previous one (never an empty, never an open one) and is reported.
 */
import { systemClock, type Clock } from '../clock.js';
import type { HostPort, SidecarConfig } from '../config/types.js';
import { bindDataPlane, closeDataPlane, createDataPlane } from '../dataplane/listeners.js';
import { TlsMaterialStore } from '../dataplane/tls-context.js';
import { errorMessage, PortlicenseError } from '../errors.js';
import { BatchedSink, createLogger, type Logger, type LogSink } from '../log.js';
import { emptySnapshot } from '../policy/snapshot.js';
import { PolicyStore } from '../policy/store.js';
import { createAccessLogger } from '../telemetry/access-log.js';
import { createSidecarMetrics } from '../telemetry/metrics.js';
import { UsageTracker } from '../telemetry/usage.js';
import {
  asToWorker,
  snapshotFromPayload,
  snapshotFromPayloadAsync,
  type PolicyPayload,
  type ToPrimary,
  type ToWorker,
} from './messages.js';
import { TelemetryExporter } from './telemetry-export.js';
import { withFields } from './log-sink.js';

/** The IPC channel to the control plane (process.send / process.on('message') in a real worker). */
export interface WorkerChannel {
  send(msg: ToPrimary, done?: () => void): void;
  onMessage(cb: (msg: unknown) => void): void;
}

export interface WorkerOptions {
  channel: WorkerChannel;
  /** node:cluster's worker id, for log lines (access-log lines included). */
  id: number;
  logSink?: LogSink;
  clock?: Clock;
  /** How often telemetry is sent. Default 1 s. */
  flushMs?: number;
  /** End the process (process.exit in a real worker). */
  exit: (code: number) => void;
}

/** Default interval between telemetry batches. */
export const FLUSH_MS = 1_000;

/** Start a worker: say hello, then follow the control plane's messages. */
export function runWorker(opts: WorkerOptions): void {
  const { channel } = opts;
  let running: Promise<RunningWorker> | undefined;
  channel.onMessage((raw) => {
    const msg = asToWorker(raw);
    if (msg === null) return;
    if (msg.t === 'ping') {
      channel.send({ pl: 1, t: 'pong' });
      return;
    }
    if (msg.t === 'init') {
      running ??= startWorker(opts, msg).catch((err: unknown) => {
        const code = err instanceof PortlicenseError ? err.code : 'INTERNAL';
        channel.send({ pl: 1, t: 'fatal', code, error: errorMessage(err) }, () => opts.exit(1));
        return new Promise<RunningWorker>(() => {});
      });
      return;
    }
    // Told to stop before it had anything to serve: nothing to drain.
    if (running === undefined) {
      if (msg.t === 'drain') opts.exit(0);
      return;
    }
    void running.then((w) => w.handle(msg));
  });
  channel.send({ pl: 1, t: 'hello' });
}

interface RunningWorker {
  handle(msg: ToWorker): void;
}

/**
 * A worker's share of a port's or an outbound entry's `maxConnections`, so the node-wide cap stays
 * what the config says.
 */
export function workerShare(maxConnections: number, workers: number): number {
  return Math.max(1, Math.ceil(maxConnections / Math.max(1, workers)));
}

async function startWorker(
  opts: WorkerOptions,
  init: Extract<ToWorker, { t: 'init' }>,
): Promise<RunningWorker> {
  const { channel } = opts;
  const clock = opts.clock ?? systemClock;
  const config: SidecarConfig = init.config;
  const log: Logger = createLogger({
    level: config.log.level,
    ...(opts.logSink ? { sink: opts.logSink } : {}),
    fields: { node: config.node, worker: opts.id },
  });
  const policy = new PolicyStore({ initial: snapshotFromPayload(init.policy), log });
  const tls = TlsMaterialStore.load(config.tls, log.child({ component: 'tls' }));
  const usage = new UsageTracker({ policy });
  const metrics = createSidecarMetrics({ policy, usage, clock, defaultMetrics: false });
  // Every worker writes to the same stdout: its access-log lines say which one it is, as its other lines do.
  const accessLog = createAccessLogger(
    withFields(opts.logSink ?? new BatchedSink(), { worker: opts.id }),
    clock,
  );
  const workers = config.workers ?? 1;
  const ticketKeys = Buffer.from(init.ticketKeys, 'base64');

  const dp = createDataPlane({
    config,
    policy,
    clock,
    tls,
    log,
    metrics,
    usage,
    accessLog,
    connectionShare: (n) => workerShare(n, workers),
    ticketKeys,
  });
  const { ports, outbound } = dp;
  let at: { ports: HostPort[]; outbound: HostPort[] };
  try {
    at = await bindDataPlane(dp);
  } catch (err) {
    await closeDataPlane(dp);
    tls.close();
    throw err;
  }
  tls.watch();

  const exporter = new TelemetryExporter({
    families: metrics.families,
    usage,
    outbound: () => outbound.map((o) => ({ name: o.outbound.name, stats: () => o.stats() })),
  });
  const flush = (): void => {
    const batch = exporter.take(clock.now());
    if (batch !== null) channel.send({ pl: 1, t: 'telemetry', batch });
  };
  const timer = setInterval(flush, opts.flushMs ?? FLUSH_MS);
  timer.unref();

  channel.send({
    pl: 1,
    t: 'listening',
    ports: ports.map((p, i) => ({ key: p.port.key, at: at.ports[i]! })),
    outbound: outbound.map((o, i) => ({ key: o.outbound.name, at: at.outbound[i]! })),
    version: policy.current().version,
  });
  log.debug('worker listening', { pid: process.pid, bundleVersion: policy.current().version });

  let draining = false;
  // Policies are compiled in slices while this worker serves; they are applied in the order they
  // came, and one that is superseded while it compiles is dropped for the newer one.
  let nextPolicy: PolicyPayload | null = null;
  let compiling = false;
  const applyPolicies = async (): Promise<void> => {
    compiling = true;
    while (nextPolicy !== null) {
      const p = nextPolicy;
      nextPolicy = null;
      try {
        const snapshot = await snapshotFromPayloadAsync(p);
        if (nextPolicy !== null) continue;
        policy.swap(snapshot);
        channel.send({ pl: 1, t: 'policy-applied', version: p.version });
      } catch (err) {
        // The control plane enforces this version (it compiled it): serving the previous one here
        // would let through what it revoked, on this worker's share of the connections. Deny all and
        // cut the open flows at once, then exit: the control plane starts this worker again with the
        // current bundle (and keeps the node unready while it cannot).
        policy.swap(emptySnapshot());
        log.error('bundle from the control plane rejected; denying everything and exiting, to be restarted', {
          version: p.version,
          error: errorMessage(err),
        });
        const rejected: ToPrimary = {
          pl: 1,
          t: 'policy-rejected',
          version: p.version,
          error: errorMessage(err),
        };
        // Draining already: it exits (0) when that is done.
        if (draining) channel.send(rejected);
        else {
          clearInterval(timer);
          flush();
          channel.send(rejected, () => opts.exit(1));
        }
        return;
      }
    }
    compiling = false;
  };
  return {
    handle(msg) {
      switch (msg.t) {
        case 'policy': {
          nextPolicy = msg.policy;
          if (!compiling) void applyPolicies();
          return;
        }
        case 'reload-tls': {
          const r = tls.reload();
          if (!r.ok) log.warn('certificate reload failed; keeping the current ones', { error: r.error });
          return;
        }
        case 'drain': {
          if (draining) return;
          draining = true;
          clearInterval(timer);
          void Promise.allSettled([
            ...ports.map((p) => p.drain(msg.deadline)),
            ...outbound.map((o) => o.drain(msg.deadline)),
          ]).then(() => {
            tls.close();
            flush();
            channel.send({ pl: 1, t: 'drained' }, () => opts.exit(0));
          });
          return;
        }
        case 'init':
        case 'ping':
          return;
      }
    },
  };
}
