/**
 * The declarative services + licenses file (SPEC §5) used by `apply -f`, `POST /v1/apply` and
 * `bundle sign --in`. One validator for all three: from a YAML file problems carry `file:line`,
 * from an already-parsed JSON body they carry the key path only.
 */
import type { PortProtocol } from '../policy/types.js';
import { formatDuration, MAX_LICENSE_LIFETIME } from './duration.js';
import { readYamlFile, parseYamlText, type YamlDocument } from './yaml.js';
import { compilePathRule, METHOD as LICENSE_METHOD } from '../policy/compile.js';
import {
  INVALID,
  arrayOf,
  asRecord,
  boolean,
  createContext,
  deepFreeze,
  duration,
  indexPath,
  keyPath,
  map,
  name,
  object,
  oneOf,
  optional,
  peek,
  refine,
  report,
  required,
  string,
  subjectPattern,
  throwIfProblems,
  time,
  type Schema,
  type SchemaContext,
} from './schema.js';

export interface DeclarativePort {
  readonly name: string;
  readonly protocol: PortProtocol;
}

export interface DeclarativeService {
  readonly name: string;
  readonly ports: readonly DeclarativePort[];
}

/**
 * One license to grant. Absent optional fields take the authority's `defaults`; durations are ms,
 * times epoch ms.
 */
export interface DeclarativeLicense {
  readonly subject: string;
  readonly service: string;
  readonly port: string;
  readonly ttl?: number;
  /** A fixed expiry instead of `ttl`. */
  readonly expiresAt?: number;
  readonly maxLifetime?: number;
  readonly autoRenew?: boolean;
  /** Upper-case HTTP methods; absent = any method. */
  readonly methods?: readonly string[];
  /** Path patterns (exact, or ending in `/*`); absent = any path. */
  readonly paths?: readonly string[];
  readonly notBefore?: number;
  readonly reason?: string;
}

export interface DeclarativeFile {
  /** Whether the input had a `services` section (licenses were then checked against it). */
  readonly hasServices: boolean;
  readonly services: readonly DeclarativeService[];
  readonly licenses: readonly DeclarativeLicense[];
}

const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Why `p` is not a valid license path pattern, or undefined. Patterns are compared with the
 * normalised request path (SPEC §2.3), so a pattern that could never equal a normalised path
 * (dot segments, `//`, percent-encoding, a query) is an error rather than a silent never-match.
 */
export function pathPatternProblem(p: string): string | undefined {
  if (!p.startsWith('/')) return 'must start with "/"';
  if (p.includes('*') && !(p.endsWith('/*') && p.indexOf('*') === p.length - 1))
    return '"*" is only allowed as a final "/*"';
  if (/[?#]/.test(p)) return 'must not contain a query or fragment ("?", "#")';
  // eslint-disable-next-line no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(p)) return 'must not contain spaces or control characters';
  if (p.includes('//')) return 'must not contain "//"';
  const base = p.endsWith('/*') ? p.slice(0, -2) : p;
  if (base.split('/').some((s) => s === '.' || s === '..')) return 'must not contain "." or ".." segments';
  // The last word belongs to the compiler the sidecar runs, so nothing is granted that a bundle
  // could not carry.
  const compiled = compilePathRule(p);
  return typeof compiled === 'string' ? compiled : undefined;
}

const methodSchema = refine(
  map(string({ pattern: METHOD, patternMessage: 'must be an HTTP method like GET or POST' }), (m) =>
    m.toUpperCase(),
  ),
  (m) =>
    LICENSE_METHOD.test(m)
      ? undefined
      : 'must be an HTTP method like GET or POST (letters, digits, "-", "_")',
);

const pathSchema = refine(string(), (p) => pathPatternProblem(p));

const lifetimeSchema = duration({ min: 1_000, max: MAX_LICENSE_LIFETIME });

const licenseObject = object({
  subject: required(subjectPattern()),
  service: required(name()),
  port: required(name()),
  ttl: optional(lifetimeSchema),
  expiresAt: optional(time()),
  maxLifetime: optional(lifetimeSchema),
  autoRenew: optional(boolean()),
  methods: optional(
    arrayOf(methodSchema, {
      minItems: 1,
      minMessage: 'must list at least one method (omit it to allow any)',
      unique: true,
    }),
  ),
  paths: optional(
    arrayOf(pathSchema, {
      minItems: 1,
      minMessage: 'must list at least one path (omit it to allow any)',
      unique: true,
    }),
  ),
  notBefore: optional(time()),
  reason: optional(string({ maxLength: 1024 })),
});

/** Drop keys whose value is undefined, so a license reads as what was written. */
const compact = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

const licenseSchema: Schema<DeclarativeLicense> = map(licenseObject, (l) => compact(l));

const serviceSchema = object({
  name: required(name()),
  ports: required(
    arrayOf(object({ name: required(name()), protocol: required(oneOf(['tcp', 'http'])) }), {
      minItems: 1,
      minMessage: 'must list at least one port',
    }),
  ),
});

const fileSchema = object({
  services: optional(arrayOf(serviceSchema)),
  licenses: optional(arrayOf(licenseSchema)),
});

/**
 * Load a declarative YAML file.
 * @throws ConfigError listing every problem as `file:line: path: message`.
 */
export function loadDeclarativeFile(file: string): DeclarativeFile {
  return declarativeFrom(readYamlFile(file));
}

/** Parse declarative YAML text; `file` names it in problems. */
export function parseDeclarativeYaml(text: string, file: string): DeclarativeFile {
  return declarativeFrom(parseYamlText(text, file));
}

/** Validate an already-read YAML document as a declarative file. */
export function declarativeFrom(doc: YamlDocument): DeclarativeFile {
  return validate(doc.value, createContext({ file: doc.file, dir: doc.dir, lineOf: doc.lineOf }));
}

/**
 * Validate an already-parsed value (a `POST /v1/apply` JSON body). Problems carry the key path
 * and `label` in place of a file name.
 * @throws ConfigError
 */
export function parseDeclarative(value: unknown, label = 'input'): DeclarativeFile {
  return validate(value, createContext({ file: label }));
}

/**
 * Validate one license request (`POST /v1/licenses` takes the same fields as a declarative
 * license). No service check: the caller knows the registered services.
 * @throws ConfigError
 */
export function parseLicenseSpec(value: unknown, label = 'input'): DeclarativeLicense {
  const ctx = createContext({ file: label });
  const parsed = licenseSchema.parse(value, '', ctx);
  const rec = asRecord(value);
  if (rec) checkLicense(rec, '', ctx);
  throwIfProblems(ctx);
  if (parsed === INVALID) throw new Error('unreachable: invalid license without problems');
  return deepFreeze(parsed);
}

function validate(value: unknown, ctx: SchemaContext): DeclarativeFile {
  const rec = asRecord(value);
  if (rec && rec.services === undefined && rec.licenses === undefined)
    report(ctx, '', 'expected services and/or licenses');
  if (value === null || value === undefined) report(ctx, '', 'is empty; expected services and/or licenses');
  const parsed = fileSchema.parse(value ?? {}, '', ctx);
  if (rec) crossCheck(rec, ctx);
  throwIfProblems(ctx);
  if (parsed === INVALID) throw new Error('unreachable: invalid file without problems');
  return deepFreeze({
    hasServices: Array.isArray(rec?.services),
    services: parsed.services ?? [],
    licenses: parsed.licenses ?? [],
  });
}

/** Field combinations of one license that no single key can judge. */
function checkLicense(l: Record<string, unknown>, path: string, ctx: SchemaContext): void {
  const has = (k: string): boolean => l[k] !== undefined && l[k] !== null;
  if (has('ttl') && has('expiresAt'))
    report(ctx, keyPath(path, 'expiresAt'), 'set either ttl or expiresAt, not both');
  const ttl = peek(lifetimeSchema, l.ttl, ctx);
  const maxLifetime = peek(lifetimeSchema, l.maxLifetime, ctx);
  if (ttl !== undefined && maxLifetime !== undefined && ttl > maxLifetime)
    report(
      ctx,
      keyPath(path, 'ttl'),
      `ttl (${formatDuration(ttl)}) must not exceed maxLifetime (${formatDuration(maxLifetime)})`,
    );
  const notBefore = peek(time(), l.notBefore, ctx);
  const expiresAt = peek(time(), l.expiresAt, ctx);
  if (notBefore !== undefined && expiresAt !== undefined && expiresAt <= notBefore)
    report(ctx, keyPath(path, 'expiresAt'), 'must be after notBefore');
}

function crossCheck(rec: Record<string, unknown>, ctx: SchemaContext): void {
  // service name -> port name -> protocol
  const declared = new Map<string, Map<string, string>>();
  const services = Array.isArray(rec.services) ? rec.services : undefined;
  services?.forEach((s, i) => {
    const svc = asRecord(s);
    const path = indexPath('services', i);
    if (!svc || typeof svc.name !== 'string') return;
    const svcName = svc.name;
    if (declared.has(svcName)) {
      report(ctx, keyPath(path, 'name'), `duplicate service "${svcName}"`);
      return;
    }
    const ports = new Map<string, string>();
    declared.set(svcName, ports);
    if (!Array.isArray(svc.ports)) return;
    svc.ports.forEach((p, j) => {
      const port = asRecord(p);
      if (!port || typeof port.name !== 'string') return;
      if (ports.has(port.name))
        report(
          ctx,
          keyPath(indexPath(keyPath(path, 'ports'), j), 'name'),
          `duplicate port "${port.name}" of service "${svcName}"`,
        );
      else ports.set(port.name, typeof port.protocol === 'string' ? port.protocol : '');
    });
  });

  if (!Array.isArray(rec.licenses)) return;
  const seen = new Map<string, string>();
  rec.licenses.forEach((item, i) => {
    const l = asRecord(item);
    if (!l) return;
    const path = indexPath('licenses', i);
    checkLicense(l, path, ctx);
    const { subject, service, port } = l;
    if (typeof subject === 'string' && typeof service === 'string' && typeof port === 'string') {
      const key = `${subject} ${service}/${port}`;
      const first = seen.get(key);
      if (first) report(ctx, path, `duplicate of ${first} (same subject, service and port)`);
      else seen.set(key, path);
    }
    // A malformed name is already reported; do not also call it unknown.
    if (!services || peek(name(), service, ctx) === undefined || typeof service !== 'string') return;
    const ports = declared.get(service);
    if (!ports) {
      report(
        ctx,
        keyPath(path, 'service'),
        `unknown service "${service}" (declared: ${[...declared.keys()].join(', ') || 'none'})`,
      );
      return;
    }
    if (peek(name(), port, ctx) === undefined || typeof port !== 'string') return;
    const protocol = ports.get(port);
    if (protocol === undefined) {
      report(
        ctx,
        keyPath(path, 'port'),
        `unknown port "${port}" of service "${service}" (declared: ${[...ports.keys()].join(', ')})`,
      );
      return;
    }
    if (protocol === 'tcp')
      for (const k of ['methods', 'paths'])
        if (l[k] !== undefined && l[k] !== null)
          report(ctx, keyPath(path, k), `only http ports have ${k} (${service}/${port} is tcp)`);
  });
}
