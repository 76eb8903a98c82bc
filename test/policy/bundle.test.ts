import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PortlicenseError, type ErrorCode } from '../../src/errors.js';
import {
  canonicalJson,
  keyIdOf,
  loadEd25519PrivateKey,
  loadEd25519PublicKey,
  signBundle,
  validatePayload,
  verifyBundle,
} from '../../src/policy/bundle.js';
import { buildSnapshot } from '../../src/policy/snapshot.js';
import type { BundlePayload, SignedBundle } from '../../src/policy/types.js';
import { removeDir, tempDir } from '../helpers/tmp.js';
import { thrown } from '../helpers/errors.js';

const keys = generateKeyPairSync('ed25519');
const otherKeys = generateKeyPairSync('ed25519');

const payload = (over: Partial<BundlePayload> = {}): BundlePayload => ({
  version: 7,
  issuedAt: '2026-11-28T10:00:00Z',
  node: 'node-a',
  services: ['orders'],
  licenses: [
    {
      id: 'lic_1',
      subject: 'spiffe://example.org/ns/default/sa/frontend',
      service: 'orders',
      port: 'http',
      methods: ['GET'],
      paths: ['/api/*'],
      notBefore: '2026-11-28T09:00:00Z',
      expiresAt: '2026-11-29T09:00:00Z',
    },
  ],
  ...over,
});

function failsWith(code: ErrorCode, fn: () => unknown): string {
  const err = thrown(fn, `expected ${code}`);
  expect(err).toBeInstanceOf(PortlicenseError);
  expect((err as PortlicenseError).code).toBe(code);
  return (err as PortlicenseError).message;
}

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe('canonicalJson', () => {
  it.each<[unknown, string]>([
    [null, 'null'],
    [true, 'true'],
    [0, '0'],
    [-0, '0'],
    [42, '42'],
    [-7, '-7'],
    [0.1, '0.1'],
    [1e21, '1e+21'],
    [1e-7, '1e-7'],
    [9007199254740991, '9007199254740991'],
    ['', '""'],
    ['a"b\\c\n\t\u0001', '"a\\"b\\\\c\\n\\t\\u0001"'],
    ['€😀é', '"€😀é"'],
    [[], '[]'],
    [{}, '{}'],
    [[3, 1, 2], '[3,1,2]'],
    [{ b: 1, a: 2 }, '{"a":2,"b":1}'],
    [{ z: { y: [{ b: 1, a: null }], x: 'x' }, a: [] }, '{"a":[],"z":{"x":"x","y":[{"a":null,"b":1}]}}'],
    [{ a: undefined, b: 1 }, '{"b":1}'],
    [Object.assign(Object.create(null) as object, { b: 1, a: 2 }), '{"a":2,"b":1}'],
    [{ 10: 'x', 9: 'y', a: 'z' }, '{"10":"x","9":"y","a":"z"}'],
  ])('%j', (value, want) => {
    expect(canonicalJson(value)).toBe(want);
  });

  it('sorts keys by UTF-16 code units (RFC 8785 §3.2.3 vector)', () => {
    const v = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    expect(canonicalJson(v)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign","😀":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  it('is independent of key order and whitespace of the input', () => {
    const a = JSON.parse('{ "b" : [1, {"d":1, "c":2}], "a" : "x" }') as unknown;
    const b = JSON.parse('{"a":"x","b":[1,{"c":2,"d":1}]}') as unknown;
    expect(canonicalJson(a)).toBe(canonicalJson(b));
  });

  it.each<[string, unknown]>([
    ['NaN', NaN],
    ['Infinity', { a: Infinity }],
    ['-Infinity', [-Infinity]],
    ['undefined in an array', [1, undefined]],
    ['undefined at top level', undefined],
    ['a function', { f: () => 1 }],
    ['a bigint', { n: 1n }],
    ['a symbol', [Symbol('s')]],
    ['a Date', { d: new Date(0) }],
    ['a Map', new Map()],
    ['a lone surrogate', { s: '\ud800' }],
    ['a lone surrogate key', { '\udc00': 1 }],
    ['deep nesting', JSON.parse('['.repeat(100) + ']'.repeat(100)) as unknown],
  ])('refuses %s', (_name, value) => {
    expect(() => canonicalJson(value)).toThrow(TypeError);
  });
});

describe('keyIdOf', () => {
  it('is the first 16 hex of sha256 over the SPKI DER, same for the private key', () => {
    const der = keys.publicKey.export({ type: 'spki', format: 'der' });
    const want = createHash('sha256').update(der).digest('hex').slice(0, 16);
    expect(keyIdOf(keys.publicKey)).toBe(want);
    expect(keyIdOf(keys.privateKey)).toBe(want);
    expect(want).toMatch(/^[0-9a-f]{16}$/);
    expect(keyIdOf(otherKeys.publicKey)).not.toBe(want);
  });
});

describe('signBundle / verifyBundle', () => {
  it('round-trips as an object, as JSON text and as bytes', () => {
    const signed = signBundle(payload(), keys.privateKey);
    expect(signed.signature.alg).toBe('Ed25519');
    expect(signed.signature.keyId).toBe(keyIdOf(keys.publicKey));
    expect(Buffer.from(signed.signature.value, 'base64')).toHaveLength(64);
    const text = JSON.stringify(signed, null, 2);
    for (const raw of [signed, text, Buffer.from(text)])
      expect(verifyBundle(raw, keys.publicKey)).toEqual(payload());
  });

  it('verifies whatever the key order and whitespace of the file', () => {
    const signed = signBundle(payload(), keys.privateKey);
    const p = signed.payload;
    const reordered = `{"signature":${JSON.stringify(signed.signature)},"payload":{"licenses":${JSON.stringify(p.licenses, null, 3)},"version":7,"services":["orders"],"node":"node-a","issuedAt":"2026-11-28T10:00:00Z"}}`;
    expect(verifyBundle(reordered, keys.publicKey).version).toBe(7);
  });

  it('ignores fields outside the payload and never returns them', () => {
    const signed = { ...signBundle(payload(), keys.privateKey), trusted: true, extra: { version: 99 } };
    signed.signature = { ...signed.signature, comment: 'x' } as SignedBundle['signature'];
    const out = verifyBundle(signed, keys.publicKey);
    expect(out).toEqual(payload());
    expect(Object.keys(out).sort()).toEqual(['issuedAt', 'licenses', 'node', 'services', 'version']);
  });

  it('returns a clean payload: unknown signed fields inside it are dropped', () => {
    const p = { ...payload(), future: 'field' } as BundlePayload;
    p.licenses[0] = { ...p.licenses[0]!, note: 'x' } as BundlePayload['licenses'][0];
    const out = verifyBundle(signBundle(p, keys.privateKey), keys.publicKey);
    expect(out).toEqual(payload());
  });

  it('refuses a tampered payload', () => {
    const signed = clone(signBundle(payload(), keys.privateKey));
    signed.payload.licenses[0]!.expiresAt = '2036-11-29T09:00:00Z';
    expect(failsWith('BUNDLE_SIGNATURE', () => verifyBundle(signed, keys.publicKey))).toMatch(
      /modified or signed by another key/,
    );
    const added = clone(signBundle(payload(), keys.privateKey));
    added.payload.licenses.push({ ...added.payload.licenses[0]!, id: 'lic_evil' });
    failsWith('BUNDLE_SIGNATURE', () => verifyBundle(added, keys.publicKey));
    const bumped = clone(signBundle(payload(), keys.privateKey));
    bumped.payload.version = 8;
    failsWith('BUNDLE_SIGNATURE', () => verifyBundle(bumped, keys.publicKey));
  });

  it('refuses a bundle signed by another key that claims our keyId', () => {
    const forged = signBundle(payload(), otherKeys.privateKey);
    forged.signature.keyId = keyIdOf(keys.publicKey);
    failsWith('BUNDLE_SIGNATURE', () => verifyBundle(forged, keys.publicKey));
  });

  it('refuses a bundle whose keyId is not the configured key, naming both', () => {
    const other = signBundle(payload(), otherKeys.privateKey);
    const msg = failsWith('BUNDLE_SIGNATURE', () => verifyBundle(other, keys.publicKey));
    expect(msg).toContain(keyIdOf(otherKeys.publicKey));
    expect(msg).toContain(keyIdOf(keys.publicKey));
  });

  it.each<[string, (b: Record<string, unknown>) => void, RegExp]>([
    ['no signature', (b) => delete b.signature, /no "signature" object/],
    ['signature not an object', (b) => (b.signature = 'abc'), /no "signature" object/],
    [
      'alg none',
      (b) => ((b.signature as Record<string, unknown>).alg = 'none'),
      /alg "none" is not "Ed25519"/,
    ],
    ['alg missing', (b) => delete (b.signature as Record<string, unknown>).alg, /alg missing/],
    ['keyId missing', (b) => delete (b.signature as Record<string, unknown>).keyId, /\(no keyId\)/],
    [
      'value not base64',
      (b) => ((b.signature as Record<string, unknown>).value = '!!!'),
      /not a base64 Ed25519 signature/,
    ],
    ['value too short', (b) => ((b.signature as Record<string, unknown>).value = 'AAAA'), /not a base64/],
    ['value a number', (b) => ((b.signature as Record<string, unknown>).value = 5), /not a base64/],
    [
      'value zeroed',
      (b) => ((b.signature as Record<string, unknown>).value = 'A'.repeat(86) + '=='),
      /modified/,
    ],
  ])('refuses %s as BUNDLE_SIGNATURE', (_name, mutate, msg) => {
    const b = clone(signBundle(payload(), keys.privateKey)) as unknown as Record<string, unknown>;
    mutate(b);
    expect(failsWith('BUNDLE_SIGNATURE', () => verifyBundle(b, keys.publicKey))).toMatch(msg);
  });

  it.each<[string, unknown, RegExp]>([
    ['not JSON', '{"payload":', /not JSON/],
    ['an array', '[]', /must be a JSON object/],
    ['null', null, /must be a JSON object/],
    ['no payload', { signature: {} }, /no "payload" object/],
    ['payload an array', { payload: [], signature: {} }, /no "payload" object/],
  ])('refuses %s as BUNDLE_INVALID', (_name, raw, msg) => {
    expect(failsWith('BUNDLE_INVALID', () => verifyBundle(raw, keys.publicKey))).toMatch(msg);
  });

  it('refuses a correctly signed payload with bad fields as BUNDLE_INVALID', () => {
    const signRaw = (p: unknown): unknown => ({
      payload: p,
      signature: {
        alg: 'Ed25519',
        keyId: keyIdOf(keys.publicKey),
        value: sign(null, Buffer.from(canonicalJson(p)), keys.privateKey).toString('base64'),
      },
    });
    const cases: [unknown, RegExp][] = [
      [{ ...payload(), version: 0 }, /payload.version: 0 is not a positive integer/],
      [{ ...payload(), version: 1.5 }, /payload.version/],
      [{ ...payload(), version: '7' }, /payload.version/],
      [{ ...payload(), issuedAt: 'today' }, /payload.issuedAt/],
      [{ ...payload(), node: 1 }, /payload.node/],
      [{ ...payload(), services: 'orders' }, /payload.services/],
      [{ ...payload(), licenses: {} }, /payload.licenses: must be an array/],
      [
        { ...payload(), licenses: [{ ...payload().licenses[0], methods: ['get'] }] },
        /licenses\[0\] \("lic_1"\): methods\[0\]/,
      ],
    ];
    for (const [p, msg] of cases)
      expect(failsWith('BUNDLE_INVALID', () => verifyBundle(signRaw(p), keys.publicKey))).toMatch(msg);
  });

  it('refuses an older version than the one in force, accepts equal and newer', () => {
    const signed = signBundle(payload({ version: 7 }), keys.privateKey);
    expect(
      failsWith('BUNDLE_ROLLBACK', () => verifyBundle(signed, keys.publicKey, { minVersion: 8 })),
    ).toMatch(/version 7 is older than the version in force \(8\)/);
    expect(verifyBundle(signed, keys.publicKey, { minVersion: 7 }).version).toBe(7);
    expect(verifyBundle(signed, keys.publicKey, { minVersion: 3 }).version).toBe(7);
  });

  it('signBundle refuses an invalid payload and a non-Ed25519 or public key', () => {
    failsWith('BUNDLE_INVALID', () => signBundle(payload({ version: -1 }), keys.privateKey));
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    failsWith('TLS_MATERIAL_INVALID', () => signBundle(payload(), rsa.privateKey));
    failsWith('TLS_MATERIAL_INVALID', () => signBundle(payload(), keys.publicKey));
    failsWith('TLS_MATERIAL_INVALID', () =>
      verifyBundle(signBundle(payload(), keys.privateKey), rsa.publicKey),
    );
  });

  it('returns a frozen license list that buildSnapshot reuses without compiling again', () => {
    const out = verifyBundle(signBundle(payload(), keys.privateKey), keys.publicKey);
    expect(Object.isFrozen(out.licenses)).toBe(true);
    expect(Object.isFrozen(out.licenses[0])).toBe(true);
    expect(() => out.licenses.push(out.licenses[0]!)).toThrow(TypeError);
    const a = buildSnapshot(out);
    const b = buildSnapshot(out);
    expect(a.licenses[0]).toBe(b.licenses[0]);
    expect(a.license('lic_1')?.paths).toEqual([{ pattern: '/api/*', base: '/api', prefix: true }]);
    // A copied list is compiled afresh.
    expect(buildSnapshot({ ...out, licenses: [...out.licenses] }).licenses[0]).not.toBe(a.licenses[0]);
  });

  it('validatePayload returns only known fields', () => {
    expect(validatePayload({ ...payload(), x: 1 })).toEqual(payload());
  });
});

describe('signed bytes: the fast path and the general path agree', () => {
  it('writes the payload with canonical key order, and still verifies a document whose keys were reordered', () => {
    const signed = signBundle(payload(), keys.privateKey);
    const text = JSON.stringify(signed);
    // Keys as written are already canonical: what the verifier re-serialises natively.
    expect(JSON.stringify(signed.payload)).toBe(canonicalJson(signed.payload));
    expect(verifyBundle(text, keys.publicKey).version).toBe(signed.payload.version);
    // The same payload with its keys in another order (another signer's JSON writer) verifies too.
    const p = signed.payload;
    const shuffled = {
      payload: {
        licenses: p.licenses.map((l) => Object.fromEntries(Object.entries(l).reverse())),
        version: p.version,
        node: p.node,
        issuedAt: p.issuedAt,
        services: p.services,
      },
      signature: signed.signature,
    };
    expect(verifyBundle(JSON.stringify(shuffled), keys.publicKey).licenses).toHaveLength(p.licenses.length);
    // A changed value is caught on the fast path as well.
    const tampered = JSON.parse(text) as SignedBundle;
    tampered.payload.node = 'other-node';
    expect(
      failsWith('BUNDLE_SIGNATURE', () => verifyBundle(JSON.stringify(tampered), keys.publicKey)),
    ).toMatch(/does not match/);
  });
});

describe('loadEd25519PrivateKey / loadEd25519PublicKey', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('portlicense-keys-');
  });
  afterEach(() => removeDir(dir));

  const write = (name: string, text: string): string => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  const pem = (k: KeyObject, type: 'pkcs8' | 'spki'): string => k.export({ type, format: 'pem' }) as string;

  it('loads a PKCS#8 private and an SPKI public key that belong together', () => {
    const priv = loadEd25519PrivateKey(write('sign.pem', pem(keys.privateKey, 'pkcs8')));
    const pub = loadEd25519PublicKey(write('sign.pub.pem', pem(keys.publicKey, 'spki')));
    expect(verifyBundle(signBundle(payload(), priv), pub).version).toBe(7);
  });

  it('names the file when it is missing', () => {
    const file = join(dir, 'nope.pem');
    expect(failsWith('FILE_UNREADABLE', () => loadEd25519PrivateKey(file))).toContain(file);
    expect(failsWith('FILE_UNREADABLE', () => loadEd25519PublicKey(file))).toContain(file);
  });

  it('names the file and the key type when it is not Ed25519', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const privFile = write('rsa.pem', pem(rsa.privateKey, 'pkcs8'));
    const pubFile = write('rsa.pub.pem', pem(rsa.publicKey, 'spki'));
    expect(failsWith('TLS_MATERIAL_INVALID', () => loadEd25519PrivateKey(privFile))).toMatch(
      /rsa\.pem: holds a rsa key.*Ed25519/,
    );
    expect(failsWith('TLS_MATERIAL_INVALID', () => loadEd25519PublicKey(pubFile))).toMatch(
      /rsa\.pub\.pem: holds a rsa key/,
    );
  });

  it('refuses the wrong kind of PEM', () => {
    const pubFile = write('pub.pem', pem(keys.publicKey, 'spki'));
    const privFile = write('priv.pem', pem(keys.privateKey, 'pkcs8'));
    expect(failsWith('TLS_MATERIAL_INVALID', () => loadEd25519PrivateKey(pubFile))).toMatch(
      /not a PKCS#8 PEM private key/,
    );
    expect(failsWith('TLS_MATERIAL_INVALID', () => loadEd25519PublicKey(privFile))).toMatch(
      /holds a private key/,
    );
    const enc = keys.privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'x',
    }) as string;
    expect(failsWith('TLS_MATERIAL_INVALID', () => loadEd25519PrivateKey(write('enc.pem', enc)))).toMatch(
      /encrypted/,
    );
    const garbage = write('garbage.pem', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n');
    expect(failsWith('TLS_MATERIAL_INVALID', () => loadEd25519PublicKey(garbage))).toMatch(
      /garbage\.pem: cannot be parsed/,
    );
    expect(failsWith('TLS_MATERIAL_INVALID', () => loadEd25519PublicKey(write('empty.pem', '')))).toMatch(
      /not an SPKI PEM/,
    );
  });
});
