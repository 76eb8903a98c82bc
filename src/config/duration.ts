/**
 * Durations and times as operators write them (SPEC §5): `90s`, `15m`, `24h`, `30d`, and RFC 3339
 * timestamps. One strict parser for config files, CLI flags and the authority API, so `24h` means
 * the same thing everywhere and a typo is an error instead of a surprising default.
 */

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof UNIT_MS;

/** Largest unit first, for formatting. */
const UNITS_DESC: readonly Unit[] = ['d', 'h', 'm', 's', 'ms'];

/** `24h`, `48h`, `72h` read better than `1d`, `2d`, `3d`; beyond this, days. */
const HOURS_UP_TO = 72 * UNIT_MS.h;

const DURATION = /^([0-9]+)(ms|s|m|h|d)$/;

const EXPECTED = 'expected a whole number followed by ms, s, m, h or d (e.g. 90s, 15m, 24h, 30d)';

/**
 * Parse `500ms`, `90s`, `15m`, `24h`, `30d` into milliseconds. No spaces, no fractions, no
 * compound forms (`1h30m`), no bare numbers (a bare `30` could mean seconds or milliseconds).
 * @throws Error for anything else, for zero, and for values beyond Number.MAX_SAFE_INTEGER ms.
 */
export function parseDuration(s: string): number {
  const m = DURATION.exec(s);
  if (!m) {
    if (/^\s*-/.test(s)) throw new Error(`invalid duration "${s}": must be positive`);
    throw new Error(`invalid duration "${s}": ${EXPECTED}`);
  }
  const n = Number(m[1]);
  const ms = n * UNIT_MS[m[2] as Unit];
  if (!Number.isSafeInteger(n) || !Number.isSafeInteger(ms))
    throw new Error(`invalid duration "${s}": too large`);
  if (ms === 0) throw new Error(`invalid duration "${s}": must be greater than zero`);
  return ms;
}

/**
 * Format milliseconds in the largest unit that divides them exactly: 90000 -> `90s`,
 * 2592000000 -> `30d`, 1500 -> `1500ms`. Up to 72 hours stay in hours (86400000 -> `24h`,
 * 259200000 -> `72h`), because that is how operators and the SPEC write them. The result always
 * parses back to the same value with {@link parseDuration} (except `0s`, which is not a valid input).
 * @throws Error for negative or non-integer input.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0)
    throw new Error(`cannot format duration ${ms}: not a whole number of ms >= 0`);
  if (ms === 0) return '0s';
  for (const unit of UNITS_DESC) {
    const size = UNIT_MS[unit];
    if (ms % size !== 0) continue;
    if (unit === 'd' && ms <= HOURS_UP_TO) continue;
    return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

// date-time = full-date "T" full-time; full-time = partial-time time-offset (RFC 3339 §5.6).
const RFC3339 =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))$/;

/**
 * Parse an RFC 3339 timestamp (`2026-11-28T10:00:00Z`, `2026-11-28T11:00:00.5+01:00`) into epoch
 * milliseconds. Strict: the `T`, seconds and a time zone (`Z` or `±hh:mm`) are required, and every
 * field must be in range, because `Date.parse` silently accepts local times and rolls over
 * impossible dates. Leap seconds (`:60`) are refused: epoch milliseconds cannot represent them.
 * Fractions beyond milliseconds are truncated.
 * @throws Error naming what is wrong.
 */
export function parseTime(s: string): number {
  const m = RFC3339.exec(s);
  if (!m) {
    const hint = /^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9:.]+$/.test(s) ? ' (add a time zone: Z or +hh:mm)' : '';
    throw new Error(`invalid time "${s}": expected RFC 3339 like 2026-11-28T10:00:00Z${hint}`);
  }
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i])) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const bad = (what: string): Error => new Error(`invalid time "${s}": ${what} out of range`);
  if (month < 1 || month > 12) throw bad('month');
  if (day < 1 || day > daysInMonth(year, month)) throw bad('day');
  if (hour > 23) throw bad('hour');
  if (minute > 59) throw bad('minute');
  if (second > 59) throw bad('second');
  let offsetMin = 0;
  if (m[9] !== undefined) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) throw bad('time zone offset');
    offsetMin = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const fraction = m[7] ? Math.floor(Number(`0${m[7]}`) * 1000) : 0;
  const utc = Date.UTC(year, month - 1, day, hour, minute, second, fraction);
  // Date.UTC maps years 0-99 to 1900-1999; pin the year explicitly.
  const date = new Date(utc);
  date.setUTCFullYear(year, month - 1, day);
  return date.getTime() - offsetMin * 60_000;
}

/**
 * The longest ttl or maxLifetime a license may have: 10 years. Without a bound, a ttl of
 * "100000000d" makes an expiry no date can hold, and every bundle of its service fails to build.
 */
export const MAX_LICENSE_LIFETIME = 3650 * 86_400_000;

/** Epoch milliseconds as RFC 3339 UTC, without a fraction when it is whole seconds. */
export function formatTime(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.endsWith('.000Z') ? `${iso.slice(0, -5)}Z` : iso;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}
