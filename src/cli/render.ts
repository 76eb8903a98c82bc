/**
 * Human output of the authority client verbs: license tables and details, services, the audit log
 * and apply results. Absolute times stay RFC 3339 (copyable into --since or --not-before) with a
 * relative hint beside them; `--json` bypasses all of this and prints the API's JSON.
 */
import type { LicenseJson } from '../authority/model.js';
import { formatTime, parseDuration, parseTime } from '../config/duration.js';
import { table } from './status-render.js';

/** A service as `GET /v1/services` lists it. */
export interface ServiceJson {
  name: string;
  ports: Array<{ name: string; protocol: string }>;
}

/** An audit entry as `GET /v1/audit` lists it. */
export interface AuditEntryJson {
  id: number;
  at: string;
  actor: string;
  action: string;
  licenseId?: string | null;
  /** The same as licenseId, under the name some authority versions use. */
  license?: string | null;
  subject: string | null;
  service: string | null;
  port: string | null;
  reason: string | null;
  detail: Record<string, unknown> | null;
}

/** `POST /v1/apply`'s answer: one description per item (or an object the authority chose). */
export interface ApplyResultJson {
  created: unknown[];
  changed: unknown[];
  unchanged: unknown[];
}

/** `90s`, `15m`, `5h`, `3d`: the rough size of a span, for "in 5h" and "3d ago". */
export function span(ms: number): string {
  // Rounded before the unit is chosen: a 2-minute ttl read back 0.1 s later is "2m", not "120s".
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.round(s / 3600);
  if (h < 48) return `${h}h`;
  return `${Math.round(s / 86_400)}d`;
}

/** `in 5h`, `3d ago` or `now`, relative to `now`; the input unchanged when it is not a time. */
export function relative(time: string, now: number): string {
  let t: number;
  try {
    t = parseTime(time);
  } catch {
    return time;
  }
  if (Math.abs(t - now) < 1000) return 'now';
  return t > now ? `in ${span(t - now)}` : `${span(now - t)} ago`;
}

/** `2026-11-28T10:00:00Z (in 5h)` */
export function timeWithHint(time: string | null | undefined, now: number): string {
  if (!time) return '-';
  return `${time} (${relative(time, now)})`;
}

function lastAccessCell(l: LicenseJson, now: number): string {
  if (!l.lastAccess) return 'never';
  return `${relative(l.lastAccess.at, now)}, ${l.lastAccess.count}x`;
}

/** The license table of `license list` and `license revoke --subject`. */
export function renderLicenseTable(licenses: readonly LicenseJson[], now: number): string {
  return table([
    ['ID', 'SUBJECT', 'PORT', 'STATE', 'EXPIRES', 'LAST ACCESS'],
    ...licenses.map((l) => [
      l.id,
      l.subject,
      `${l.service}/${l.port}`,
      l.state,
      timeWithHint(l.expiresAt, now),
      lastAccessCell(l, now),
    ]),
  ]);
}

/** The hard end of a license: createdAt + maxLifetime, or undefined when either does not parse. */
function hardExpiry(l: LicenseJson): string | undefined {
  try {
    return formatTime(parseTime(l.createdAt) + parseDuration(l.maxLifetime));
  } catch {
    return undefined;
  }
}

/** Every field of one license, one per line (`license show`). */
export function renderLicense(l: LicenseJson, now: number): string {
  const limit = hardExpiry(l);
  const rows: string[][] = [
    ['ID', l.id],
    ['Subject', l.subject],
    ['Port', `${l.service}/${l.port}`],
    ['State', l.state],
    ['Methods', l.methods && l.methods.length > 0 ? l.methods.join(', ') : 'any'],
    ['Paths', l.paths && l.paths.length > 0 ? l.paths.join(', ') : 'any'],
    ['Not before', timeWithHint(l.notBefore, now)],
    ['Expires', timeWithHint(l.expiresAt, now)],
    ['Created', timeWithHint(l.createdAt, now)],
    ['TTL', l.ttl],
    ['Max lifetime', limit ? `${l.maxLifetime} (until ${limit})` : l.maxLifetime],
    ['Auto renew', l.autoRenew ? 'yes, while in use' : 'no'],
    ['Reason', l.reason ?? '-'],
  ];
  if (l.revokedAt)
    rows.push(['Revoked', `${timeWithHint(l.revokedAt, now)}: ${l.revokeReason ?? 'no reason given'}`]);
  const a = l.lastAccess;
  rows.push([
    'Last access',
    a ? `${timeWithHint(a.at, now)} by ${a.identity} from ${a.origin}, ${a.count} access(es)` : 'never',
  ]);
  return table(rows.map(([k, v]) => [`${k}:`, v ?? '']));
}

/** `service list`. */
export function renderServices(services: readonly ServiceJson[]): string {
  if (services.length === 0) return 'no services registered (add them with "portlicense apply -f FILE")\n';
  return table([
    ['SERVICE', 'PORTS'],
    ...services.map((s) => [s.name, s.ports.map((p) => `${p.name} (${p.protocol})`).join(', ')]),
  ]);
}

/** `audit`, newest first as the authority returns it. */
export function renderAudit(entries: readonly AuditEntryJson[]): string {
  if (entries.length === 0) return 'no audit entries\n';
  return table([
    ['AT', 'ACTOR', 'ACTION', 'LICENSE', 'SUBJECT', 'PORT', 'REASON'],
    ...entries.map((e) => [
      e.at,
      e.actor,
      e.action,
      e.licenseId ?? e.license ?? '-',
      e.subject ?? '-',
      e.service ? (e.port ? `${e.service}/${e.port}` : e.service) : '-',
      e.reason ?? '-',
    ]),
  ]);
}

function item(x: unknown): string {
  if (typeof x === 'string') return x;
  const o = x as { id?: unknown; name?: unknown; subject?: unknown; service?: unknown; port?: unknown };
  if (o && typeof o === 'object') {
    if (typeof o.subject === 'string')
      return `license ${o.subject} -> ${String(o.service)}/${String(o.port)}${typeof o.id === 'string' ? ` (${o.id})` : ''}`;
    if (typeof o.name === 'string') return `service ${o.name}`;
  }
  return JSON.stringify(x);
}

/** `apply`: what was created and changed, and "no changes" when nothing was. */
export function renderApply(r: ApplyResultJson): string {
  const lines = [
    ...r.created.map((x) => `created    ${item(x)}`),
    ...r.changed.map((x) => `changed    ${item(x)}`),
  ];
  if (lines.length === 0) return `no changes (${r.unchanged.length} unchanged)\n`;
  lines.push(`${r.created.length} created, ${r.changed.length} changed, ${r.unchanged.length} unchanged`);
  return lines.join('\n') + '\n';
}
