/**
 * `portlicense config validate FILE`: tell which kind of file it is from its top-level keys, run
 * the same loader the process would, and describe what it would do. The CLI maps ConfigError to
 * exit 2.
 */
import { ConfigError } from '../errors.js';
import { formatDuration } from './duration.js';
import { readYamlFile } from './yaml.js';
import { asRecord, formatHostPort } from './schema.js';
import { SIDECAR_DEFAULTS, sidecarConfigFrom, sidecarWarnings } from './sidecar.js';
import { authorityConfigFrom, type AuthorityConfig } from './authority.js';
import { declarativeFrom, type DeclarativeFile } from './declarative.js';
import type { SidecarConfig } from './types.js';

export type ConfigKind = 'sidecar' | 'authority' | 'declarative';

export interface ValidationResult {
  kind: ConfigKind;
  /** Human-readable, multi-line description of the validated file. */
  summary: string;
  /** The loaded config, for checks of the files it names (src/cli/material.ts). */
  sidecar?: SidecarConfig;
  authority?: AuthorityConfig;
}

/**
 * The kind of a parsed config by its top-level keys, or undefined when none fits. The defining
 * keys decide first; keys only one kind has are a fallback, so a file whose `ports` is misspelt
 * still gets the sidecar's "did you mean" instead of "unknown kind".
 */
export function detectKind(value: unknown): ConfigKind | undefined {
  const rec = asRecord(value);
  if (!rec) return undefined;
  const has = (...keys: string[]): boolean => keys.some((k) => k in rec);
  if (has('ports')) return 'sidecar';
  if (has('signingKey', 'store')) return 'authority';
  if (has('services', 'licenses')) return 'declarative';
  if (has('node', 'authority', 'outbound')) return 'sidecar';
  if (has('admins', 'sidecars', 'defaults', 'limits')) return 'authority';
  return undefined;
}

/**
 * Validate a sidecar, authority or declarative file.
 * @throws ConfigError with every problem, or when the kind cannot be told.
 */
export function validateConfigFile(file: string): ValidationResult {
  const doc = readYamlFile(file);
  const kind = detectKind(doc.value);
  switch (kind) {
    case 'sidecar': {
      const sidecar = sidecarConfigFrom(doc);
      return { kind, summary: describeSidecar(sidecar), sidecar };
    }
    case 'authority': {
      const authority = authorityConfigFrom(doc);
      return { kind, summary: describeAuthority(authority), authority };
    }
    case 'declarative':
      return { kind, summary: describeDeclarative(declarativeFrom(doc)) };
    case undefined:
      throw new ConfigError([
        {
          file,
          line: 0,
          path: '',
          message:
            'cannot tell what this file is: a sidecar config has "ports", an authority config has "signingKey" and "store", a declarative file has "services" or "licenses"',
        },
      ]);
  }
}

function describeSidecar(c: SidecarConfig): string {
  const a = c.authority;
  const source = a.url
    ? `${a.url} (wait ${formatDuration(a.wait)}, report every ${formatDuration(a.reportInterval)}, unready after ${formatDuration(a.maxStaleness)} without sync)`
    : `bundle file ${a.bundleFile ?? ''}`;
  const lines = [
    `sidecar config for node "${c.node}", trust domains ${c.trustDomains.join(', ')}`,
    `  authority: ${source}${a.cacheFile ? `, cache ${a.cacheFile}` : ''}`,
    ...c.ports.map(
      (p) =>
        `  port ${p.key}: ${p.protocol} ${formatHostPort(p.listen)} -> ${formatHostPort(p.upstream)} (${p.mode})`,
    ),
    ...c.outbound.map(
      (o) =>
        `  outbound ${o.name}: ${formatHostPort(o.listen)} -> ${formatHostPort(o.target)} (server ${o.serverId})`,
    ),
    `  admin: http://${formatHostPort(c.admin.listen)}`,
    ...((c.workers ?? 1) > 1
      ? [
          `  workers: ${c.workers} data-plane processes (one silent for ${formatDuration(c.workerHangTimeout ?? SIDECAR_DEFAULTS.workerHangTimeout)} is restarted)`,
        ]
      : []),
    ...sidecarWarnings(c).map((w) => `  warning: ${w.message}`),
  ];
  return lines.join('\n');
}

function describeAuthority(c: AuthorityConfig): string {
  const d = c.defaults;
  return [
    `authority config: listen ${formatHostPort(c.listen)}, trust domains ${c.trustDomains.join(', ')}`,
    `  store: sqlite ${c.store.sqlite}`,
    `  admins: ${c.admins.join(', ')}`,
    `  sidecars: ${c.sidecars.map((g) => (g.services === null ? g.identity : `${g.identity} (${g.services.join(', ')})`)).join(', ')}`,
    `  defaults: ttl ${formatDuration(d.ttl)}, maxLifetime ${formatDuration(d.maxLifetime)}, autoRenew ${d.autoRenew}, warnBefore ${formatDuration(d.warnBefore)}`,
    `  admin: http://${formatHostPort(c.admin.listen)}`,
  ].join('\n');
}

function describeDeclarative(f: DeclarativeFile): string {
  const ports = f.services.reduce((n, s) => n + s.ports.length, 0);
  return [
    `declarative file: ${f.services.length} service(s) with ${ports} port(s), ${f.licenses.length} license(s)`,
    ...f.services.map(
      (s) => `  service ${s.name}: ${s.ports.map((p) => `${p.name}/${p.protocol}`).join(', ')}`,
    ),
    ...f.licenses.map((l) => `  license ${l.subject} -> ${l.service}/${l.port}`),
  ].join('\n');
}
