/**
 * The real CLI as a child process (`node --import tsx src/cli/main.ts`) against the real authority
 * (test/helpers/authority.ts) over real mTLS: exit codes, stdout and stderr as an operator sees them.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LicenseJson } from '../../src/authority/model.js';
import { ADMIN, FRONTEND, startTestAuthority, type TestAuthority } from '../helpers/authority.js';
import { svid } from '../helpers/pki.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string>, input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ['--import', 'tsx', MAIN, ...args],
      { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 15_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin!.end(input);
    else child.stdin!.end();
  });
}

let authority: TestAuthority;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  authority = await startTestAuthority();
  dir = tempDir('pl-cli-proc-');
  const admin = svid(ADMIN);
  const f = (n: string, text: string): string => {
    writeFileSync(join(dir, n), text);
    return join(dir, n);
  };
  const { host, port } = authority.running.address;
  env = {
    PORTLICENSE_AUTHORITY: `https://${host}:${port}`,
    PORTLICENSE_CERT: f('admin.pem', admin.cert),
    PORTLICENSE_KEY: f('admin-key.pem', admin.key),
    PORTLICENSE_CA: f('ca.pem', authority.ca.cert),
  };
  f(
    'licenses.yaml',
    [
      'services:',
      '  - name: orders',
      '    ports: [ { name: http, protocol: http }, { name: db, protocol: tcp } ]',
      'licenses:',
      `  - { subject: "spiffe://example.org/ns/batch/*", service: orders, port: db, ttl: 1h, reason: nightly export }`,
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await authority?.close();
  if (dir) removeDir(dir);
});

describe('portlicense against the real authority', () => {
  let granted: string;

  it('apply registers services and licenses, and a second apply changes nothing', async () => {
    const first = await cli(['apply', '-f', join(dir, 'licenses.yaml')], env);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^created\s+service orders$/m);
    expect(first.stdout).toMatch(
      /^created\s+license spiffe:\/\/example.org\/ns\/batch\/\* -> orders\/db \(lic_\w+\)$/m,
    );
    const again = await cli(
      ['apply', '-f', '-'],
      env,
      `${'services:\n  - name: orders\n    ports: [ { name: http, protocol: http }, { name: db, protocol: tcp } ]\n'}`,
    );
    expect(again).toMatchObject({ code: 0, stdout: 'no changes (1 unchanged)\n' });
  });

  it('grant prints the new license ID and expiry', async () => {
    const r = await cli(
      [
        'license',
        'grant',
        '--subject',
        FRONTEND,
        '--service',
        'orders',
        '--port',
        'http',
        '--ttl',
        '2h',
        '--methods',
        'GET',
        '--paths',
        '/api/*',
        '--reason',
        'frontend reads orders',
      ],
      env,
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const m =
      /^granted (lic_\w+): spiffe:\/\/example.org\/ns\/default\/sa\/frontend -> orders\/http, expires 2026-11-28T12:00:00Z \(.+\)\n$/.exec(
        r.stdout,
      );
    expect(m, r.stdout).not.toBeNull();
    granted = m![1]!;
  });

  it('list shows both licenses as a table', async () => {
    const r = await cli(['license', 'list', '--service', 'orders'], env);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+SUBJECT\s+PORT\s+STATE\s+EXPIRES\s+LAST ACCESS$/);
    expect(lines).toHaveLength(3);
    expect(r.stdout).toMatch(
      new RegExp(`^${granted}\\s+${FRONTEND}\\s+orders/http\\s+active\\s+2026-11-28T12:00:00Z .*never$`, 'm'),
    );
    expect(r.stdout).toMatch(
      /^lic_\w+\s+spiffe:\/\/example.org\/ns\/batch\/\*\s+orders\/db\s+active\s+2026-11-28T11:00:00Z/m,
    );
  });

  it('revoke by ID and by subject pattern; the audit log tells who, what and why', async () => {
    const [one, many] = await Promise.all([
      cli(['license', 'revoke', granted, '--reason', 'frontend retired'], env),
      cli(
        [
          'license',
          'revoke',
          '--subject',
          'spiffe://example.org/ns/batch/*',
          '--service',
          'orders',
          '--reason',
          'batch paused',
        ],
        env,
      ),
    ]);
    expect(one).toMatchObject({ code: 0, stderr: '' });
    expect(one.stdout).toBe(`revoked ${granted}: ${FRONTEND} -> orders/http\n`);
    expect(many.code).toBe(0);
    expect(many.stdout).toMatch(/^revoked 1 license\(s\) matching spiffe:\/\/example.org\/ns\/batch\/\*\n/);
    const res = await authority.client(ADMIN).get('/v1/licenses?state=revoked');
    const revoked = (res.json as { licenses: LicenseJson[] }).licenses;
    expect(revoked.map((l) => l.revokeReason).sort()).toEqual(['batch paused', 'frontend retired']);

    const audit = await cli(['audit', '--limit', '10'], env);
    expect(audit.code).toBe(0);
    expect(audit.stdout).toMatch(
      new RegExp(`^\\S+\\s+${ADMIN}\\s+revoke\\s+${granted}\\s+.*frontend retired$`, 'm'),
    );
    expect(audit.stdout).toMatch(
      new RegExp(`^\\S+\\s+${ADMIN}\\s+grant\\s+${granted}\\s+.*frontend reads orders$`, 'm'),
    );
  });

  it('a usage error exits 2 and changes nothing', async () => {
    const r = await cli(
      ['license', 'grant', '--subject', FRONTEND, '--service', 'orders', '--port', 'http', '--ttl', '10'],
      env,
    );
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^portlicense: license grant: --ttl: invalid duration "10"/);
    const all = await authority.client(ADMIN).get('/v1/licenses');
    expect((all.json as { licenses: unknown[] }).licenses).toHaveLength(2);
  });

  it('config validate checks the keys an authority config names, as the authority does at start', async () => {
    const { readFileSync } = await import('node:fs');
    const text = readFileSync(authority.configFile, 'utf8');
    expect((await cli(['config', 'validate', authority.configFile], {})).code).toBe(0);
    const file = join(authority.dir, 'misfit.yaml');
    writeFileSync(file, text.replace('signingKey: signing-key.pem', 'signingKey: authority-key.pem'));
    const r = await cli(['config', 'validate', file], {});
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /misfit\.yaml:4: signingKey: \S*authority-key\.pem: holds a rsa key, but bundle signing needs Ed25519/,
    );
  });

  it('authority errors exit 1 as "portlicense: <status> <error>: <detail>"', async () => {
    const missing = await cli(['license', 'show', 'lic_000000000000000000000000'], env);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(/^portlicense: 404 not_found: .+\n$/);
  });
});
