import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyCommand } from '../../src/cli/apply.js';
import { auditCommand } from '../../src/cli/audit.js';
import type { AuditEntryJson } from '../../src/cli/render.js';
import { serviceListCommand } from '../../src/cli/service.js';
import { ConfigError } from '../../src/errors.js';
import {
  runCommand,
  startScriptedAuthority,
  writeCertFiles,
  type CertFiles,
  type ScriptedAuthority,
} from './scripted-authority.js';

let files: CertFiles;
let authority: ScriptedAuthority;
let env: Record<string, string>;

beforeEach(async () => {
  files = writeCertFiles();
  authority = await startScriptedAuthority(files);
  env = files.env(authority.url);
});

afterEach(async () => {
  await authority.close();
  files.remove();
});

const DECLARATIVE = `services:
  - name: orders
    ports: [ { name: http, protocol: http }, { name: db, protocol: tcp } ]
licenses:
  - subject: spiffe://example.org/ns/default/sa/frontend
    service: orders
    port: http
    ttl: 24h
    methods: [GET]
    paths: ["/api/*"]
    reason: frontend reads orders
`;

function writeFile(name: string, text: string): string {
  const f = join(files.dir, name);
  writeFileSync(f, text);
  return f;
}

describe('apply', () => {
  it('sends the document as JSON and prints what was created and changed', async () => {
    const file = writeFile('licenses.yaml', DECLARATIVE);
    authority.script(() => ({
      body: {
        created: ['license spiffe://example.org/ns/default/sa/frontend -> orders/http (lic_a)'],
        changed: ['service orders'],
        unchanged: [],
        version: 4,
      },
    }));
    const r = await runCommand(applyCommand, ['-f', file], { env });
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(authority.requests[0]).toMatchObject({
      method: 'POST',
      path: '/v1/apply',
      body: {
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
            ttl: '24h',
            methods: ['GET'],
            paths: ['/api/*'],
            reason: 'frontend reads orders',
          },
        ],
      },
    });
    expect(r.out).toBe(
      [
        'created    license spiffe://example.org/ns/default/sa/frontend -> orders/http (lic_a)',
        'changed    service orders',
        '1 created, 1 changed, 0 unchanged',
        '',
      ].join('\n'),
    );
  });

  it('prints "no changes" when everything was already in place', async () => {
    const file = writeFile('licenses.yaml', DECLARATIVE);
    authority.script(() => ({
      body: { created: [], changed: [], unchanged: ['service orders', 'license x'] },
    }));
    const r = await runCommand(applyCommand, ['--file', file], { env });
    expect(r.out).toBe('no changes (2 unchanged)\n');
  });

  it('--json prints the API answer', async () => {
    const file = writeFile('licenses.yaml', DECLARATIVE);
    const answer = { created: [], changed: [], unchanged: ['service orders'], version: 3 };
    authority.script(() => ({ body: answer }));
    const r = await runCommand(applyCommand, ['-f', file, '--json'], { env });
    expect(JSON.parse(r.out)).toEqual(answer);
  });

  it('reports a bad file as file:line and exits 2 without sending it', async () => {
    const file = writeFile(
      'bad.yaml',
      DECLARATIVE.replace('protocol: tcp', 'protocol: udp').replace('ttl: 24h', 'ttl: 24'),
    );
    const r = await runCommand(applyCommand, ['-f', file], { env });
    expect(r.code).toBe(2);
    expect(r.error).toBeInstanceOf(ConfigError);
    expect(r.err).toContain(`${file}:3: services[0].ports[1].protocol: must be "tcp" or "http"`);
    expect(r.err).toContain(`${file}:8: licenses[0].ttl: must be a duration with a unit, like 24s or 24ms`);
    expect(authority.requests).toHaveLength(0);
  });

  it.each([
    [
      'a missing file',
      ['-f', '/nonexistent/licenses.yaml'],
      /\/nonexistent\/licenses.yaml: cannot read config: file not found/,
    ],
    ['no -f', [], /apply: --file is required/],
    ['a YAML syntax error', ['-f', 'SYNTAX'], /broken.yaml:3: YAML/],
    ['an unknown license key', ['-f', 'UNKNOWN'], /unknown.yaml:8: licenses\[0\]\.expires/],
  ])('exits 2 before any request for %s', async (_name, argv, message) => {
    const args = argv.map((a) =>
      a === 'SYNTAX'
        ? writeFile('broken.yaml', 'services:\n  - name: [orders\n')
        : a === 'UNKNOWN'
          ? writeFile('unknown.yaml', DECLARATIVE.replace('    ttl: 24h', '    expires: 24h'))
          : a,
    );
    const r = await runCommand(applyCommand, args, { env });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(authority.requests).toHaveLength(0);
  });
});

describe('service list', () => {
  it('prints services and their ports', async () => {
    authority.script(() => ({
      body: {
        services: [
          {
            name: 'orders',
            ports: [
              { name: 'http', protocol: 'http' },
              { name: 'db', protocol: 'tcp' },
            ],
          },
          { name: 'payments', ports: [{ name: 'grpc', protocol: 'http' }] },
        ],
      },
    }));
    const r = await runCommand(serviceListCommand, [], { env });
    expect(authority.requests[0]).toMatchObject({ method: 'GET', path: '/v1/services' });
    expect(r.out.split('\n')).toEqual([
      'SERVICE   PORTS',
      'orders    http (http), db (tcp)',
      'payments  grpc (http)',
      '',
    ]);
  });

  it('points to apply when there are none, and --json prints the API JSON', async () => {
    authority.script(() => ({ body: { services: [] } }));
    expect((await runCommand(serviceListCommand, [], { env })).out).toContain('portlicense apply -f FILE');
    expect(JSON.parse((await runCommand(serviceListCommand, ['--json'], { env })).out)).toEqual({
      services: [],
    });
  });

  it('rejects arguments it does not take', async () => {
    const r = await runCommand(serviceListCommand, ['orders'], { env });
    expect(r.code).toBe(2);
    expect(authority.requests).toHaveLength(0);
  });
});

describe('audit', () => {
  const entry = (id: number, over: Partial<AuditEntryJson> = {}): AuditEntryJson => ({
    id,
    at: '2026-11-28T09:00:00Z',
    actor: 'spiffe://example.org/admin/alice',
    action: 'grant',
    licenseId: `lic_${id}`,
    subject: 'spiffe://example.org/ns/default/sa/frontend',
    service: 'orders',
    port: 'http',
    reason: 'frontend reads orders',
    detail: null,
    ...over,
  });

  it('passes --since as RFC 3339 and prints who did what, when and why', async () => {
    authority.script(() => ({
      body: {
        entries: [
          entry(2, { action: 'revoke', reason: 'key leaked' }),
          entry(1, {
            service: null,
            port: null,
            licenseId: null,
            subject: null,
            reason: null,
            action: 'service',
          }),
        ],
        next: null,
      },
    }));
    const r = await runCommand(auditCommand, ['--since', '2026-11-28T09:00:00+01:00'], { env });
    expect(r.code).toBe(0);
    expect(authority.requests[0]!.path).toBe('/v1/audit');
    expect(authority.requests[0]!.query.get('since')).toBe('2026-11-28T08:00:00Z');
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^AT\s+ACTOR\s+ACTION\s+LICENSE\s+SUBJECT\s+PORT\s+REASON$/);
    expect(lines[1]).toMatch(
      /^2026-11-28T09:00:00Z\s+spiffe:\/\/example.org\/admin\/alice\s+revoke\s+lic_2\s+\S+frontend\s+orders\/http\s+key leaked$/,
    );
    expect(lines[2]).toMatch(/service\s+-\s+-\s+-\s+-$/);
  });

  it('takes a duration for --since, counted back from now', async () => {
    authority.script(() => ({ body: { entries: [], next: null } }));
    const r = await runCommand(auditCommand, ['--since', '24h'], { env, now: '2026-11-28T10:00:00Z' });
    expect(authority.requests[0]!.query.get('since')).toBe('2026-11-27T10:00:00Z');
    expect(r.out).toBe('no audit entries\n');
  });

  it('pages through older entries until --limit is reached', async () => {
    // Newest first: ids 2500 down to 1, `next` is the last id shown, passed back as `before`.
    authority.script((req) => {
      const before = Number(req.query.get('before') ?? 2501);
      const limit = Number(req.query.get('limit'));
      const ids = Array.from({ length: Math.min(limit, before - 1) }, (_, i) => before - 1 - i);
      return {
        body: {
          entries: ids.map((id) => entry(id)),
          next: ids.length > 0 && ids.at(-1)! > 1 ? ids.at(-1)! : null,
        },
      };
    });
    const r = await runCommand(auditCommand, ['--limit', '1500', '--json'], { env });
    const got = (JSON.parse(r.out) as { entries: AuditEntryJson[] }).entries;
    expect(got).toHaveLength(1500);
    expect(got[0]!.id).toBe(2500);
    expect(got.at(-1)!.id).toBe(1001);
    expect(authority.requests.map((q) => [q.query.get('before'), q.query.get('limit')])).toEqual([
      [null, '1000'],
      ['1501', '500'],
    ]);
  });

  it('without --limit reads every page', async () => {
    authority.script((req) =>
      req.query.get('before') === null
        ? { body: { entries: [entry(3), entry(2)], next: 2 } }
        : { body: { entries: [entry(1)], next: null } },
    );
    const r = await runCommand(auditCommand, ['--json'], { env });
    expect((JSON.parse(r.out) as { entries: AuditEntryJson[] }).entries.map((e) => e.id)).toEqual([3, 2, 1]);
  });

  it.each([
    [['--since', 'yesterday'], /audit: --since: invalid time "yesterday".*or a duration like 24h/],
    [['--since', '0s'], /audit: --since: invalid duration "0s"/],
    [['--limit', '0'], /--limit must be a whole number from 1 to 100000, got "0"/],
    [['--limit', 'ten'], /--limit must be a whole number/],
  ])('%j is a usage error before any request', async (argv, message) => {
    const r = await runCommand(auditCommand, argv, { env });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(authority.requests).toHaveLength(0);
  });
});
