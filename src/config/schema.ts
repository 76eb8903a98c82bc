/**
 * A small, strict validation DSL for config files and declarative input. Strict because a typo in
 * a security config must fail loudly at start-up, not fall back to a default (STYLE §8): unknown
 * keys are errors (with a "did you mean"), every value is type- and range-checked, and ALL problems
 * are collected so an operator fixes a file in one pass. Problems carry the key path
 * (`ports[0].protocol`) and, when the input came from YAML, the source line.
 *
 * A schema's `parse` returns the value or {@link INVALID} after recording why in the context; it
 * never throws. {@link throwIfProblems} turns the collected problems into one ConfigError.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { parseSpiffeId, parseSubjectPattern } from '../policy/spiffe.js';
import type { HostPort } from './types.js';
import { parseDuration, formatDuration, parseTime } from './duration.js';

export { parseSpiffeId, parseSubjectPattern } from '../policy/spiffe.js';

/** Returned by a schema whose input was wrong; the reason is already in the context. */
export const INVALID: unique symbol = Symbol('invalid');
export type Parsed<T> = T | typeof INVALID;

/** Where problems go and how to find their line. */
export interface SchemaContext {
  /** The file name as the operator gave it (or a label such as `input` for JSON). */
  readonly file: string;
  /** Folder that relative file paths are resolved against; the working directory when absent. */
  readonly dir: string | undefined;
  readonly problems: ConfigProblem[];
  /** 1-based line of a key path, or 0 when unknown. */
  readonly lineOf: (path: string) => number;
}

export interface Schema<T> {
  parse(value: unknown, path: string, ctx: SchemaContext): Parsed<T>;
}

/** A context for one input. `lineOf` comes from the YAML reader; JSON input has no lines. */
export function createContext(opts: {
  file: string;
  dir?: string;
  lineOf?: (path: string) => number;
}): SchemaContext {
  return { file: opts.file, dir: opts.dir, problems: [], lineOf: opts.lineOf ?? (() => 0) };
}

/** Record a problem at `path`. */
export function report(ctx: SchemaContext, path: string, message: string): void {
  ctx.problems.push({ file: ctx.file, line: ctx.lineOf(path), path, message });
}

/** Throw one ConfigError holding every problem collected, ordered by line. */
export function throwIfProblems(ctx: SchemaContext): void {
  if (ctx.problems.length === 0) return;
  const sorted = ctx.problems.map((p, i) => ({ p, i })).sort((a, b) => a.p.line - b.p.line || a.i - b.i);
  throw new ConfigError(sorted.map((e) => e.p));
}

/** Parse without recording problems: for cross-field checks that must run even when other keys are bad. */
export function peek<T>(schema: Schema<T>, value: unknown, ctx: SchemaContext): T | undefined {
  const r = schema.parse(value, '', { ...ctx, problems: [] });
  return r === INVALID ? undefined : r;
}

/** `a.b`, or `a["odd key"]` for keys that would not read as a path. */
export function keyPath(parent: string, key: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)) return parent ? `${parent}.${key}` : key;
  return `${parent}[${JSON.stringify(key)}]`;
}

export function indexPath(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

/** A plain object (mapping) or undefined. */
export function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

function schema<T>(parse: Schema<T>['parse']): Schema<T> {
  return { parse };
}

/** Add a check on an already valid value; `check` returns a message when it fails. */
export function refine<T>(
  base: Schema<T>,
  check: (v: T, ctx: SchemaContext) => string | undefined,
): Schema<T> {
  return schema((value, path, ctx) => {
    const v = base.parse(value, path, ctx);
    if (v === INVALID) return INVALID;
    const message = check(v, ctx);
    if (message === undefined) return v;
    report(ctx, path, message);
    return INVALID;
  });
}

/** Transform a valid value. */
export function map<T, U>(base: Schema<T>, fn: (v: T, ctx: SchemaContext) => U): Schema<U> {
  return schema((value, path, ctx) => {
    const v = base.parse(value, path, ctx);
    return v === INVALID ? INVALID : fn(v, ctx);
  });
}

// ---------------------------------------------------------------------------------------------
// Scalars

export interface StringOptions {
  nonEmpty?: boolean;
  maxLength?: number;
  pattern?: RegExp;
  /** Message when `pattern` does not match. */
  patternMessage?: string;
}

export function string(opts: StringOptions = {}): Schema<string> {
  return schema((value, path, ctx) => {
    if (typeof value !== 'string') return fail(ctx, path, 'must be a string');
    if (opts.nonEmpty && value.trim() === '') return fail(ctx, path, 'must not be empty');
    if (opts.maxLength !== undefined && value.length > opts.maxLength)
      return fail(ctx, path, `must be at most ${opts.maxLength} characters`);
    if (opts.pattern && !opts.pattern.test(value))
      return fail(ctx, path, opts.patternMessage ?? `must match ${String(opts.pattern)}`);
    return value;
  });
}

export function nonEmptyString(maxLength?: number): Schema<string> {
  return string(maxLength === undefined ? { nonEmpty: true } : { nonEmpty: true, maxLength });
}

/** Service and port names: they appear in `service/port` keys, metric labels and URLs. */
export function name(): Schema<string> {
  return string({
    pattern: /^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$/,
    patternMessage:
      'must be 1-63 lowercase letters, digits, ".", "_" or "-", starting and ending with a letter or digit',
  });
}

export function integer(opts: { min?: number; max?: number } = {}): Schema<number> {
  const { min, max } = opts;
  const range =
    min !== undefined && max !== undefined
      ? `an integer from ${min} to ${max}`
      : min !== undefined
        ? `an integer >= ${min}`
        : max !== undefined
          ? `an integer <= ${max}`
          : 'an integer';
  return schema((value, path, ctx) => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) return fail(ctx, path, `must be ${range}`);
    if ((min !== undefined && value < min) || (max !== undefined && value > max))
      return fail(ctx, path, `must be ${range}`);
    return value;
  });
}

export function boolean(): Schema<boolean> {
  return schema((value, path, ctx) =>
    typeof value === 'boolean' ? value : fail(ctx, path, 'must be true or false'),
  );
}

/** One of a fixed set of strings: `must be "tcp" or "http"`. */
export function oneOf<const T extends string>(values: readonly T[]): Schema<T> {
  const quoted = values.map((v) => JSON.stringify(v));
  const message =
    quoted.length <= 2
      ? `must be ${quoted.join(' or ')}`
      : `must be one of ${quoted.slice(0, -1).join(', ')} or ${quoted[quoted.length - 1]}`;
  return schema((value, path, ctx) =>
    typeof value === 'string' && (values as readonly string[]).includes(value)
      ? (value as T)
      : fail(ctx, path, message),
  );
}

/** A duration string (`90s`, `15m`, `24h`, `30d`) as milliseconds, optionally bounded. */
export function duration(opts: { min?: number; max?: number } = {}): Schema<number> {
  return schema((value, path, ctx) => {
    if (typeof value === 'number')
      return fail(ctx, path, `must be a duration with a unit, like ${value}s or ${value}ms`);
    if (typeof value !== 'string') return fail(ctx, path, 'must be a duration like 90s, 15m, 24h or 30d');
    let ms: number;
    try {
      ms = parseDuration(value);
    } catch (err) {
      return fail(ctx, path, (err as Error).message);
    }
    if (opts.min !== undefined && ms < opts.min)
      return fail(ctx, path, `must be at least ${formatDuration(opts.min)}`);
    if (opts.max !== undefined && ms > opts.max)
      return fail(ctx, path, `must be at most ${formatDuration(opts.max)}`);
    return ms;
  });
}

/** An RFC 3339 timestamp with a time zone, as epoch milliseconds. */
export function time(): Schema<number> {
  return schema((value, path, ctx) => {
    if (typeof value !== 'string')
      return fail(ctx, path, 'must be an RFC 3339 time like 2026-11-28T10:00:00Z');
    try {
      return parseTime(value);
    } catch (err) {
      return fail(ctx, path, (err as Error).message);
    }
  });
}

/** An `https://` URL without credentials, query or fragment; returned without a trailing `/`. */
export function httpsUrl(): Schema<string> {
  return schema((value, path, ctx) => {
    if (typeof value !== 'string') return fail(ctx, path, 'must be an https:// URL');
    let u: URL;
    try {
      u = new URL(value);
    } catch {
      return fail(ctx, path, `must be an https:// URL (got ${JSON.stringify(value)})`);
    }
    if (u.protocol !== 'https:') return fail(ctx, path, `must be an https:// URL (got ${u.protocol}//)`);
    if (u.username || u.password) return fail(ctx, path, 'must not contain credentials');
    if (u.search || u.hash || value.includes('?') || value.includes('#'))
      return fail(ctx, path, 'must not have a query or fragment');
    return u.href.replace(/\/+$/, '');
  });
}

// ---------------------------------------------------------------------------------------------
// Network addresses

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Parse `host:port`: an IPv4 address, a DNS name, or an IPv6 address in brackets (`[::1]:80`).
 * The host is returned without brackets. Returns a reason string when invalid.
 */
export function parseHostPort(s: string, opts: { allowPortZero?: boolean } = {}): HostPort | string {
  let host: string;
  let portText: string;
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(s);
  if (bracketed) {
    host = bracketed[1] ?? '';
    portText = bracketed[2] ?? '';
    if (!isIPv6(host)) return `"${host}" in brackets is not an IPv6 address`;
  } else if (s.startsWith('[')) {
    return 'must be [IPv6 address]:port, like [::1]:8080';
  } else {
    const colon = s.lastIndexOf(':');
    if (colon === -1) return 'must be host:port (IPv6 in brackets: [::1]:8080)';
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (host.includes(':')) return `IPv6 addresses go in brackets: [${host}]:${portText}`;
    if (host === '') return 'must be host:port with a host (use 0.0.0.0 for every interface)';
    if (/^[0-9.]+$/.test(host) ? !isIPv4(host) : !HOSTNAME.test(host))
      return `"${host}" is not an IP address or host name`;
  }
  const min = opts.allowPortZero ? 0 : 1;
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535 || Number(portText) < min)
    return `port must be a number from ${min} to 65535`;
  return { host: host.toLowerCase(), port: Number(portText) };
}

/** `127.0.0.1:80`, `[::1]:80`. */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** A `host:port`. `allowPortZero` for listeners (an ephemeral port, as tests use). */
export function hostPort(opts: { allowPortZero?: boolean } = {}): Schema<HostPort> {
  return schema((value, path, ctx) => {
    if (typeof value === 'number' && Number.isInteger(value))
      return fail(
        ctx,
        path,
        `must be host:port, like 0.0.0.0:${value} (every interface) or 127.0.0.1:${value} (this host only)`,
      );
    if (typeof value !== 'string')
      return fail(ctx, path, 'must be host:port as a string, like 127.0.0.1:8080');
    const r = parseHostPort(value, opts);
    return typeof r === 'string' ? fail(ctx, path, r) : r;
  });
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIPv4(v4) && v4.startsWith('127.');
}

/** Listening on every interface. */
export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '0:0:0:0:0:0:0:0';
}

/**
 * Whether two listen addresses would fight over one socket: same non-zero port, and the same
 * host or either one a wildcard (0.0.0.0:P takes P on every interface).
 */
export function listenersClash(a: HostPort, b: HostPort): boolean {
  if (a.port === 0 || a.port !== b.port) return false;
  return a.host === b.host || isWildcardHost(a.host) || isWildcardHost(b.host);
}

// ---------------------------------------------------------------------------------------------
// Files

/**
 * A file path, resolved against the config file's folder. With `mustExist`, it must be a readable
 * regular file now: certificates and keys are checked at start-up, not at first use.
 */
export function filePath(opts: { mustExist: boolean }): Schema<string> {
  return schema((value, path, ctx) => {
    if (typeof value !== 'string' || value.trim() === '') return fail(ctx, path, 'must be a file path');
    const abs = resolvePath(value, ctx);
    if (!opts.mustExist) return abs;
    const problem = fileProblem(abs);
    return problem ? fail(ctx, path, problem) : abs;
  });
}

/** Absolute path of `p` relative to the context's folder. */
export function resolvePath(p: string, ctx: SchemaContext): string {
  return isAbsolute(p) ? resolve(p) : resolve(ctx.dir ?? process.cwd(), p);
}

function fileProblem(abs: string): string | undefined {
  try {
    if (!statSync(abs).isFile()) return `not a regular file: ${abs}`;
    accessSync(abs, constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return `file not found: ${abs}`;
    if (code === 'EACCES' || code === 'EPERM') return `file not readable: ${abs}`;
    return `cannot use file ${abs}: ${(err as Error).message}`;
  }
}

// ---------------------------------------------------------------------------------------------
// SPIFFE

/** Whether `s` is a valid SPIFFE ID (SPIFFE and X.509-SVID rules, at most 2048 bytes). */
export function isSpiffeId(s: string): boolean {
  return typeof parseSpiffeId(s) !== 'string';
}

/** Whether `s` is a license subject: an exact SPIFFE ID or a prefix ending in `/*`. */
export function isSubjectPattern(s: string): boolean {
  return typeof parseSubjectPattern(s) !== 'string';
}

export function spiffeId(): Schema<string> {
  return schema((value, path, ctx) => {
    if (typeof value !== 'string')
      return fail(ctx, path, 'must be a SPIFFE ID like spiffe://example.org/ns/default/sa/app');
    const r = parseSpiffeId(value);
    return typeof r === 'string'
      ? fail(ctx, path, `invalid SPIFFE ID ${JSON.stringify(value)}: ${r}`)
      : value;
  });
}

export function subjectPattern(): Schema<string> {
  return schema((value, path, ctx) => {
    const expected = 'a SPIFFE ID like spiffe://example.org/ns/default/sa/app, or a prefix ending in /*';
    if (typeof value !== 'string') return fail(ctx, path, `must be ${expected}`);
    if (value.includes('*') && !/^[^*]*\/\*$/.test(value))
      return fail(ctx, path, `invalid subject ${JSON.stringify(value)}: "*" is only allowed as a final "/*"`);
    if (value === 'spiffe://*')
      return fail(
        ctx,
        path,
        `invalid subject "spiffe://*": the trust domain must be written out, as in spiffe://example.org/*`,
      );
    const r = parseSubjectPattern(value);
    return typeof r === 'string' ? fail(ctx, path, `invalid subject ${JSON.stringify(value)}: ${r}`) : value;
  });
}

/** The trust domain of a valid subject pattern or SPIFFE ID, else undefined. */
export function trustDomainOf(subject: string): string | undefined {
  const r = parseSubjectPattern(subject);
  return typeof r === 'string' ? undefined : r.id.trustDomain;
}

/** A bare trust domain (`example.org`), validated as `spiffe://<td>` would be. */
export function trustDomain(): Schema<string> {
  return schema((value, path, ctx) => {
    if (typeof value !== 'string') return fail(ctx, path, 'must be a trust domain like example.org');
    if (value.startsWith('spiffe://'))
      return fail(ctx, path, `must be the bare trust domain, without "spiffe://"`);
    const r = value.includes('/') ? 'must not contain "/"' : parseSpiffeId(`spiffe://${value}`);
    return typeof r === 'string'
      ? fail(ctx, path, `invalid trust domain ${JSON.stringify(value)}: ${r}`)
      : value;
  });
}

// ---------------------------------------------------------------------------------------------
// Lists and mappings

export interface ArrayOptions {
  minItems?: number;
  /** Message when there are fewer than `minItems`. */
  minMessage?: string;
  /** Reject an entry equal to an earlier one. */
  unique?: boolean;
}

export function arrayOf<T>(item: Schema<T>, opts: ArrayOptions = {}): Schema<T[]> {
  return schema((value, path, ctx) => {
    if (!Array.isArray(value)) return fail(ctx, path, 'must be a list');
    if (opts.minItems !== undefined && value.length < opts.minItems)
      return fail(ctx, path, opts.minMessage ?? `must list at least ${opts.minItems}`);
    const out: T[] = [];
    const seen = new Map<string, number>();
    let ok = true;
    value.forEach((raw, i) => {
      const p = indexPath(path, i);
      const v = item.parse(raw, p, ctx);
      if (v === INVALID) {
        ok = false;
        return;
      }
      if (opts.unique) {
        const k = JSON.stringify(v);
        const first = seen.get(k);
        if (first !== undefined) {
          report(ctx, p, `duplicate of ${indexPath(path, first)}`);
          ok = false;
          return;
        }
        seen.set(k, i);
      }
      out.push(v);
    });
    return ok ? out : INVALID;
  });
}

/** How a key of a mapping is treated when absent (or null, as `key:` with nothing reads in YAML). */
export interface Field<Out> {
  readonly schema: Schema<unknown>;
  readonly absent:
    | { kind: 'required' }
    | { kind: 'optional' }
    | { kind: 'default'; value: Out }
    | { kind: 'input'; input: unknown };
  /** Phantom: the output type of this field. */
  readonly __out?: Out;
}

/** The key must be present. */
export function required<T>(s: Schema<T>): Field<T> {
  return { schema: s, absent: { kind: 'required' } };
}

/** The key may be absent; the result then lacks it. */
export function optional<T>(s: Schema<T>): Field<T | undefined> {
  return { schema: s, absent: { kind: 'optional' } };
}

/** The key may be absent; `value` (already in parsed form, e.g. ms) is used then. */
export function withDefault<T>(s: Schema<T>, value: T): Field<T> {
  return { schema: s, absent: { kind: 'default', value } };
}

/**
 * The key may be absent; `input` is then parsed as if written there. For defaults that depend on
 * the file (a relative path resolves against its folder).
 */
export function defaultInput<T>(s: Schema<T>, input: unknown): Field<T> {
  return { schema: s, absent: { kind: 'input', input } };
}

/** A nested mapping that may be absent: it is then parsed as `{}` so its own defaults apply. */
export function section<T>(s: Schema<T>): Field<T> {
  return defaultInput(s, {});
}

export type Shape = Record<string, Field<unknown>>;
export type ObjectOf<S extends Shape> = { [K in keyof S]: S[K] extends Field<infer O> ? O : never };

/** A mapping with exactly the keys of `shape`; any other key is an error with a suggestion. */
export function object<S extends Shape>(shape: S): Schema<ObjectOf<S>> {
  const known = Object.keys(shape);
  return schema((value, path, ctx) => {
    const rec = asRecord(value);
    if (!rec) return fail(ctx, path, 'must be a mapping');
    let ok = true;
    for (const key of Object.keys(rec)) {
      if (Object.hasOwn(shape, key)) continue;
      report(ctx, keyPath(path, key), unknownKeyMessage(key, known));
      ok = false;
    }
    const out: Record<string, unknown> = {};
    for (const key of known) {
      const field = shape[key] as Field<unknown>;
      const p = keyPath(path, key);
      const raw = rec[key];
      if (raw === undefined || raw === null) {
        switch (field.absent.kind) {
          case 'required':
            report(ctx, p, raw === null ? 'must not be empty' : 'is required');
            ok = false;
            continue;
          case 'optional':
            continue;
          case 'default':
            out[key] = field.absent.value;
            continue;
          case 'input': {
            const v = field.schema.parse(field.absent.input, p, ctx);
            if (v === INVALID) ok = false;
            else out[key] = v;
            continue;
          }
        }
      }
      const v = field.schema.parse(raw, p, ctx);
      if (v === INVALID) ok = false;
      else out[key] = v;
    }
    return ok ? (out as ObjectOf<S>) : INVALID;
  });
}

/** `unknown key "wiat" (did you mean "wait"?)`, or the list of known keys when nothing is close. */
export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const guess = closest(key, known);
  if (guess) return `unknown key ${JSON.stringify(key)} (did you mean ${JSON.stringify(guess)}?)`;
  return `unknown key ${JSON.stringify(key)} (known keys: ${known.join(', ')})`;
}

/** The known key closest to `key` by edit distance, if close enough to be a likely typo. */
export function closest(key: string, known: readonly string[]): string | undefined {
  const k = key.toLowerCase();
  let best: string | undefined;
  let bestD = Infinity;
  for (const cand of known) {
    const d = editDistance(k, cand.toLowerCase());
    if (d < bestD) {
      best = cand;
      bestD = d;
    }
  }
  const limit = Math.max(1, Math.floor(Math.max(key.length, 3) / 3));
  return bestD <= limit ? best : undefined;
}

/** Levenshtein distance, with an adjacent transposition counted as one edit. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const prev = rows[i - 1] as number[];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, ((rows[i - 2] as number[])[j - 2] as number) + 1);
      row.push(d);
    }
    rows.push(row);
  }
  return (rows[a.length] as number[])[b.length] as number;
}

/** Freeze a parsed config all the way down, so no consumer can change it behind another's back. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}

function fail(ctx: SchemaContext, path: string, message: string): typeof INVALID {
  report(ctx, path, message);
  return INVALID;
}

/**
 * The steps every config file goes through: an empty document is one problem naming what was
 * expected; otherwise the schema, then the cross-field checks, then every problem at once.
 * @throws ConfigError
 */
export function validateDocument<T>(
  doc: { file: string; dir: string; value: unknown; lineOf: (path: string) => number },
  schema: Schema<T>,
  crossCheck: (raw: Record<string, unknown>, ctx: SchemaContext) => void,
  expected: string,
): T {
  const ctx = createContext({ file: doc.file, dir: doc.dir, lineOf: doc.lineOf });
  if (doc.value === null || doc.value === undefined) {
    report(ctx, '', `the file is empty; expected ${expected}`);
    throwIfProblems(ctx);
  }
  const parsed = schema.parse(doc.value, '', ctx);
  const raw = asRecord(doc.value);
  if (raw) crossCheck(raw, ctx);
  throwIfProblems(ctx);
  if (parsed === INVALID) throw new Error('unreachable: invalid config without problems');
  return parsed;
}

/** `trustDomains`: at least one, no duplicates. Shared by the sidecar and authority files. */
export function trustDomainList(): Schema<string[]> {
  return arrayOf(trustDomain(), {
    minItems: 1,
    minMessage: 'must list at least one trust domain',
    unique: true,
  });
}

/** The `tls` section of both process configs: CA, certificate, key (files that must exist), handshake deadline. */
export function tlsSection(defaultHandshakeTimeout: number) {
  return object({
    ca: required(filePath({ mustExist: true })),
    cert: required(filePath({ mustExist: true })),
    key: required(filePath({ mustExist: true })),
    handshakeTimeout: withDefault(duration({ min: 100, max: 5 * 60_000 }), defaultHandshakeTimeout),
  });
}
