import { writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseFlags } from '../../src/cli/args.js';
import {
  AuthorityClient,
  AuthorityResponseError,
  CLIENT_FLAGS,
  resolveClientSettings,
  type ClientSettings,
} from '../../src/cli/client.js';
import { packageInfo } from '../../src/cli/version.js';
import { PortlicenseError, UsageError } from '../../src/errors.js';
import { unusedPort } from '../helpers/net.js';
import { createTestCa } from '../helpers/pki.js';
import {
  ADMIN_ID,
  startScriptedAuthority,
  writeCertFiles,
  type CertFiles,
  type ScriptedAuthority,
} from './scripted-authority.js';

const flags = (argv: string[]) => parseFlags('test', argv, CLIENT_FLAGS);

let files: CertFiles;
let authority: ScriptedAuthority;
const cleanups: Array<() => Promise<void> | void> = [];

beforeEach(async () => {
  files = writeCertFiles();
  authority = await startScriptedAuthority(files);
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await authority.close();
  files.remove();
});

function open(settings: ClientSettings, timeoutMs?: number): AuthorityClient {
  const c = AuthorityClient.open('test', settings, timeoutMs === undefined ? {} : { timeoutMs });
  cleanups.push(() => c.close());
  return c;
}

async function failure(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: Error) => e,
  );
}

describe('resolveClientSettings', () => {
  it('reads the environment variables', () => {
    const s = resolveClientSettings('test', flags([]), files.env(authority.url));
    expect(s.authority).toEqual({ value: authority.url, from: 'PORTLICENSE_AUTHORITY' });
    expect(s.cert).toEqual({ value: files.certFile, from: 'PORTLICENSE_CERT' });
    expect(s.key.value).toBe(files.keyFile);
    expect(s.ca.value).toBe(files.caFile);
  });

  it('lets flags win over the environment, one setting at a time', () => {
    const env = { ...files.env('https://env.example:7443'), PORTLICENSE_CERT: '/env/cert.pem' };
    const s = resolveClientSettings(
      'test',
      flags(['--authority', 'https://flag.example:7443/', '--key', '/flag/key.pem']),
      env,
    );
    expect(s.authority).toEqual({ value: 'https://flag.example:7443', from: '--authority' });
    expect(s.key).toEqual({ value: '/flag/key.pem', from: '--key' });
    expect(s.cert).toEqual({ value: '/env/cert.pem', from: 'PORTLICENSE_CERT' });
  });

  it('names the flag and the variable of every missing setting, treating empty as missing', () => {
    const err = (() => {
      try {
        resolveClientSettings('license list', flags(['--cert', 'c.pem']), {
          PORTLICENSE_KEY: 'k.pem',
          PORTLICENSE_CA: '',
        });
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected a UsageError');
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/^license list: missing connection settings/);
    expect(err.message).toContain('--authority URL (or PORTLICENSE_AUTHORITY)');
    expect(err.message).toContain('--ca FILE (or PORTLICENSE_CA)');
    expect(err.message).not.toContain('--cert');
    expect(err.message).not.toContain('--key');
  });

  it.each([
    ['http://127.0.0.1:7443', /must be an https:\/\/ URL/],
    ['127.0.0.1:7443', /must be an https:\/\/ URL/],
    ['https://admin:pw@127.0.0.1:7443', /credentials/],
    ['https://127.0.0.1:7443/?x=1', /query/],
  ])('refuses the authority URL %s', (url, message) => {
    expect(() => resolveClientSettings('test', flags(['--authority', url]), files.env('https://x'))).toThrow(
      message,
    );
    expect(() => resolveClientSettings('test', flags([]), files.env(url))).toThrow(/PORTLICENSE_AUTHORITY/);
  });
});

describe('AuthorityClient.open', () => {
  it('names the flag or variable and the path of an unreadable file', () => {
    const s = resolveClientSettings(
      'license list',
      flags(['--cert', join(files.dir, 'nope.pem')]),
      files.env(authority.url),
    );
    expect(() => AuthorityClient.open('license list', s)).toThrow(UsageError);
    expect(() => AuthorityClient.open('license list', s)).toThrow(
      `license list: cannot read the client certificate ${join(files.dir, 'nope.pem')} (--cert): file not found`,
    );
  });

  it('refuses certificate material that does not load, naming the files', () => {
    const bad = join(files.dir, 'garbage.pem');
    writeFileSync(bad, 'not a key');
    const s = resolveClientSettings('test', flags([]), { ...files.env(authority.url), PORTLICENSE_KEY: bad });
    expect(() => AuthorityClient.open('test', s)).toThrow(UsageError);
    expect(() => AuthorityClient.open('test', s)).toThrow(/TLS material does not load.*key .*garbage\.pem/s);
  });
});

describe('requests', () => {
  it('sends JSON over mTLS with the admin certificate and a user-agent, and parses the answer', async () => {
    authority.script(() => ({ status: 201, body: { ok: true } }));
    const c = open(resolveClientSettings('test', flags([]), files.env(authority.url)));
    await expect(c.post('/v1/licenses', { subject: 'x' })).resolves.toEqual({ ok: true });
    await expect(c.get('/v1/licenses', { service: 'orders', state: undefined, limit: 5 })).resolves.toEqual({
      ok: true,
    });
    const [post, get] = authority.requests;
    expect(post).toMatchObject({
      method: 'POST',
      path: '/v1/licenses',
      body: { subject: 'x' },
      identity: ADMIN_ID,
    });
    expect(post!.headers['content-type']).toBe('application/json');
    expect(post!.headers['user-agent']).toBe(`portlicense/${packageInfo().version}`);
    expect(get!.method).toBe('GET');
    expect([...get!.query.entries()]).toEqual([
      ['service', 'orders'],
      ['limit', '5'],
    ]);
  });

  it('keeps a path prefix of the authority URL', async () => {
    authority.script(() => ({ body: { services: [] } }));
    const c = open(
      resolveClientSettings('test', flags(['--authority', `${authority.url}/pl/`]), files.env('https://x')),
    );
    await c.get('/v1/services');
    expect(authority.requests[0]!.path).toBe('/pl/v1/services');
  });

  it.each([
    [403, 'forbidden', 'spiffe://example.org/ns/x is not an admin'],
    [404, 'not_found', 'no license "lic_x"'],
    [409, 'conflict', 'license lic_x is revoked'],
    [500, 'internal', 'the store is unavailable'],
  ])('turns %d into "<status> <error>: <detail>"', async (status, error, detail) => {
    authority.script(() => ({ status, body: { error, detail } }));
    const c = open(resolveClientSettings('test', flags([]), files.env(authority.url)));
    const err = await failure(c.get('/v1/licenses/lic_x'));
    expect(err).toBeInstanceOf(AuthorityResponseError);
    expect(err.message).toBe(`${status} ${error}: ${detail}`);
    expect((err as AuthorityResponseError).status).toBe(status);
  });

  it('reports an error answer that is not JSON with its text', async () => {
    authority.script(() => ({ status: 502, body: 'Bad Gateway from the load balancer' }));
    const c = open(resolveClientSettings('test', flags([]), files.env(authority.url)));
    await expect(c.get('/v1/services')).rejects.toThrow('502 error: Bad Gateway from the load balancer');
  });

  it('refuses a 2xx answer that is not JSON', async () => {
    authority.script(() => ({ status: 200, body: '<html>' }));
    const c = open(resolveClientSettings('test', flags([]), files.env(authority.url)));
    await expect(c.get('/v1/services')).rejects.toThrow(
      /answered GET \/v1\/services with 200 and a body that is not JSON/,
    );
  });
});

describe('transport failures', () => {
  it('names the URL and suggests checking --authority when nothing listens', async () => {
    const url = `https://127.0.0.1:${await unusedPort()}`;
    const c = open(resolveClientSettings('test', flags(['--authority', url]), files.env('https://x')));
    const err = await failure(c.get('/v1/services'));
    expect(err).toBeInstanceOf(PortlicenseError);
    expect((err as PortlicenseError).code).toBe('AUTHORITY_UNREACHABLE');
    expect(err.message).toContain(`cannot reach the authority at ${url}`);
    expect(err.message).toContain('ECONNREFUSED');
    expect(err.message).toContain('check --authority');
  });

  it('names the certificate files when the authority does not verify against the CA bundle', async () => {
    const otherCa = join(files.dir, 'other-ca.pem');
    writeFileSync(otherCa, createTestCa('someone else').cert);
    const c = open(resolveClientSettings('test', flags(['--ca', otherCa]), files.env(authority.url)));
    const err = await failure(c.get('/v1/services'));
    expect(err.message).toContain(`TLS handshake with the authority at ${authority.url} failed`);
    expect(err.message).toContain('does not verify against the CA bundle');
    expect(err.message).toContain(`CA ${otherCa}`);
    expect(err.message).toContain(`client certificate ${files.certFile}`);
    expect(authority.requests).toHaveLength(0);
  });

  it('names the host mismatch when the authority certificate is for another name', async () => {
    const other = await startScriptedAuthority(files, {
      server: files.ca.issue({ dns: ['authority.example'] }),
    });
    cleanups.push(() => other.close());
    const c = open(resolveClientSettings('test', flags([]), files.env(other.url)));
    const err = await failure(c.get('/v1/services'));
    expect(err.message).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(err.message).toContain('does not name the host of PORTLICENSE_AUTHORITY');
  });

  it('names the client certificate when the authority refuses it', async () => {
    const stranger = createTestCa('stranger CA').svid(ADMIN_ID);
    const cert = join(files.dir, 'stranger.pem');
    const key = join(files.dir, 'stranger-key.pem');
    writeFileSync(cert, stranger.cert);
    writeFileSync(key, stranger.key);
    const c = open(
      resolveClientSettings('test', flags(['--cert', cert, '--key', key]), files.env(authority.url)),
    );
    const err = await failure(c.get('/v1/services'));
    expect(err).toBeInstanceOf(PortlicenseError);
    expect(err.message).toContain(authority.url);
    expect(err.message).toContain(`client certificate ${cert}`);
    expect(err.message).toMatch(/refused the client certificate/);
    expect(authority.requests).toHaveLength(0);
  });

  it('gives up when the authority does not answer in time', async () => {
    const sockets = new Set<Socket>();
    const silent = https.createServer({ ...files.server, ca: files.ca.cert, requestCert: true }, () => {
      // never answers
    });
    silent.on('connection', (s: Socket) => sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    );
    const url = `https://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const c = open(resolveClientSettings('test', flags([]), files.env(url)), 300);
    const err = await failure(c.get('/v1/services'));
    expect(err.message).toBe(
      `no answer from the authority at ${url} within 0.3s (check PORTLICENSE_AUTHORITY or pass --authority; is the authority running?)`,
    );
  });
});
