import { describe, expect, it } from 'vitest';
import { decodeUtf8Sliced, parseJsonSliced } from '../../src/policy/bundle-text.js';
import { Slicer } from '../../src/policy/slice.js';
import { thrown } from '../helpers/errors.js';

/** Budget 0: every check point pauses, so every slice boundary is exercised. */
const eager = (): Slicer => new Slicer(0);

const lic = (i: number): Record<string, unknown> => ({
  expiresAt: '2026-11-29T09:00:00Z',
  id: `lic_${i}`,
  methods: ['GET'],
  notBefore: '2026-11-28T09:00:00Z',
  port: 'http',
  service: 'orders',
  subject: `spiffe://example.org/ns/default/sa/s${i}`,
});

const doc = (n: number): unknown => ({
  payload: {
    issuedAt: '2026-11-28T10:00:00Z',
    licenses: Array.from({ length: n }, (_, i) => lic(i)),
    node: 'node-a',
    services: ['orders'],
    version: 7,
  },
  signature: { alg: 'Ed25519', keyId: '0123456789abcdef', value: 'x' },
});

/** parseJsonSliced must give what JSON.parse gives: the same value, key order included. */
async function agrees(text: string): Promise<void> {
  let want: unknown;
  try {
    want = JSON.parse(text);
  } catch (err) {
    const got = await parseJsonSliced(text, eager()).then(
      () => new Error('parsed'),
      (e: unknown) => e,
    );
    expect(got).toBeInstanceOf(SyntaxError);
    expect((got as Error).message).toBe((err as Error).message);
    return;
  }
  const got = await parseJsonSliced(text, eager());
  expect(got).toStrictEqual(want);
  expect(JSON.stringify(got)).toBe(JSON.stringify(want));
}

describe('parseJsonSliced', () => {
  it.each([0, 1, 255, 256, 257, 1_000])('parses a bundle of %i licenses like JSON.parse', async (n) => {
    await agrees(JSON.stringify(doc(n)));
    await agrees(JSON.stringify(doc(n), null, 2));
  });

  it('parses a big bundle over many turns of the event loop, not in one piece', async () => {
    let turns = 0;
    let done = false;
    const spin = (): void => {
      turns++;
      if (!done) setImmediate(spin);
    };
    setImmediate(spin);
    await parseJsonSliced(JSON.stringify(doc(2_000)), eager());
    done = true;
    // One batch of 256 licenses per turn at least: a fallback to one JSON.parse would give ~1.
    expect(turns).toBeGreaterThanOrEqual(7);
  });

  it('keeps the key order of the payload (the signature fast path relies on it)', async () => {
    const got = (await parseJsonSliced(JSON.stringify(doc(3)), eager())) as { payload: object };
    expect(Object.keys(got.payload)).toEqual(['issuedAt', 'licenses', 'node', 'services', 'version']);
  });

  it.each<[string, string]>([
    [
      'strings holding brackets, commas and escaped quotes',
      JSON.stringify({ payload: { note: '],[{"x', licenses: [{ id: 'a},{"b\\"' }, { id: '\\' }, 'x,y'] } }),
    ],
    [
      'licenses before other keys, signature first',
      `{"signature":{"a":[1,2]},"payload":{"licenses":[{"a":{"b":[1,{"c":2}]}},[],{}],"x":{"licenses":[9]}}}`,
    ],
    ['a nested "licenses" that is not the payload\'s', `{"payload":{"x":{"licenses":[1,2]},"licenses":[3]}}`],
    ['an escaped "licenses" key after the real one', `{"payload":{"licenses":[1,2],"licen\\u0073es":[3]}}`],
    ['an escaped "licenses" key before the real one', `{"payload":{"licen\\u0073es":[3],"licenses":[1,2]}}`],
    [
      'an escaped "payload" key after the real one',
      `{"payload":{"licenses":[1]},"p\\u0061yload":{"licenses":[2]}}`,
    ],
    ['a duplicate "licenses" key', `{"payload":{"licenses":[1],"licenses":[2,3]}}`],
    ['a duplicate "payload" key', `{"payload":{"licenses":[1]},"payload":{"licenses":[2]}}`],
    ['no licenses array', `{"payload":{"licenses":{"a":1}}}`],
    ['no payload', `{"signature":{}}`],
    ['a top-level array', `[{"payload":{"licenses":[1]}}]`],
    ['whitespace everywhere', ` \n{ "payload" :\t{ "licenses" : [ 1 , 2 ,\n 3 ] } }\r\n`],
    ['an empty array with spaces', `{"payload":{"licenses":[ ]}}`],
    ['a __proto__ key', `{"payload":{"__proto__":{"x":1},"licenses":[{"__proto__":1}]}}`],
    ['unicode', JSON.stringify({ payload: { licenses: ['€😀é', '\u2028', { '\u00f6': 1 }] } })],
  ])('agrees with JSON.parse on %s', async (_name, text) => {
    await agrees(text);
  });

  it.each<[string, string]>([
    ['truncated', JSON.stringify(doc(3)).slice(0, -5)],
    ['a trailing comma in licenses', `{"payload":{"licenses":[1,2,]}}`],
    [
      'a trailing comma after 256 items',
      `{"payload":{"licenses":[${Array.from({ length: 256 }, () => 1).join(',')},]}}`,
    ],
    ['a hole in licenses', `{"payload":{"licenses":[1,,2]}}`],
    ['a leading comma', `{"payload":{"licenses":[,1]}}`],
    ['garbage after the document', `{"payload":{"licenses":[1]}} x`],
    ['two documents', `{"payload":{"licenses":[1]}}{"payload":{"licenses":[1]}}`],
    ['an unclosed array', `{"payload":{"licenses":[1,2}}`],
    ['an unterminated string', `{"payload":{"licenses":["abc]}}`],
    ['a bad literal in an item', `{"payload":{"licenses":[tru]}}`],
    ['a byte order mark', `\ufeff{"payload":{"licenses":[1]}}`],
    ['nothing', ''],
  ])('throws what JSON.parse throws on %s', async (_name, text) => {
    expect(thrown(() => JSON.parse(text))).toBeInstanceOf(SyntaxError);
    await agrees(text);
  });
});

describe('decodeUtf8Sliced', () => {
  it('decodes like Buffer.toString, also across chunk boundaries and for malformed input', async () => {
    const big = Buffer.from('aé€😀'.repeat(150_000));
    const bad = Buffer.concat([
      Buffer.alloc(256 * 1024 - 1, 0x61),
      Buffer.from([0xe2, 0x82]),
      Buffer.from('x'),
      Buffer.from([0xf0, 0x9f, 0x98]),
      Buffer.alloc(300_000, 0x62),
      Buffer.from([0xff, 0xc0, 0x80, 0xed, 0xa0, 0x80, 0xe2]),
    ]);
    for (const bytes of [Buffer.alloc(0), Buffer.from('small'), big, bad])
      for (let shift = 0; shift < 4; shift++) {
        const b = bytes.subarray(Math.min(shift, bytes.length));
        expect(await decodeUtf8Sliced(b, eager())).toBe(b.toString('utf8'));
      }
    const view = new Uint8Array(big.buffer, big.byteOffset + 1, 1_000);
    expect(await decodeUtf8Sliced(view, eager())).toBe(Buffer.from(view).toString('utf8'));
  });
});
