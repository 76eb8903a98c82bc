import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { certificateIdentity, signsCertificates, uriSans } from '../../src/dataplane/identity.js';
import { createTestCa, opensslLeaf, type LeafOptions, type TestCa } from '../helpers/pki.js';

const TD = ['example.org'];
let ca: TestCa;
beforeAll(() => {
  ca = createTestCa();
});

const leaf = (opts: LeafOptions) => new X509Certificate(ca.issue(opts).cert);
const identityOf = (opts: LeafOptions, trustDomains = TD) => certificateIdentity(leaf(opts), trustDomains);

describe('uriSans', () => {
  it('reads plain entries of every type', () => {
    expect(
      uriSans('URI:spiffe://a/b, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1'),
    ).toEqual(['spiffe://a/b']);
    expect(uriSans('DNS:x')).toEqual([]);
    expect(uriSans('')).toEqual([]);
  });

  it('decodes the JSON-quoted values Node writes for commas, quotes and non-ASCII', () => {
    expect(uriSans('URI:"spiffe://a\\u002cb/c", DNS:x')).toEqual(['spiffe://a,b/c']);
    expect(uriSans('URI:spiffe://a/b, URI:"https://x\\"y"')).toEqual(['spiffe://a/b', 'https://x"y']);
  });

  it('does not let an escaped value smuggle in a second entry', () => {
    expect(uriSans('URI:"spiffe://a/b\\u002c URI:spiffe://evil/x", DNS:localhost')).toEqual([
      'spiffe://a/b, URI:spiffe://evil/x',
    ]);
  });

  it('gives null for text it cannot read', () => {
    expect(uriSans('URI:"unterminated')).toBeNull();
    expect(uriSans('no colon here')).toBeNull();
    expect(uriSans('URI:"a"junk')).toBeNull();
    expect(uriSans('URI:"bad \\x escape"')).toBeNull();
  });
});

describe('certificateIdentity (X.509-SVID rules)', () => {
  it('accepts a leaf with one spiffe URI of an accepted trust domain', () => {
    expect(identityOf({ uris: ['spiffe://example.org/ns/default/sa/frontend'] })).toEqual({
      identity: 'spiffe://example.org/ns/default/sa/frontend',
    });
    expect(identityOf({ uris: ['spiffe://other.org/x'] }, ['example.org', 'other.org'])).toEqual({
      identity: 'spiffe://other.org/x',
    });
  });

  it('ignores URIs of other schemes beside the SPIFFE ID', () => {
    expect(identityOf({ uris: ['https://example.org/x', 'spiffe://example.org/a'] })).toEqual({
      identity: 'spiffe://example.org/a',
    });
  });

  it('refuses a CA certificate', () => {
    const r = certificateIdentity(new X509Certificate(ca.cert), TD);
    expect(r.error).toContain('is a CA certificate');
    const r2 = identityOf({ uris: ['spiffe://example.org/a'], isCA: true });
    expect(r2.error).toContain('is a CA certificate');
  });

  it('refuses a leaf whose key usage may sign certificates or CRLs, with or without basicConstraints', () => {
    const id = 'spiffe://example.org/ns/default/sa/frontend';
    const made = (extensions: string[]) =>
      new X509Certificate(opensslLeaf(ca, { spiffeId: id, keyType: 'ec', extensions }).cert);
    const refused = 'the client certificate has key usage keyCertSign or cRLSign: not a leaf';
    for (const extensions of [
      ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyCertSign'],
      ['keyUsage=critical,cRLSign'],
      ['keyUsage=digitalSignature,keyCertSign,cRLSign'], // not critical: no BOOLEAN before the value
    ]) {
      const cert = made(extensions);
      expect(cert.ca).toBe(false);
      expect(signsCertificates(cert.raw)).toBe(true);
      expect(certificateIdentity(cert, TD)).toEqual({ error: refused });
    }
    // Other key usages, and none at all, are a leaf's.
    for (const extensions of [
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment,keyAgreement',
      ],
      ['extendedKeyUsage=clientAuth'],
    ]) {
      const cert = made(extensions);
      expect(signsCertificates(cert.raw)).toBe(false);
      expect(certificateIdentity(cert, TD)).toEqual({ identity: id });
    }
    // forge-made leaves (every other test) and the CA itself.
    expect(signsCertificates(leaf({ uris: [id] }).raw)).toBe(false);
    expect(signsCertificates(new X509Certificate(ca.cert).raw)).toBe(true);
  });

  it('reads BER lengths OpenSSL takes, and refuses an encoding it cannot follow', () => {
    const id = 'spiffe://example.org/ns/default/sa/frontend';
    const der = new X509Certificate(
      opensslLeaf(ca, {
        spiffeId: id,
        keyType: 'ec',
        extensions: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyCertSign'],
      }).cert,
    ).raw;
    const [cert] = parseTlv(der, 0, der.length);
    expect(encodeTlv(cert!).equals(der)).toBe(true); // the re-encoder is exact
    const tbs = cert!.kids![0]!;
    const extList = tbs.kids!.find((k) => k.tag === 0xa3)!.kids![0]!;
    const keyUsage = extList.kids!.find((e) => e.kids![0]!.bytes!.equals(Buffer.from([0x55, 0x1d, 0x0f])))!;
    const variant = (node: Tlv, form: Tlv['form']): Buffer => {
      node.form = form;
      const out = encodeTlv(cert!);
      node.form = undefined;
      return out;
    };
    // Lengths in five bytes with leading zeros, on the extension list and on the extension itself.
    expect(signsCertificates(variant(extList, 'long5'))).toBe(true);
    expect(signsCertificates(variant(keyUsage, 'long5'))).toBe(true);
    // An indefinite length: not followed, so not accepted either.
    const indefinite = variant(extList, 'indefinite');
    expect(signsCertificates(indefinite)).toBeNull();
    expect(certificateIdentity(new X509Certificate(indefinite), TD)).toEqual({
      error: 'the client certificate is not DER-encoded: its key usage cannot be checked',
    });
  });

  it('never throws on DER it cannot follow', () => {
    const good = leaf({ uris: ['spiffe://example.org/a'] }).raw;
    const inputs = [
      Buffer.alloc(0),
      Buffer.from([0x30]),
      Buffer.from([0x30, 0x85, 1, 2, 3, 4, 5]), // a 5-byte length
      Buffer.from([0x30, 0x82, 0xff, 0xff]), // longer than the input
      Buffer.from([0x04, 0x00]),
    ];
    for (let cut = 1; cut < good.length; cut += 37) inputs.push(good.subarray(0, cut));
    for (let i = 0; i < 200; i++) {
      const b = Buffer.from(good);
      const at = (i * 7919) % b.length;
      b[at] = b[at]! ^ 0xff;
      inputs.push(b);
    }
    for (const der of inputs) expect([true, false, null]).toContain(signsCertificates(der));
  });

  it('refuses zero or several spiffe URIs', () => {
    expect(identityOf({ dns: ['localhost'] }).error).toContain('no spiffe:// URI SAN');
    expect(identityOf({}).error).toContain('no subjectAltName');
    expect(identityOf({ uris: ['https://example.org/a'] }).error).toContain('no spiffe:// URI SAN');
    expect(identityOf({ uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] }).error).toContain(
      'more than one spiffe:// URI SAN',
    );
    // An upper-case scheme is still a SPIFFE URI, so this is two of them, not one.
    expect(identityOf({ uris: ['spiffe://example.org/a', 'SPIFFE://example.org/b'] }).error).toContain(
      'more than one',
    );
  });

  it('refuses invalid SPIFFE IDs', () => {
    const bad = [
      ['spiffe://example.org/a?x=1', 'no query'],
      ['spiffe://example.org/a#frag', 'no query, fragment'],
      ['spiffe://example.org:8443/a', 'no port'],
      ['SPIFFE://example.org/a', 'must start with "spiffe://"'],
      ['spiffe://Example.org/a', 'lower case'],
      ['spiffe://example.org/a/../b', '"." or ".."'],
      ['spiffe://example.org/a,b', 'path segment'],
      [`spiffe://example.org/${'a'.repeat(2100)}`, 'longer than 2048 bytes'],
      ['spiffe://example.org', 'names a trust domain, not a workload'],
    ] as const;
    for (const [uri, why] of bad) {
      const r = identityOf({ uris: [uri] });
      expect(r.identity, uri).toBeUndefined();
      expect(r.error, uri).toContain(why);
    }
  });

  it('refuses a trust domain that is not accepted, naming the accepted ones', () => {
    const r = identityOf({ uris: ['spiffe://evil.org/a'] }, ['example.org', 'corp.example']);
    expect(r.error).toBe('trust domain "evil.org" is not accepted (accepted: example.org, corp.example)');
  });
});

/** A BER/DER element, re-encodable with another length form (for encodings OpenSSL takes). */
interface Tlv {
  tag: number;
  kids?: Tlv[];
  bytes?: Buffer;
  form?: 'long5' | 'indefinite' | undefined;
}

function parseTlv(der: Buffer, pos: number, end: number): Tlv[] {
  const out: Tlv[] = [];
  while (pos < end) {
    const tag = der[pos]!;
    let len = der[pos + 1]!;
    let start = pos + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = der.readUIntBE(start, n);
      start += n;
    }
    const stop = start + len;
    out.push(
      tag & 0x20 ? { tag, kids: parseTlv(der, start, stop) } : { tag, bytes: der.subarray(start, stop) },
    );
    pos = stop;
  }
  return out;
}

function encodeTlv(t: Tlv): Buffer {
  const content = t.kids ? Buffer.concat(t.kids.map(encodeTlv)) : t.bytes!;
  const n = content.length;
  if (t.form === 'indefinite')
    return Buffer.concat([Buffer.from([t.tag, 0x80]), content, Buffer.from([0, 0])]);
  if (t.form === 'long5')
    return Buffer.concat([
      Buffer.from([t.tag, 0x85, 0, 0, (n >> 16) & 255, (n >> 8) & 255, n & 255]),
      content,
    ]);
  const len =
    n < 0x80
      ? [n]
      : n < 0x100
        ? [0x81, n]
        : n < 0x10000
          ? [0x82, n >> 8, n & 255]
          : [0x83, n >> 16, (n >> 8) & 255, n & 255];
  return Buffer.concat([Buffer.from([t.tag, ...len]), content]);
}
