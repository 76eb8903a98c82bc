import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadAuthorityConfig } from '../../src/config/authority.js';
import { configErrorOf } from '../helpers/errors.js';
import { removeDir, tempDir, writePlaceholders } from '../helpers/tmp.js';

let root: string;
let confDir: string;

beforeEach(() => {
  root = tempDir('pl-authority-');
  writePlaceholders(join(root, 'certs'), [
    'ca.pem',
    'authority.pem',
    'authority-key.pem',
    'bundle-signing-key.pem',
  ]);
  confDir = join(root, 'conf');
  mkdirSync(confDir);
});

afterEach(() => {
  removeDir(root);
});

const BASE = `listen: 0.0.0.0:7443
trustDomains: [example.org]
tls: { ca: ../certs/ca.pem, cert: ../certs/authority.pem, key: ../certs/authority-key.pem }
signingKey: ../certs/bundle-signing-key.pem
admins: ["spiffe://example.org/admin/*"]
sidecars: ["spiffe://example.org/*"]
`;

/** BASE with its sidecars list replaced by these entries, one YAML list item each. */
function withSidecars(...entries: string[]): string {
  return BASE.replace('sidecars: ["spiffe://example.org/*"]', ['sidecars:', ...entries].join('\n'));
}

function write(text: string): string {
  const file = join(confDir, 'authority.yaml');
  writeFileSync(file, text);
  return file;
}

function lines(text: string): string[] {
  const err = configErrorOf(() => loadAuthorityConfig(write(text)), 'expected the config to be rejected');
  return err.message.split('\n').map((l) => l.replace(`${confDir}/`, ''));
}

describe('loadAuthorityConfig', () => {
  it('applies every default', () => {
    const file = write(BASE);
    const c = loadAuthorityConfig(file);
    expect(c).toEqual({
      file,
      listen: { host: '0.0.0.0', port: 7443 },
      trustDomains: ['example.org'],
      tls: {
        ca: join(root, 'certs/ca.pem'),
        cert: join(root, 'certs/authority.pem'),
        key: join(root, 'certs/authority-key.pem'),
        handshakeTimeout: 10_000,
      },
      signingKey: join(root, 'certs/bundle-signing-key.pem'),
      // Relative to the config file's folder, like every path in it.
      store: { sqlite: join(confDir, 'data/authority.db') },
      admins: ['spiffe://example.org/admin/*'],
      sidecars: [{ identity: 'spiffe://example.org/*', services: null }],
      defaults: {
        ttl: 86_400_000,
        maxLifetime: 30 * 86_400_000,
        autoRenew: true,
        warnBefore: 72 * 3_600_000,
      },
      admin: { listen: { host: '127.0.0.1', port: 9902 } },
      log: { level: 'info' },
      limits: {
        maxBodyBytes: 1_048_576,
        maxWait: 60_000,
        maxConnections: 10_000,
        headersTimeout: 10_000,
        forgetNodesAfter: 72 * 3_600_000,
      },
      drainTimeout: 15_000,
    });
    expect(Object.isFrozen(c.defaults)).toBe(true);
    expect(Object.isFrozen(c.admins)).toBe(true);
    expect(() => {
      (c.limits as { maxWait: number }).maxWait = 1;
    }).toThrow(TypeError);
  });

  it('honours every key when set', () => {
    const text = `${BASE}store: { sqlite: ../state/db/authority.db }
defaults: { ttl: 1h, maxLifetime: 7d, autoRenew: false, warnBefore: 24h }
admin: { listen: "[::1]:9999" }
log: { level: warn }
limits: { maxBodyBytes: 65536, maxWait: 2m, maxConnections: 100, headersTimeout: 5s, forgetNodesAfter: 7d }
drainTimeout: 30s
`;
    const c = loadAuthorityConfig(write(text.replace('tls: {', 'tls: { handshakeTimeout: 3s,')));
    expect(c.store.sqlite).toBe(join(root, 'state/db/authority.db'));
    // The parent folder need not exist, and validating does not create it.
    expect(existsSync(join(root, 'state'))).toBe(false);
    expect(c.defaults).toEqual({
      ttl: 3_600_000,
      maxLifetime: 7 * 86_400_000,
      autoRenew: false,
      warnBefore: 86_400_000,
    });
    expect(c.admin.listen).toEqual({ host: '::1', port: 9999 });
    expect(c.log.level).toBe('warn');
    expect(c.limits).toEqual({
      maxBodyBytes: 65_536,
      maxWait: 120_000,
      maxConnections: 100,
      headersTimeout: 5_000,
      forgetNodesAfter: 7 * 86_400_000,
    });
    expect(c.drainTimeout).toBe(30_000);
    expect(c.tls.handshakeTimeout).toBe(3_000);
  });

  it('keeps an in-memory store as is', () => {
    expect(loadAuthorityConfig(write(`${BASE}store: { sqlite: ":memory:" }\n`)).store.sqlite).toBe(
      ':memory:',
    );
  });

  it('names missing keys', () => {
    expect(lines('listen: 0.0.0.0:7443\n')).toEqual([
      'authority.yaml: trustDomains: is required',
      'authority.yaml: tls: is required',
      'authority.yaml: signingKey: is required',
      'authority.yaml: admins: is required',
      'authority.yaml: sidecars: is required',
    ]);
  });

  it('reports missing files', () => {
    rmSync(join(root, 'certs/bundle-signing-key.pem'));
    rmSync(join(root, 'certs/authority-key.pem'));
    expect(lines(BASE)).toEqual([
      `authority.yaml:3: tls.key: file not found: ${join(root, 'certs/authority-key.pem')}`,
      `authority.yaml:4: signingKey: file not found: ${join(root, 'certs/bundle-signing-key.pem')}`,
    ]);
  });

  it('takes sidecars bound to services beside plain subjects', () => {
    const text = withSidecars(
      '  - spiffe://example.org/ops/*',
      '  - { identity: "spiffe://example.org/ns/shop/*", services: [cart, checkout] }',
    );
    expect(loadAuthorityConfig(write(text)).sidecars).toEqual([
      { identity: 'spiffe://example.org/ops/*', services: null },
      { identity: 'spiffe://example.org/ns/shop/*', services: ['cart', 'checkout'] },
    ]);
  });

  it('refuses a bound entry that a plain subject entirely covers: its services would bind nothing', () => {
    const text = withSidecars(
      '  - spiffe://example.org/ns/orders/*',
      '  - { identity: "spiffe://example.org/ns/orders/*", services: [orders] }',
      '  - { identity: "spiffe://example.org/ns/orders/node/a", services: [orders] }',
      // A narrower plain subject beside a broader binding is a deliberate exception: fine.
      '  - spiffe://example.org/ns/shop/relay',
      '  - { identity: "spiffe://example.org/ns/shop/*", services: [cart] }',
    );
    expect(lines(text)).toEqual([
      "authority.yaml:8: sidecars[1].identity: spiffe://example.org/ns/orders/* is also matched by sidecars[0] (spiffe://example.org/ns/orders/*), a plain subject that allows every service, so this entry's services bind nothing: narrow or remove one of them",
      "authority.yaml:9: sidecars[2].identity: spiffe://example.org/ns/orders/node/a is also matched by sidecars[0] (spiffe://example.org/ns/orders/*), a plain subject that allows every service, so this entry's services bind nothing: narrow or remove one of them",
    ]);
  });

  it('names every bad sidecars entry, with its line', () => {
    const text = withSidecars(
      '  - { identity: "spiffe://example.org/ns/orders/*", services: [orders] }',
      '  - { identity: "spiffe://other.org/x", services: [orders] }',
      '  - { identity: "spiffe://example.org/ns/a/*", services: [] }',
      '  - { identity: "spiffe://example.org/ns/b/*" }',
      '  - { identity: "spiffe://example.org/ns/c/*", services: [orders], servces: [x] }',
      '  - 42',
      '  - { identity: "spiffe://example.org/ns/orders/*", services: [orders] }',
      '  - { identity: "spiffe://example.org/ns/d/*", services: ["no such/name"] }',
    );
    expect(lines(text)).toEqual([
      'authority.yaml:8: sidecars[1].identity: trust domain "other.org" is not in trustDomains (example.org)',
      'authority.yaml:9: sidecars[2].services: must list at least one service (a plain subject string allows every service)',
      'authority.yaml:10: sidecars[3].services: is required',
      'authority.yaml:11: sidecars[4].servces: unknown key "servces" (did you mean "services"?)',
      'authority.yaml:12: sidecars[5]: must be a subject like spiffe://example.org/ns/orders/*, or a mapping { identity, services: [...] }',
      'authority.yaml:13: sidecars[6]: duplicate of sidecars[0]',
      'authority.yaml:14: sidecars[7].services[0]: must be 1-63 lowercase letters, digits, ".", "_" or "-", starting and ending with a letter or digit',
    ]);
  });

  it('reports many bad values at once, with suggestions', () => {
    const text = BASE.replace('listen: 0.0.0.0:7443', 'listen: 7443')
      .replace('admins: ["spiffe://example.org/admin/*"]', 'admins: []')
      .replace(
        'sidecars: ["spiffe://example.org/*"]',
        'sidecars: ["spiffe://example.org/*/x", "spiffe://other.org/*"]',
      )
      .concat(
        'defaults: { ttl: 24, autoRenew: "true", warnbefore: 1h }\nlimits: { maxBodyBytes: 10, maxWait: 1h }\nlog: { level: trace }\n',
      );
    expect(lines(text)).toEqual([
      'authority.yaml:1: listen: must be host:port, like 0.0.0.0:7443 (every interface) or 127.0.0.1:7443 (this host only)',
      'authority.yaml:5: admins: must list at least one admin subject',
      'authority.yaml:6: sidecars[0]: invalid subject "spiffe://example.org/*/x": "*" is only allowed as a final "/*"',
      'authority.yaml:6: sidecars[1]: trust domain "other.org" is not in trustDomains (example.org)',
      'authority.yaml:7: defaults.warnbefore: unknown key "warnbefore" (did you mean "warnBefore"?)',
      'authority.yaml:7: defaults.ttl: must be a duration with a unit, like 24s or 24ms',
      'authority.yaml:7: defaults.autoRenew: must be true or false',
      'authority.yaml:8: limits.maxBodyBytes: must be an integer from 1024 to 67108864',
      'authority.yaml:8: limits.maxWait: must be at most 10m',
      'authority.yaml:9: log.level: must be one of "debug", "info", "warn" or "error"',
    ]);
  });

  it('refuses limits.forgetNodesAfter under an hour: a node would be forgotten before it is even stale', () => {
    expect(lines(`${BASE}limits: { forgetNodesAfter: 30m }\n`)).toEqual([
      'authority.yaml:7: limits.forgetNodesAfter: must be at least 1h',
    ]);
  });

  it('refuses a default ttl beyond the default max lifetime', () => {
    expect(lines(`${BASE}defaults: { ttl: 31d }\n`)).toEqual([
      'authority.yaml:7: defaults.ttl: defaults.ttl (31d) must not exceed defaults.maxLifetime (30d)',
    ]);
    expect(lines(`${BASE}defaults: { maxLifetime: 1h }\n`)).toEqual([
      'authority.yaml:7: defaults.maxLifetime: defaults.ttl (24h) must not exceed defaults.maxLifetime (1h)',
    ]);
  });

  it('refuses the API and admin server on one address', () => {
    expect(lines(BASE.replace('0.0.0.0:7443', '0.0.0.0:9902'))).toEqual([
      'authority.yaml:1: listen: listen 0.0.0.0:9902 and admin.listen 127.0.0.1:9902 clash: the API and the admin server need their own ports',
    ]);
    expect(lines(`${BASE}admin: { listen: 127.0.0.1:7443 }\n`)).toEqual([
      'authority.yaml:7: admin.listen: listen 0.0.0.0:7443 and admin.listen 127.0.0.1:7443 clash: the API and the admin server need their own ports',
    ]);
  });

  it('refuses a store path that cannot be created', () => {
    writeFileSync(join(root, 'blocker'), 'x');
    expect(lines(`${BASE}store: { sqlite: ../blocker/authority.db }\n`)).toEqual([
      `authority.yaml:7: store.sqlite: cannot create ${join(root, 'blocker')}: ${join(root, 'blocker')} is not a folder`,
    ]);
    expect(lines(`${BASE}store: { postgres: x }\n`)).toEqual([
      'authority.yaml:7: store.postgres: unknown key "postgres" (known keys: sqlite)',
    ]);
  });

  it('refuses duplicate and invalid trust domains and subjects', () => {
    const text = BASE.replace(
      'trustDomains: [example.org]',
      'trustDomains: [example.org, example.org]',
    ).replace(
      'admins: ["spiffe://example.org/admin/*"]',
      'admins: ["spiffe://example.org/a", "spiffe://example.org/a"]',
    );
    expect(lines(text)).toEqual([
      'authority.yaml:2: trustDomains[1]: duplicate of trustDomains[0]',
      'authority.yaml:5: admins[1]: duplicate of admins[0]',
    ]);
  });
});
