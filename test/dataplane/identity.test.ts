import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { certificateIdentity, uriSans } from '../../src/dataplane/identity.js';
import { createTestCa, type LeafOptions, type TestCa } from '../helpers/pki.js';

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
