import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { detectKind, validateConfigFile } from '../../src/config/validate.js';
import { loadSidecarConfig, sidecarWarnings } from '../../src/config/sidecar.js';
import { loadAuthorityConfig } from '../../src/config/authority.js';
import { loadDeclarativeFile } from '../../src/config/declarative.js';
import { removeDir, tempDir, writePlaceholders } from '../helpers/tmp.js';

const REPO_CONFIG = fileURLToPath(new URL('../../config/', import.meta.url));

/** What `portlicense ca init --dir certs` (and `cert issue` for orders) would leave in certs/. */
const DEV_CERTS = [
  'ca.pem',
  'orders.pem',
  'orders-key.pem',
  'bundle-signing.pub.pem',
  'authority.pem',
  'authority-key.pem',
  'bundle-signing-key.pem',
];

let root: string;

beforeEach(() => {
  // A temp copy of the repository layout: config/ beside certs/ holding placeholder files.
  root = tempDir('pl-validate-');
  cpSync(REPO_CONFIG, join(root, 'config'), { recursive: true });
  writePlaceholders(join(root, 'certs'), DEV_CERTS);
});

afterEach(() => {
  removeDir(root);
});

describe('the examples in config/', () => {
  it('sidecar.yaml is valid and follows SPEC §5', () => {
    const c = loadSidecarConfig(join(root, 'config/sidecar.yaml'));
    expect(c.node).toBe('node-a');
    expect(c.trustDomains).toEqual(['example.org']);
    expect(c.tls.cert).toBe(join(root, 'certs/orders.pem'));
    expect(c.authority.url).toBe('https://127.0.0.1:7443');
    expect(c.authority.cacheFile).toBe(join(root, 'data/node-a-bundle.json'));
    expect(c.ports.map((p) => [p.key, p.protocol, p.mode])).toEqual([
      ['orders/http', 'http', 'enforce'],
      ['orders/db', 'tcp', 'enforce'],
    ]);
    expect(c.outbound[0]).toMatchObject({
      name: 'payments',
      serverId: 'spiffe://example.org/ns/default/sa/payments',
    });
    expect(c.admin.listen).toEqual({ host: '127.0.0.1', port: 9901 });
  });

  it('authority.yaml is valid and follows SPEC §5', () => {
    const c = loadAuthorityConfig(join(root, 'config/authority.yaml'));
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 7443 });
    expect(c.signingKey).toBe(join(root, 'certs/bundle-signing-key.pem'));
    expect(c.store.sqlite).toBe(join(root, 'data/authority.db'));
    expect(c.admins).toEqual(['spiffe://example.org/admin/*']);
    expect(c.sidecars).toEqual([{ identity: 'spiffe://example.org/*', services: null }]);
    expect(c.admin.listen).toEqual({ host: '127.0.0.1', port: 9902 });
  });

  it('licenses.yaml is valid and has the SPEC example first', () => {
    const f = loadDeclarativeFile(join(root, 'config/licenses.yaml'));
    expect(f.services).toEqual([
      {
        name: 'orders',
        ports: [
          { name: 'http', protocol: 'http' },
          { name: 'db', protocol: 'tcp' },
        ],
      },
    ]);
    expect(f.licenses[0]).toEqual({
      subject: 'spiffe://example.org/ns/default/sa/frontend',
      service: 'orders',
      port: 'http',
      ttl: 86_400_000,
      maxLifetime: 30 * 86_400_000,
      autoRenew: true,
      methods: ['GET'],
      paths: ['/api/*'],
      reason: 'frontend reads orders',
    });
  });

  it('all three pass validateConfigFile, and validating writes nothing', () => {
    expect(validateConfigFile(join(root, 'config/sidecar.yaml')).kind).toBe('sidecar');
    expect(validateConfigFile(join(root, 'config/authority.yaml')).kind).toBe('authority');
    expect(validateConfigFile(join(root, 'config/licenses.yaml')).kind).toBe('declarative');
    expect(existsSync(join(root, 'data'))).toBe(false);
  });

  it('name the missing cert when certs/ is empty', () => {
    rmSync(join(root, 'certs', 'orders.pem'));
    expect(() => validateConfigFile(join(root, 'config/sidecar.yaml'))).toThrow(
      `${join(root, 'config/sidecar.yaml')}:15: tls.cert: file not found: ${join(root, 'certs/orders.pem')}`,
    );
  });

  it('point the paths at ../certs/ as the brief says', () => {
    const text = readFileSync(join(REPO_CONFIG, 'sidecar.yaml'), 'utf8');
    expect(text).toContain('../certs/ca.pem');
  });
});

describe('validateConfigFile', () => {
  it('summarises a sidecar config', () => {
    const { summary } = validateConfigFile(join(root, 'config/sidecar.yaml'));
    expect(summary).toContain('sidecar config for node "node-a"');
    expect(summary).toContain('port orders/http: http 0.0.0.0:8443 -> 127.0.0.1:8080 (enforce)');
    expect(summary).toContain('outbound payments: 127.0.0.1:7001 -> payments.internal:8443');
    expect(summary).toContain('admin: http://127.0.0.1:9901');
    expect(summary).not.toContain('warning');
    expect(summary).not.toContain('workers');
  });

  it('names the workers and their hang timeout when there is more than one', () => {
    const file = join(root, 'config/sidecar.yaml');
    writeFileSync(file, `${readFileSync(file, 'utf8')}workers: 4\nworkerHangTimeout: 30s\n`);
    expect(validateConfigFile(file).summary).toContain(
      'workers: 4 data-plane processes (one silent for 30s is restarted)',
    );
  });

  it('warns when the authority is reached by URL without authority.serverId, and only then', () => {
    const file = join(root, 'config/sidecar.yaml');
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^ {2}serverId: .*\n/m);
    writeFileSync(file, text.replace(/^ {2}serverId: .*\n/m, ''));
    const { summary } = validateConfigFile(file);
    expect(summary).toMatch(
      /\n {2}warning: authority\.serverId is not set: .*set it to the authority's SPIFFE ID$/,
    );
    expect(sidecarWarnings(loadSidecarConfig(file)).map((w) => w.path)).toEqual(['authority.serverId']);
    // A sidecar on a signed bundle file has no authority to pin.
    writeFileSync(
      file,
      text
        .replace(/^ {2}url: .*\n/m, '  bundleFile: ../certs/ca.pem\n')
        .replace(/^ {2}(serverId|cacheFile|wait|reportInterval|maxStaleness): .*\n/gm, ''),
    );
    expect(validateConfigFile(file).summary).not.toContain('warning');
  });

  it('summarises authority and declarative files', () => {
    expect(validateConfigFile(join(root, 'config/authority.yaml')).summary).toContain(
      'defaults: ttl 24h, maxLifetime 30d, autoRenew true, warnBefore 72h',
    );
    expect(validateConfigFile(join(root, 'config/licenses.yaml')).summary).toMatch(
      /^declarative file: 1 service\(s\) with 2 port\(s\), 3 license\(s\)/,
    );
  });

  it('refuses a file of no known kind', () => {
    const file = join(root, 'x.yaml');
    writeFileSync(file, 'hello: world\n');
    expect(() => validateConfigFile(file)).toThrow(ConfigError);
    expect(() => validateConfigFile(file)).toThrow(
      /cannot tell what this file is: a sidecar config has "ports"/,
    );
  });

  it('passes on every problem of the detected kind', () => {
    const file = join(root, 'config/sidecar.yaml');
    writeFileSync(
      file,
      readFileSync(file, 'utf8')
        .replace('protocol: http,', 'protocol: udp,')
        .replace('wait: 30s', 'wait: soon'),
    );
    let err: unknown;
    try {
      validateConfigFile(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => `${p.line}: ${p.path}`)).toEqual([
      '22: authority.wait',
      '31: ports[0].protocol',
    ]);
  });

  it('gives a misspelt sidecar file its suggestions', () => {
    const file = join(root, 'config/sidecar.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('\nports:', '\nprots:'));
    expect(() => validateConfigFile(file)).toThrow(/prots: unknown key "prots" \(did you mean "ports"\?\)/);
  });

  it('detects the kind by top-level keys', () => {
    expect(detectKind({ ports: [] })).toBe('sidecar');
    expect(detectKind({ signingKey: 'k' })).toBe('authority');
    expect(detectKind({ store: {} })).toBe('authority');
    expect(detectKind({ services: [] })).toBe('declarative');
    expect(detectKind({ licenses: [] })).toBe('declarative');
    expect(detectKind({ node: 'a', prots: [] })).toBe('sidecar');
    expect(detectKind({ listen: 'x', admins: [] })).toBe('authority');
    expect(detectKind({ listen: 'a' })).toBeUndefined();
    expect(detectKind([1])).toBeUndefined();
    expect(detectKind(null)).toBeUndefined();
  });
});
