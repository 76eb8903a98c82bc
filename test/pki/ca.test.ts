import { X509Certificate, createHash, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { CA_FILES, initCa, readCaMeta } from '../../src/pki/ca.js';
import { certificateSerial } from '../../src/pki/x509.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const NOW = Date.parse('2026-11-28T10:00:00Z');

let tmp: string;
beforeEach(() => {
  tmp = tempDir('pl-ca-');
});
afterEach(() => {
  removeDir(tmp);
});

const mode = (p: string): number => statSync(p).mode & 0o777;
const read = (dir: string, name: string): string => readFileSync(join(dir, name), 'utf8');

describe('initCa output', () => {
  // One CA for the read-only checks: RSA key generation dominates the run time.
  let shared: string;
  let dir: string;
  let result: ReturnType<typeof initCa>;
  beforeAll(() => {
    shared = tempDir('pl-ca-shared-');
    dir = join(shared, 'nested', 'certs');
    result = initCa({ dir, trustDomain: 'example.org', now: NOW });
  });
  afterAll(() => {
    removeDir(shared);
  });

  it('writes every file with the right mode into a new 0700 folder', () => {
    expect(mode(dir)).toBe(0o700);
    expect(result.files.map((f) => f.slice(dir.length + 1)).sort()).toEqual(Object.values(CA_FILES).sort());
    expect(readdirSync(dir).sort()).toEqual(Object.values(CA_FILES).sort()); // no temp files left behind
    for (const name of [CA_FILES.caKey, CA_FILES.authorityKey, CA_FILES.signingKey]) {
      expect(mode(join(dir, name)), name).toBe(0o600);
    }
    for (const name of [CA_FILES.caCert, CA_FILES.authorityCert, CA_FILES.signingPublicKey, CA_FILES.meta]) {
      expect(mode(join(dir, name)), name).toBe(0o644);
    }
    expect(readCaMeta(dir)).toEqual({ trustDomain: 'example.org' });
    expect(result.authorityId).toBe('spiffe://example.org/portlicense/authority');
  });

  it('makes a self-signed 10-year root CA named after the trust domain', () => {
    const ca = new X509Certificate(read(dir, CA_FILES.caCert));
    expect(ca.ca).toBe(true);
    expect(ca.subject).toBe('CN=portlicense dev CA (example.org)');
    expect(ca.subjectAltName).toBe('URI:spiffe://example.org');
    expect(ca.checkIssued(ca)).toBe(true);
    expect(ca.verify(ca.publicKey)).toBe(true);
    expect(ca.checkPrivateKey(createPrivateKey(read(dir, CA_FILES.caKey)))).toBe(true);
    expect(ca.publicKey.asymmetricKeyType).toBe('rsa');
    expect(Date.parse(ca.validFrom)).toBeLessThanOrEqual(NOW);
    expect(Date.parse(ca.validTo)).toBe(NOW + 3650 * 86_400_000);
  });

  it('makes an authority certificate with its SPIFFE ID, localhost and 127.0.0.1, issued by the CA', () => {
    const ca = new X509Certificate(read(dir, CA_FILES.caCert));
    const auth = new X509Certificate(read(dir, CA_FILES.authorityCert));
    expect(auth.checkIssued(ca)).toBe(true);
    expect(auth.verify(ca.publicKey)).toBe(true);
    expect(auth.ca).toBe(false);
    expect(auth.subjectAltName).toBe(
      'URI:spiffe://example.org/portlicense/authority, DNS:localhost, IP Address:127.0.0.1',
    );
    expect(auth.keyUsage).toEqual(expect.arrayContaining([SERVER_AUTH, CLIENT_AUTH]));
    expect(auth.checkHost('localhost')).toBe('localhost');
    expect(auth.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(auth.checkPrivateKey(createPrivateKey(read(dir, CA_FILES.authorityKey)))).toBe(true);
  });

  it('writes an Ed25519 bundle-signing key pair (PKCS#8 + SPKI) that signs and verifies', () => {
    const { signingKeyId } = result;
    const keyPem = read(dir, CA_FILES.signingKey);
    const pubPem = read(dir, CA_FILES.signingPublicKey);
    expect(keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(pubPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const priv = createPrivateKey(keyPem);
    const pub = createPublicKey(pubPem);
    expect(priv.asymmetricKeyType).toBe('ed25519');
    expect(pub.asymmetricKeyType).toBe('ed25519');
    const data = Buffer.from('{"version":7}');
    const sig = sign(null, data, priv);
    expect(verify(null, data, pub, sig)).toBe(true);
    expect(verify(null, Buffer.from('{"version":8}'), pub, sig)).toBe(false);
    // The key id is the SPEC's: first 16 hex of sha256 over the SPKI DER.
    const der = pub.export({ type: 'spki', format: 'der' });
    expect(signingKeyId).toBe(createHash('sha256').update(der).digest('hex').slice(0, 16));
  });
});

describe('initCa', () => {
  it('refuses to replace an existing CA, names the file and suggests --force, and changes nothing', () => {
    initCa({ dir: tmp, trustDomain: 'example.org', now: NOW });
    const before = read(tmp, CA_FILES.caCert);
    let err: unknown;
    try {
      initCa({ dir: tmp, trustDomain: 'example.org', now: NOW });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(
      new RegExp(`^${tmp} already holds a CA \\(ca\\.pem, ca-key\\.pem, `),
    );
    expect((err as Error).message).toContain('--force');
    expect(read(tmp, CA_FILES.caCert)).toBe(before);
  });

  it('refuses when only one CA file is present, naming just that file', () => {
    writeFileSync(join(tmp, CA_FILES.signingKey), 'x');
    expect(() => initCa({ dir: tmp, trustDomain: 'example.org' })).toThrow(
      new RegExp(`^${join(tmp, CA_FILES.signingKey)} already exists`),
    );
  });

  it('replaces an existing CA with force, keeping the modes', () => {
    initCa({ dir: tmp, trustDomain: 'example.org', now: NOW });
    const before = read(tmp, CA_FILES.caCert);
    initCa({ dir: tmp, trustDomain: 'other.test', now: NOW, force: true });
    expect(read(tmp, CA_FILES.caCert)).not.toBe(before);
    expect(new X509Certificate(read(tmp, CA_FILES.caCert)).subject).toBe(
      'CN=portlicense dev CA (other.test)',
    );
    expect(readCaMeta(tmp)).toEqual({ trustDomain: 'other.test' });
    expect(mode(join(tmp, CA_FILES.caKey))).toBe(0o600);
  });

  it.each([
    ['upper case', 'Example.org'],
    ['a port', 'example.org:8443'],
    ['a path', 'example.org/ns'],
    ['a scheme', 'spiffe://example.org'],
    ['empty', ''],
    ['too long', `${'a'.repeat(250)}.example`],
  ])('rejects a trust domain with %s and writes nothing', (_what, td) => {
    const dir = join(tmp, 'ca');
    expect(() => initCa({ dir, trustDomain: td })).toThrow(UsageError);
    expect(() => statSync(dir)).toThrow();
  });

  it('rejects a --dir that is a file', () => {
    const file = join(tmp, 'file');
    writeFileSync(file, '');
    expect(() => initCa({ dir: file, trustDomain: 'example.org' })).toThrow(/is not a folder/);
  });
});

describe('readCaMeta', () => {
  it('is undefined for a CA folder without ca.json', () => {
    expect(readCaMeta(tmp)).toBeUndefined();
  });

  it('names the file when ca.json is malformed', () => {
    writeFileSync(join(tmp, CA_FILES.meta), '{"trustDomain": 5}');
    expect(() => readCaMeta(tmp)).toThrow(join(tmp, CA_FILES.meta));
    writeFileSync(join(tmp, CA_FILES.meta), 'not json');
    expect(() => readCaMeta(tmp)).toThrow(/expected \{"trustDomain"/);
  });
});

describe('certificateSerial', () => {
  it('never starts with a zero byte, which OpenSSL 3 refuses as "illegal padding" after a second one', () => {
    expect(certificateSerial(Buffer.alloc(16))).toBe(`01${'00'.repeat(15)}`);
    expect(certificateSerial(Buffer.from(`80${'00'.repeat(15)}`, 'hex')).slice(0, 2)).toBe('01');
    expect(certificateSerial(Buffer.from(`ff${'ab'.repeat(15)}`, 'hex'))).toBe(`7f${'ab'.repeat(15)}`);
    for (let i = 0; i < 2_000; i++) {
      const first = parseInt(certificateSerial().slice(0, 2), 16);
      expect(first).toBeGreaterThanOrEqual(1);
      expect(first).toBeLessThanOrEqual(0x7f);
    }
  });
});
