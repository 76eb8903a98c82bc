import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LicenseJson } from '../../src/authority/model.js';
import {
  licenseGrantCommand,
  licenseListCommand,
  licenseRenewCommand,
  licenseRevokeCommand,
  licenseShowCommand,
} from '../../src/cli/license.js';
import { unusedPort } from '../helpers/net.js';
import {
  licenseJson,
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

const FRONTEND = 'spiffe://example.org/ns/default/sa/frontend';
const grant = ['--subject', FRONTEND, '--service', 'orders', '--port', 'http'];

describe('usage errors exit 2 before any request', () => {
  type Case = [string, Parameters<typeof runCommand>[0], string[], RegExp];
  const cases: Case[] = [
    [
      'grant without --subject',
      licenseGrantCommand,
      ['--service', 'orders', '--port', 'http'],
      /--subject required/,
    ],
    ['grant without anything', licenseGrantCommand, [], /--subject, --service, --port required/],
    [
      'grant with a bad subject',
      licenseGrantCommand,
      ['--subject', 'frontend', '--service', 'orders', '--port', 'http'],
      /--subject: invalid subject "frontend": must start with "spiffe:\/\/"/,
    ],
    [
      'grant with a mid-path *',
      licenseGrantCommand,
      ['--subject', 'spiffe://example.org/a*/b', '--service', 'o', '--port', 'p'],
      /--subject: .*"\*" is only allowed as a final "\/\*"/,
    ],
    [
      'grant with a bad service name',
      licenseGrantCommand,
      ['--subject', FRONTEND, '--service', 'Orders', '--port', 'http'],
      /--service: must be 1-63 lowercase/,
    ],
    [
      'grant with a bare number ttl',
      licenseGrantCommand,
      [...grant, '--ttl', '10'],
      /--ttl: invalid duration "10"/,
    ],
    [
      'grant with a zero ttl',
      licenseGrantCommand,
      [...grant, '--ttl', '0s'],
      /--ttl: invalid duration "0s": must be greater than zero/,
    ],
    [
      'grant with a sub-second ttl',
      licenseGrantCommand,
      [...grant, '--ttl', '500ms'],
      /--ttl: must be at least 1s/,
    ],
    [
      'grant with a bad max lifetime',
      licenseGrantCommand,
      [...grant, '--max-lifetime', '1 day'],
      /--max-lifetime: invalid duration/,
    ],
    [
      'grant with ttl beyond max lifetime',
      licenseGrantCommand,
      [...grant, '--ttl', '2h', '--max-lifetime', '1h'],
      /--ttl: ttl \(2h\) must not exceed maxLifetime \(1h\)/,
    ],
    [
      'grant with a time without zone',
      licenseGrantCommand,
      [...grant, '--not-before', '2026-11-28T10:00:00'],
      /--not-before: invalid time .*add a time zone/,
    ],
    [
      'grant with a bad method',
      licenseGrantCommand,
      [...grant, '--methods', 'GET,GE T'],
      /--methods: must be an HTTP method/,
    ],
    [
      'grant with a relative path',
      licenseGrantCommand,
      [...grant, '--paths', 'api/*'],
      /--paths: must start with "\/"/,
    ],
    [
      'grant with an unknown flag',
      licenseGrantCommand,
      [...grant, '--expires', '1h'],
      /license grant: Unknown option '--expires'/,
    ],
    [
      'grant with a flag missing its value',
      licenseGrantCommand,
      [...grant, '--ttl'],
      /license grant: Option '--ttl <value>' argument missing/,
    ],
    [
      'list with a bad state',
      licenseListCommand,
      ['--state', 'live'],
      /--state must be one of active, expired, revoked, pending, got "live"/,
    ],
    [
      'list with a bad subject',
      licenseListCommand,
      ['--subject', 'spiffe://Example.org/x'],
      /--subject: invalid subject/,
    ],
    ['list with an argument', licenseListCommand, ['orders'], /unexpected argument "orders"/],
    ['show without an ID', licenseShowCommand, [], /license show: missing the license ID/],
    ['show with a malformed ID', licenseShowCommand, ['../services'], /invalid license ID "..\/services"/],
    ['show with two IDs', licenseShowCommand, ['lic_a', 'lic_b'], /unexpected argument "lic_b"/],
    [
      'renew with a bad ttl',
      licenseRenewCommand,
      ['lic_a', '--ttl', '5x'],
      /license renew: --ttl: invalid duration "5x"/,
    ],
    ['renew without an ID', licenseRenewCommand, ['--ttl', '1h'], /missing the license ID/],
    ['revoke with nothing', licenseRevokeCommand, [], /give a license ID or --subject PATTERN/],
    [
      'revoke with ID and --subject',
      licenseRevokeCommand,
      ['lic_a', '--subject', FRONTEND],
      /either a license ID or --subject PATTERN, not both/,
    ],
    [
      'revoke ID with --service',
      licenseRevokeCommand,
      ['lic_a', '--service', 'orders'],
      /--service only applies with --subject/,
    ],
    [
      'revoke with a bad pattern',
      licenseRevokeCommand,
      ['--subject', 'spiffe://example.org/ns/*/sa'],
      /--subject: invalid subject/,
    ],
  ];

  it.each(cases)('%s', async (_name, command, argv, message) => {
    const r = await runCommand(command, argv, { env });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.out).toBe('');
    expect(authority.requests).toHaveLength(0);
  });

  it('missing connection settings are a usage error too', async () => {
    const r = await runCommand(licenseListCommand, [], { env: { PORTLICENSE_AUTHORITY: authority.url } });
    expect(r.code).toBe(2);
    expect(r.err).toContain('--cert FILE (or PORTLICENSE_CERT)');
    expect(authority.requests).toHaveLength(0);
  });

  it('--help prints the flags and the connection settings, and exits 0', async () => {
    const r = await runCommand(licenseGrantCommand, ['--help'], { env: {} });
    expect(r.code).toBe(0);
    expect(r.out).toContain('--max-lifetime D');
    expect(r.out).toContain('PORTLICENSE_AUTHORITY');
    expect(authority.requests).toHaveLength(0);
  });
});

describe('license grant', () => {
  it('sends every flag as the API field and prints the new ID and expiry', async () => {
    authority.script(() => ({ status: 201, body: licenseJson({ id: 'lic_new' }) }));
    const r = await runCommand(
      licenseGrantCommand,
      [
        ...grant,
        '--ttl',
        '24h',
        '--max-lifetime',
        '30d',
        '--no-auto-renew',
        '--methods',
        'get,POST',
        '--methods',
        'put',
        '--paths',
        '/api/*',
        '--not-before',
        '2026-11-28T11:00:00+01:00',
        '--reason',
        'frontend reads orders',
      ],
      { env },
    );
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(authority.requests).toHaveLength(1);
    expect(authority.requests[0]).toMatchObject({
      method: 'POST',
      path: '/v1/licenses',
      body: {
        subject: FRONTEND,
        service: 'orders',
        port: 'http',
        ttl: '24h',
        maxLifetime: '30d',
        autoRenew: false,
        methods: ['GET', 'POST', 'PUT'],
        paths: ['/api/*'],
        notBefore: '2026-11-28T10:00:00Z',
        reason: 'frontend reads orders',
      },
    });
    expect(r.out).toBe(
      `granted lic_new: ${FRONTEND} -> orders/http, expires 2026-11-29T10:00:00Z (in 24h)\n`,
    );
  });

  it('sends only what was given, so the authority applies its defaults', async () => {
    authority.script(() => ({ status: 201, body: licenseJson() }));
    await runCommand(licenseGrantCommand, grant, { env });
    expect(authority.requests[0]!.body).toEqual({ subject: FRONTEND, service: 'orders', port: 'http' });
  });

  it('says when a license is not valid yet', async () => {
    authority.script(() => ({
      status: 201,
      body: licenseJson({
        state: 'pending',
        notBefore: '2026-11-28T12:00:00Z',
        expiresAt: '2026-11-29T12:00:00Z',
      }),
    }));
    const r = await runCommand(licenseGrantCommand, [...grant, '--not-before', '2026-11-28T12:00:00Z'], {
      env,
    });
    expect(r.out).toContain('valid from 2026-11-28T12:00:00Z (in 2h), expires 2026-11-29T12:00:00Z (in 26h)');
  });

  it('--json prints the license exactly as the API answered', async () => {
    const l = licenseJson({ methods: ['GET'], paths: ['/api/*'] });
    authority.script(() => ({ status: 201, body: l }));
    const r = await runCommand(licenseGrantCommand, [...grant, '--json'], { env });
    expect(JSON.parse(r.out)).toEqual(l);
  });

  it('prints the authority refusal and exits 1', async () => {
    authority.script(() => ({
      status: 400,
      body: { error: 'bad_request', detail: 'unknown service "orders"; known services: payments' },
    }));
    const r = await runCommand(licenseGrantCommand, grant, { env });
    expect(r.code).toBe(1);
    expect(r.err).toBe('400 bad_request: unknown service "orders"; known services: payments');
    expect(r.out).toBe('');
  });

  it('a 403 for a non-admin certificate exits 1 with the detail', async () => {
    authority.script(() => ({
      status: 403,
      body: { error: 'forbidden', detail: 'spiffe://example.org/admin/alice may not grant' },
    }));
    const r = await runCommand(licenseGrantCommand, grant, { env });
    expect(r.code).toBe(1);
    expect(r.err).toBe('403 forbidden: spiffe://example.org/admin/alice may not grant');
  });

  it('an unreachable authority exits 1 naming the URL', async () => {
    const url = `https://127.0.0.1:${await unusedPort()}`;
    const r = await runCommand(licenseGrantCommand, [...grant, '--authority', url], { env });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`^cannot reach the authority at ${url}: .*check --authority`));
  });
});

describe('license list', () => {
  const ids = Array.from({ length: 7 }, (_, i) => `lic_${String(i).padStart(2, '0')}`);

  /** Pages of 3 by `after`, like the authority's keyset pagination. */
  function paginate(all: LicenseJson[]): void {
    authority.script((req) => {
      const after = req.query.get('after');
      const start = after === null ? 0 : all.findIndex((l) => l.id === after) + 1;
      const page = all.slice(start, start + 3);
      const more = start + 3 < all.length;
      return { body: { licenses: page, next: more ? page[page.length - 1]!.id : null } };
    });
  }

  it('follows next through every page, passing the filters each time', async () => {
    paginate(ids.map((id) => licenseJson({ id })));
    const r = await runCommand(
      licenseListCommand,
      [
        '--service',
        'orders',
        '--subject',
        'spiffe://example.org/ns/default/*',
        '--state',
        'active',
        '--json',
      ],
      { env },
    );
    expect(r.code).toBe(0);
    expect((JSON.parse(r.out) as { licenses: LicenseJson[] }).licenses.map((l) => l.id)).toEqual(ids);
    expect(authority.requests.map((q) => q.query.get('after'))).toEqual([null, 'lic_02', 'lic_05']);
    for (const q of authority.requests) {
      expect(q.path).toBe('/v1/licenses');
      expect(q.query.get('service')).toBe('orders');
      expect(q.query.get('subject')).toBe('spiffe://example.org/ns/default/*');
      expect(q.query.get('state')).toBe('active');
      expect(q.query.get('limit')).toBe('1000');
    }
  });

  it('prints a table: ID, SUBJECT, PORT, STATE, EXPIRES, LAST ACCESS', async () => {
    paginate([
      licenseJson({
        id: 'lic_a',
        lastAccess: { at: '2026-11-28T09:55:00Z', identity: FRONTEND, origin: '10.0.0.7', count: 42 },
      }),
      licenseJson({
        id: 'lic_b',
        subject: 'spiffe://example.org/ns/payments/*',
        service: 'payments',
        port: 'db',
        state: 'revoked',
        expiresAt: '2026-11-28T08:00:00Z',
      }),
    ]);
    const r = await runCommand(licenseListCommand, [], { env });
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+SUBJECT\s+PORT\s+STATE\s+EXPIRES\s+LAST ACCESS$/);
    expect(lines[1]).toMatch(
      /^lic_a\s+spiffe:\/\/example.org\/ns\/default\/sa\/frontend\s+orders\/http\s+active\s+2026-11-29T10:00:00Z \(in 24h\)\s+5m ago, 42x$/,
    );
    expect(lines[2]).toMatch(
      /^lic_b\s+spiffe:\/\/example.org\/ns\/payments\/\*\s+payments\/db\s+revoked\s+2026-11-28T08:00:00Z \(2h ago\)\s+never$/,
    );
    // Columns line up.
    expect(lines[1]!.indexOf('orders/http')).toBe(lines[0]!.indexOf('PORT'));
  });

  it('says so when nothing matches', async () => {
    paginate([]);
    const r = await runCommand(licenseListCommand, ['--state', 'expired'], { env });
    expect(r).toMatchObject({ code: 0, out: 'no licenses match\n' });
  });

  it('stops with an error when the authority repeats a cursor', async () => {
    authority.script(() => ({ body: { licenses: [licenseJson()], next: 'lic_same' } }));
    const r = await runCommand(licenseListCommand, [], { env });
    expect(r.code).toBe(1);
    expect(r.err).toContain('repeated the page cursor "lic_same"');
    expect(authority.requests).toHaveLength(2);
  });
});

describe('license show', () => {
  it('prints every field of the license', async () => {
    authority.script(() => ({
      body: licenseJson({
        id: 'lic_a',
        methods: ['GET', 'POST'],
        paths: ['/api/*'],
        reason: 'frontend reads orders',
        lastAccess: { at: '2026-11-28T09:00:00Z', identity: FRONTEND, origin: '10.0.0.7', count: 3 },
      }),
    }));
    const r = await runCommand(licenseShowCommand, ['lic_a'], { env });
    expect(authority.requests[0]).toMatchObject({ method: 'GET', path: '/v1/licenses/lic_a' });
    expect(r.out).toMatch(/^ID:\s+lic_a$/m);
    expect(r.out).toMatch(/^Port:\s+orders\/http$/m);
    expect(r.out).toMatch(/^Methods:\s+GET, POST$/m);
    expect(r.out).toMatch(/^Paths:\s+\/api\/\*$/m);
    expect(r.out).toMatch(/^Expires:\s+2026-11-29T10:00:00Z \(in 24h\)$/m);
    expect(r.out).toMatch(/^Max lifetime:\s+30d \(until 2026-12-28T10:00:00Z\)$/m);
    expect(r.out).toMatch(/^Auto renew:\s+yes, while in use$/m);
    expect(r.out).toMatch(/^Reason:\s+frontend reads orders$/m);
    expect(r.out).toMatch(
      /^Last access:\s+2026-11-28T09:00:00Z \(60m ago\) by spiffe:\/\/example.org\/ns\/default\/sa\/frontend from 10.0.0.7, 3 access\(es\)$/m,
    );
    expect(r.out).not.toContain('Revoked');
  });

  it('shows a revocation with its reason', async () => {
    authority.script(() => ({
      body: licenseJson({ state: 'revoked', revokedAt: '2026-11-28T09:30:00Z', revokeReason: 'offboarded' }),
    }));
    const r = await runCommand(licenseShowCommand, ['lic_a'], { env });
    expect(r.out).toMatch(/^Revoked:\s+2026-11-28T09:30:00Z \(30m ago\): offboarded$/m);
    expect(r.out).toMatch(/^Methods:\s+any$/m);
  });

  it('--json prints the API JSON', async () => {
    const l = licenseJson({ id: 'lic_a' });
    authority.script(() => ({ body: l }));
    const r = await runCommand(licenseShowCommand, ['lic_a', '--json'], { env });
    expect(JSON.parse(r.out)).toEqual(l);
  });

  it('a 404 exits 1 as "404 not_found: ..."', async () => {
    authority.script(() => ({ status: 404, body: { error: 'not_found', detail: 'no license "lic_gone"' } }));
    const r = await runCommand(licenseShowCommand, ['lic_gone'], { env });
    expect(r).toMatchObject({ code: 1, out: '', err: '404 not_found: no license "lic_gone"' });
  });
});

describe('license renew', () => {
  it('sends ttl and reason and prints the new expiry', async () => {
    authority.script(() => ({ body: licenseJson({ id: 'lic_a', expiresAt: '2026-11-30T10:00:00Z' }) }));
    const r = await runCommand(licenseRenewCommand, ['lic_a', '--ttl', '48h', '--reason', 'release week'], {
      env,
    });
    expect(authority.requests[0]).toMatchObject({
      method: 'POST',
      path: '/v1/licenses/lic_a/renew',
      body: { ttl: '48h', reason: 'release week' },
    });
    expect(r.out).toBe('renewed lic_a: expires 2026-11-30T10:00:00Z (in 2d)\n');
  });

  it('sends an empty body without flags, and says when max lifetime capped the renewal', async () => {
    authority.script(() => ({
      body: licenseJson({
        id: 'lic_a',
        createdAt: '2026-11-01T10:00:00Z',
        expiresAt: '2026-12-01T10:00:00Z',
      }),
    }));
    const r = await runCommand(licenseRenewCommand, ['lic_a'], { env });
    expect(authority.requests[0]!.body).toEqual({});
    expect(r.out).toContain('capped at its max lifetime');
  });

  it('a 409 exits 1 with the detail', async () => {
    authority.script(() => ({
      status: 409,
      body: { error: 'conflict', detail: 'license lic_a is revoked' },
    }));
    const r = await runCommand(licenseRenewCommand, ['lic_a'], { env });
    expect(r).toMatchObject({ code: 1, err: '409 conflict: license lic_a is revoked' });
  });
});

describe('license revoke', () => {
  it('revokes one license by ID with a reason', async () => {
    authority.script(() => ({ body: licenseJson({ id: 'lic_a', state: 'revoked' }) }));
    const r = await runCommand(licenseRevokeCommand, ['lic_a', '--reason', 'key leaked'], { env });
    expect(authority.requests[0]).toMatchObject({
      method: 'POST',
      path: '/v1/licenses/lic_a/revoke',
      body: { reason: 'key leaked' },
    });
    expect(r).toMatchObject({ code: 0, out: `revoked lic_a: ${FRONTEND} -> orders/http\n` });
  });

  it('revokes every license of a subject pattern, optionally on one service', async () => {
    const revoked = [
      licenseJson({ id: 'lic_a', state: 'revoked' }),
      licenseJson({ id: 'lic_b', port: 'db', state: 'revoked' }),
    ];
    authority.script(() => ({ body: { revoked } }));
    const r = await runCommand(
      licenseRevokeCommand,
      [
        '--subject',
        'spiffe://example.org/ns/default/*',
        '--service',
        'orders',
        '--reason',
        'namespace deleted',
      ],
      { env },
    );
    expect(authority.requests[0]).toMatchObject({
      method: 'POST',
      path: '/v1/revoke',
      body: { subject: 'spiffe://example.org/ns/default/*', service: 'orders', reason: 'namespace deleted' },
    });
    expect(r.out).toMatch(
      /^revoked 2 license\(s\) matching spiffe:\/\/example.org\/ns\/default\/\*\nID\s+SUBJECT/,
    );
    expect(r.out).toMatch(/^lic_b\s+\S+\s+orders\/db\s+revoked/m);
  });

  it('says so when no live license matches, and --json prints {"revoked": []}', async () => {
    authority.script(() => ({ body: { revoked: [] } }));
    const r = await runCommand(licenseRevokeCommand, ['--subject', FRONTEND], { env });
    expect(r.out).toBe(`no live licenses match ${FRONTEND}\n`);
    expect(authority.requests[0]!.body).toEqual({ subject: FRONTEND });
    const j = await runCommand(licenseRevokeCommand, ['--subject', FRONTEND, '--json'], { env });
    expect(JSON.parse(j.out)).toEqual({ revoked: [] });
  });
});
