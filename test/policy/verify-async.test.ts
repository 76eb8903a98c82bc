import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PortlicenseError } from '../../src/errors.js';
import {
  canonicalJson,
  keyIdOf,
  payloadDigestAsync,
  rollbackError,
  signBundle,
  validatePayload,
  validatePayloadAsync,
  verifyBundle,
  verifyBundleAsync,
} from '../../src/policy/bundle.js';
import { compileLicenses, compileLicensesAsync } from '../../src/policy/compile.js';
import { Slicer } from '../../src/policy/slice.js';
import type { BundlePayload, CompiledLicense, LicenseWire } from '../../src/policy/types.js';

const keys = generateKeyPairSync('ed25519');
const otherKeys = generateKeyPairSync('ed25519');

function license(i: number, over: Partial<LicenseWire> = {}): LicenseWire {
  return {
    id: `lic_${i}`,
    subject:
      i % 4 === 0 ? `spiffe://example.org/ns/n${i % 9}/*` : `spiffe://example.org/ns/n${i % 9}/sa/s${i}`,
    service: 'orders',
    port: i % 2 ? 'http' : 'grpc',
    ...(i % 3 === 0 && { methods: ['GET', 'POST'], paths: ['/api/*'] }),
    notBefore: '2026-11-28T09:00:00Z',
    expiresAt: '2026-11-29T09:00:00Z',
    ...over,
  };
}

const payload = (n = 3, over: Partial<BundlePayload> = {}): BundlePayload => ({
  version: 7,
  issuedAt: '2026-11-28T10:00:00Z',
  node: 'node-a',
  services: ['orders'],
  licenses: Array.from({ length: n }, (_, i) => license(i)),
  ...over,
});

/** Sign whatever `p` is, valid or not, the way the authority would. */
const signRaw = (p: unknown, key = keys.privateKey): string =>
  JSON.stringify({
    payload: p,
    signature: {
      alg: 'Ed25519',
      keyId: keyIdOf(key),
      value: sign(null, Buffer.from(canonicalJson(p)), key).toString('base64'),
    },
  });

type Outcome = { ok: BundlePayload } | { code: string; message: string };

async function outcome(fn: () => unknown): Promise<Outcome> {
  try {
    return { ok: (await fn()) as BundlePayload };
  } catch (err) {
    if (!(err instanceof PortlicenseError)) throw err;
    return { code: err.code, message: err.message };
  }
}

/** verifyBundleAsync must say exactly what verifyBundle says, for text and for bytes. */
async function agrees(text: string, minVersion?: number): Promise<Outcome> {
  const want = await outcome(() => verifyBundle(text, keys.publicKey, { minVersion }));
  for (const raw of [text, Buffer.from(text)])
    for (const sliceMs of [0, 1_000])
      expect(await outcome(() => verifyBundleAsync(raw, keys.publicKey, { minVersion, sliceMs }))).toEqual(
        want,
      );
  return want;
}

describe('verifyBundleAsync agrees with verifyBundle', () => {
  it('on good bundles, compact and indented, small and large', async () => {
    for (const n of [0, 1, 300]) {
      const signed = signBundle(payload(n), keys.privateKey);
      for (const text of [JSON.stringify(signed), JSON.stringify(signed, null, 2)]) {
        const got = await agrees(text);
        expect(got).toEqual({ ok: payload(n) });
      }
    }
  });

  it('on a payload whose keys are not in canonical order (the general canonicaliser)', async () => {
    const signed = signBundle(payload(5), keys.privateKey);
    const p = signed.payload;
    const shuffled = {
      signature: signed.signature,
      payload: {
        version: p.version,
        licenses: p.licenses.map((l) => Object.fromEntries(Object.entries(l).reverse())),
        node: p.node,
        services: p.services,
        issuedAt: p.issuedAt,
      },
    };
    expect(await agrees(JSON.stringify(shuffled))).toHaveProperty('ok');
    const tampered = JSON.parse(JSON.stringify(shuffled)) as typeof shuffled;
    tampered.payload.licenses[2]!.expiresAt = '2036-01-01T00:00:00Z';
    expect(await agrees(JSON.stringify(tampered))).toMatchObject({ code: 'BUNDLE_SIGNATURE' });
  });

  it('drops unknown fields inside the signed payload', async () => {
    const p = { ...payload(2), future: 1 } as BundlePayload;
    p.licenses[1] = { ...p.licenses[1]!, note: 'x' } as LicenseWire;
    expect(await agrees(JSON.stringify(signBundle(p, keys.privateKey)))).toEqual({ ok: payload(2) });
  });

  it.each<[string, () => string]>([
    ['not JSON', () => '{"payload":'],
    ['an array', () => '[]'],
    ['no payload', () => '{"signature":{}}'],
    ['no signature', () => JSON.stringify({ payload: payload() })],
    ['a foreign key', () => JSON.stringify(signBundle(payload(), otherKeys.privateKey))],
    [
      'alg none',
      () => JSON.stringify({ ...signBundle(payload(), keys.privateKey), signature: { alg: 'none' } }),
    ],
    [
      'a tampered license',
      () => {
        const s = signBundle(payload(50), keys.privateKey);
        s.payload.licenses[40]!.subject = 'spiffe://example.org/*';
        return JSON.stringify(s);
      },
    ],
    ['a bad version', () => signRaw({ ...payload(), version: 0 })],
    ['a bad issuedAt', () => signRaw({ ...payload(), issuedAt: 'today' })],
    ['licenses not an array', () => signRaw({ ...payload(), licenses: {} })],
    [
      'a bad license field',
      () =>
        signRaw({
          ...payload(20),
          licenses: payload(20).licenses.map((l, i) => (i === 17 ? { ...l, methods: ['get'] } : l)),
        }),
    ],
    ['a duplicate id', () => signRaw({ ...payload(20), licenses: [...payload(20).licenses, license(3)] })],
    [
      'a lone surrogate',
      () => signRaw({ ...payload(), node: 'x' }).replace('"node":"x"', '"node":"\\ud800"'),
    ],
  ])('on %s', async (_name, text) => {
    expect(await agrees(text())).toHaveProperty('code');
  });

  it('on rollback, with the message callers keep', async () => {
    const text = JSON.stringify(signBundle(payload(), keys.privateKey));
    expect(await agrees(text, 8)).toEqual({
      code: 'BUNDLE_ROLLBACK',
      message: 'bundle version 7 is older than the version in force (8); keeping 8',
    });
    expect(await agrees(text, 7)).toHaveProperty('ok');
    expect(rollbackError(7, 8).message).toBe(
      'bundle version 7 is older than the version in force (8); keeping 8',
    );
  });

  it('refuses a non-Ed25519 key like verifyBundle', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const text = JSON.stringify(signBundle(payload(), keys.privateKey));
    const err = await verifyBundleAsync(text, rsa.publicKey).catch((e: unknown) => e);
    expect((err as PortlicenseError).code).toBe('TLS_MATERIAL_INVALID');
  });
});

describe('sliced work', () => {
  it('verifying a big bundle lets the event loop run many times', async () => {
    const text = JSON.stringify(signBundle(payload(3_000), keys.privateKey));
    let turns = 0;
    let done = false;
    const spin = (): void => {
      turns++;
      if (!done) setImmediate(spin);
    };
    setImmediate(spin);
    const out = await verifyBundleAsync(Buffer.from(text), keys.publicKey, { sliceMs: 0 });
    done = true;
    expect(out.licenses).toHaveLength(3_000);
    // Every phase pauses (decode, parse, canonical bytes, signature, validation): dozens of turns.
    expect(turns).toBeGreaterThan(50);
  });

  it('validatePayloadAsync and compileLicensesAsync give what the synchronous ones give', async () => {
    const p = payload(500);
    expect(await validatePayloadAsync(p, new Slicer(0))).toEqual(validatePayload(p));
    const byId = new Map<string, CompiledLicense>();
    const compiled = await compileLicensesAsync(p.licenses, byId, new Slicer(0));
    expect(compiled).toEqual(compileLicenses(p.licenses));
    expect(byId.size).toBe(500);
    const dup = [...p.licenses, license(499)];
    const err = await compileLicensesAsync(dup, undefined, new Slicer(0)).catch((e: unknown) => e);
    expect((err as Error).message).toBe('bundle licenses[500]: id "lic_499" appears twice');
  });

  it('payloadDigestAsync is sha256 of the canonical JSON', async () => {
    for (const p of [payload(0), payload(1), payload(700)]) {
      const want = createHash('sha256').update(canonicalJson(p)).digest('hex');
      expect(await payloadDigestAsync(p, 0)).toBe(want);
    }
    expect(await payloadDigestAsync(payload(3))).not.toBe(
      await payloadDigestAsync(payload(3, { node: 'b' })),
    );
  });
});
