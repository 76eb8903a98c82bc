import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { loadSidecarConfig } from '../../src/config/sidecar.js';
import { configErrorOf } from '../helpers/errors.js';
import { removeDir, tempDir, writePlaceholders } from '../helpers/tmp.js';

let root: string;
let confDir: string;

/** Placeholder cert files: the loader checks they exist, not what they hold. */
const CERTS = ['ca.pem', 'orders.pem', 'orders-key.pem', 'bundle-signing.pub.pem', 'bundle.json'];

beforeEach(() => {
  root = tempDir('pl-sidecar-');
  writePlaceholders(join(root, 'certs'), CERTS);
  confDir = join(root, 'conf');
  mkdirSync(confDir);
});

afterEach(() => {
  removeDir(root);
});

// Line numbers matter: the SPEC's example error is on line 9 (ports[0].protocol).
const BASE = `node: node-a
trustDomains: [example.org]
tls: { ca: ../certs/ca.pem, cert: ../certs/orders.pem, key: ../certs/orders-key.pem }
authority:
  url: https://127.0.0.1:7443
  signingPublicKey: ../certs/bundle-signing.pub.pem
ports:
  - name: http
    protocol: http
    service: orders
    listen: 0.0.0.0:8443
    upstream: 127.0.0.1:8080
  - { name: db, service: orders, protocol: tcp, listen: 0.0.0.0:15432, upstream: 127.0.0.1:5432 }
`;

function write(text: string, name = 'sidecar.yaml'): string {
  const file = join(confDir, name);
  writeFileSync(file, text);
  return file;
}

function errorOf(text: string): { file: string; err: ConfigError; lines: string[] } {
  const file = write(text);
  const err = configErrorOf(() => loadSidecarConfig(file), 'expected the config to be rejected');
  // Drop the file prefix so expectations read like the SPEC's `sidecar.yaml:9: ...`.
  return { file, err, lines: err.message.split('\n').map((l) => l.replace(`${confDir}/`, '')) };
}

/** Replace one exact substring of BASE (which must occur exactly once). */
function edit(from: string, to: string, text = BASE): string {
  expect(text.split(from).length, `"${from}" occurs once`).toBe(2);
  return text.replace(from, to);
}

describe('a valid config', () => {
  it('loads with every default applied', () => {
    const file = write(BASE);
    const c = loadSidecarConfig(file);
    expect(c.file).toBe(file);
    expect(c.node).toBe('node-a');
    expect(c.trustDomains).toEqual(['example.org']);
    expect(c.tls).toEqual({
      ca: join(root, 'certs/ca.pem'),
      cert: join(root, 'certs/orders.pem'),
      key: join(root, 'certs/orders-key.pem'),
      handshakeTimeout: 10_000,
    });
    expect(c.authority).toEqual({
      url: 'https://127.0.0.1:7443',
      signingPublicKey: join(root, 'certs/bundle-signing.pub.pem'),
      wait: 30_000,
      reportInterval: 15_000,
      maxStaleness: 600_000,
    });
    expect('bundleFile' in c.authority).toBe(false);
    expect('cacheFile' in c.authority).toBe(false);
    expect(c.ports).toEqual([
      {
        name: 'http',
        service: 'orders',
        protocol: 'http',
        listen: { host: '0.0.0.0', port: 8443 },
        upstream: { host: '127.0.0.1', port: 8080 },
        mode: 'enforce',
        key: 'orders/http',
        upstreamTimeout: 30_000,
        connectTimeout: 5_000,
        maxConnections: 10_000,
        idleTimeout: 60_000,
        headersTimeout: 10_000,
        maxHeaderSize: 16_384,
        upstreamIdleTimeout: 4_000,
      },
      {
        name: 'db',
        service: 'orders',
        protocol: 'tcp',
        listen: { host: '0.0.0.0', port: 15432 },
        upstream: { host: '127.0.0.1', port: 5432 },
        mode: 'enforce',
        key: 'orders/db',
        upstreamTimeout: 30_000,
        connectTimeout: 5_000,
        maxConnections: 10_000,
        idleTimeout: 300_000,
        headersTimeout: 10_000,
        maxHeaderSize: 16_384,
        upstreamIdleTimeout: 4_000,
      },
    ]);
    expect(c.outbound).toEqual([]);
    expect(c.admin).toEqual({ listen: { host: '127.0.0.1', port: 9901 } });
    expect(c.log).toEqual({ level: 'info', accessLogAllowedHttp: false });
    expect(c.drainTimeout).toBe(15_000);
    expect(c.warnBefore).toBe(72 * 3_600_000);
  });

  it('is deep-frozen', () => {
    const c = loadSidecarConfig(write(BASE));
    for (const o of [
      c,
      c.tls,
      c.authority,
      c.ports,
      c.ports[0],
      c.ports[0]!.listen,
      c.outbound,
      c.admin,
      c.log,
    ])
      expect(Object.isFrozen(o)).toBe(true);
    expect(() => {
      (c.ports[0] as { mode: string }).mode = 'audit';
    }).toThrow(TypeError);
  });

  it('honours every key when set', () => {
    const text = `node: n1
trustDomains: [example.org, other.org]
tls: { ca: ../certs/ca.pem, cert: ../certs/orders.pem, key: ../certs/orders-key.pem, handshakeTimeout: 2s }
authority:
  url: https://authority.internal:7443/
  signingPublicKey: ../certs/bundle-signing.pub.pem
  cacheFile: ../data/cache/b.json
  wait: 20s
  reportInterval: 5s
  maxStaleness: 1m
ports:
  - name: http
    service: orders
    protocol: http
    listen: "[::]:0"
    upstream: "[::1]:8080"
    mode: audit
    upstreamTimeout: 5s
    connectTimeout: 750ms
    maxConnections: 50
    idleTimeout: 10s
    headersTimeout: 2s
    maxHeaderSize: 8192
  - { name: db, service: orders, protocol: tcp, listen: 127.0.0.1:0, upstream: db.internal:5432, idleTimeout: 1h, connectTimeout: 2s }
outbound:
  - name: payments
    listen: 127.0.0.1:7001
    target: payments.internal:8443
    serverId: "spiffe://example.org/ns/*"
    connectTimeout: 3s
    idleTimeout: 30m
    maxConnections: 20
  - { name: lan, listen: 10.0.0.5:7002, target: 10.0.0.9:443, serverId: spiffe://other.org/x, allowNonLoopback: true }
admin: { listen: 0.0.0.0:9999 }
log: { level: debug, accessLogAllowedHttp: true }
drainTimeout: 1m
warnBefore: 7d
`;
    const c = loadSidecarConfig(write(text));
    expect(c.trustDomains).toEqual(['example.org', 'other.org']);
    expect(c.tls.handshakeTimeout).toBe(2_000);
    expect(c.authority).toEqual({
      url: 'https://authority.internal:7443',
      signingPublicKey: join(root, 'certs/bundle-signing.pub.pem'),
      cacheFile: join(root, 'data/cache/b.json'),
      wait: 20_000,
      reportInterval: 5_000,
      maxStaleness: 60_000,
    });
    // Validating never creates the cache folder.
    expect(existsSync(join(root, 'data'))).toBe(false);
    expect(c.ports[0]).toMatchObject({
      listen: { host: '::', port: 0 },
      upstream: { host: '::1', port: 8080 },
      mode: 'audit',
      upstreamTimeout: 5_000,
      connectTimeout: 750,
      maxConnections: 50,
      idleTimeout: 10_000,
      headersTimeout: 2_000,
      maxHeaderSize: 8_192,
    });
    expect(c.ports[1]).toMatchObject({
      listen: { host: '127.0.0.1', port: 0 },
      idleTimeout: 3_600_000,
      connectTimeout: 2_000,
    });
    expect(c.outbound).toEqual([
      {
        name: 'payments',
        listen: { host: '127.0.0.1', port: 7001 },
        target: { host: 'payments.internal', port: 8443 },
        serverId: 'spiffe://example.org/ns/*',
        allowNonLoopback: false,
        connectTimeout: 3_000,
        idleTimeout: 1_800_000,
        maxConnections: 20,
      },
      {
        name: 'lan',
        listen: { host: '10.0.0.5', port: 7002 },
        target: { host: '10.0.0.9', port: 443 },
        serverId: 'spiffe://other.org/x',
        allowNonLoopback: true,
        connectTimeout: 5_000,
        idleTimeout: 300_000,
        maxConnections: 10_000,
      },
    ]);
    expect(c.admin.listen).toEqual({ host: '0.0.0.0', port: 9999 });
    expect(c.log).toEqual({ level: 'debug', accessLogAllowedHttp: true });
    expect(c.drainTimeout).toBe(60_000);
    expect(c.warnBefore).toBe(7 * 86_400_000);
  });

  it('accepts a bundleFile instead of a url', () => {
    const c = loadSidecarConfig(
      write(edit('  url: https://127.0.0.1:7443', '  bundleFile: ../certs/bundle.json')),
    );
    expect(c.authority.bundleFile).toBe(join(root, 'certs/bundle.json'));
    expect('url' in c.authority).toBe(false);
  });

  it('allows a client-only sidecar with outbound and no ports', () => {
    const text =
      BASE.slice(0, BASE.indexOf('ports:')) +
      'ports: []\noutbound:\n  - { name: p, listen: 127.0.0.1:7001, target: p.internal:443, serverId: spiffe://example.org/p }\n';
    expect(loadSidecarConfig(write(text)).ports).toEqual([]);
  });
});

describe('error messages', () => {
  it('read file:line: path: message, as in the SPEC', () => {
    const { lines, err } = errorOf(edit('protocol: http', 'protocol: udp'));
    expect(lines).toEqual(['sidecar.yaml:9: ports[0].protocol: must be "tcp" or "http"']);
    expect(err.problems).toEqual([
      {
        file: join(confDir, 'sidecar.yaml'),
        line: 9,
        path: 'ports[0].protocol',
        message: 'must be "tcp" or "http"',
      },
    ]);
    expect(err.code).toBe('CONFIG_INVALID');
  });

  it('name the file as the operator gave it', () => {
    write(edit('protocol: http', 'protocol: udp'));
    const cwd = process.cwd();
    process.chdir(confDir);
    try {
      expect(() => loadSidecarConfig('sidecar.yaml')).toThrow(
        new ConfigError([
          { file: 'sidecar.yaml', line: 9, path: 'ports[0].protocol', message: 'must be "tcp" or "http"' },
        ]),
      );
      expect(() => loadSidecarConfig('sidecar.yaml')).toThrow(
        /^sidecar\.yaml:9: ports\[0\]\.protocol: must be "tcp" or "http"$/,
      );
    } finally {
      process.chdir(cwd);
    }
  });

  it('report many problems at once, in line order', () => {
    const text = BASE.replace('node: node-a', 'node: 5')
      .replace('url: https://127.0.0.1:7443', 'url: http://127.0.0.1:7443\n  wiat: 30s')
      .replace('protocol: http', 'protocol: udp')
      .replace('listen: 0.0.0.0:8443', 'listen: 0.0.0.0:99999')
      .replace('protocol: tcp', 'protocol: tcp, mode: block');
    const { lines, err } = errorOf(text);
    expect(lines).toEqual([
      'sidecar.yaml:1: node: must be a string',
      'sidecar.yaml:5: authority.url: must be an https:// URL (got http://)',
      'sidecar.yaml:6: authority.wiat: unknown key "wiat" (did you mean "wait"?)',
      'sidecar.yaml:10: ports[0].protocol: must be "tcp" or "http"',
      'sidecar.yaml:12: ports[0].listen: port must be a number from 0 to 65535',
      'sidecar.yaml:14: ports[1].mode: must be "enforce" or "audit"',
    ]);
    expect(err.problems).toHaveLength(6);
  });

  it('suggest the key that was meant', () => {
    const { lines } = errorOf(
      BASE.replace('ports:', 'prots: []\nports:').replace(
        '    upstream: 127.0.0.1:8080',
        '    upstream: 127.0.0.1:8080\n    upstreamTimout: 5s',
      ),
    );
    expect(lines).toEqual([
      'sidecar.yaml:7: prots: unknown key "prots" (did you mean "ports"?)',
      'sidecar.yaml:14: ports[0].upstreamTimout: unknown key "upstreamTimout" (did you mean "upstreamTimeout"?)',
    ]);
  });

  it('list the known keys when nothing is close', () => {
    const { lines } = errorOf(`${BASE}color: blue\n`);
    expect(lines).toEqual([
      'sidecar.yaml:14: color: unknown key "color" (known keys: node, trustDomains, tls, authority, ports, outbound, admin, log, drainTimeout, warnBefore, workers, workerHangTimeout)',
    ]);
  });

  it('carry the YAML syntax error line', () => {
    const { lines } = errorOf(BASE.replace('    service: orders', '    service: orders\n   bad: indent'));
    expect(lines[0]).toMatch(/^sidecar\.yaml:11: YAML: /);
  });

  it('name a missing or empty file', () => {
    expect(() => loadSidecarConfig(join(confDir, 'none.yaml'))).toThrow(
      /none\.yaml: cannot read config: file not found/,
    );
    expect(errorOf('# nothing\n').lines).toEqual([
      'sidecar.yaml: the file is empty; expected node, trustDomains, tls, authority and ports',
    ]);
    expect(errorOf('- a\n').lines).toEqual(['sidecar.yaml: must be a mapping']);
  });

  it('name missing required keys', () => {
    const { lines } = errorOf('node: a\n');
    expect(lines).toEqual([
      'sidecar.yaml: trustDomains: is required',
      'sidecar.yaml: tls: is required',
      'sidecar.yaml: authority: is required',
      'sidecar.yaml: ports: is required',
    ]);
  });
});

describe('bad values', () => {
  it.each([
    [
      'node: node-a',
      'node: "node a"',
      'sidecar.yaml:1: node: must be letters, digits, ".", "_" or "-", starting with a letter or digit (at most 253)',
    ],
    [
      'trustDomains: [example.org]',
      'trustDomains: example.org',
      'sidecar.yaml:2: trustDomains: must be a list',
    ],
    [
      'trustDomains: [example.org]',
      'trustDomains: []',
      'sidecar.yaml:2: trustDomains: must list at least one trust domain',
    ],
    [
      'trustDomains: [example.org]',
      'trustDomains: [Example.ORG]',
      'sidecar.yaml:2: trustDomains[0]: invalid trust domain "Example.ORG": trust domain "Example.ORG" may only hold a-z, 0-9, ".", "-", "_" (no port, no userinfo, lower case)',
    ],
    [
      'trustDomains: [example.org]',
      'trustDomains: [a.org, a.org]',
      'sidecar.yaml:2: trustDomains[1]: duplicate of trustDomains[0]',
    ],
    [
      'tls: { ca: ../certs/ca.pem, cert: ../certs/orders.pem, key: ../certs/orders-key.pem }',
      'tls: 5',
      'sidecar.yaml:3: tls: must be a mapping',
    ],
    [
      '    listen: 0.0.0.0:8443',
      '    listen: 8443',
      'sidecar.yaml:11: ports[0].listen: must be host:port, like 0.0.0.0:8443 (every interface) or 127.0.0.1:8443 (this host only)',
    ],
    [
      '    upstream: 127.0.0.1:8080',
      '    upstream: 127.0.0.1:0',
      'sidecar.yaml:12: ports[0].upstream: port must be a number from 1 to 65535',
    ],
    [
      '    service: orders',
      '    service: Orders',
      'sidecar.yaml:10: ports[0].service: must be 1-63 lowercase letters, digits, ".", "_" or "-", starting and ending with a letter or digit',
    ],
    [
      'protocol: tcp,',
      'protocol: tcp, maxConnections: 0,',
      'sidecar.yaml:13: ports[1].maxConnections: must be an integer from 1 to 1000000',
    ],
    [
      'protocol: tcp,',
      'protocol: tcp, idleTimeout: 300,',
      'sidecar.yaml:13: ports[1].idleTimeout: must be a duration with a unit, like 300s or 300ms',
    ],
    [
      '    upstream: 127.0.0.1:8080',
      '    upstream: 127.0.0.1:8080\n    maxHeaderSize: 100',
      'sidecar.yaml:13: ports[0].maxHeaderSize: must be an integer from 1024 to 1048576',
    ],
    [
      'ports:',
      'admin: { listen: localhost }\nports:',
      'sidecar.yaml:7: admin.listen: must be host:port (IPv6 in brackets: [::1]:8080)',
    ],
    [
      'ports:',
      'log: { level: verbose }\nports:',
      'sidecar.yaml:7: log.level: must be one of "debug", "info", "warn" or "error"',
    ],
    [
      'ports:',
      'log: { accessLogAllowedHttp: "yes" }\nports:',
      'sidecar.yaml:7: log.accessLogAllowedHttp: must be true or false',
    ],
    [
      'ports:',
      'drainTimeout: 15\nports:',
      'sidecar.yaml:7: drainTimeout: must be a duration with a unit, like 15s or 15ms',
    ],
    [
      'ports:',
      'warnBefore: -1h\nports:',
      'sidecar.yaml:7: warnBefore: invalid duration "-1h": must be positive',
    ],
    ['ports:', 'outbound: {}\nports:', 'sidecar.yaml:7: outbound: must be a list'],
  ])('%s -> %s', (from, to, expected) => {
    expect(errorOf(edit(from, to)).lines).toEqual([expected]);
  });

  it.each([
    ['wait: 0s', 'authority.wait: invalid duration "0s": must be greater than zero'],
    ['wait: 30', 'authority.wait: must be a duration with a unit, like 30s or 30ms'],
    ['wait: 1h', 'authority.wait: must be at most 10m'],
    ['wait: 500ms', 'authority.wait: must be at least 1s'],
    [
      'reportInterval: 15 s',
      'authority.reportInterval: invalid duration "15 s": expected a whole number followed by ms, s, m, h or d (e.g. 90s, 15m, 24h, 30d)',
    ],
    [
      'maxStaleness: 1.5m',
      'authority.maxStaleness: invalid duration "1.5m": expected a whole number followed by ms, s, m, h or d (e.g. 90s, 15m, 24h, 30d)',
    ],
    [
      'maxStaleness: 99999999999999999999d',
      'authority.maxStaleness: invalid duration "99999999999999999999d": too large',
    ],
  ])('bad duration %s', (line, expected) => {
    expect(
      errorOf(edit('  url: https://127.0.0.1:7443', `  url: https://127.0.0.1:7443\n  ${line}`)).lines,
    ).toEqual([`sidecar.yaml:6: ${expected}`]);
  });

  it('rejects a maxStaleness not longer than wait', () => {
    expect(
      errorOf(
        edit(
          '  url: https://127.0.0.1:7443',
          '  url: https://127.0.0.1:7443\n  wait: 1m\n  maxStaleness: 1m',
        ),
      ).lines,
    ).toEqual([
      'sidecar.yaml:7: authority.maxStaleness: authority.maxStaleness (1m) must be longer than authority.wait (1m), or every long poll would make the sidecar unready',
    ]);
  });
});

describe('authority source', () => {
  it('needs url or bundleFile', () => {
    expect(errorOf(edit('  url: https://127.0.0.1:7443\n', '')).lines).toEqual([
      'sidecar.yaml:4: authority: needs url (an https:// authority to pull from) or bundleFile (a signed bundle file)',
    ]);
  });

  it('refuses both url and bundleFile', () => {
    expect(
      errorOf(
        edit(
          '  url: https://127.0.0.1:7443',
          '  url: https://127.0.0.1:7443\n  bundleFile: ../certs/bundle.json',
        ),
      ).lines,
    ).toEqual([
      'sidecar.yaml:6: authority.bundleFile: set either authority.url or authority.bundleFile, not both',
    ]);
  });

  it('refuses a cacheFile next to a bundleFile', () => {
    const text = edit(
      '  url: https://127.0.0.1:7443',
      '  bundleFile: ../certs/bundle.json\n  cacheFile: ../data/c.json',
    );
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:6: authority.cacheFile: only used with authority.url (a bundleFile is its own cache)',
    ]);
  });

  it('refuses a cacheFile whose folder cannot be created', () => {
    writeFileSync(join(root, 'afile'), 'x');
    const text = edit(
      '  url: https://127.0.0.1:7443',
      '  url: https://127.0.0.1:7443\n  cacheFile: ../afile/sub/c.json',
    );
    expect(errorOf(text).lines).toEqual([
      `sidecar.yaml:6: authority.cacheFile: cannot create ${join(root, 'afile/sub')}: ${join(root, 'afile')} is not a folder`,
    ]);
    const dirAsFile = edit(
      '  url: https://127.0.0.1:7443',
      '  url: https://127.0.0.1:7443\n  cacheFile: ../certs',
    );
    expect(errorOf(dirAsFile).lines).toEqual([
      `sidecar.yaml:6: authority.cacheFile: not a regular file: ${join(root, 'certs')}`,
    ]);
  });

  it('reports missing files with their absolute path', () => {
    rmSync(join(root, 'certs', 'ca.pem'));
    rmSync(join(root, 'certs', 'bundle-signing.pub.pem'));
    expect(errorOf(BASE).lines).toEqual([
      `sidecar.yaml:3: tls.ca: file not found: ${join(root, 'certs/ca.pem')}`,
      `sidecar.yaml:6: authority.signingPublicKey: file not found: ${join(root, 'certs/bundle-signing.pub.pem')}`,
    ]);
    rmSync(join(root, 'certs', 'bundle.json'));
    expect(
      errorOf(edit('  url: https://127.0.0.1:7443', '  bundleFile: ../certs/bundle.json')).lines,
    ).toContain(`sidecar.yaml:5: authority.bundleFile: file not found: ${join(root, 'certs/bundle.json')}`);
  });

  it('reports missing tls cert and key', () => {
    rmSync(join(root, 'certs', 'orders.pem'));
    rmSync(join(root, 'certs', 'orders-key.pem'));
    expect(errorOf(BASE).lines).toEqual([
      `sidecar.yaml:3: tls.cert: file not found: ${join(root, 'certs/orders.pem')}`,
      `sidecar.yaml:3: tls.key: file not found: ${join(root, 'certs/orders-key.pem')}`,
    ]);
  });
});

describe('listeners and ports', () => {
  const PORTS_END =
    '  - { name: db, service: orders, protocol: tcp, listen: 0.0.0.0:15432, upstream: 127.0.0.1:5432 }\n';

  it('refuses the same listen address twice', () => {
    const text = BASE.replace('listen: 0.0.0.0:15432', 'listen: 0.0.0.0:8443');
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:13: ports[1].listen: 0.0.0.0:8443 clashes with ports[0].listen (0.0.0.0:8443)',
    ]);
  });

  it('treats 0.0.0.0:P as clashing with any host on P', () => {
    const text = BASE.replace('listen: 0.0.0.0:15432', 'listen: 127.0.0.1:8443');
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:13: ports[1].listen: 127.0.0.1:8443 clashes with ports[0].listen (0.0.0.0:8443)',
    ]);
  });

  it('checks outbound and admin listeners too, including the default admin port', () => {
    const text =
      BASE.replace('listen: 0.0.0.0:15432', 'listen: 0.0.0.0:9901') +
      'outbound:\n  - { name: p, listen: 127.0.0.1:8443, target: p.internal:443, serverId: spiffe://example.org/p }\n';
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:13: ports[1].listen: 0.0.0.0:9901 clashes with the default admin.listen (127.0.0.1:9901)',
      'sidecar.yaml:15: outbound[0].listen: 127.0.0.1:8443 clashes with ports[0].listen (0.0.0.0:8443)',
    ]);
    const admin = `${BASE}admin: { listen: "[::]:15432" }\n`;
    expect(errorOf(admin).lines).toEqual([
      'sidecar.yaml:13: ports[1].listen: 0.0.0.0:15432 clashes with admin.listen ([::]:15432)',
    ]);
  });

  it('lets any number of listeners use port 0', () => {
    const text = BASE.replace('listen: 0.0.0.0:15432', 'listen: 127.0.0.1:0').replace(
      'listen: 0.0.0.0:8443',
      'listen: 127.0.0.1:0',
    );
    expect(loadSidecarConfig(write(`${text}admin: { listen: 127.0.0.1:0 }\n`)).ports).toHaveLength(2);
  });

  it('refuses an upstream that is its own listener', () => {
    const text = BASE.replace('upstream: 127.0.0.1:5432', 'upstream: 127.0.0.1:8443');
    expect(errorOf(text).lines).toEqual([
      "sidecar.yaml:13: ports[1].upstream: points at this sidecar's own listener ports[0].listen",
    ]);
  });

  it('refuses the same service/port twice', () => {
    const text = BASE.replace('name: db', 'name: http');
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:13: ports[1]: duplicate port orders/http (also at ports[0])',
    ]);
  });

  it('refuses http-only keys on a tcp port', () => {
    const text = BASE.replace(
      'protocol: tcp,',
      'protocol: tcp, headersTimeout: 5s, maxHeaderSize: 2048, upstreamTimeout: 1s, upstreamIdleTimeout: 1s,',
    );
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:13: ports[1].upstreamTimeout: only applies to http ports (this port is tcp)',
      'sidecar.yaml:13: ports[1].headersTimeout: only applies to http ports (this port is tcp)',
      'sidecar.yaml:13: ports[1].maxHeaderSize: only applies to http ports (this port is tcp)',
      'sidecar.yaml:13: ports[1].upstreamIdleTimeout: only applies to http ports (this port is tcp)',
    ]);
  });

  it('takes upstreamIdleTimeout on an http port, from 100ms to 1h', () => {
    const c = loadSidecarConfig(
      write(edit('    protocol: http', '    protocol: http\n    upstreamIdleTimeout: 1500ms')),
    );
    expect(c.ports[0]!.upstreamIdleTimeout).toBe(1_500);
    expect(
      errorOf(edit('    protocol: http', '    protocol: http\n    upstreamIdleTimeout: 50ms')).lines,
    ).toEqual(['sidecar.yaml:10: ports[0].upstreamIdleTimeout: must be at least 100ms']);
  });

  it("bounds an http port's connect by a shorter upstreamTimeout unless connectTimeout is set", () => {
    const short = loadSidecarConfig(
      write(edit('    protocol: http', '    protocol: http\n    upstreamTimeout: 2s')),
    );
    expect(short.ports[0]!.connectTimeout).toBe(2_000);
    const set = loadSidecarConfig(
      write(
        edit('    protocol: http', '    protocol: http\n    upstreamTimeout: 2s\n    connectTimeout: 8s'),
      ),
    );
    expect(set.ports[0]!.connectTimeout).toBe(8_000);
    // A tcp port has no upstreamTimeout: the 5 s default.
    expect(short.ports[1]!.connectTimeout).toBe(5_000);
  });

  it.each([
    ['connectTimeout: 50ms', 'ports[1].connectTimeout: must be at least 100ms'],
    ['connectTimeout: 5', 'ports[1].connectTimeout: must be a duration with a unit, like 5s or 5ms'],
    ['connectTimeout: 1h', 'ports[1].connectTimeout: must be at most 10m'],
  ])('refuses a bad port %s', (key, expected) => {
    expect(errorOf(BASE.replace('protocol: tcp,', `protocol: tcp, ${key},`)).lines).toEqual([
      `sidecar.yaml:13: ${expected}`,
    ]);
  });

  it('needs at least one port when there is no outbound', () => {
    const text = BASE.slice(0, BASE.indexOf('ports:')) + 'ports: []\n';
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:7: ports: must list at least one port (or configure outbound)',
    ]);
  });

  it('needs each port key', () => {
    const text = BASE.replace(PORTS_END, '  - { name: db }\n');
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:13: ports[1].service: is required',
      'sidecar.yaml:13: ports[1].protocol: is required',
      'sidecar.yaml:13: ports[1].listen: is required',
      'sidecar.yaml:13: ports[1].upstream: is required',
    ]);
  });
});

describe('outbound', () => {
  const withOutbound = (...entries: string[]): string =>
    `${BASE}outbound:\n${entries.map((e) => `  - ${e}\n`).join('')}`;

  it.each([
    ['connectTimeout: 0s', 'outbound[0].connectTimeout: invalid duration "0s": must be greater than zero'],
    ['idleTimeout: 500ms', 'outbound[0].idleTimeout: must be at least 1s'],
    ['idleTimeout: 2d', 'outbound[0].idleTimeout: must be at most 24h'],
    ['maxConnections: 0', 'outbound[0].maxConnections: must be an integer from 1 to 1000000'],
  ])('refuses a bad %s', (key, expected) => {
    const text = withOutbound(
      `{ name: p, listen: 127.0.0.1:7001, target: p.internal:443, serverId: spiffe://example.org/p, ${key} }`,
    );
    expect(errorOf(text).lines).toEqual([`sidecar.yaml:15: ${expected}`]);
  });

  it('refuses duplicate names', () => {
    const text = withOutbound(
      '{ name: p, listen: 127.0.0.1:7001, target: p.internal:443, serverId: spiffe://example.org/p }',
      '{ name: p, listen: 127.0.0.1:7002, target: q.internal:443, serverId: spiffe://example.org/q }',
    );
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:16: outbound[1].name: duplicate outbound name "p" (also at outbound[0])',
    ]);
  });

  it('requires a loopback listen unless allowNonLoopback', () => {
    const text = withOutbound(
      '{ name: p, listen: 0.0.0.0:7001, target: p.internal:443, serverId: spiffe://example.org/p }',
    );
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:15: outbound[0].listen: must be a loopback address (127.0.0.1, ::1, localhost): the local app connects in plaintext; set allowNonLoopback: true to override',
    ]);
    const allowed = withOutbound(
      '{ name: p, listen: 0.0.0.0:7001, target: p.internal:443, serverId: spiffe://example.org/p, allowNonLoopback: true }',
    );
    expect(loadSidecarConfig(write(allowed)).outbound[0]!.allowNonLoopback).toBe(true);
    const ipv6 = withOutbound(
      '{ name: p, listen: "[::1]:7001", target: "[fd00::1]:443", serverId: spiffe://example.org/p }',
    );
    expect(loadSidecarConfig(write(ipv6)).outbound[0]!.target).toEqual({ host: 'fd00::1', port: 443 });
  });

  it('checks serverId and target', () => {
    const text = withOutbound(
      '{ name: p, listen: 127.0.0.1:7001, target: p.internal, serverId: "spiffe://example.org/a/*/b" }',
      '{ name: q, listen: 127.0.0.1:7002, target: q.internal:0, serverId: https://example.org/q }',
    );
    expect(errorOf(text).lines).toEqual([
      'sidecar.yaml:15: outbound[0].target: must be host:port (IPv6 in brackets: [::1]:8080)',
      'sidecar.yaml:15: outbound[0].serverId: invalid subject "spiffe://example.org/a/*/b": "*" is only allowed as a final "/*"',
      'sidecar.yaml:16: outbound[1].target: port must be a number from 1 to 65535',
      'sidecar.yaml:16: outbound[1].serverId: invalid subject "https://example.org/q": must start with "spiffe://"',
    ]);
  });
});
