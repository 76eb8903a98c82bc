import { describe, expect, it } from 'vitest';
import { PortlicenseError } from '../../src/errors.js';
import { compileLicense, compileLicenses, parseRfc3339 } from '../../src/policy/compile.js';
import type { LicenseWire } from '../../src/policy/types.js';
import { thrown } from '../helpers/errors.js';

const base: LicenseWire = {
  id: 'lic_1',
  subject: 'spiffe://example.org/ns/default/sa/frontend',
  service: 'orders',
  port: 'http',
  notBefore: '2026-11-28T00:00:00Z',
  expiresAt: '2026-11-29T00:00:00Z',
};

function bundleError(fn: () => unknown): PortlicenseError {
  const err = thrown(fn, 'expected a BUNDLE_INVALID error');
  expect(err).toBeInstanceOf(PortlicenseError);
  expect((err as PortlicenseError).code).toBe('BUNDLE_INVALID');
  return err as PortlicenseError;
}

describe('parseRfc3339', () => {
  it.each([
    ['2026-11-28T10:00:00Z', Date.UTC(2026, 10, 28, 10)],
    ['2026-11-28t10:00:00z', Date.UTC(2026, 10, 28, 10)],
    ['2026-11-28T10:00:00.250Z', Date.UTC(2026, 10, 28, 10, 0, 0, 250)],
    ['2026-11-28T10:00:00.123456789Z', Date.UTC(2026, 10, 28, 10, 0, 0, 123)],
    ['2026-11-28T12:00:00+02:00', Date.UTC(2026, 10, 28, 10)],
    ['2026-11-28T05:30:00-04:30', Date.UTC(2026, 10, 28, 10)],
    ['2028-02-29T00:00:00Z', Date.UTC(2028, 1, 29)],
    ['2000-02-29T00:00:00Z', Date.UTC(2000, 1, 29)],
  ])('%s', (s, want) => {
    expect(parseRfc3339(s)).toBe(want);
  });

  it.each([
    '2026-11-28',
    '2026-11-28T10:00Z',
    '2026-11-28 10:00:00Z',
    '2026-11-28T10:00:00',
    '2026-11-28T10:00:00+0200',
    '2026-13-01T00:00:00Z',
    '2026-00-01T00:00:00Z',
    '2026-04-31T00:00:00Z',
    '2027-02-29T00:00:00Z',
    '1900-02-29T00:00:00Z',
    '2026-11-28T24:00:00Z',
    '2026-11-28T10:60:00Z',
    '2026-11-28T10:00:60Z',
    '2026-11-28T10:00:00+24:00',
    '2026-11-28T10:00:00.Z',
    ' 2026-11-28T10:00:00Z',
    'Sat, 28 Nov 2026 10:00:00 GMT',
    '1795860000000',
  ])('refuses %j', (s) => {
    expect(parseRfc3339(s)).toBeNull();
  });
});

describe('compileLicense', () => {
  it('compiles times, rules and the port key', () => {
    const l = compileLicense({ ...base, methods: ['GET', 'POST'], paths: ['/api/*', '/health'], extra: 1 });
    expect(l.portKey).toBe('orders/http');
    expect(l.notBefore).toBe(Date.UTC(2026, 10, 28));
    expect(l.expiresAt).toBe(Date.UTC(2026, 10, 29));
    expect(l.revokedAt).toBeNull();
    expect([...l.methods!]).toEqual(['GET', 'POST']);
    expect(l.paths).toEqual([
      { pattern: '/api/*', base: '/api', prefix: true },
      { pattern: '/health', base: '/health', prefix: false },
    ]);
    expect(l.wire).toEqual({ ...base, methods: ['GET', 'POST'], paths: ['/api/*', '/health'] });
  });

  it('treats absent, null and empty rule lists as "any"', () => {
    for (const extra of [{}, { methods: null, paths: null }, { methods: [], paths: [] }]) {
      const l = compileLicense({ ...base, ...extra });
      expect(l.methods).toBeNull();
      expect(l.paths).toBeNull();
    }
  });

  it('accepts prefix subjects at a path or trust-domain boundary', () => {
    expect(compileLicense({ ...base, subject: 'spiffe://example.org/ns/payments/*' }).subject).toBe(
      'spiffe://example.org/ns/payments/*',
    );
    expect(compileLicense({ ...base, subject: 'spiffe://example.org/*' }).subject).toBe(
      'spiffe://example.org/*',
    );
  });

  it('keeps revokedAt', () => {
    const l = compileLicense({ ...base, revokedAt: '2026-11-28T12:00:00Z' });
    expect(l.revokedAt).toBe(Date.UTC(2026, 10, 28, 12));
    expect(l.wire.revokedAt).toBe('2026-11-28T12:00:00Z');
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['id missing', { id: undefined }, /id: is missing/],
    ['id empty', { id: '' }, /id: "" is not a license id/],
    ['id with space', { id: 'a b' }, /id:/],
    ['subject not spiffe', { subject: 'https://example.org/x' }, /subject: .*must start with "spiffe:\/\/"/],
    ['subject upper-case trust domain', { subject: 'spiffe://Example.org/x' }, /subject:.*trust domain/],
    ['subject wildcard inside', { subject: 'spiffe://example.org/ns/*/sa' }, /subject:/],
    ['subject bare *', { subject: 'spiffe://example.org/ns*' }, /subject:/],
    ['subject dot segment', { subject: 'spiffe://example.org/ns/../x' }, /subject:/],
    ['subject number', { subject: 7 }, /subject: must be a string/],
    ['service with slash', { service: 'a/b' }, /service: "a\/b" is not a service name/],
    ['service empty', { service: '' }, /service:/],
    ['port with space', { port: 'h ttp' }, /port:/],
    ['notBefore bad', { notBefore: 'yesterday' }, /notBefore: "yesterday" is not an RFC 3339 time/],
    ['expiresAt missing', { expiresAt: undefined }, /expiresAt: is missing/],
    ['expiresAt epoch number', { expiresAt: 1795860000000 }, /expiresAt: must be a string/],
    ['revokedAt bad', { revokedAt: 'now' }, /revokedAt:/],
    ['methods lower-case', { methods: ['get'] }, /methods\[0\]: "get" is not an upper-case method/],
    ['methods not array', { methods: 'GET' }, /methods: must be an array/],
    ['methods non-string', { methods: ['GET', 1] }, /methods\[1\]: must be a string/],
    ['paths relative', { paths: ['api/*'] }, /paths\[0\]:.*must start with/],
    ['paths inner star', { paths: ['/a', '/api/*/x'] }, /paths\[1\]:.*final "\/\*"/],
    ['paths not canonical', { paths: ['/api/../admin'] }, /paths\[0\]:.*write "\/admin"/],
  ];
  it.each(bad)('refuses %s, naming the license and field', (_name, over, msg) => {
    const err = bundleError(() => compileLicense({ ...base, ...over }, 'licenses[4]'));
    expect(err.message).toMatch(msg);
    expect(err.message).toMatch(/^bundle licenses\[4\]/);
    if (typeof over.id !== 'string' && !('id' in over && over.id === undefined))
      expect(err.message).toContain('"lic_1"');
  });

  it('refuses a license that is not an object', () => {
    expect(bundleError(() => compileLicense('x', 'licenses[0]')).message).toMatch(
      /licenses\[0\]: must be an object/,
    );
    expect(bundleError(() => compileLicense([], 'licenses[0]')).message).toMatch(/must be an object/);
  });
});

describe('compileLicenses', () => {
  it('refuses a non-array and duplicate ids', () => {
    expect(bundleError(() => compileLicenses({})).message).toMatch(/licenses: must be an array/);
    expect(bundleError(() => compileLicenses([base, { ...base }])).message).toMatch(
      /licenses\[1\]: id "lic_1" appears twice/,
    );
  });

  it('compiles every entry in order', () => {
    const out = compileLicenses([base, { ...base, id: 'lic_2' }]);
    expect(out.map((l) => l.id)).toEqual(['lic_1', 'lic_2']);
  });
});
