/**
 * The sidecar side of the API (SPEC §4): `GET /v1/bundle` (signed bundle, ETag long poll) and
 * `POST /v1/usage` (usage and denial reports, which drive automatic renewal).
 */
import { formatDuration, formatTime } from '../config/duration.js';
import {
  arrayOf,
  integer,
  name,
  nonEmptyString,
  object,
  oneOf,
  optional,
  required,
  spiffeId,
  time,
  type Schema,
} from '../config/schema.js';
import { nodeName } from '../config/sidecar.js';
import { DENY_REASONS } from '../policy/types.js';
import { badRequest, conflict } from './api-error.js';
import type { ApiDeps } from './deps.js';
import type { Reply } from './http-io.js';
import { checkValue, validateInput } from './input.js';
import type { BundleResult } from './metrics.js';
import { hardExpiry, licenseState, type UsageRow } from './model.js';
import type { RequestContext, Route } from './router.js';

/** Identity and origin of a sidecar's folded usage entry (telemetry/usage.ts OVERFLOW_KEY). */
const OVERFLOW = '*';

/** A caller identity in a report: a SPIFFE ID, or `*` for the sidecar's folded overflow entry. */
const reportedIdentity: Schema<string> = {
  parse: (v, path, ctx) => (v === OVERFLOW ? OVERFLOW : spiffeId().parse(v, path, ctx)),
};

/**
 * The most uses one usage entry may report: a trillion, a million a second for over ten days. A
 * sidecar reports every `reportInterval`, so a larger count is a bug or a lie.
 */
export const MAX_REPORTED_COUNT = 1e12;

const usageSchema = object({
  node: required(nodeName()),
  usage: required(
    arrayOf(
      object({
        license: required(nonEmptyString(128)),
        identity: required(reportedIdentity),
        origin: required(nonEmptyString(256)),
        lastAccess: required(time()),
        count: required(integer({ min: 0, max: MAX_REPORTED_COUNT })),
      }),
    ),
  ),
  denials: required(
    arrayOf(
      object({
        identity: optional(reportedIdentity),
        reason: required(oneOf(DENY_REASONS)),
        count: required(integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
      }),
    ),
  ),
});

/** The highest version in `If-None-Match` (`"7"`, `W/"7"`, or a list of them); undefined when none. */
export function knownVersion(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  let best: number | undefined;
  for (const part of header.split(',')) {
    const m = /^\s*(?:W\/)?"([0-9]{1,15})"\s*$/.exec(part);
    if (m) best = Math.max(best ?? 0, Number(m[1]));
  }
  return best;
}

/** Map a final status of `GET /v1/bundle` to its metric result. */
function bundleResult(status: number): BundleResult {
  if (status === 200) return '200';
  if (status === 304) return '304';
  if (status === 499) return 'aborted';
  return 'error';
}

export function syncRoutes(d: ApiDeps): Route[] {
  /**
   * Nodes warned about holding a version above the authority's, until they next sync at or below
   * it: one warning per episode, and the set holds only nodes that are ahead now.
   */
  const warnedAhead = new Set<string>();
  /** Sidecar identities and services already warned about reporting outside their entries. */
  const warnedOutOfScope = new Set<string>();
  return [
    {
      method: 'GET',
      pattern: '/v1/bundle',
      role: 'sidecar',
      query: ['node', 'services', 'wait'],
      observe: (status) => d.metrics.bundleRequest(bundleResult(status)),
      handle: (ctx) => bundle(d, ctx, warnedAhead),
    },
    {
      method: 'POST',
      pattern: '/v1/usage',
      role: 'sidecar',
      body: { types: ['json'], required: true },
      handle: (ctx) => usage(d, ctx, warnedOutOfScope),
    },
  ];
}

async function bundle(d: ApiDeps, ctx: RequestContext, warnedAhead: Set<string>): Promise<Reply> {
  const q = ctx.query;
  const node = q.parse('node', nodeName());
  if (node === undefined) throw badRequest('query parameter "node" is required');
  const services: string[] = [];
  for (const s of q.required('services').split(',')) {
    const svc = checkValue(name(), s, 'services');
    if (!services.includes(svc)) services.push(svc);
  }
  d.authorizer.requireServices(ctx.identity, services, 'pull bundles of');
  d.nodes.claim(node, ctx.identity);
  const waitMs = Math.min(
    q.integer('wait', { min: 0, max: 86_400, fallback: 0 }) * 1000,
    d.config.limits.maxWait,
  );
  const known = knownVersion(ctx.headers['if-none-match']);

  let version = d.licensing.version();
  if (known !== undefined && known > version) {
    // Answering 304 here would leave the sidecar on a bundle that this store never issued and
    // hide every later revoke behind a healthy-looking sync. Refuse loudly instead: the sidecar
    // keeps enforcing what it has, counts the failure, and goes unready after maxStaleness.
    if (!warnedAhead.has(node)) {
      // Names that never sync again stay: bounded, at the price of a repeated warning after 10,000.
      if (warnedAhead.size >= 10_000) warnedAhead.clear();
      warnedAhead.add(node);
      warnAhead(d, node, known, version);
    }
    throw conflict(
      `this sidecar holds bundle version ${known} but the authority is at ${version}: the authority's store was ` +
        `replaced or restored from an older copy. Restore the current store, or remove the sidecar's cache file and restart it to accept this authority's bundles`,
    );
  }
  warnedAhead.delete(node);
  if (known !== undefined && known === version) {
    if (waitMs > 0) {
      const outcome = await d.longPoll.wait(known, waitMs, ctx.signal);
      // Nobody to answer; the server logs it as 499 and counts it as aborted.
      if (outcome === 'aborted') return { status: 499 };
      version = d.licensing.version();
    }
    if (known >= version) {
      d.nodes.synced(node, ctx.identity, services, known);
      return { status: 304, headers: { etag: `"${version}"` } };
    }
  }
  const built = d.bundles.get(node, services);
  d.nodes.synced(node, ctx.identity, services, built.version);
  return {
    status: 200,
    raw: built.body,
    headers: { etag: `"${built.version}"`, 'cache-control': 'no-cache' },
  };
}

function warnAhead(d: ApiDeps, node: string, known: number, version: number): void {
  d.log.warn(
    'a sidecar holds a bundle version above the authority (was the database restored?); refusing its bundle requests with 409',
    {
      node,
      sidecarVersion: known,
      authorityVersion: version,
    },
  );
}

function usage(d: ApiDeps, ctx: RequestContext, warnedOutOfScope: Set<string>): Reply {
  const report = validateInput(usageSchema, ctx.body?.type === 'json' ? ctx.body.value : undefined);
  d.nodes.claim(report.node, ctx.identity);
  // A sidecar bound to some services reports use of their licenses only: anything else would let
  // its certificate keep other services' licenses alive. Such entries are left out (and named in
  // the answer), not the whole report, so that a sidecar whose binding was narrowed under it still
  // renews the licenses it may. (Unknown license ids are ignored later, as always.)
  const allowed = d.authorizer.sidecarServices(ctx.identity);
  const ignored = new Set<string>();
  const rows: UsageRow[] = [];
  for (const u of report.usage) {
    if (allowed !== null) {
      const service = d.store.getLicense(u.license)?.service;
      if (service !== undefined && !allowed.has(service)) {
        ignored.add(u.license);
        warnOutOfScope(d, warnedOutOfScope, ctx.identity, service, allowed);
        continue;
      }
    }
    rows.push({
      licenseId: u.license,
      identity: u.identity,
      origin: u.origin,
      at: u.lastAccess,
      count: u.count,
    });
  }
  const denials = report.denials.map((x) => ({
    identity: x.identity ?? null,
    reason: x.reason,
    count: x.count,
  }));
  const { renewed } = d.licensing.ingestUsage({ usage: rows, denials }, ctx.identity);
  d.nodes.reported(report.node, ctx.identity, denials);
  d.metrics.renewed('auto', renewed.length);
  if (renewed.length > 0)
    d.log.info('licenses renewed automatically', {
      node: report.node,
      licenses: renewed,
      actor: ctx.identity,
    });
  return {
    status: 200,
    body: {
      renewed,
      version: d.licensing.version(),
      expiring: expiring(d, rows),
      ...(ignored.size > 0 ? { ignored: [...ignored] } : {}),
    },
  };
}

/** Warn once per (identity, service); `warned` is cleared when it grows past a bound. */
function warnOutOfScope(
  d: ApiDeps,
  warned: Set<string>,
  identity: string,
  service: string,
  allowed: ReadonlySet<string>,
): void {
  const key = `${identity} ${service}`;
  if (warned.has(key)) return;
  if (warned.size >= 10_000) warned.clear();
  warned.add(key);
  d.log.warn(
    "a sidecar reported use of licenses of a service its sidecars entries do not allow; ignored (they are not renewed by its reports). Add the service to its entry, or fix the sidecar's ports",
    { identity, service, allowed: [...allowed].sort() },
  );
}

/**
 * Licenses in this report that are in use, expire within warnBefore and cannot be renewed (max
 * lifetime reached, or autoRenew off): the sidecar logs a warning for each (SPEC §3 "never silent").
 */
function expiring(d: ApiDeps, rows: readonly UsageRow[]): unknown[] {
  const now = d.clock.now();
  const out: unknown[] = [];
  for (const id of new Set(rows.map((r) => r.licenseId))) {
    const l = d.store.getLicense(id);
    if (!l || licenseState(l, now) !== 'active') continue;
    if (l.expiresAt - now > d.config.defaults.warnBefore) continue;
    const capped = l.expiresAt >= hardExpiry(l);
    if (l.autoRenew && !capped) continue;
    out.push({
      id: l.id,
      subject: l.subject,
      service: l.service,
      port: l.port,
      expiresAt: formatTime(l.expiresAt),
      why: l.autoRenew ? `maximum lifetime ${formatDuration(l.maxLifetime)} reached` : 'autoRenew is off',
    });
  }
  return out;
}
