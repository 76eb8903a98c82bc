/** What the API routes work with: one object built by startAuthority, passed to every route module. */
import type { Clock } from '../clock.js';
import type { AuthorityConfig } from '../config/authority.js';
import type { Authorizer } from './auth.js';
import type { Logger } from '../log.js';
import type { BundleCache } from './bundles.js';
import type { Licensing } from './licensing.js';
import type { LongPoll } from './longpoll.js';
import type { AuthorityMetrics } from './metrics.js';
import type { LicenseJson, LicenseRecord } from './model.js';
import { licenseJson } from './model.js';
import type { NodeTracker } from './nodes.js';
import type { AuthorityStore } from './store.js';

export interface ApiDeps {
  readonly config: AuthorityConfig;
  /** Who may do what; the routes ask it which services a sidecar may name. */
  readonly authorizer: Authorizer;
  readonly licensing: Licensing;
  /** Read-only uses: the audit log. Every change goes through `licensing`. */
  readonly store: AuthorityStore;
  readonly bundles: BundleCache;
  readonly longPoll: LongPoll;
  readonly nodes: NodeTracker;
  readonly metrics: AuthorityMetrics;
  readonly clock: Clock;
  /** One line per change (grant, renew, revoke, apply...). */
  readonly log: Logger;
}

/** A license as the API shows it, with its last access. */
export function licenseView(d: ApiDeps, l: LicenseRecord, now = d.clock.now()): LicenseJson {
  const last = d.licensing.lastAccess(l.id);
  return licenseJson(l, now, last?.last, last?.total);
}
