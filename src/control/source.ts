/**
 * Where the sidecar's bundles come from: a signed bundle file (`authority.bundleFile`) or the
 * authority (`authority.url`). Either way this is the only writer of the policy store, and it
 * reports to telemetry; the data path never waits on it.
 */
import type { Clock } from '../clock.js';
import type { SidecarConfig } from '../config/types.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { loadEd25519PublicKey } from '../policy/bundle.js';
import type { PolicyStore } from '../policy/store.js';
import type { Readiness } from '../telemetry/admin-server.js';
import type { SidecarMetrics } from '../telemetry/metrics.js';
import type { UsageTracker } from '../telemetry/usage.js';
import type { KeyObject } from 'node:crypto';
import type { TlsMaterialStore } from '../dataplane/tls-context.js';
import { AuthoritySync } from './authority-sync.js';
import { BundleFileSource, bundleRejectReason } from './bundle-file.js';
import { watchExpiringInUse } from './expiry-warnings.js';

export interface SyncState {
  /** Epoch ms of the last successful load or sync (a 304 counts), or null. */
  lastSuccess: number | null;
  source: string;
  lastError: string | null;
}

export interface BundleSource {
  readiness(): Readiness;
  state(): SyncState;
  /** Whether anything may still renew this license (the authority, unless it said it cannot). */
  mayRenew(licenseId: string): boolean;
  /** Stop; resolves once the last usage report was sent or given up (authority sources). */
  close(): Promise<void> | void;
}

export interface BundleSourceDeps {
  config: SidecarConfig;
  policy: PolicyStore;
  clock: Clock;
  log: Logger;
  metrics: SidecarMetrics;
  usage: UsageTracker;
  tls: TlsMaterialStore;
}

/**
 * Start the configured source. A bundle file that is missing or invalid at start does not stop the
 * sidecar: it enforces the empty bundle (deny everything), is not ready, and keeps watching.
 */
export async function startBundleSource(deps: BundleSourceDeps): Promise<BundleSource> {
  const { config, policy, clock, log, metrics } = deps;
  const publicKey = loadEd25519PublicKey(config.authority.signingPublicKey);
  const file = config.authority.bundleFile;
  if (file === undefined) return startAuthoritySync(deps, publicKey);
  const state: SyncState = { lastSuccess: null, source: file, lastError: null };
  const src = new BundleFileSource({
    file,
    publicKey,
    store: policy,
    clock,
    log,
    onLoaded: (e) => {
      state.lastSuccess = e.at;
      state.lastError = null;
      metrics.bundleLoaded(e.version, e.at);
    },
    onRejected: (e) => {
      state.lastError = e.error.message;
      metrics.syncFailed(e.reason);
    },
  });
  try {
    await src.start();
  } catch (err) {
    state.lastError = errorMessage(err);
    metrics.syncFailed(bundleRejectReason(err));
    log.error('no valid bundle at start: enforcing deny-all until one arrives', { error: state.lastError });
    src.watch();
  }
  const warnings = watchExpiringInUse({
    policy,
    usage: deps.usage,
    clock,
    log,
    warnBefore: config.warnBefore,
  });
  return {
    state: () => state,
    // A bundle file is renewed by nobody: whatever expires, expires.
    mayRenew: () => false,
    readiness: () => {
      const reasons: string[] = [];
      if (policy.current().version === 0)
        reasons.push(`no valid bundle loaded from ${file}${state.lastError ? `: ${state.lastError}` : ''}`);
      return { ok: reasons.length === 0, reasons };
    },
    close: () => {
      warnings.close();
      src.close();
    },
  };
}

/**
 * Pull sync from the authority. Ready once a bundle is in force and the authority confirmed it
 * (a 200 or a 304) within maxStaleness; a cached bundle is enforced but is not "ready" until then.
 */
function startAuthoritySync(deps: BundleSourceDeps, publicKey: KeyObject): BundleSource {
  const { config, policy, clock } = deps;
  const sync = new AuthoritySync({ ...deps, publicKey });
  sync.start();
  const url = config.authority.url!;
  return {
    state: () => ({ lastSuccess: sync.lastSuccess, source: url, lastError: sync.lastError }),
    mayRenew: (id) => !sync.unrenewable.has(id),
    readiness: () => {
      const reasons: string[] = [];
      if (policy.current().version === 0) reasons.push(`no valid bundle yet from ${url}`);
      const last = sync.lastSuccess;
      if (last === null)
        reasons.push(`no successful sync with ${url} yet${sync.lastError ? `: ${sync.lastError}` : ''}`);
      else if (clock.now() - last > config.authority.maxStaleness)
        reasons.push(
          `last successful sync ${Math.round((clock.now() - last) / 1000)}s ago is older than maxStaleness` +
            (sync.lastError ? ` (last error: ${sync.lastError})` : ''),
        );
      return { ok: reasons.length === 0, reasons };
    },
    close: () => sync.close(),
  };
}
