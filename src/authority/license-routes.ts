/**
 * Admin routes that change or read services and licenses (SPEC §5 table): register/list services,
 * grant, list (paginated), show, renew, revoke, revoke by subject, declarative apply. Each change
 * is one Licensing call (one durable transaction with its audit entry) and one log line; the
 * reply is sent only after the commit.
 */
import { ConfigError } from '../errors.js';
import {
  parseDeclarative,
  parseDeclarativeYaml,
  parseLicenseSpec,
  type DeclarativeFile,
} from '../config/declarative.js';
import { formatDuration, formatTime, MAX_LICENSE_LIFETIME } from '../config/duration.js';
import { duration, name, object, optional, required, string, subjectPattern } from '../config/schema.js';
import { badRequest } from './api-error.js';
import { licenseView, type ApiDeps } from './deps.js';
import type { BodySpec, Reply } from './http-io.js';
import { configErrorToApi, problemsDetail, validateInput } from './input.js';
import { licenseState, type LicenseRecord, type LicenseState, type ServiceRecord } from './model.js';
import type { RequestContext, Route } from './router.js';

const JSON_BODY: BodySpec = { types: ['json'], required: true };
const OPTIONAL_JSON: BodySpec = { types: ['json'], required: false };
const STATES: readonly LicenseState[] = ['pending', 'active', 'expired', 'revoked'];
const REASON = string({ maxLength: 1024 });

const renewSchema = object({
  ttl: optional(duration({ min: 1_000, max: MAX_LICENSE_LIFETIME })),
  reason: optional(REASON),
});
const revokeSchema = object({ reason: optional(REASON) });
const revokeBySubjectSchema = object({
  subject: required(subjectPattern()),
  service: optional(name()),
  reason: optional(REASON),
});

/** Largest page of GET /v1/licenses, and the page size when `limit` is absent. */
export const MAX_PAGE = 1000;
export const DEFAULT_PAGE = 100;

const jsonValue = (ctx: RequestContext): unknown => (ctx.body?.type === 'json' ? ctx.body.value : undefined);

function serviceJson(s: ServiceRecord): { name: string; ports: ServiceRecord['ports']; createdAt: string } {
  return { name: s.name, ports: s.ports, createdAt: formatTime(s.createdAt) };
}

function licenseFields(l: LicenseRecord): Record<string, unknown> {
  return { license: l.id, subject: l.subject, port: `${l.service}/${l.port}` };
}

/** Parse a thrown ConfigError as a 400; anything else passes through. */
function asApiError(err: unknown): unknown {
  return err instanceof ConfigError ? configErrorToApi(err) : err;
}

export function serviceRoutes(d: ApiDeps): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/v1/services',
      role: 'any',
      handle: () => ({ status: 200, body: { services: d.licensing.listServices().map(serviceJson) } }),
    },
    {
      method: 'POST',
      pattern: '/v1/services',
      role: 'admin',
      body: JSON_BODY,
      handle: (ctx) => {
        const value = jsonValue(ctx);
        if (typeof value !== 'object' || value === null || Array.isArray(value))
          throw badRequest(
            'the body must be a JSON object {"name": ..., "ports": [{"name": ..., "protocol": "tcp"|"http"}]}',
          );
        let decl: DeclarativeFile;
        try {
          decl = parseDeclarative({ services: [value] }, 'body');
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          // The body is one service; its problems read `ports[0].name`, not `services[0].ports[0].name`.
          const problems = err.problems.map((p) => ({ ...p, path: p.path.replace(/^services\[0\]\.?/, '') }));
          throw badRequest(problemsDetail(problems));
        }
        const svc = decl.services[0]!;
        const outcome = d.licensing.putService(svc, ctx.identity);
        if (outcome !== 'unchanged')
          d.log.info(`service ${outcome}`, {
            service: svc.name,
            ports: svc.ports.map((p) => p.name),
            actor: ctx.identity,
          });
        const rec = d.licensing.listServices().find((s) => s.name === svc.name)!;
        return { status: outcome === 'created' ? 201 : 200, body: { ...serviceJson(rec), outcome } };
      },
    },
  ];
}

export function licenseRoutes(d: ApiDeps): Route[] {
  return [
    {
      method: 'POST',
      pattern: '/v1/licenses',
      role: 'admin',
      body: JSON_BODY,
      handle: (ctx) => {
        let spec;
        try {
          spec = parseLicenseSpec(jsonValue(ctx), 'body');
        } catch (err) {
          throw asApiError(err);
        }
        const l = d.licensing.grant(spec, ctx.identity);
        d.log.info('license granted', {
          ...licenseFields(l),
          expiresAt: formatTime(l.expiresAt),
          ttl: formatDuration(l.ttl),
          actor: ctx.identity,
          reason: l.reason,
        });
        return { status: 201, body: licenseView(d, l), headers: { location: `/v1/licenses/${l.id}` } };
      },
    },
    {
      method: 'GET',
      pattern: '/v1/licenses',
      role: 'admin',
      query: ['service', 'subject', 'state', 'limit', 'after'],
      handle: (ctx) => listLicenses(d, ctx),
    },
    {
      method: 'GET',
      pattern: '/v1/licenses/:id',
      role: 'admin',
      handle: (ctx) => ({ status: 200, body: licenseView(d, d.licensing.get(ctx.params.id!)) }),
    },
    {
      method: 'POST',
      pattern: '/v1/licenses/:id/renew',
      role: 'admin',
      body: OPTIONAL_JSON,
      handle: (ctx) => {
        const opts = validateInput(renewSchema, jsonValue(ctx) ?? {});
        const before = d.licensing.get(ctx.params.id!);
        const l = d.licensing.renew(before.id, ctx.identity, opts);
        d.metrics.renewed('manual');
        d.log.info('license renewed', {
          ...licenseFields(l),
          from: formatTime(before.expiresAt),
          to: formatTime(l.expiresAt),
          actor: ctx.identity,
          reason: opts.reason ?? null,
        });
        return { status: 200, body: licenseView(d, l) };
      },
    },
    {
      method: 'POST',
      pattern: '/v1/licenses/:id/revoke',
      role: 'admin',
      body: OPTIONAL_JSON,
      handle: (ctx) => {
        const { reason } = validateInput(revokeSchema, jsonValue(ctx) ?? {});
        const before = d.licensing.get(ctx.params.id!);
        // Revoking twice is not an error: the answer is the revoked license either way.
        if (before.revokedAt !== null) return { status: 200, body: licenseView(d, before) };
        const l = d.licensing.revoke(before.id, ctx.identity, reason ?? null);
        d.metrics.revoked();
        d.log.info('license revoked', { ...licenseFields(l), actor: ctx.identity, reason: reason ?? null });
        return { status: 200, body: licenseView(d, l) };
      },
    },
    {
      method: 'POST',
      pattern: '/v1/revoke',
      role: 'admin',
      body: JSON_BODY,
      handle: (ctx) => {
        const { subject, service, reason } = validateInput(revokeBySubjectSchema, jsonValue(ctx));
        if (service !== undefined && !d.licensing.listServices().some((s) => s.name === service)) {
          const known =
            d.licensing
              .listServices()
              .map((s) => s.name)
              .join(', ') || 'none';
          throw badRequest(`service: unknown service "${service}"; known services: ${known}`);
        }
        const revoked = d.licensing.revokeBySubject(subject, ctx.identity, {
          ...(service !== undefined ? { service } : {}),
          reason: reason ?? null,
        });
        d.metrics.revoked(revoked.length);
        for (const l of revoked)
          d.log.info('license revoked', {
            ...licenseFields(l),
            actor: ctx.identity,
            reason: reason ?? null,
            bySubject: subject,
          });
        const now = d.clock.now();
        return { status: 200, body: { revoked: revoked.map((l) => licenseView(d, l, now)) } };
      },
    },
    {
      method: 'POST',
      pattern: '/v1/apply',
      role: 'admin',
      body: { types: ['json', 'yaml'], required: true },
      handle: (ctx) => {
        let decl: DeclarativeFile;
        try {
          decl =
            ctx.body?.type === 'yaml'
              ? parseDeclarativeYaml(ctx.body.text, 'body')
              : parseDeclarative(jsonValue(ctx), 'body');
        } catch (err) {
          throw asApiError(err);
        }
        const result = d.licensing.apply(decl, ctx.identity);
        const changes = result.created.length + result.changed.length;
        d.log.info(changes === 0 ? 'apply: nothing changed' : 'apply', {
          created: result.created,
          changed: result.changed,
          unchanged: result.unchanged.length,
          actor: ctx.identity,
        });
        return { status: 200, body: { ...result, version: d.licensing.version() } };
      },
    },
  ];
}

/** Rows read per query while filtering by state. */
const STATE_SCAN_CHUNK = 500;
/** Rows read at most by one list request filtered by state (see listLicenses). */
export const STATE_SCAN_ROWS = 5_000;

/**
 * GET /v1/licenses: keyset pagination by id. The state filter depends on the clock, so the store
 * is read in chunks and filtered until a page is full or STATE_SCAN_ROWS were read; `next` is the
 * last id returned (or read) when more may follow.
 */
function listLicenses(d: ApiDeps, ctx: RequestContext): Reply {
  const q = ctx.query;
  const limit = q.integer('limit', { min: 1, max: MAX_PAGE, fallback: DEFAULT_PAGE });
  const service = q.name('service');
  const subject = q.subject('subject');
  const state = q.oneOf('state', STATES);
  let cursor = q.get('after');
  const now = d.clock.now();
  const page: LicenseRecord[] = [];
  // A state is not a column (it depends on the time): rows are read in chunks and filtered, at most
  // STATE_SCAN_ROWS per request. A page cut short by that ends at the last row read, and `next`
  // goes on from there, so a rare state in a large table costs several short requests, not one that
  // holds the event loop.
  const chunk = state === undefined ? limit + 1 : Math.max(limit + 1, STATE_SCAN_CHUNK);
  let scanned = 0;
  let cut: string | null = null;
  for (;;) {
    const batch = d.licensing.list({
      ...(service !== undefined ? { service } : {}),
      ...(subject !== undefined ? { subject } : {}),
      ...(cursor !== undefined ? { after: cursor } : {}),
      limit: chunk,
    });
    for (const l of batch) if (state === undefined || licenseState(l, now) === state) page.push(l);
    if (page.length > limit || batch.length < chunk) break;
    cursor = batch[batch.length - 1]!.id;
    scanned += batch.length;
    if (scanned >= STATE_SCAN_ROWS) {
      cut = cursor;
      break;
    }
  }
  const more = page.length > limit;
  const shown = page.slice(0, limit);
  return {
    status: 200,
    body: {
      licenses: shown.map((l) => licenseView(d, l, now)),
      next: more ? shown[shown.length - 1]!.id : cut,
    },
  };
}
