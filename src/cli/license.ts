/**
 * `portlicense license grant|list|show|renew|revoke` (SPEC §5): the authority's license API from a
 * terminal. Every flag is checked here, with the same validators the authority uses, so a typo is
 * a usage error (exit 2) before anything is sent.
 */
import type { LicenseJson } from '../authority/model.js';
import { parseLicenseSpec } from '../config/declarative.js';
import { formatTime, parseDuration, parseTime } from '../config/duration.js';
import { createContext, INVALID, name, subjectPattern, type Schema } from '../config/schema.js';
import { ConfigError, UsageError } from '../errors.js';
import { flag, list, parseFlags, str, type Parsed } from './args.js';
import { CLIENT_FLAGS, CLIENT_HELP, processIo, withAuthority, type CliIo } from './client.js';
import { renderLicense, renderLicenseTable, timeWithHint } from './render.js';

const STATES = ['active', 'expired', 'revoked', 'pending'] as const;

const LICENSE_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Shortest ttl or max lifetime the authority accepts (as in the declarative file). */
const MIN_LIFETIME_MS = 1_000;

/**
 * Check one flag value with a config schema; the schema's message becomes a usage error that
 * names the flag.
 */
export function checked<T>(command: string, flagName: string, schema: Schema<T>, value: unknown): T {
  const ctx = createContext({ file: `--${flagName}` });
  const r = schema.parse(value, '', ctx);
  if (r === INVALID)
    throw new UsageError(`${command}: --${flagName}: ${ctx.problems[0]?.message ?? 'invalid'}`);
  return r;
}

/** A duration flag (`--ttl 24h`) as typed, after checking it parses and is at least 1s. */
export function durationFlag(command: string, p: Parsed, flagName: string): string | undefined {
  const v = str(p, flagName);
  if (v === undefined) return undefined;
  let ms: number;
  try {
    ms = parseDuration(v);
  } catch (err) {
    throw new UsageError(`${command}: --${flagName}: ${(err as Error).message}`);
  }
  if (ms < MIN_LIFETIME_MS)
    throw new UsageError(`${command}: --${flagName}: must be at least 1s, got "${v}"`);
  return v;
}

/** A time flag (`--not-before 2026-11-28T10:00:00Z`) as epoch ms. */
export function timeFlag(command: string, p: Parsed, flagName: string): number | undefined {
  const v = str(p, flagName);
  if (v === undefined) return undefined;
  try {
    return parseTime(v);
  } catch (err) {
    throw new UsageError(`${command}: --${flagName}: ${(err as Error).message}`);
  }
}

function licenseId(command: string, p: Parsed): string {
  const id = p.positionals[0];
  if (id === undefined || id === '')
    throw new UsageError(`${command}: missing the license ID (see "portlicense license list")`);
  if (!LICENSE_ID.test(id)) throw new UsageError(`${command}: invalid license ID "${id}"`);
  return id;
}

function idPath(id: string, action = ''): string {
  return `/v1/licenses/${encodeURIComponent(id)}${action}`;
}

/** A license answer, whether bare or wrapped as `{"license": ...}`. */
function unwrap(body: unknown): LicenseJson {
  const b = body as { license?: unknown };
  return (b && typeof b.license === 'object' && b.license !== null ? b.license : body) as LicenseJson;
}

function help(p: Parsed, io: CliIo, text: string): boolean {
  if (p.values.help) io.out(text + '\n' + CLIENT_HELP);
  return p.values.help === true;
}

function json(io: CliIo, body: unknown): void {
  io.out(JSON.stringify(body, null, 2) + '\n');
}

// --- grant ----------------------------------------------------------------------------------

const GRANT_HELP = `Usage: portlicense license grant --subject ID --service S --port P [--ttl D] [--max-lifetime D]
         [--no-auto-renew] [--methods GET,POST] [--paths '/api/*'] [--not-before TIME] [--reason TEXT] [--json]

Grants SUBJECT (a SPIFFE ID, or a prefix ending in /*) access to service S, port P. Absent
options take the authority's defaults. --methods and --paths (http ports only) take comma lists
or repeat. Prints the new license ID and its expiry.
`;

/** Flag names of the request fields, for usage errors found by the shared license validator. */
const FIELD_FLAGS: Record<string, string> = {
  subject: 'subject',
  service: 'service',
  port: 'port',
  ttl: 'ttl',
  maxLifetime: 'max-lifetime',
  autoRenew: 'no-auto-renew',
  methods: 'methods',
  paths: 'paths',
  notBefore: 'not-before',
  reason: 'reason',
};

/** Build the `POST /v1/licenses` body from flags. @throws UsageError */
export function grantRequest(command: string, p: Parsed): Record<string, unknown> {
  const missing = ['subject', 'service', 'port'].filter((f) => !str(p, f));
  if (missing.length > 0)
    throw new UsageError(
      `${command}: ${missing.map((f) => `--${f}`).join(', ')} required\nRun "portlicense ${command} --help" for usage.`,
    );
  const body: Record<string, unknown> = {
    subject: checked(command, 'subject', subjectPattern(), str(p, 'subject')),
    service: checked(command, 'service', name(), str(p, 'service')),
    port: checked(command, 'port', name(), str(p, 'port')),
  };
  const ttl = durationFlag(command, p, 'ttl');
  const maxLifetime = durationFlag(command, p, 'max-lifetime');
  const notBefore = timeFlag(command, p, 'not-before');
  if (ttl !== undefined) body.ttl = ttl;
  if (maxLifetime !== undefined) body.maxLifetime = maxLifetime;
  if (flag(p, 'no-auto-renew')) body.autoRenew = false;
  const methods = list(p, 'methods');
  if (methods.length > 0) body.methods = methods.map((m) => m.toUpperCase());
  const paths = list(p, 'paths');
  if (paths.length > 0) body.paths = paths;
  if (notBefore !== undefined) body.notBefore = formatTime(notBefore);
  const reason = str(p, 'reason');
  if (reason !== undefined) body.reason = reason;
  // The authority's own validator: cross-field rules (ttl <= max lifetime) and path patterns.
  try {
    parseLicenseSpec(body, 'flags');
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const lines = err.problems.map((pr) => {
      const field = /^[A-Za-z]+/.exec(pr.path)?.[0] ?? '';
      return `${command}: --${FIELD_FLAGS[field] ?? field}: ${pr.message}`;
    });
    throw new UsageError(lines.join('\n'));
  }
  return body;
}

/** `portlicense license grant`. */
export async function licenseGrantCommand(argv: string[], io: CliIo = processIo()): Promise<number> {
  const command = 'license grant';
  const p = parseFlags(command, argv, {
    ...CLIENT_FLAGS,
    subject: { type: 'string' },
    service: { type: 'string' },
    port: { type: 'string' },
    ttl: { type: 'string' },
    'max-lifetime': { type: 'string' },
    'no-auto-renew': { type: 'boolean' },
    methods: { type: 'string', multiple: true },
    paths: { type: 'string', multiple: true },
    'not-before': { type: 'string' },
    reason: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (help(p, io, GRANT_HELP)) return 0;
  const body = grantRequest(command, p);
  const l = unwrap(await withAuthority(command, p, io, (c) => c.post('/v1/licenses', body)));
  if (flag(p, 'json')) json(io, l);
  else {
    const now = io.clock.now();
    const from = l.state === 'pending' ? `, valid from ${timeWithHint(l.notBefore, now)}` : '';
    io.out(
      `granted ${l.id}: ${l.subject} -> ${l.service}/${l.port}${from}, expires ${timeWithHint(l.expiresAt, now)}\n`,
    );
  }
  return 0;
}

// --- list -----------------------------------------------------------------------------------

const LIST_HELP = `Usage: portlicense license list [--service S] [--subject ID] [--state active|expired|revoked|pending] [--json]

Lists licenses with their expiry and last access, every page of them. --json prints
{"licenses":[...]} with each license as the API shows it.
`;

/** Licenses per request: the authority's largest page. */
const PAGE = 1000;

interface LicensePage {
  licenses: LicenseJson[];
  next?: string | null;
}

/** `portlicense license list`. */
export async function licenseListCommand(argv: string[], io: CliIo = processIo()): Promise<number> {
  const command = 'license list';
  const p = parseFlags(command, argv, {
    ...CLIENT_FLAGS,
    service: { type: 'string' },
    subject: { type: 'string' },
    state: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (help(p, io, LIST_HELP)) return 0;
  const service = str(p, 'service');
  const subject = str(p, 'subject');
  const state = str(p, 'state');
  if (service !== undefined) checked(command, 'service', name(), service);
  if (subject !== undefined) checked(command, 'subject', subjectPattern(), subject);
  if (state !== undefined && !(STATES as readonly string[]).includes(state))
    throw new UsageError(`${command}: --state must be one of ${STATES.join(', ')}, got "${state}"`);
  const licenses = await withAuthority(command, p, io, async (c) => {
    const all: LicenseJson[] = [];
    const seen = new Set<string>();
    let after: string | undefined;
    for (;;) {
      const page = await c.get<LicensePage>('/v1/licenses', { service, subject, state, limit: PAGE, after });
      all.push(...(page.licenses ?? []));
      const next = page.next;
      if (next === null || next === undefined || next === '') return all;
      // A cursor seen before would loop forever; the authority is wrong, so say so.
      if (seen.has(next))
        throw new Error(`the authority repeated the page cursor "${next}"; listing stopped`);
      seen.add(next);
      after = next;
    }
  });
  if (flag(p, 'json')) json(io, { licenses });
  else if (licenses.length === 0) io.out('no licenses match\n');
  else io.out(renderLicenseTable(licenses, io.clock.now()));
  return 0;
}

// --- show -----------------------------------------------------------------------------------

const SHOW_HELP = `Usage: portlicense license show ID [--json]

Shows one license: its rules, validity, renewal settings, revocation and last access.
`;

/** `portlicense license show ID`. */
export async function licenseShowCommand(argv: string[], io: CliIo = processIo()): Promise<number> {
  const command = 'license show';
  const p = parseFlags(command, argv, { ...CLIENT_FLAGS, json: { type: 'boolean' } }, 1);
  if (help(p, io, SHOW_HELP)) return 0;
  const id = licenseId(command, p);
  const l = unwrap(await withAuthority(command, p, io, (c) => c.get(idPath(id))));
  if (flag(p, 'json')) json(io, l);
  else io.out(renderLicense(l, io.clock.now()));
  return 0;
}

// --- renew ----------------------------------------------------------------------------------

const RENEW_HELP = `Usage: portlicense license renew ID [--ttl D] [--reason TEXT] [--json]

Extends the license to now + its ttl (or --ttl D), never past its max lifetime; a --ttl
that would end it sooner than it ends now is refused (409): revoke it instead.
`;

/** `portlicense license renew ID`. */
export async function licenseRenewCommand(argv: string[], io: CliIo = processIo()): Promise<number> {
  const command = 'license renew';
  const p = parseFlags(
    command,
    argv,
    { ...CLIENT_FLAGS, ttl: { type: 'string' }, reason: { type: 'string' }, json: { type: 'boolean' } },
    1,
  );
  if (help(p, io, RENEW_HELP)) return 0;
  const id = licenseId(command, p);
  const body: Record<string, unknown> = {};
  const ttl = durationFlag(command, p, 'ttl');
  if (ttl !== undefined) body.ttl = ttl;
  const reason = str(p, 'reason');
  if (reason !== undefined) body.reason = reason;
  const l = unwrap(await withAuthority(command, p, io, (c) => c.post(idPath(id, '/renew'), body)));
  if (flag(p, 'json')) json(io, l);
  else {
    const capped = atHardLimit(l) ? ' (capped at its max lifetime: grant a new license to go further)' : '';
    io.out(`renewed ${l.id}: expires ${timeWithHint(l.expiresAt, io.clock.now())}${capped}\n`);
  }
  return 0;
}

function atHardLimit(l: LicenseJson): boolean {
  try {
    return parseTime(l.expiresAt) >= parseTime(l.createdAt) + parseDuration(l.maxLifetime);
  } catch {
    return false;
  }
}

// --- revoke ---------------------------------------------------------------------------------

const REVOKE_HELP = `Usage: portlicense license revoke ID [--reason TEXT] [--json]
       portlicense license revoke --subject PATTERN [--service S] [--reason TEXT] [--json]

Revokes one license, or every live license of an identity or a prefix (spiffe://td/ns/x/*),
optionally only on service S. Sidecars close the connections those licenses admitted.
`;

/** `portlicense license revoke ID` and `license revoke --subject PATTERN`. */
export async function licenseRevokeCommand(argv: string[], io: CliIo = processIo()): Promise<number> {
  const command = 'license revoke';
  const p = parseFlags(
    command,
    argv,
    {
      ...CLIENT_FLAGS,
      subject: { type: 'string' },
      service: { type: 'string' },
      reason: { type: 'string' },
      json: { type: 'boolean' },
    },
    1,
  );
  if (help(p, io, REVOKE_HELP)) return 0;
  const subject = str(p, 'subject');
  const service = str(p, 'service');
  const reason = str(p, 'reason');
  if (subject !== undefined && p.positionals.length > 0)
    throw new UsageError(`${command}: give either a license ID or --subject PATTERN, not both`);
  if (subject === undefined) {
    if (service !== undefined)
      throw new UsageError(`${command}: --service only applies with --subject PATTERN`);
    if (p.positionals.length === 0)
      throw new UsageError(
        `${command}: give a license ID or --subject PATTERN\nRun "portlicense ${command} --help" for usage.`,
      );
    const id = licenseId(command, p);
    const body = reason === undefined ? {} : { reason };
    const l = unwrap(await withAuthority(command, p, io, (c) => c.post(idPath(id, '/revoke'), body)));
    if (flag(p, 'json')) json(io, l);
    else io.out(`revoked ${l.id}: ${l.subject} -> ${l.service}/${l.port}\n`);
    return 0;
  }
  const body: Record<string, unknown> = { subject: checked(command, 'subject', subjectPattern(), subject) };
  if (service !== undefined) body.service = checked(command, 'service', name(), service);
  if (reason !== undefined) body.reason = reason;
  const res = await withAuthority(command, p, io, (c) =>
    c.post<{ revoked: LicenseJson[] }>('/v1/revoke', body),
  );
  const revoked = res.revoked ?? [];
  if (flag(p, 'json')) json(io, { revoked });
  else if (revoked.length === 0)
    io.out(`no live licenses match ${subject}${service === undefined ? '' : ` on service ${service}`}\n`);
  else {
    io.out(`revoked ${revoked.length} license(s) matching ${subject}\n`);
    io.out(renderLicenseTable(revoked, io.clock.now()));
  }
  return 0;
}
