/**
 * The authority API of SPEC §5, assembled: admin routes (services, licenses, apply), sync routes
 * (bundle, usage) and the read-only views of sidecars and the audit log.
 */
import { formatTime } from '../config/duration.js';
import type { ApiDeps } from './deps.js';
import { licenseRoutes, serviceRoutes } from './license-routes.js';
import type { AuditEntry } from './model.js';
import type { Route } from './router.js';
import { syncRoutes } from './sync-routes.js';

/** Largest page of GET /v1/audit, and the page size when `limit` is absent. */
export const MAX_AUDIT_PAGE = 1000;
export const DEFAULT_AUDIT_PAGE = 100;

/** An audit entry as the API shows it. */
export function auditJson(e: AuditEntry): Record<string, unknown> {
  return {
    id: e.id,
    at: formatTime(e.at),
    actor: e.actor,
    action: e.action,
    license: e.licenseId,
    subject: e.subject,
    service: e.service,
    port: e.port,
    reason: e.reason,
    detail: e.detail,
  };
}

export function createRoutes(d: ApiDeps): Route[] {
  return [...serviceRoutes(d), ...licenseRoutes(d), ...syncRoutes(d), ...viewRoutes(d)];
}

function viewRoutes(d: ApiDeps): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/v1/nodes',
      role: 'admin',
      handle: () => ({ status: 200, body: { version: d.licensing.version(), nodes: d.nodes.list() } }),
    },
    {
      method: 'GET',
      pattern: '/v1/audit',
      role: 'admin',
      query: ['since', 'limit', 'before'],
      handle: (ctx) => {
        const q = ctx.query;
        const limit = q.integer('limit', { min: 1, max: MAX_AUDIT_PAGE, fallback: DEFAULT_AUDIT_PAGE });
        const since = q.time('since');
        const before =
          q.get('before') === undefined
            ? undefined
            : q.integer('before', { min: 1, max: Number.MAX_SAFE_INTEGER, fallback: 0 });
        const rows = d.store.listAudit({
          limit: limit + 1,
          ...(since !== undefined ? { since } : {}),
          ...(before !== undefined ? { before } : {}),
        });
        const shown = rows.slice(0, limit);
        return {
          status: 200,
          body: {
            entries: shown.map(auditJson),
            next: rows.length > limit ? shown[shown.length - 1]!.id : null,
          },
        };
      },
    },
  ];
}
