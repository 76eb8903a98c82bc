/**
 * `portlicense audit [--since TIME] [--limit N]` (SPEC §5): who granted, renewed, revoked or let
 * expire what, when and why; newest first.
 */
import { formatTime, parseDuration, parseTime } from '../config/duration.js';
import { UsageError } from '../errors.js';
import { flag, parseFlags, str } from './args.js';
import { CLIENT_FLAGS, CLIENT_HELP, processIo, withAuthority, type CliIo } from './client.js';
import { renderAudit, type AuditEntryJson } from './render.js';

const HELP = `Usage: portlicense audit [--since TIME] [--limit N] [--json]

Prints the authority's audit log, newest first: every entry since --since (all of them
without it), or the newest N with --limit N. --since takes an RFC 3339 time
(2026-11-28T10:00:00Z) or a duration meaning that long ago (24h, 7d).
`;

const MAX_LIMIT = 100_000;

/** Entries per request; the authority's largest page. */
const PAGE = 1000;

interface AuditPage {
  entries: AuditEntryJson[];
  /** Id to pass as `before` for the next (older) page; absent or null when this was the last. */
  next?: number | string | null;
}

/**
 * `--since` as an RFC 3339 time for the API: a time as given, or a duration counted back from now.
 * @throws UsageError naming both accepted forms.
 */
export function sinceFlag(value: string, now: number): string {
  if (/^[0-9]+(ms|s|m|h|d)$/.test(value)) {
    try {
      return formatTime(now - parseDuration(value));
    } catch (err) {
      throw new UsageError(`audit: --since: ${(err as Error).message}`);
    }
  }
  try {
    return formatTime(parseTime(value));
  } catch (err) {
    throw new UsageError(
      `audit: --since: ${(err as Error).message}, or a duration like 24h meaning that long ago`,
    );
  }
}

/** `portlicense audit`. */
export async function auditCommand(argv: string[], io: CliIo = processIo()): Promise<number> {
  const command = 'audit';
  const p = parseFlags(command, argv, {
    ...CLIENT_FLAGS,
    since: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (p.values.help) {
    io.out(HELP + '\n' + CLIENT_HELP);
    return 0;
  }
  const sinceRaw = str(p, 'since');
  const since = sinceRaw === undefined ? undefined : sinceFlag(sinceRaw, io.clock.now());
  const limitRaw = str(p, 'limit');
  if (
    limitRaw !== undefined &&
    !(/^[0-9]{1,6}$/.test(limitRaw) && Number(limitRaw) >= 1 && Number(limitRaw) <= MAX_LIMIT)
  )
    throw new UsageError(`audit: --limit must be a whole number from 1 to ${MAX_LIMIT}, got "${limitRaw}"`);
  const limit = limitRaw === undefined ? Infinity : Number(limitRaw);
  const entries = await withAuthority(command, p, io, async (c) => {
    const all: AuditEntryJson[] = [];
    let before: string | undefined;
    for (;;) {
      const want = Math.min(PAGE, limit - all.length);
      const page = await c.get<AuditPage>('/v1/audit', { since, limit: want, before });
      all.push(...(page.entries ?? []).slice(0, want));
      const next = page.next;
      if (all.length >= limit || next === null || next === undefined || String(next) === before) return all;
      before = String(next);
    }
  });
  io.out(flag(p, 'json') ? JSON.stringify({ entries }, null, 2) + '\n' : renderAudit(entries));
  return 0;
}
