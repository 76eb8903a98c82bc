import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import {
  loadDeclarativeFile,
  parseDeclarative,
  parseDeclarativeYaml,
  parseLicenseSpec,
  pathPatternProblem,
} from '../../src/config/declarative.js';
import { configErrorOf } from '../helpers/errors.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const SPEC_EXAMPLE = `services:
  - name: orders
    ports: [ { name: http, protocol: http }, { name: db, protocol: tcp } ]
licenses:
  - subject: spiffe://example.org/ns/default/sa/frontend
    service: orders
    port: http
    ttl: 24h                 # or expiresAt: RFC 3339
    maxLifetime: 30d
    autoRenew: true
    methods: [GET]
    paths: ["/api/*"]
    reason: frontend reads orders
`;

const messages = (fn: () => unknown): string[] => configErrorOf(fn).message.split('\n');

describe('from YAML', () => {
  it('parses the SPEC example', () => {
    const f = parseDeclarativeYaml(SPEC_EXAMPLE, 'licenses.yaml');
    expect(f).toEqual({
      hasServices: true,
      services: [
        {
          name: 'orders',
          ports: [
            { name: 'http', protocol: 'http' },
            { name: 'db', protocol: 'tcp' },
          ],
        },
      ],
      licenses: [
        {
          subject: 'spiffe://example.org/ns/default/sa/frontend',
          service: 'orders',
          port: 'http',
          ttl: 86_400_000,
          maxLifetime: 30 * 86_400_000,
          autoRenew: true,
          methods: ['GET'],
          paths: ['/api/*'],
          reason: 'frontend reads orders',
        },
      ],
    });
    expect(Object.isFrozen(f.licenses[0]!.methods)).toBe(true);
  });

  it('leaves unset license fields out, for the authority defaults to fill', () => {
    const f = parseDeclarativeYaml(
      'licenses:\n  - { subject: "spiffe://example.org/*", service: orders, port: db }\n',
      'l.yaml',
    );
    expect(f).toEqual({
      hasServices: false,
      services: [],
      licenses: [{ subject: 'spiffe://example.org/*', service: 'orders', port: 'db' }],
    });
  });

  it('upper-cases methods and parses times', () => {
    const f = parseDeclarativeYaml(
      `licenses:
  - subject: spiffe://example.org/a
    service: s
    port: p
    methods: [get, Post, PROPFIND]
    notBefore: 2026-11-28T10:00:00Z
    expiresAt: 2026-12-28T10:00:00+01:00
`,
      'l.yaml',
    );
    expect(f.licenses[0]).toEqual({
      subject: 'spiffe://example.org/a',
      service: 's',
      port: 'p',
      methods: ['GET', 'POST', 'PROPFIND'],
      notBefore: Date.UTC(2026, 10, 28, 10),
      expiresAt: Date.UTC(2026, 11, 28, 9),
    });
  });

  it('reports every problem with file:line', () => {
    const text = `services:
  - name: orders
    ports: [ { name: http, protocol: http }, { name: db, protocol: tcp }, { name: x, protocol: udp } ]
  - name: orders
    ports: []
licenses:
  - subject: spiffe://example.org/ns/*/sa
    service: orders
    port: http
    ttl: 24h
    expiresAt: 2026-12-01T00:00:00Z
    methods: [GET, get, "BAD METHOD"]
    paths: [api, "/a/*/b", "/a?x", "/a/../b", "//a", "/a%2F", "/ok/*"]
    reason: 5
  - subject: spiffe://example.org/x
    service: payments
    port: http
  - subject: spiffe://example.org/x
    service: orders
    port: grpc
  - subject: spiffe://example.org/x
    service: orders
    port: db
    methods: [GET]
    paths: [/]
    ttol: 1h
`;
    expect(messages(() => parseDeclarativeYaml(text, 'licenses.yaml'))).toEqual([
      'licenses.yaml:3: services[0].ports[2].protocol: must be "tcp" or "http"',
      'licenses.yaml:4: services[1].name: duplicate service "orders"',
      'licenses.yaml:5: services[1].ports: must list at least one port',
      'licenses.yaml:7: licenses[0].subject: invalid subject "spiffe://example.org/ns/*/sa": "*" is only allowed as a final "/*"',
      'licenses.yaml:11: licenses[0].expiresAt: set either ttl or expiresAt, not both',
      'licenses.yaml:12: licenses[0].methods[1]: duplicate of licenses[0].methods[0]',
      'licenses.yaml:12: licenses[0].methods[2]: must be an HTTP method like GET or POST',
      'licenses.yaml:13: licenses[0].paths[0]: must start with "/"',
      'licenses.yaml:13: licenses[0].paths[1]: "*" is only allowed as a final "/*"',
      'licenses.yaml:13: licenses[0].paths[2]: must not contain a query or fragment ("?", "#")',
      'licenses.yaml:13: licenses[0].paths[3]: must not contain "." or ".." segments',
      'licenses.yaml:13: licenses[0].paths[4]: must not contain "//"',
      'licenses.yaml:14: licenses[0].reason: must be a string',
      'licenses.yaml:16: licenses[1].service: unknown service "payments" (declared: orders)',
      'licenses.yaml:20: licenses[2].port: unknown port "grpc" of service "orders" (declared: http, db, x)',
      'licenses.yaml:24: licenses[3].methods: only http ports have methods (orders/db is tcp)',
      'licenses.yaml:25: licenses[3].paths: only http ports have paths (orders/db is tcp)',
      'licenses.yaml:26: licenses[3].ttol: unknown key "ttol" (did you mean "ttl"?)',
    ]);
  });

  it('checks ttl against maxLifetime and expiresAt against notBefore', () => {
    const text = `licenses:
  - { subject: "spiffe://example.org/a", service: s, port: p, ttl: 31d, maxLifetime: 30d }
  - { subject: "spiffe://example.org/b", service: s, port: p, notBefore: "2026-12-01T00:00:00Z", expiresAt: "2026-11-01T00:00:00Z" }
  - { subject: "spiffe://example.org/c", service: s, port: p, ttl: 0s, methods: [], paths: [] }
`;
    expect(messages(() => parseDeclarativeYaml(text, 'l.yaml'))).toEqual([
      'l.yaml:2: licenses[0].ttl: ttl (31d) must not exceed maxLifetime (30d)',
      'l.yaml:3: licenses[1].expiresAt: must be after notBefore',
      'l.yaml:4: licenses[2].ttl: invalid duration "0s": must be greater than zero',
      'l.yaml:4: licenses[2].methods: must list at least one method (omit it to allow any)',
      'l.yaml:4: licenses[2].paths: must list at least one path (omit it to allow any)',
    ]);
  });

  it('refuses duplicate licenses for one subject and port', () => {
    const text = `licenses:
  - { subject: "spiffe://example.org/a", service: s, port: p }
  - { subject: "spiffe://example.org/a", service: s, port: p, ttl: 1h }
`;
    expect(messages(() => parseDeclarativeYaml(text, 'l.yaml'))).toEqual([
      'l.yaml:3: licenses[1]: duplicate of licenses[0] (same subject, service and port)',
    ]);
  });

  it('needs services or licenses', () => {
    expect(messages(() => parseDeclarativeYaml('other: 1\n', 'l.yaml'))).toEqual([
      'l.yaml: expected services and/or licenses',
      'l.yaml:1: other: unknown key "other" (known keys: services, licenses)',
    ]);
    expect(messages(() => parseDeclarativeYaml('', 'l.yaml'))).toEqual([
      'l.yaml: is empty; expected services and/or licenses',
    ]);
    expect(parseDeclarativeYaml('services: []\nlicenses: []\n', 'l.yaml')).toEqual({
      hasServices: true,
      services: [],
      licenses: [],
    });
  });

  describe('from a file', () => {
    let dir: string;
    beforeEach(() => {
      dir = tempDir('pl-decl-');
    });
    afterEach(() => {
      removeDir(dir);
    });

    it('reports problems with the file name and line', () => {
      const file = join(dir, 'licenses.yaml');
      writeFileSync(file, SPEC_EXAMPLE.replace('port: http', 'port: HTTP'));
      expect(messages(() => loadDeclarativeFile(file))).toEqual([
        `${file}:7: licenses[0].port: must be 1-63 lowercase letters, digits, ".", "_" or "-", starting and ending with a letter or digit`,
      ]);
      writeFileSync(file, SPEC_EXAMPLE);
      expect(loadDeclarativeFile(file).licenses).toHaveLength(1);
    });
  });
});

describe('from JSON (POST /v1/apply)', () => {
  const body = {
    services: [{ name: 'orders', ports: [{ name: 'http', protocol: 'http' }] }],
    licenses: [
      { subject: 'spiffe://example.org/a', service: 'orders', port: 'http', ttl: '1h', methods: ['get'] },
    ],
  };

  it('parses the same shape', () => {
    expect(parseDeclarative(body).licenses[0]).toEqual({
      subject: 'spiffe://example.org/a',
      service: 'orders',
      port: 'http',
      ttl: 3_600_000,
      methods: ['GET'],
    });
  });

  it('reports key paths without lines', () => {
    let err: unknown;
    try {
      parseDeclarative({ ...body, licenses: [{ ...body.licenses[0], ttl: 3600, port: 'db' }] }, 'body');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      {
        file: 'body',
        line: 0,
        path: 'licenses[0].ttl',
        message: 'must be a duration with a unit, like 3600s or 3600ms',
      },
      {
        file: 'body',
        line: 0,
        path: 'licenses[0].port',
        message: 'unknown port "db" of service "orders" (declared: http)',
      },
    ]);
    expect((err as ConfigError).message).toBe(
      'body: licenses[0].ttl: must be a duration with a unit, like 3600s or 3600ms\nbody: licenses[0].port: unknown port "db" of service "orders" (declared: http)',
    );
  });

  it('refuses non-objects', () => {
    expect(messages(() => parseDeclarative([1, 2]))).toEqual(['input: must be a mapping']);
    expect(messages(() => parseDeclarative(null))).toEqual([
      'input: is empty; expected services and/or licenses',
    ]);
  });
});

describe('parseLicenseSpec (POST /v1/licenses)', () => {
  it('validates one license', () => {
    expect(
      parseLicenseSpec({ subject: 'spiffe://example.org/a', service: 's', port: 'p', autoRenew: false }),
    ).toEqual({
      subject: 'spiffe://example.org/a',
      service: 's',
      port: 'p',
      autoRenew: false,
    });
    expect(
      messages(() =>
        parseLicenseSpec({ subject: 'x', service: 's', ttl: '1h', expiresAt: '2026-01-01T00:00:00Z' }),
      ),
    ).toEqual([
      'input: subject: invalid subject "x": must start with "spiffe://"',
      'input: port: is required',
      'input: expiresAt: set either ttl or expiresAt, not both',
    ]);
  });
});

describe('pathPatternProblem', () => {
  // Patterns are in the normalised form the sidecar compares with (policy/compile.ts decides).
  it.each(['/', '/*', '/api', '/api/', '/api/*', '/a/b.c/d-e_f~', '/caf%C3%A9', '/a%2F'])(
    'accepts %s',
    (p) => {
      expect(pathPatternProblem(p)).toBeUndefined();
    },
  );

  it.each([
    ['', 'must start with "/"'],
    ['*', 'must start with "/"'],
    ['/a*', '"*" is only allowed as a final "/*"'],
    ['/*/a', '"*" is only allowed as a final "/*"'],
    ['/a/**', '"*" is only allowed as a final "/*"'],
    ['/a#b', 'must not contain a query or fragment ("?", "#")'],
    ['/a b', 'must not contain spaces or control characters'],
    ['/a\u0000', 'must not contain spaces or control characters'],
    ['/./*', 'must not contain "." or ".." segments'],
    ['/a/..', 'must not contain "." or ".." segments'],
    ['/café', '"/café" is not in normalised form; write "/caf%C3%A9"'],
    ['/api/[id]', '"/api/[id]" is not in normalised form; write "/api/%5Bid%5D"'],
  ])('rejects %j', (p, why) => {
    expect(pathPatternProblem(p)).toBe(why);
  });
});
