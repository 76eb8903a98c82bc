/**
 * Wire license → CompiledLicense. Every field of a bundle's licenses is checked here once, when a
 * bundle is loaded or signed, so the decision code can trust what it reads and stay branch-light.
 * A bad field rejects the whole bundle (the last good one stays in force) with a message naming the
 * license and the field.
 */
import { PortlicenseError } from '../errors.js';
import { parseSubjectPattern } from './spiffe.js';
import { normalizePath } from './path.js';
import { Slicer } from './slice.js';
import type { CompiledLicense, LicenseWire, PathRule } from './types.js';

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Value of `len` decimal digits at `at`, or -1. */
function digits(s: string, at: number, len: number): number {
  let v = 0;
  for (let i = at; i < at + len; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/**
 * Parse a strict RFC 3339 date-time (`2026-11-28T10:00:00Z`, `…T10:00:00.5+02:00`) to epoch ms,
 * or null. Calendar ranges are checked (no 31 April, no 24:00); leap seconds are refused, as the
 * rest of the stack cannot represent them; fractions beyond milliseconds are truncated.
 * Hand-rolled (no regex, no allocation): a 10,000-license bundle holds 20,000 of these.
 */
export function parseRfc3339(s: string): number | null {
  const n = s.length;
  if (n < 20 || s.charCodeAt(4) !== 0x2d || s.charCodeAt(7) !== 0x2d) return null;
  const t = s.charCodeAt(10);
  if ((t !== 0x54 && t !== 0x74) || s.charCodeAt(13) !== 0x3a || s.charCodeAt(16) !== 0x3a) return null;
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23) return null;
  if (minute < 0 || minute > 59 || second < 0 || second > 59) return null;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  if (day > (month === 2 && leap ? 29 : DAYS[month - 1]!)) return null;
  let i = 19;
  let ms = 0;
  if (s.charCodeAt(i) === 0x2e) {
    const from = ++i;
    while (i < n && i - from < 9) {
      const d = s.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) break;
      if (i - from < 3) ms = ms * 10 + d;
      i++;
    }
    if (i === from) return null;
    for (let k = Math.min(i - from, 3); k < 3; k++) ms *= 10;
  }
  let offset = 0;
  const z = s.charCodeAt(i);
  if (z === 0x5a || z === 0x7a) {
    i++;
  } else if (z === 0x2b || z === 0x2d) {
    const oh = digits(s, i + 1, 2);
    const om = digits(s, i + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59 || s.charCodeAt(i + 3) !== 0x3a) return null;
    offset = (z === 0x2b ? 1 : -1) * (oh * 60 + om) * 60_000;
    i += 6;
  } else {
    return null;
  }
  if (i !== n) return null;
  // Date.UTC maps years 0-99 to 1900-1999.
  const utc = year >= 100 ? Date.UTC(year, month - 1, day) : new Date(0).setUTCFullYear(year, month - 1, day);
  return utc + ((hour * 60 + minute) * 60 + second) * 1000 + ms - offset;
}

/** An HTTP method as licenses name it (upper case). Shared with the declarative-file validator. */
export const METHOD = /^[A-Z][A-Z0-9_-]{0,31}$/;
/** Service and port names: printable, no whitespace, no `/` (it separates them in `service/port`). */
const NAME = /^[^\s/\p{Cc}]{1,253}$/u;
const LICENSE_ID = /^[^\s\p{Cc}]{1,256}$/u;

/** `service/port`, the key of a port in snapshots, metrics and logs. */
export function portKeyOf(service: string, port: string): string {
  return service + '/' + port;
}

/**
 * Whether a normalised path matches one rule: exact, or for `/api/*` the path `/api` itself, `/api/`
 * and everything below `/api/` (never `/apix`). Allocation-free.
 */
export function pathRuleMatches(rule: PathRule, path: string): boolean {
  if (!rule.prefix) return path === rule.base;
  const n = rule.base.length;
  return path.startsWith(rule.base) && (path.length === n || path.charCodeAt(n) === 0x2f);
}

/** Whether any rule matches; `rules` null means any path. Allocation-free. */
export function pathsMatch(rules: readonly PathRule[] | null, path: string): boolean {
  if (rules === null) return true;
  for (let i = 0; i < rules.length; i++) if (pathRuleMatches(rules[i]!, path)) return true;
  return false;
}

/**
 * Compile a path pattern: `/exact`, `/prefix/*` or `/*`. The pattern must already be in the form
 * normalizePath produces, so the operator sees exactly what is matched. Returns a reason when invalid.
 */
export function compilePathRule(pattern: string): PathRule | string {
  const prefix = pattern.endsWith('/*');
  const base = prefix ? pattern.slice(0, -2) : pattern;
  if (!pattern.startsWith('/')) return `"${pattern}" must start with "/"`;
  if (base.includes('*')) return `"${pattern}": "*" is only allowed as a final "/*"`;
  if (base === '') return { pattern, base, prefix };
  const canonical = normalizePath(base);
  if (canonical === null)
    return `"${pattern}" is not a valid path (bad escape, control character, "?" or "#")`;
  if (canonical !== base)
    return `"${pattern}" is not in normalised form; write "${canonical}${prefix ? '/*' : ''}"`;
  if (prefix && base.endsWith('/')) return `"${pattern}": write "${base.slice(0, -1)}/*"`;
  return { pattern, base, prefix };
}

class FieldError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

function str(o: Record<string, unknown>, field: string, re?: RegExp, what?: string): string {
  const v = o[field];
  if (typeof v !== 'string') throw new FieldError(field, v === undefined ? 'is missing' : 'must be a string');
  if (re !== undefined && !re.test(v)) throw new FieldError(field, `${JSON.stringify(v)} is not ${what}`);
  return v;
}

function time(o: Record<string, unknown>, field: string): number {
  const v = o[field];
  if (typeof v !== 'string') throw new FieldError(field, v === undefined ? 'is missing' : 'must be a string');
  const t = parseRfc3339(v);
  if (t === null) throw new FieldError(field, `${JSON.stringify(v)} is not an RFC 3339 time`);
  return t;
}

function list(o: Record<string, unknown>, field: string): string[] | null {
  const v = o[field];
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v)) throw new FieldError(field, 'must be an array of strings');
  for (let i = 0; i < v.length; i++)
    if (typeof v[i] !== 'string') throw new FieldError(`${field}[${i}]`, 'must be a string');
  return v as string[];
}

function isTrustDomainChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

function isSegmentChar(c: number): boolean {
  return isTrustDomainChar(c) || (c >= 0x41 && c <= 0x5a);
}

/**
 * One-scan check of a subject against the rules of policy/spiffe.ts (which gives the message when
 * this says no): `spiffe://td`, `spiffe://td/a/b`, or either followed by `/*`.
 */
function quickSubjectOk(s: string): boolean {
  if (!s.startsWith('spiffe://') || s.length > 2050) return false;
  const n = s.length;
  let i = 9;
  while (i < n && isTrustDomainChar(s.charCodeAt(i))) i++;
  if (i === 9) return false;
  while (i < n) {
    if (s.charCodeAt(i) !== 0x2f) return false;
    if (i === n - 2 && s.charCodeAt(n - 1) === 0x2a) return true;
    const from = ++i;
    while (i < n && isSegmentChar(s.charCodeAt(i))) i++;
    const len = i - from;
    if (
      len === 0 ||
      (len <= 2 && s.charCodeAt(from) === 0x2e && (len === 1 || s.charCodeAt(from + 1) === 0x2e))
    )
      return false;
  }
  return n <= 2048;
}

/**
 * Compiles the licenses of one bundle, interning what licenses share — port keys, method sets,
 * path rules — so a big bundle allocates (and keeps) little per license.
 */
class LicenseCompiler {
  private readonly portKeys = new Map<string, Map<string, string>>();
  private readonly methodSets = new Map<string, ReadonlySet<string>>();
  private readonly pathRules = new Map<string, PathRule>();

  compile(input: unknown, where: string): CompiledLicense {
    if (typeof input !== 'object' || input === null || Array.isArray(input))
      throw new PortlicenseError('BUNDLE_INVALID', `bundle ${where}: must be an object`);
    const o = input as Record<string, unknown>;
    try {
      return this.fields(o);
    } catch (err) {
      if (!(err instanceof FieldError)) throw err;
      const label =
        typeof o.id === 'string' && o.id.length <= 256 ? `${where} (${JSON.stringify(o.id)})` : where;
      throw new PortlicenseError('BUNDLE_INVALID', `bundle ${label}: ${err.field}: ${err.message}`);
    }
  }

  private fields(o: Record<string, unknown>): CompiledLicense {
    const id = str(o, 'id', LICENSE_ID, 'a license id (1-256 printable characters, no spaces)');
    const subject = str(o, 'subject');
    if (!quickSubjectOk(subject)) {
      const parsed = parseSubjectPattern(subject);
      if (typeof parsed === 'string')
        throw new FieldError(
          'subject',
          `${JSON.stringify(subject)} is not a SPIFFE ID or "/*" prefix: ${parsed}`,
        );
    }
    const service = str(o, 'service', NAME, 'a service name');
    const port = str(o, 'port', NAME, 'a port name');
    const notBefore = time(o, 'notBefore');
    const expiresAt = time(o, 'expiresAt');
    const revokedAt = o.revokedAt === undefined || o.revokedAt === null ? null : time(o, 'revokedAt');
    const methodList = list(o, 'methods');
    const pathList = list(o, 'paths');

    const wire: LicenseWire = {
      id,
      subject,
      service,
      port,
      notBefore: o.notBefore as string,
      expiresAt: o.expiresAt as string,
    };
    if (methodList !== null) wire.methods = methodList.slice();
    if (pathList !== null) wire.paths = pathList.slice();
    if (revokedAt !== null) wire.revokedAt = o.revokedAt as string;

    return {
      id,
      subject,
      service,
      port,
      portKey: this.portKey(service, port),
      notBefore,
      expiresAt,
      revokedAt,
      methods: methodList === null || methodList.length === 0 ? null : this.methods(methodList),
      paths: pathList === null || pathList.length === 0 ? null : this.paths(pathList),
      wire,
    };
  }

  private portKey(service: string, port: string): string {
    let ports = this.portKeys.get(service);
    if (ports === undefined) this.portKeys.set(service, (ports = new Map<string, string>()));
    let key = ports.get(port);
    if (key === undefined) ports.set(port, (key = portKeyOf(service, port)));
    return key;
  }

  private methods(list: string[]): ReadonlySet<string> {
    // Validated before the lookup: the key must only ever be built from valid methods.
    for (let i = 0; i < list.length; i++)
      if (!METHOD.test(list[i]!))
        throw new FieldError(`methods[${i}]`, `${JSON.stringify(list[i])} is not an upper-case method`);
    const key = list.join(' ');
    let set = this.methodSets.get(key);
    if (set === undefined) this.methodSets.set(key, (set = new Set(list)));
    return set;
  }

  private paths(list: string[]): PathRule[] {
    const rules = new Array<PathRule>(list.length);
    for (let i = 0; i < list.length; i++) {
      const pattern = list[i]!;
      let rule = this.pathRules.get(pattern);
      if (rule === undefined) {
        const compiled = compilePathRule(pattern);
        if (typeof compiled === 'string') throw new FieldError(`paths[${i}]`, compiled);
        this.pathRules.set(pattern, (rule = Object.freeze(compiled)));
      }
      rules[i] = rule;
    }
    return rules;
  }
}

/**
 * Validate and compile one wire license. Throws PortlicenseError('BUNDLE_INVALID') naming the
 * license (`where`, e.g. `licenses[3]`, and its id) and the field. Unknown fields are ignored and
 * dropped from `wire`. Empty `methods` / `paths` mean "no rule" (SPEC: rules apply "when it has any").
 */
export function compileLicense(input: unknown, where = 'license'): CompiledLicense {
  return new LicenseCompiler().compile(input, where);
}

/**
 * License lists that validatePayload already compiled. The list and its wire licenses are frozen,
 * so the compiled form stays exact and buildSnapshot need not compile a verified bundle twice.
 */
const compiledLists = new WeakMap<readonly LicenseWire[], readonly CompiledLicense[]>();

function requireArray(input: unknown): asserts input is unknown[] {
  if (!Array.isArray(input))
    throw new PortlicenseError('BUNDLE_INVALID', 'bundle payload.licenses: must be an array');
}

/** One pass over a license list, an item at a time, so the sync and the sliced forms share it. */
class ListCompilation {
  private readonly compiler = new LicenseCompiler();
  readonly out: CompiledLicense[];

  constructor(
    private readonly input: readonly unknown[],
    private readonly byId: Map<string, CompiledLicense>,
  ) {
    this.out = new Array<CompiledLicense>(input.length);
  }

  step(i: number): void {
    const l = this.compiler.compile(this.input[i], `licenses[${i}]`);
    if (this.byId.has(l.id))
      throw new PortlicenseError(
        'BUNDLE_INVALID',
        `bundle licenses[${i}]: id ${JSON.stringify(l.id)} appears twice`,
      );
    this.byId.set(l.id, l);
    this.out[i] = l;
  }
}

/**
 * Compile every license of a payload; also refuses a non-array and duplicate ids. `byId`, when
 * given, is filled with id → license (the duplicate check needs that map anyway).
 */
export function compileLicenses(
  input: unknown,
  byId = new Map<string, CompiledLicense>(),
): readonly CompiledLicense[] {
  requireArray(input);
  const known = compiledLists.get(input as LicenseWire[]);
  if (known !== undefined) {
    for (const l of known) byId.set(l.id, l);
    return known;
  }
  const pass = new ListCompilation(input, byId);
  for (let i = 0; i < input.length; i++) pass.step(i);
  return pass.out;
}

/** compileLicenses in slices (policy/slice.ts): the same result and errors, no long stall. */
export async function compileLicensesAsync(
  input: unknown,
  byId = new Map<string, CompiledLicense>(),
  slicer = new Slicer(),
): Promise<readonly CompiledLicense[]> {
  requireArray(input);
  const known = compiledLists.get(input as LicenseWire[]);
  if (known !== undefined) {
    for (let i = 0; i < known.length; i++) {
      byId.set(known[i]!.id, known[i]!);
      if (slicer.due(i)) await slicer.pause();
    }
    return known;
  }
  const pass = new ListCompilation(input, byId);
  for (let i = 0; i < input.length; i++) {
    pass.step(i);
    if (slicer.due(i)) await slicer.pause();
  }
  return pass.out;
}

function freezeWire(w: LicenseWire): LicenseWire {
  if (w.methods) Object.freeze(w.methods);
  if (w.paths) Object.freeze(w.paths);
  return Object.freeze(w);
}

function remember(wires: LicenseWire[], compiled: readonly CompiledLicense[]): LicenseWire[] {
  Object.freeze(wires);
  compiledLists.set(wires, compiled);
  return wires;
}

/**
 * Compile `input` and return its clean wire licenses as a frozen list whose compiled form is
 * remembered for compileLicenses. For validatePayload.
 */
export function compileWireList(input: unknown): LicenseWire[] {
  const compiled = compileLicenses(input);
  return remember(
    compiled.map((l) => freezeWire(l.wire)),
    compiled,
  );
}

/** compileWireList in slices (policy/slice.ts), for validatePayloadAsync. */
export async function compileWireListAsync(input: unknown, slicer = new Slicer()): Promise<LicenseWire[]> {
  const compiled = await compileLicensesAsync(input, undefined, slicer);
  const wires = new Array<LicenseWire>(compiled.length);
  for (let i = 0; i < compiled.length; i++) {
    wires[i] = freezeWire(compiled[i]!.wire);
    if (slicer.due(i)) await slicer.pause();
  }
  return remember(wires, compiled);
}
