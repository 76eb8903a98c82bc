/**
 * The authority's YAML config (SPEC §5) -> schema -> defaults -> cross-field checks -> a
 * deep-frozen AuthorityConfig. The type lives here because only the authority and the CLI use it.
 */
import type { HostPort } from './types.js';
import { formatDuration, MAX_LICENSE_LIFETIME } from './duration.js';
import { subjectCovers } from '../policy/spiffe.js';
import { readYamlFile, type YamlDocument } from './yaml.js';
import { LOG_LEVELS, writableFileProblem } from './sidecar.js';
import {
  arrayOf,
  asRecord,
  boolean,
  deepFreeze,
  defaultInput,
  duration,
  filePath,
  formatHostPort,
  hostPort,
  indexPath,
  integer,
  INVALID,
  listenersClash,
  map,
  name,
  nonEmptyString,
  object,
  oneOf,
  peek,
  report,
  required,
  resolvePath,
  section,
  subjectPattern,
  trustDomain,
  trustDomainOf,
  withDefault,
  type Schema,
  type SchemaContext,
  validateDocument,
  tlsSection,
  trustDomainList,
} from './schema.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * One `sidecars` entry. A plain subject string may pull bundles and report usage for any service;
 * the mapping form `{ identity, services }` only for the services it lists, so that a sidecar's
 * certificate, stolen or misused, can neither read other services' licenses nor keep them alive
 * with made-up usage.
 */
export interface SidecarGrant {
  /** An exact SPIFFE ID or a prefix ending in `/*`. */
  readonly identity: string;
  /** The services it may name; null for a plain string entry (every service). */
  readonly services: readonly string[] | null;
}

/** The validated, frozen authority configuration. Durations in ms, paths absolute. */
export interface AuthorityConfig {
  /** Absolute path of the file this came from. */
  readonly file: string;
  /** The mTLS API listener (sidecars and admins). */
  readonly listen: HostPort;
  /** Only client identities of these trust domains are accepted. */
  readonly trustDomains: readonly string[];
  readonly tls: {
    readonly ca: string;
    readonly cert: string;
    readonly key: string;
    /** Deadline for a client to finish the TLS handshake. */
    readonly handshakeTimeout: number;
  };
  /** Ed25519 private key (PKCS#8 PEM) that signs bundles. */
  readonly signingKey: string;
  readonly store: {
    /** Absolute path of the SQLite database, or `:memory:` (tests, `dev`). */
    readonly sqlite: string;
  };
  /** Subject patterns that may change services and licenses. */
  readonly admins: readonly string[];
  /** Who may pull bundles and report usage, and for which services. */
  readonly sidecars: readonly SidecarGrant[];
  /** Applied to a grant that does not say otherwise. */
  readonly defaults: {
    readonly ttl: number;
    readonly maxLifetime: number;
    readonly autoRenew: boolean;
    /** Licenses expiring within this are counted in portlicense_authority_expiring_licenses. */
    readonly warnBefore: number;
  };
  readonly admin: { readonly listen: HostPort };
  readonly log: { readonly level: 'debug' | 'info' | 'warn' | 'error' };
  readonly limits: {
    /** Largest accepted request body; beyond it 413. */
    readonly maxBodyBytes: number;
    /** Longest long-poll hold a sidecar may ask for (`wait=`); longer asks are clamped. */
    readonly maxWait: number;
    /** Concurrent client connections (held long polls included); beyond it new ones are refused. */
    readonly maxConnections: number;
    /** The whole request head must arrive within this. */
    readonly headersTimeout: number;
    /** A node silent (no sync, no report) for this long is forgotten: gone from /v1/nodes and the store. */
    readonly forgetNodesAfter: number;
  };
  /** On SIGTERM: how long in-flight requests may finish before they are cut. */
  readonly drainTimeout: number;
}

/** Defaults of SPEC §5 and of the limits; exported for docs and tests. */
export const AUTHORITY_DEFAULTS = {
  sqlite: 'data/authority.db',
  ttl: 24 * HOUR,
  maxLifetime: 30 * DAY,
  autoRenew: true,
  warnBefore: 72 * HOUR,
  adminListen: { host: '127.0.0.1', port: 9902 },
  logLevel: 'info',
  handshakeTimeout: 10 * SECOND,
  maxBodyBytes: 1024 * 1024,
  maxWait: 60 * SECOND,
  maxConnections: 10_000,
  headersTimeout: 10 * SECOND,
  forgetNodesAfter: 72 * HOUR,
  drainTimeout: 15 * SECOND,
} as const;

const MEMORY = ':memory:';

const subjects = (what: string): ReturnType<typeof arrayOf<string>> =>
  arrayOf(subjectPattern(), {
    minItems: 1,
    minMessage: `must list at least one ${what} subject`,
    unique: true,
  });

const sidecarMapping = object({
  identity: required(subjectPattern()),
  services: required(
    arrayOf(name(), {
      minItems: 1,
      minMessage: 'must list at least one service (a plain subject string allows every service)',
      unique: true,
    }),
  ),
});

/** A subject string (every service) or `{ identity, services }`. */
const sidecarGrant: Schema<SidecarGrant> = {
  parse(value, path, ctx) {
    if (typeof value === 'string') {
      const identity = subjectPattern().parse(value, path, ctx);
      return identity === INVALID ? INVALID : { identity, services: null };
    }
    if (asRecord(value) === undefined) {
      report(
        ctx,
        path,
        'must be a subject like spiffe://example.org/ns/orders/*, or a mapping { identity, services: [...] }',
      );
      return INVALID;
    }
    return sidecarMapping.parse(value, path, ctx);
  },
};

const lifetimeSchema = duration({ min: SECOND, max: MAX_LICENSE_LIFETIME });

const authoritySchema = object({
  listen: required(hostPort({ allowPortZero: true })),
  trustDomains: required(trustDomainList()),
  tls: required(tlsSection(AUTHORITY_DEFAULTS.handshakeTimeout)),
  signingKey: required(filePath({ mustExist: true })),
  store: section(
    object({
      sqlite: defaultInput(
        map(nonEmptyString(), (p, ctx) => (p === MEMORY ? p : resolvePath(p, ctx))),
        AUTHORITY_DEFAULTS.sqlite,
      ),
    }),
  ),
  admins: required(subjects('admin')),
  sidecars: required(
    arrayOf(sidecarGrant, {
      minItems: 1,
      minMessage: 'must list at least one sidecar subject',
      unique: true,
    }),
  ),
  defaults: section(
    object({
      ttl: withDefault(lifetimeSchema, AUTHORITY_DEFAULTS.ttl),
      maxLifetime: withDefault(lifetimeSchema, AUTHORITY_DEFAULTS.maxLifetime),
      autoRenew: withDefault(boolean(), AUTHORITY_DEFAULTS.autoRenew),
      warnBefore: withDefault(duration({ max: 365 * DAY }), AUTHORITY_DEFAULTS.warnBefore),
    }),
  ),
  admin: section(
    object({ listen: withDefault(hostPort({ allowPortZero: true }), AUTHORITY_DEFAULTS.adminListen) }),
  ),
  log: section(object({ level: withDefault(oneOf(LOG_LEVELS), AUTHORITY_DEFAULTS.logLevel) })),
  limits: section(
    object({
      maxBodyBytes: withDefault(
        integer({ min: 1024, max: 64 * 1024 * 1024 }),
        AUTHORITY_DEFAULTS.maxBodyBytes,
      ),
      maxWait: withDefault(duration({ min: SECOND, max: 10 * MINUTE }), AUTHORITY_DEFAULTS.maxWait),
      maxConnections: withDefault(integer({ min: 1, max: 1_000_000 }), AUTHORITY_DEFAULTS.maxConnections),
      headersTimeout: withDefault(
        duration({ min: 100, max: 10 * MINUTE }),
        AUTHORITY_DEFAULTS.headersTimeout,
      ),
      // At least an hour: longer than any node takes to go stale (2 × maxWait + 30 s).
      forgetNodesAfter: withDefault(
        duration({ min: HOUR, max: 365 * DAY }),
        AUTHORITY_DEFAULTS.forgetNodesAfter,
      ),
    }),
  ),
  drainTimeout: withDefault(duration({ max: HOUR }), AUTHORITY_DEFAULTS.drainTimeout),
});

/**
 * Load, validate and freeze an authority config file.
 * @throws ConfigError listing every problem as `file:line: path: message`.
 */
export function loadAuthorityConfig(file: string): AuthorityConfig {
  return authorityConfigFrom(readYamlFile(file));
}

/** Validate an already-read YAML document as an authority config. */
export function authorityConfigFrom(doc: YamlDocument): AuthorityConfig {
  const parsed = validateDocument(
    doc,
    authoritySchema,
    crossCheck,
    'listen, trustDomains, tls, signingKey, admins and sidecars',
  );
  return deepFreeze({ file: doc.path, ...parsed });
}

function crossCheck(raw: Record<string, unknown>, ctx: SchemaContext): void {
  // A pattern outside the trust domains could never match a client the TLS layer admits.
  const domains = peek(arrayOf(trustDomain()), raw.trustDomains, ctx);
  if (domains && domains.length > 0) {
    for (const key of ['admins', 'sidecars'] as const) {
      const list = raw[key];
      if (!Array.isArray(list)) continue;
      list.forEach((s: unknown, i) => {
        const mapping = asRecord(s);
        const subject: unknown = mapping === undefined ? s : mapping.identity;
        const td = typeof subject === 'string' ? trustDomainOf(subject) : undefined;
        if (td !== undefined && !domains.includes(td))
          report(
            ctx,
            mapping === undefined ? indexPath(key, i) : `${indexPath(key, i)}.identity`,
            `trust domain "${td}" is not in trustDomains (${domains.join(', ')})`,
          );
      });
    }
  }

  // A plain subject allows every service: a mapping whose identities it all matches binds nothing.
  const sidecars = Array.isArray(raw.sidecars) ? (raw.sidecars as unknown[]) : [];
  sidecars.forEach((entry, i) => {
    const identity = asRecord(entry)?.identity;
    if (typeof identity !== 'string') return;
    const plain = sidecars.findIndex((p) => typeof p === 'string' && subjectCovers(p, identity));
    if (plain >= 0)
      report(
        ctx,
        `${indexPath('sidecars', i)}.identity`,
        `${identity} is also matched by sidecars[${plain}] (${String(sidecars[plain])}), a plain subject that allows every service, so this entry's services bind nothing: narrow or remove one of them`,
      );
  });

  const defaults = asRecord(raw.defaults);
  const ttl = defaults?.ttl == null ? AUTHORITY_DEFAULTS.ttl : peek(lifetimeSchema, defaults.ttl, ctx);
  const maxLifetime =
    defaults?.maxLifetime == null
      ? AUTHORITY_DEFAULTS.maxLifetime
      : peek(lifetimeSchema, defaults.maxLifetime, ctx);
  if (ttl !== undefined && maxLifetime !== undefined && ttl > maxLifetime)
    report(
      ctx,
      defaults?.ttl == null ? 'defaults.maxLifetime' : 'defaults.ttl',
      `defaults.ttl (${formatDuration(ttl)}) must not exceed defaults.maxLifetime (${formatDuration(maxLifetime)})`,
    );

  const listen = peek(hostPort({ allowPortZero: true }), raw.listen, ctx);
  const adminRaw = asRecord(raw.admin)?.listen;
  const admin =
    adminRaw === undefined || adminRaw === null
      ? AUTHORITY_DEFAULTS.adminListen
      : peek(hostPort({ allowPortZero: true }), adminRaw, ctx);
  if (listen && admin && listenersClash(listen, admin))
    report(
      ctx,
      adminRaw === undefined || adminRaw === null ? 'listen' : 'admin.listen',
      `listen ${formatHostPort(listen)} and admin.listen ${formatHostPort(admin)} clash: the API and the admin server need their own ports`,
    );

  const sqlite = asRecord(raw.store)?.sqlite ?? AUTHORITY_DEFAULTS.sqlite;
  if (typeof sqlite === 'string' && sqlite.trim() !== '' && sqlite !== MEMORY) {
    const problem = writableFileProblem(resolvePath(sqlite, ctx));
    if (problem) report(ctx, 'store.sqlite', problem);
  }
}
