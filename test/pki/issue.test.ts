import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PortlicenseError, UsageError } from '../../src/errors.js';
import { CA_FILES, initCa } from '../../src/pki/ca.js';
import { issueCert, type IssueCertOptions } from '../../src/pki/issue.js';
import { thrown } from '../helpers/errors.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const NOW = Date.parse('2026-11-28T10:00:00Z');
const ORDERS = 'spiffe://example.org/ns/default/sa/orders';

// One CA for the file (RSA key generation dominates the run time); outputs go to a fresh folder.
let caDir: string;
let ca: X509Certificate;
let out: string;
beforeAll(() => {
  caDir = tempDir('pl-issue-ca-');
  initCa({ dir: caDir, trustDomain: 'example.org', now: NOW });
  ca = new X509Certificate(readFileSync(join(caDir, CA_FILES.caCert)));
});
afterAll(() => {
  removeDir(caDir);
});
beforeEach(() => {
  out = tempDir('pl-issue-out-');
});
afterEach(() => {
  removeDir(out);
});

const issue = (opts: Partial<IssueCertOptions>) =>
  issueCert({ caDir, spiffeId: ORDERS, out: join(out, 'orders'), now: NOW, ...opts });

const thrownBy = (fn: () => unknown) => thrown(fn) as Error;

describe('issueCert', () => {
  it('writes <out>.pem and <out>-key.pem (0600) with a leaf that verifies against the CA', () => {
    const r = issue({ out: join(out, 'sub', 'dir', 'orders') });
    expect(r.certFile).toBe(join(out, 'sub', 'dir', 'orders.pem'));
    expect(r.keyFile).toBe(join(out, 'sub', 'dir', 'orders-key.pem'));
    expect(readdirSync(join(out, 'sub', 'dir')).sort()).toEqual(['orders-key.pem', 'orders.pem']);
    expect(statSync(r.keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(r.certFile).mode & 0o777).toBe(0o644);

    const leaf = new X509Certificate(readFileSync(r.certFile));
    expect(leaf.checkIssued(ca)).toBe(true);
    expect(leaf.verify(ca.publicKey)).toBe(true);
    expect(leaf.checkPrivateKey(createPrivateKey(readFileSync(r.keyFile)))).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(leaf.subjectAltName).toBe(`URI:${ORDERS}`);
    expect(leaf.keyUsage).toEqual(expect.arrayContaining([SERVER_AUTH, CLIENT_AUTH]));
    expect(leaf.serialNumber).toBe(r.serialNumber);
    // The file holds just the leaf: one certificate, no chain.
    expect(readFileSync(r.certFile, 'utf8').match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
  });

  it('has exactly one URI SAN plus the requested DNS names and IPs (v4 and v6, canonical)', () => {
    const r = issue({
      dns: ['localhost', 'Orders.Internal', 'localhost', '*.svc.example'],
      ips: ['127.0.0.1', '::1', '2001:DB8:0::1'],
    });
    const san = new X509Certificate(readFileSync(r.certFile)).subjectAltName!.split(', ');
    expect(san.filter((s) => s.startsWith('URI:'))).toEqual([`URI:${ORDERS}`]);
    expect(san).toEqual([
      `URI:${ORDERS}`,
      'DNS:localhost',
      'DNS:orders.internal',
      'DNS:*.svc.example',
      'IP Address:127.0.0.1',
      'IP Address:0:0:0:0:0:0:0:1',
      'IP Address:2001:DB8:0:0:0:0:0:1',
    ]);
    expect(r.dns).toEqual(['localhost', 'orders.internal', '*.svc.example']);
    expect(r.ips).toEqual(['127.0.0.1', '::1', '2001:db8::1']);
  });

  it('defaults to 30 days and honours --ttl as a duration string or milliseconds', () => {
    const def = new X509Certificate(readFileSync(issue({}).certFile));
    expect(Date.parse(def.validTo)).toBe(NOW + 30 * 86_400_000);
    expect(Date.parse(def.validFrom)).toBe(NOW - 60_000);

    const short = issue({ ttl: '15m' });
    expect(short.notAfter.getTime()).toBe(NOW + 15 * 60_000);
    expect(Date.parse(new X509Certificate(readFileSync(short.certFile)).validTo)).toBe(NOW + 15 * 60_000);
    expect(issue({ ttl: 90_000 }).notAfter.getTime()).toBe(NOW + 90_000);
  });

  it('re-issuing to the same prefix replaces both files', () => {
    const a = issue({});
    const firstKey = readFileSync(a.keyFile, 'utf8');
    const b = issue({});
    expect(readFileSync(b.keyFile, 'utf8')).not.toBe(firstKey);
    expect(new X509Certificate(readFileSync(b.certFile)).serialNumber).toBe(b.serialNumber);
    expect(b.serialNumber).not.toBe(a.serialNumber);
  });

  it.each([
    ['not spiffe', 'https://example.org/x', /must start with "spiffe:\/\/"/],
    ['a query', 'spiffe://example.org/x?y=1', /path segment/],
    ['upper-case trust domain', 'spiffe://Example.org/x', /trust domain/],
    ['a port', 'spiffe://example.org:443/x', /trust domain/],
    ['dot segment', 'spiffe://example.org/a/../b', /"\." or "\.\."/],
    ['no path', 'spiffe://example.org', /names a trust domain, not a workload/],
  ])('rejects a SPIFFE ID with %s', (_what, spiffeId, message) => {
    const err = thrownBy(() => issue({ spiffeId }));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/^--spiffe-id /);
    expect(err.message).toMatch(message);
    expect(readdirSync(out)).toEqual([]);
  });

  it('rejects an identity of another trust domain than the CA', () => {
    const err = thrownBy(() => issue({ spiffeId: 'spiffe://other.test/ns/default/sa/orders' }));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain('trust domain "other.test" is not the CA\'s trust domain "example.org"');
    expect(readdirSync(out)).toEqual([]);
  });

  it('skips the trust-domain check for a CA folder without ca.json (a CA made by another tool)', () => {
    const dir = join(out, 'foreign-ca');
    mkdirSync(dir);
    copyFileSync(join(caDir, CA_FILES.caCert), join(dir, CA_FILES.caCert));
    copyFileSync(join(caDir, CA_FILES.caKey), join(dir, CA_FILES.caKey));
    const r = issue({ caDir: dir, spiffeId: 'spiffe://other.test/x', out: join(out, 'x') });
    expect(new X509Certificate(readFileSync(r.certFile)).subjectAltName).toBe('URI:spiffe://other.test/x');
  });

  it('names the missing CA folder and suggests ca init', () => {
    const missing = join(out, 'nope');
    const err = thrownBy(() => issue({ caDir: missing }));
    expect(err).toBeInstanceOf(PortlicenseError);
    expect((err as PortlicenseError).code).toBe('FILE_UNREADABLE');
    expect(err.message).toContain(`CA folder ${missing}: not found`);
    expect(err.message).toContain(`portlicense ca init --dir ${missing}`);
  });

  it('names a missing CA certificate or key file', () => {
    const err = thrownBy(() => issue({ caDir: out }));
    expect(err.message).toBe(
      `CA certificate ${join(out, 'ca.pem')}: not found (create it with "portlicense ca init --dir ${out} --trust-domain <your trust domain>")`,
    );
    writeFileSync(join(out, 'ca.pem'), readFileSync(join(caDir, CA_FILES.caCert)));
    expect(thrownBy(() => issue({ caDir: out })).message).toMatch(
      new RegExp(`^CA private key ${join(out, 'ca-key.pem')}: not found`),
    );
  });

  it('rejects a CA folder whose certificate is not a CA, or whose key is not RSA, or does not match', () => {
    const dir = join(out, 'bad-ca');
    mkdirSync(dir);
    const put = (name: string, data: string | Buffer): void => writeFileSync(join(dir, name), data);
    put(CA_FILES.caCert, readFileSync(join(caDir, CA_FILES.authorityCert)));
    put(CA_FILES.caKey, readFileSync(join(caDir, CA_FILES.authorityKey)));
    expect(thrownBy(() => issue({ caDir: dir })).message).toMatch(/is not a CA certificate/);

    put(CA_FILES.caCert, readFileSync(join(caDir, CA_FILES.caCert)));
    expect(thrownBy(() => issue({ caDir: dir })).message).toMatch(/ca-key\.pem: does not match .*ca\.pem$/);

    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    put(CA_FILES.caKey, ec.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    expect(thrownBy(() => issue({ caDir: dir })).message).toMatch(
      /is ec; cert issue signs with an RSA CA key only/,
    );

    put(CA_FILES.caKey, 'garbage');
    expect(thrownBy(() => issue({ caDir: dir })).message).toMatch(/not a PEM file/);
    expect(readdirSync(out).sort()).toEqual(['bad-ca']);
  });

  it.each([
    ['underscore', 'my_host'],
    ['trailing dot', 'example.org.'],
    ['leading hyphen', '-a.example'],
    ['empty label', 'a..b'],
    ['wildcard not first', 'a.*.example'],
    ['an IP', '127.0.0.1'],
    ['a long label', `${'a'.repeat(64)}.example`],
  ])('rejects a DNS name with %s', (_what, name) => {
    const err = thrownBy(() => issue({ dns: [name] }));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(new RegExp(`^--dns "${name.replace(/[.*]/g, '\\$&')}"`));
  });

  it.each(['256.1.1.1', '127.0.0.1:80', 'fe80::1%eth0', 'localhost', '01.2.3.4'])(
    'rejects the IP %s',
    (ip) => {
      const err = thrownBy(() => issue({ ips: [ip] }));
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message).toContain(`--ip "${ip}"`);
    },
  );

  it.each(['1h30m', '30', '0s', '-5m', 0, -1, 1.5])('rejects the ttl %s', (ttl) => {
    const err = thrownBy(() => issue({ ttl }));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/^--ttl/);
  });

  it('refuses a certificate that would outlive its CA, and a CA that is not valid now', () => {
    expect(thrownBy(() => issue({ ttl: '3651d' })).message).toMatch(/would expire after its CA/);
    expect(thrownBy(() => issue({ now: NOW + 3651 * 86_400_000 })).message).toMatch(/is not valid now/);
    expect(thrownBy(() => issue({ now: NOW - 86_400_000 })).message).toMatch(/is not valid now/);
  });

  it.each([
    ['empty', ''],
    ['a folder', '/'],
    ['a .pem file name', 'certs/orders.pem'],
  ])('rejects an --out that is %s', (_what, prefix) => {
    const err = thrownBy(() => issue({ out: prefix }));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/^--out /);
  });

  it('rejects an --out that is an existing folder', () => {
    expect(thrownBy(() => issue({ out })).message).toMatch(/is a folder/);
  });
});
