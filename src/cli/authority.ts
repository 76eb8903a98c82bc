/**
 * `portlicense authority --config FILE`: the licensing authority process. Lifecycle, in order:
 * load config -> load TLS material and the signing key (bad ones are config errors: exit 2,
 * nothing started) -> open the store -> licensing, bundles, long polls, metrics -> bind the API
 * (exit 1 naming the address when it cannot) -> admin server -> expiry ticker -> ready.
 * SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the TLS certificate. Shutdown runs backwards.
 */
import { Authorizer } from '../authority/auth.js';
import { BundleCache } from '../authority/bundles.js';
import type { ApiDeps } from '../authority/deps.js';
import { EXPIRY_INTERVAL_MS, startExpiryTicker } from '../authority/expiry.js';
import { Licensing } from '../authority/licensing.js';
import { LongPoll } from '../authority/longpoll.js';
import { createAuthorityMetrics } from '../authority/metrics.js';
import { NodeTracker, staleAfter } from '../authority/nodes.js';
import { Router } from '../authority/router.js';
import { createRoutes } from '../authority/routes.js';
import { AuthorityServer } from '../authority/server.js';
import { SqliteStore } from '../authority/sqlite-store.js';
import { systemClock, type Clock } from '../clock.js';
import { loadAuthorityConfig, type AuthorityConfig } from '../config/authority.js';
import type { HostPort } from '../config/types.js';
import { createLogger, type LogSink } from '../log.js';
import { formatHostPort, startAdminServer, type AdminServer } from '../telemetry/admin-server.js';
import { errorMessage } from '../errors.js';
import { parseFlags, required } from './args.js';
import { authorityMaterial } from './material.js';
import { waitForSignals } from './sidecar.js';

const HELP = `Usage: portlicense authority --config FILE

Runs the licensing authority: the mTLS API that stores services and licenses, signs bundles for
sidecars (long poll), ingests usage reports and renews licenses in use, plus an admin listener
with /metrics, /healthz and /readyz. Signals: SIGHUP reloads the TLS certificate; SIGTERM/SIGINT
answer held long polls, finish requests in flight (up to drainTimeout) and exit 0.
`;

export interface AuthorityOptions {
  clock?: Clock;
  logSink?: LogSink;
  /** How often expiries are written to the audit log (default 1 s). */
  expiryInterval?: number;
  /** Register prom-client's default process metrics (default true). */
  defaultMetrics?: boolean;
}

export interface RunningAuthority {
  readonly config: AuthorityConfig;
  /** The bound API address (the real port when listen.port was 0). */
  readonly address: HostPort;
  readonly adminAddress: HostPort;
  readonly licensing: Licensing;
  /** Long polls held right now. */
  heldPolls(): number;
  reloadTls(): void;
  /** Release long polls, drain, close the store. Idempotent. */
  shutdown(): Promise<void>;
}

export async function startAuthority(
  config: AuthorityConfig,
  opts: AuthorityOptions = {},
): Promise<RunningAuthority> {
  const clock = opts.clock ?? systemClock;
  const log = createLogger({
    level: config.log.level,
    ...(opts.logSink ? { sink: opts.logSink } : {}),
    fields: { component: 'authority' },
  });
  const material = authorityMaterial(config);
  const store = new SqliteStore(config.store.sqlite);
  let server: AuthorityServer | undefined;
  let admin: AdminServer | undefined;
  try {
    const licensing = new Licensing(store, config.defaults, clock, log.child({ component: 'licensing' }));
    const longPoll = new LongPoll(clock);
    licensing.onChange((v) => longPoll.notify(v));
    const nodes = new NodeTracker(
      store,
      clock,
      staleAfter(config.limits.maxWait),
      log,
      config.limits.forgetNodesAfter,
    );
    const metrics = createAuthorityMetrics({
      clock,
      licenses: () => licensing.list(),
      expiringCount: () => licensing.expiringCount(),
      sidecarCounts: () => nodes.counts(),
      ...(opts.defaultMetrics === false ? { defaultMetrics: false } : {}),
    });
    const authorizer = new Authorizer(config.trustDomains, config.admins, config.sidecars);
    const deps: ApiDeps = {
      config,
      authorizer,
      licensing,
      store,
      bundles: new BundleCache(licensing, material.signingKey, clock, undefined, (id, error) =>
        log.error('license left out of bundles: sidecars would refuse it; revoke and re-grant it', {
          license: id,
          error,
        }),
      ),
      longPoll,
      nodes,
      metrics,
      clock,
      log,
    };
    const srv = new AuthorityServer({
      listen: config.listen,
      tls: material.tls,
      handshakeTimeout: config.tls.handshakeTimeout,
      limits: config.limits,
      authorizer,
      router: new Router(createRoutes(deps)),
      log: log.child({ component: 'api' }),
    });
    server = srv;
    const address = await srv.listen();
    let stopping: Promise<void> | undefined;
    const adm = await startAdminServer({
      listen: config.admin.listen,
      registry: metrics.registry,
      ready: () => {
        if (stopping) return { ok: false, reasons: ['shutting down'] };
        try {
          store.bundleVersion();
          return { ok: true, reasons: [] };
        } catch (err) {
          return { ok: false, reasons: [`store ${config.store.sqlite}: ${errorMessage(err)}`] };
        }
      },
      log: log.child({ component: 'admin' }),
    });
    admin = adm;
    const ticker = startExpiryTicker(licensing, clock, log, opts.expiryInterval ?? EXPIRY_INTERVAL_MS, (n) =>
      metrics.renewed('auto', n),
    );
    const nodeFlush = nodes.startFlushing();
    log.info('authority started', {
      address: formatHostPort(address),
      admin: formatHostPort(adm.address),
      store: config.store.sqlite,
      bundleVersion: licensing.version(),
    });

    return {
      config,
      address,
      adminAddress: adm.address,
      licensing,
      heldPolls: () => longPoll.size,
      reloadTls: () => {
        try {
          const next = authorityMaterial(config).tls;
          srv.setTls(next);
          log.info('certificates reloaded', { cert: config.tls.cert });
        } catch (err) {
          log.error('certificate reload failed; keeping the current ones', { error: errorMessage(err) });
        }
      },
      shutdown: () =>
        (stopping ??= (async () => {
          log.info('draining', { deadlineMs: config.drainTimeout, heldPolls: longPoll.size });
          ticker.stop();
          const closed = srv.close(config.drainTimeout);
          // Held polls answer 304 at once, with Connection: close, so sidecars reconnect elsewhere.
          longPoll.close();
          await closed;
          await adm.close();
          nodeFlush.stop();
          store.close();
          log.info('authority stopped');
        })()),
    };
  } catch (err) {
    await server?.close(0);
    await admin?.close();
    store.close();
    throw err;
  }
}

export async function authorityCommand(argv: string[]): Promise<number> {
  const p = parseFlags('authority', argv, { config: { type: 'string', short: 'c' } });
  if (p.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const config = loadAuthorityConfig(required('authority', p, 'config'));
  const authority = await startAuthority(config);
  return waitForSignals(authority);
}
