/**
 * The sidecar's YAML config (SPEC §5) -> schema -> defaults -> cross-field checks -> a deep-frozen
 * SidecarConfig. Everything the sidecar needs to refuse to start is checked here, once, so a bad
 * file fails with every problem listed instead of a listener failing at its first connection.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import type { HostPort, OutboundConfig, PortConfig, SidecarConfig } from './types.js';
import { formatDuration } from './duration.js';
import { readYamlFile, type YamlDocument } from './yaml.js';
import {
  arrayOf,
  asRecord,
  boolean,
  deepFreeze,
  duration,
  filePath,
  formatHostPort,
  hostPort,
  httpsUrl,
  indexPath,
  integer,
  isLoopbackHost,
  keyPath,
  listenersClash,
  map,
  name,
  object,
  oneOf,
  optional,
  peek,
  report,
  required,
  resolvePath,
  section,
  string,
  subjectPattern,
  withDefault,
  type Schema,
  type SchemaContext,
  INVALID,
  validateDocument,
  tlsSection,
  trustDomainList,
} from './schema.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Defaults of SPEC §5 and of the per-port limits; exported for docs and tests. */
export const SIDECAR_DEFAULTS = {
  wait: 30 * SECOND,
  reportInterval: 15 * SECOND,
  maxStaleness: 10 * MINUTE,
  mode: 'enforce',
  upstreamTimeout: 30 * SECOND,
  connectTimeout: 5 * SECOND,
  maxConnections: 10_000,
  idleTimeoutTcp: 5 * MINUTE,
  idleTimeoutHttp: 60 * SECOND,
  headersTimeout: 10 * SECOND,
  maxHeaderSize: 16_384,
  // Below Node's 5 s server keep-alive timeout, the commonest upstream's.
  upstreamIdleTimeout: 4 * SECOND,
  handshakeTimeout: 10 * SECOND,
  adminListen: { host: '127.0.0.1', port: 9901 },
  logLevel: 'info',
  accessLogAllowedHttp: false,
  drainTimeout: 15 * SECOND,
  warnBefore: 72 * HOUR,
  workers: 1,
  workerHangTimeout: 10 * SECOND,
} as const;

/** Most data-plane workers `workers:` accepts; far above any core count this runs on. */
export const MAX_WORKERS = 256;

/** Keys that only mean something on an http port. */
const HTTP_ONLY_KEYS = ['upstreamTimeout', 'headersTimeout', 'maxHeaderSize', 'upstreamIdleTimeout'] as const;

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** A node name: reported to the authority and used as a query parameter and a label. */
export const nodeName = (): ReturnType<typeof string> =>
  string({
    pattern: /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/,
    patternMessage: 'must be letters, digits, ".", "_" or "-", starting with a letter or digit (at most 253)',
  });

const portSchema = map(
  object({
    name: required(name()),
    service: required(name()),
    protocol: required(oneOf(['tcp', 'http'])),
    listen: required(hostPort({ allowPortZero: true })),
    upstream: required(hostPort()),
    mode: withDefault(oneOf(['enforce', 'audit']), SIDECAR_DEFAULTS.mode),
    upstreamTimeout: optional(duration({ max: HOUR })),
    connectTimeout: optional(duration({ min: 100, max: 10 * MINUTE })),
    maxConnections: withDefault(integer({ min: 1, max: 1_000_000 }), SIDECAR_DEFAULTS.maxConnections),
    idleTimeout: optional(duration({ min: SECOND, max: DAY })),
    headersTimeout: optional(duration({ min: 100, max: 10 * MINUTE })),
    maxHeaderSize: optional(integer({ min: 1024, max: 1024 * 1024 })),
    upstreamIdleTimeout: optional(duration({ min: 100, max: HOUR })),
  }),
  (p): PortConfig => {
    const upstreamTimeout = p.upstreamTimeout ?? SIDECAR_DEFAULTS.upstreamTimeout;
    return {
      name: p.name,
      service: p.service,
      protocol: p.protocol,
      listen: p.listen,
      upstream: p.upstream,
      mode: p.mode,
      key: `${p.service}/${p.name}`,
      upstreamTimeout,
      // An http port that waits less than 5 s for an answer does not wait longer for a connection.
      connectTimeout:
        p.connectTimeout ??
        (p.protocol === 'http'
          ? Math.max(100, Math.min(SIDECAR_DEFAULTS.connectTimeout, upstreamTimeout))
          : SIDECAR_DEFAULTS.connectTimeout),
      maxConnections: p.maxConnections,
      idleTimeout:
        p.idleTimeout ??
        (p.protocol === 'tcp' ? SIDECAR_DEFAULTS.idleTimeoutTcp : SIDECAR_DEFAULTS.idleTimeoutHttp),
      headersTimeout: p.headersTimeout ?? SIDECAR_DEFAULTS.headersTimeout,
      maxHeaderSize: p.maxHeaderSize ?? SIDECAR_DEFAULTS.maxHeaderSize,
      upstreamIdleTimeout: p.upstreamIdleTimeout ?? SIDECAR_DEFAULTS.upstreamIdleTimeout,
    };
  },
);

const outboundSchema = map(
  object({
    name: required(name()),
    listen: required(hostPort({ allowPortZero: true })),
    target: required(hostPort()),
    serverId: required(subjectPattern()),
    allowNonLoopback: withDefault(boolean(), false),
    connectTimeout: withDefault(duration({ min: 100, max: 10 * MINUTE }), SIDECAR_DEFAULTS.connectTimeout),
    idleTimeout: withDefault(duration({ min: SECOND, max: DAY }), SIDECAR_DEFAULTS.idleTimeoutTcp),
    maxConnections: withDefault(integer({ min: 1, max: 1_000_000 }), SIDECAR_DEFAULTS.maxConnections),
  }),
  (o): OutboundConfig => o,
);

const waitSchema = duration({ min: SECOND, max: 10 * MINUTE });
const maxStalenessSchema = duration({ min: SECOND, max: 30 * DAY });

const authoritySchema = object({
  url: optional(httpsUrl()),
  bundleFile: optional(filePath({ mustExist: true })),
  signingPublicKey: required(filePath({ mustExist: true })),
  cacheFile: optional(filePath({ mustExist: false })),
  serverId: optional(subjectPattern()),
  wait: withDefault(waitSchema, SIDECAR_DEFAULTS.wait),
  reportInterval: withDefault(duration({ min: SECOND, max: HOUR }), SIDECAR_DEFAULTS.reportInterval),
  maxStaleness: withDefault(maxStalenessSchema, SIDECAR_DEFAULTS.maxStaleness),
});

/**
 * `workers`: how many processes run the data plane. `auto` is resolved here, once, to the cores
 * this process may use, so the frozen config says what will actually run.
 */
export function workersSchema(cores: () => number = availableParallelism): Schema<number> {
  const message = `must be an integer from 1 to ${MAX_WORKERS}, or "auto" (one per core)`;
  return {
    parse(value, path, ctx) {
      if (value === 'auto') return Math.min(MAX_WORKERS, Math.max(1, cores()));
      if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= MAX_WORKERS)
        return value;
      report(ctx, path, message);
      return INVALID;
    },
  };
}

const sidecarSchema = object({
  node: required(nodeName()),
  trustDomains: required(trustDomainList()),
  tls: required(tlsSection(SIDECAR_DEFAULTS.handshakeTimeout)),
  authority: required(authoritySchema),
  ports: required(arrayOf(portSchema)),
  outbound: withDefault(arrayOf(outboundSchema), []),
  admin: section(
    object({ listen: withDefault(hostPort({ allowPortZero: true }), SIDECAR_DEFAULTS.adminListen) }),
  ),
  log: section(
    object({
      level: withDefault(oneOf(LOG_LEVELS), SIDECAR_DEFAULTS.logLevel),
      accessLogAllowedHttp: withDefault(boolean(), SIDECAR_DEFAULTS.accessLogAllowedHttp),
    }),
  ),
  drainTimeout: withDefault(duration({ max: HOUR }), SIDECAR_DEFAULTS.drainTimeout),
  warnBefore: withDefault(duration({ max: 365 * DAY }), SIDECAR_DEFAULTS.warnBefore),
  workers: withDefault(workersSchema(), SIDECAR_DEFAULTS.workers),
  workerHangTimeout: withDefault(
    duration({ min: 2 * SECOND, max: 10 * MINUTE }),
    SIDECAR_DEFAULTS.workerHangTimeout,
  ),
});

/**
 * Load, validate and freeze a sidecar config file.
 * @throws ConfigError listing every problem as `file:line: path: message`.
 */
export function loadSidecarConfig(file: string): SidecarConfig {
  return sidecarConfigFrom(readYamlFile(file));
}

/** Validate an already-read YAML document as a sidecar config. */
export function sidecarConfigFrom(doc: YamlDocument): SidecarConfig {
  const parsed = validateDocument(
    doc,
    sidecarSchema,
    crossCheck,
    'node, trustDomains, tls, authority and ports',
  );
  const { url, bundleFile, cacheFile, serverId, ...authority } = parsed.authority;
  const config: SidecarConfig = {
    file: doc.path,
    ...parsed,
    // Leave absent optional keys out rather than present-but-undefined.
    authority: {
      ...authority,
      ...(url !== undefined && { url }),
      ...(bundleFile !== undefined && { bundleFile }),
      ...(cacheFile !== undefined && { cacheFile }),
      ...(serverId !== undefined && { serverId }),
    },
  };
  return deepFreeze(config);
}

/** A setting that is valid but that an operator should know about (logged at start, printed by `config validate`). */
export interface ConfigWarning {
  /** Key path, e.g. `authority.serverId`. */
  readonly path: string;
  readonly message: string;
}

/** What is valid in `c` but weaker than it could be. */
export function sidecarWarnings(c: SidecarConfig): ConfigWarning[] {
  const out: ConfigWarning[] = [];
  if (c.authority.url !== undefined && c.authority.serverId === undefined && c.ports.length > 0)
    out.push({
      path: 'authority.serverId',
      message:
        "authority.serverId is not set: any certificate of the trusted CA valid for the authority URL's host is taken for the authority, and such a server could hold this sidecar on its current bundle (an unchanged answer, 304, carries no signature); set it to the authority's SPIFFE ID",
    });
  return out;
}

/**
 * Checks across keys. They read the raw document (peeking values through the schema without
 * re-reporting) so they still run when an unrelated key is wrong: one pass shows every problem.
 */
function crossCheck(raw: Record<string, unknown>, ctx: SchemaContext): void {
  checkAuthority(asRecord(raw.authority), ctx);
  const ports = entries(raw.ports, 'ports');
  const outbound = entries(raw.outbound, 'outbound');
  if (Array.isArray(raw.ports) && raw.ports.length === 0 && outbound.length === 0)
    report(ctx, 'ports', 'must list at least one port (or configure outbound)');

  const seenPorts = new Map<string, string>();
  for (const { path, rec } of ports) {
    const protocol = rec.protocol;
    if (protocol === 'tcp')
      for (const k of HTTP_ONLY_KEYS)
        if (rec[k] !== undefined && rec[k] !== null)
          report(ctx, keyPath(path, k), 'only applies to http ports (this port is tcp)');
    if (typeof rec.service === 'string' && typeof rec.name === 'string') {
      const key = `${rec.service}/${rec.name}`;
      const first = seenPorts.get(key);
      if (first) report(ctx, path, `duplicate port ${key} (also at ${first})`);
      else seenPorts.set(key, path);
    }
  }

  const seenNames = new Map<string, string>();
  for (const { path, rec } of outbound) {
    if (typeof rec.name === 'string') {
      const first = seenNames.get(rec.name);
      if (first)
        report(ctx, keyPath(path, 'name'), `duplicate outbound name "${rec.name}" (also at ${first})`);
      else seenNames.set(rec.name, path);
    }
    const listen = peek(hostPort({ allowPortZero: true }), rec.listen, ctx);
    if (listen && !isLoopbackHost(listen.host) && rec.allowNonLoopback !== true)
      report(
        ctx,
        keyPath(path, 'listen'),
        'must be a loopback address (127.0.0.1, ::1, localhost): the local app connects in plaintext; set allowNonLoopback: true to override',
      );
  }

  checkListeners(raw, ports, outbound, ctx);
}

function checkAuthority(auth: Record<string, unknown> | undefined, ctx: SchemaContext): void {
  if (!auth) return;
  const has = (k: string): boolean => auth[k] !== undefined && auth[k] !== null;
  if (has('url') && has('bundleFile'))
    report(ctx, 'authority.bundleFile', 'set either authority.url or authority.bundleFile, not both');
  if (!has('url') && !has('bundleFile'))
    report(
      ctx,
      'authority',
      'needs url (an https:// authority to pull from) or bundleFile (a signed bundle file)',
    );
  if (has('serverId') && !has('url')) report(ctx, 'authority.serverId', 'only used with authority.url');
  if (has('cacheFile')) {
    if (has('bundleFile') && !has('url'))
      report(ctx, 'authority.cacheFile', 'only used with authority.url (a bundleFile is its own cache)');
    else if (typeof auth.cacheFile === 'string' && auth.cacheFile.trim() !== '') {
      const problem = writableFileProblem(resolvePath(auth.cacheFile, ctx));
      if (problem) report(ctx, 'authority.cacheFile', problem);
    }
  }
  if (has('url')) {
    const wait = has('wait') ? peek(waitSchema, auth.wait, ctx) : SIDECAR_DEFAULTS.wait;
    const stale = has('maxStaleness')
      ? peek(maxStalenessSchema, auth.maxStaleness, ctx)
      : SIDECAR_DEFAULTS.maxStaleness;
    if (wait !== undefined && stale !== undefined && stale <= wait)
      report(
        ctx,
        has('maxStaleness') ? 'authority.maxStaleness' : 'authority.wait',
        `authority.maxStaleness (${formatDuration(stale)}) must be longer than authority.wait (${formatDuration(wait)}), or every long poll would make the sidecar unready`,
      );
  }
}

/** Every listen address is bound once: ports, outbound and the admin server may not share one. */
function checkListeners(
  raw: Record<string, unknown>,
  ports: Entry[],
  outbound: Entry[],
  ctx: SchemaContext,
): void {
  const listenSchema = hostPort({ allowPortZero: true });
  const taken: { path: string; addr: HostPort }[] = [];
  const claim = (path: string, value: unknown, fallback?: HostPort): void => {
    const addr = value === undefined || value === null ? fallback : peek(listenSchema, value, ctx);
    if (!addr) return;
    const other = taken.find((t) => listenersClash(t.addr, addr));
    if (other)
      report(ctx, path, `${formatHostPort(addr)} clashes with ${other.path} (${formatHostPort(other.addr)})`);
    else taken.push({ path, addr });
  };
  const admin = asRecord(raw.admin);
  const adminSet = admin?.listen !== undefined && admin.listen !== null;
  claim(adminSet ? 'admin.listen' : 'the default admin.listen', admin?.listen, SIDECAR_DEFAULTS.adminListen);
  for (const { path, rec } of ports) claim(keyPath(path, 'listen'), rec.listen);
  for (const { path, rec } of outbound) claim(keyPath(path, 'listen'), rec.listen);

  // An upstream that is one of our own listeners would proxy to itself forever.
  for (const { path, rec } of ports) {
    const up = peek(hostPort(), rec.upstream, ctx);
    if (!up || !isLoopbackHost(up.host)) continue;
    const loop = taken.find(
      (t) => t.addr.port === up.port && (isLoopbackHost(t.addr.host) || listenersClash(t.addr, up)),
    );
    if (loop) report(ctx, keyPath(path, 'upstream'), `points at this sidecar's own listener ${loop.path}`);
  }
  // A target that is one of our own outbound listeners would dial itself, one connection per hop.
  const outboundListens = taken.filter((t) => t.path.startsWith('outbound['));
  for (const { path, rec } of outbound) {
    const target = peek(hostPort(), rec.target, ctx);
    if (!target || !isLoopbackHost(target.host)) continue;
    const loop = outboundListens.find(
      (t) => t.addr.port === target.port && (isLoopbackHost(t.addr.host) || listenersClash(t.addr, target)),
    );
    if (loop)
      report(
        ctx,
        keyPath(path, 'target'),
        `points at this sidecar's own outbound listener ${loop.path} (plaintext; it would dial itself)`,
      );
  }
}

interface Entry {
  path: string;
  rec: Record<string, unknown>;
}

function entries(list: unknown, path: string): Entry[] {
  if (!Array.isArray(list)) return [];
  const out: Entry[] = [];
  list.forEach((item, i) => {
    const rec = asRecord(item);
    if (rec) out.push({ path: indexPath(path, i), rec });
  });
  return out;
}

/**
 * A file the sidecar will write later: it may not exist yet, but its folder must exist or be
 * creatable under a writable ancestor. Nothing is created here: validating must not change disk.
 */
export function writableFileProblem(abs: string): string | undefined {
  try {
    if (!statSync(abs).isFile()) return `not a regular file: ${abs}`;
    accessSync(abs, constants.W_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') return `file not writable: ${abs}`;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') return `cannot use ${abs}: ${(err as Error).message}`;
  }
  for (let dir = dirname(abs); ; dir = dirname(dir)) {
    try {
      if (!statSync(dir).isDirectory()) return `cannot create ${dirname(abs)}: ${dir} is not a folder`;
      accessSync(dir, constants.W_OK | constants.X_OK);
      return undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') return `cannot create ${abs}: ${dir} is not writable`;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(dir) === dir)
        return `cannot create ${abs}: ${(err as Error).message}`;
    }
  }
}
