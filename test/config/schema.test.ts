import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import {
  INVALID,
  arrayOf,
  boolean,
  closest,
  createContext,
  deepFreeze,
  duration,
  filePath,
  formatHostPort,
  hostPort,
  httpsUrl,
  integer,
  isLoopbackHost,
  isSpiffeId,
  isSubjectPattern,
  keyPath,
  listenersClash,
  name,
  nonEmptyString,
  object,
  oneOf,
  optional,
  parseHostPort,
  parseSpiffeId,
  required,
  section,
  spiffeId,
  string,
  subjectPattern,
  throwIfProblems,
  time,
  trustDomain,
  withDefault,
  type Schema,
} from '../../src/config/schema.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

/** Parse `value` and return the value or the list of `path: message` problems. */
function run<T>(
  schema: Schema<T>,
  value: unknown,
): { ok: true; value: T } | { ok: false; problems: string[] } {
  const ctx = createContext({ file: 'f.yaml', dir: '/etc/pl' });
  const v = schema.parse(value, 'k', ctx);
  if (v === INVALID) {
    expect(ctx.problems.length).toBeGreaterThan(0);
    return { ok: false, problems: ctx.problems.map((p) => `${p.path}: ${p.message}`) };
  }
  expect(ctx.problems).toEqual([]);
  return { ok: true, value: v };
}

const ok = <T>(schema: Schema<T>, value: unknown): T => {
  const r = run(schema, value);
  if (!r.ok) throw new Error(`unexpected problems: ${r.problems.join('; ')}`);
  return r.value;
};
const bad = (schema: Schema<unknown>, value: unknown): string[] => {
  const r = run(schema, value);
  if (r.ok) throw new Error(`expected problems for ${JSON.stringify(value)}`);
  return r.problems;
};

describe('scalars', () => {
  it('string and nonEmptyString', () => {
    expect(ok(string(), '')).toBe('');
    expect(bad(string(), 5)).toEqual(['k: must be a string']);
    expect(bad(nonEmptyString(), '  ')).toEqual(['k: must not be empty']);
    expect(bad(nonEmptyString(3), 'abcd')).toEqual(['k: must be at most 3 characters']);
  });

  it('name', () => {
    expect(ok(name(), 'orders-v2.x_1')).toBe('orders-v2.x_1');
    for (const v of ['Orders', 'a/b', '-a', 'a-', '', 'a,b', 'x'.repeat(64)])
      expect(bad(name(), v)[0]).toMatch(/^k: must be 1-63 lowercase letters/);
  });

  it('integer with ranges', () => {
    expect(ok(integer({ min: 1, max: 10 }), 10)).toBe(10);
    expect(bad(integer({ min: 1, max: 10 }), 11)).toEqual(['k: must be an integer from 1 to 10']);
    expect(bad(integer({ min: 1, max: 10 }), 1.5)).toEqual(['k: must be an integer from 1 to 10']);
    expect(bad(integer({ min: 1 }), '5')).toEqual(['k: must be an integer >= 1']);
    expect(bad(integer({ max: 3 }), 4)).toEqual(['k: must be an integer <= 3']);
    expect(bad(integer(), 2 ** 60)).toEqual(['k: must be an integer']);
  });

  it('boolean', () => {
    expect(ok(boolean(), false)).toBe(false);
    expect(bad(boolean(), 'yes')).toEqual(['k: must be true or false']);
  });

  it('oneOf reads like the SPEC', () => {
    expect(ok(oneOf(['tcp', 'http']), 'http')).toBe('http');
    expect(bad(oneOf(['tcp', 'http']), 'udp')).toEqual(['k: must be "tcp" or "http"']);
    expect(bad(oneOf(['tcp', 'http']), 'HTTP')).toEqual(['k: must be "tcp" or "http"']);
    expect(bad(oneOf(['debug', 'info', 'warn', 'error']), 1)).toEqual([
      'k: must be one of "debug", "info", "warn" or "error"',
    ]);
  });

  it('duration', () => {
    expect(ok(duration(), '90s')).toBe(90_000);
    expect(bad(duration(), 30)).toEqual(['k: must be a duration with a unit, like 30s or 30ms']);
    expect(bad(duration(), true)).toEqual(['k: must be a duration like 90s, 15m, 24h or 30d']);
    expect(bad(duration(), '5 minutes')[0]).toMatch(/^k: invalid duration "5 minutes": expected/);
    expect(bad(duration(), '0s')).toEqual(['k: invalid duration "0s": must be greater than zero']);
    expect(bad(duration({ min: 1000 }), '500ms')).toEqual(['k: must be at least 1s']);
    expect(bad(duration({ max: 600_000 }), '11m')).toEqual(['k: must be at most 10m']);
  });

  it('time', () => {
    expect(ok(time(), '2026-11-28T10:00:00Z')).toBe(Date.UTC(2026, 10, 28, 10));
    expect(bad(time(), '2026-11-28')[0]).toMatch(/^k: invalid time "2026-11-28": expected RFC 3339/);
    expect(bad(time(), 1_700_000_000)[0]).toBe('k: must be an RFC 3339 time like 2026-11-28T10:00:00Z');
  });

  it('httpsUrl', () => {
    expect(ok(httpsUrl(), 'https://auth.example:7443/')).toBe('https://auth.example:7443');
    expect(ok(httpsUrl(), 'https://auth.example/base/')).toBe('https://auth.example/base');
    expect(bad(httpsUrl(), 'http://a:1')).toEqual(['k: must be an https:// URL (got http://)']);
    expect(bad(httpsUrl(), 'not a url')).toEqual(['k: must be an https:// URL (got "not a url")']);
    expect(bad(httpsUrl(), 'https://u:p@a')).toEqual(['k: must not contain credentials']);
    expect(bad(httpsUrl(), 'https://a/?x=1')).toEqual(['k: must not have a query or fragment']);
  });
});

describe('host:port', () => {
  it.each([
    ['127.0.0.1:8080', { host: '127.0.0.1', port: 8080 }],
    ['0.0.0.0:65535', { host: '0.0.0.0', port: 65535 }],
    ['[::1]:80', { host: '::1', port: 80 }],
    ['[2001:DB8::1]:443', { host: '2001:db8::1', port: 443 }],
    ['payments.internal:8443', { host: 'payments.internal', port: 8443 }],
    ['Localhost:1', { host: 'localhost', port: 1 }],
  ])('parses %s', (s, hp) => {
    expect(ok(hostPort(), s)).toEqual(hp);
    expect(formatHostPort(hp)).toBe(s.toLowerCase());
  });

  it.each([
    ['8080', 'must be host:port (IPv6 in brackets: [::1]:8080)'],
    [':8080', 'must be host:port with a host (use 0.0.0.0 for every interface)'],
    ['::1:80', 'IPv6 addresses go in brackets: [::1]:80'],
    ['[127.0.0.1]:80', '"127.0.0.1" in brackets is not an IPv6 address'],
    ['[::1]80', 'must be [IPv6 address]:port, like [::1]:8080'],
    ['[::1]', 'must be [IPv6 address]:port, like [::1]:8080'],
    ['999.1.1.1:80', '"999.1.1.1" is not an IP address or host name'],
    ['bad_host:80', '"bad_host" is not an IP address or host name'],
    ['a:65536', 'port must be a number from 1 to 65535'],
    ['a:0', 'port must be a number from 1 to 65535'],
    ['a:-1', 'port must be a number from 1 to 65535'],
    ['a:http', 'port must be a number from 1 to 65535'],
    ['a:', 'port must be a number from 1 to 65535'],
  ])('rejects %s', (s, message) => {
    expect(bad(hostPort(), s)).toEqual([`k: ${message}`]);
  });

  it('allows port 0 only for listeners', () => {
    expect(ok(hostPort({ allowPortZero: true }), '127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseHostPort('[::]:0', { allowPortZero: true })).toEqual({ host: '::', port: 0 });
    expect(bad(hostPort({ allowPortZero: true }), 8080)).toEqual([
      'k: must be host:port, like 0.0.0.0:8080 (every interface) or 127.0.0.1:8080 (this host only)',
    ]);
    expect(bad(hostPort(), true)).toEqual(['k: must be host:port as a string, like 127.0.0.1:8080']);
  });

  it('knows loopback and clashing listeners', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1'])
      expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['0.0.0.0', '10.0.0.1', '::', 'example.org', '128.0.0.1'])
      expect(isLoopbackHost(h)).toBe(false);
    const hp = (host: string, port: number): { host: string; port: number } => ({ host, port });
    expect(listenersClash(hp('0.0.0.0', 80), hp('127.0.0.1', 80))).toBe(true);
    expect(listenersClash(hp('127.0.0.1', 80), hp('::', 80))).toBe(true);
    expect(listenersClash(hp('127.0.0.1', 80), hp('127.0.0.1', 80))).toBe(true);
    expect(listenersClash(hp('127.0.0.1', 80), hp('127.0.0.2', 80))).toBe(false);
    expect(listenersClash(hp('0.0.0.0', 80), hp('0.0.0.0', 81))).toBe(false);
    expect(listenersClash(hp('0.0.0.0', 0), hp('0.0.0.0', 0))).toBe(false);
  });
});

describe('SPIFFE IDs and subject patterns', () => {
  it('accepts valid IDs', () => {
    for (const id of [
      'spiffe://example.org/ns/default/sa/frontend',
      'spiffe://a-b_c.d/x',
      'spiffe://example.org',
    ])
      expect(ok(spiffeId(), id)).toBe(id);
    expect(parseSpiffeId('spiffe://example.org/a/b')).toEqual({ trustDomain: 'example.org', path: '/a/b' });
    expect(isSpiffeId('spiffe://example.org/a')).toBe(true);
  });

  it.each([
    'https://example.org/a',
    'SPIFFE://example.org/a',
    'spiffe://Example.org/a',
    'spiffe://example.org:8080/a',
    'spiffe://user@example.org/a',
    'spiffe:///a',
    'spiffe://example.org/a//b',
    'spiffe://example.org/a/',
    'spiffe://example.org/a/./b',
    'spiffe://example.org/a/../b',
    'spiffe://example.org/a?x=1',
    'spiffe://example.org/a#frag',
    'spiffe://example.org/a%20b',
    `spiffe://example.org/${'a'.repeat(2048)}`,
  ])('rejects the ID %s', (id) => {
    expect(bad(spiffeId(), id)[0]).toMatch(/^k: invalid SPIFFE ID "/);
    expect(isSpiffeId(id)).toBe(false);
  });

  it('accepts exact and /* subject patterns', () => {
    for (const s of [
      'spiffe://example.org/ns/payments/*',
      'spiffe://example.org/*',
      'spiffe://example.org/sa/x',
    ]) {
      expect(ok(subjectPattern(), s)).toBe(s);
      expect(isSubjectPattern(s)).toBe(true);
    }
  });

  it.each([
    ['spiffe://example.org/ns/*/sa', '"*" is only allowed as a final "/*"'],
    ['spiffe://example.org/ns*', '"*" is only allowed as a final "/*"'],
    ['spiffe://*', 'the trust domain must be written out'],
    ['spiffe://example.org/**', '"*" is only allowed as a final "/*"'],
    ['spiffe://example.org//*', 'empty path segment'],
    ['*', '"*" is only allowed as a final "/*"'],
  ])('rejects the pattern %s', (s, why) => {
    expect(bad(subjectPattern(), s)[0]).toContain(why);
    expect(isSubjectPattern(s)).toBe(false);
  });

  it('trust domains', () => {
    expect(ok(trustDomain(), 'example.org')).toBe('example.org');
    expect(bad(trustDomain(), 'Example.org')[0]).toMatch(/^k: invalid trust domain "Example.org"/);
    expect(bad(trustDomain(), 'spiffe://example.org')).toEqual([
      'k: must be the bare trust domain, without "spiffe://"',
    ]);
    expect(bad(trustDomain(), 'example.org/x')).toEqual([
      'k: invalid trust domain "example.org/x": must not contain "/"',
    ]);
    expect(bad(trustDomain(), '')[0]).toMatch(/empty trust domain/);
  });
});

describe('files', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('pl-schema-');
  });
  afterEach(() => {
    removeDir(dir);
  });

  const parse = (s: Schema<string>, v: unknown): { value: string | typeof INVALID; problems: string[] } => {
    const ctx = createContext({ file: 'f.yaml', dir });
    const value = s.parse(v, 'tls.ca', ctx);
    return { value, problems: ctx.problems.map((p) => p.message) };
  };

  it('resolves against the config folder and checks existence', () => {
    writeFileSync(join(dir, 'ca.pem'), 'x');
    expect(parse(filePath({ mustExist: true }), 'ca.pem').value).toBe(join(dir, 'ca.pem'));
    expect(parse(filePath({ mustExist: true }), join(dir, 'ca.pem')).value).toBe(join(dir, 'ca.pem'));
    expect(parse(filePath({ mustExist: true }), 'missing.pem').problems).toEqual([
      `file not found: ${join(dir, 'missing.pem')}`,
    ]);
    expect(parse(filePath({ mustExist: false }), 'later.json').value).toBe(join(dir, 'later.json'));
    mkdirSync(join(dir, 'sub'));
    expect(parse(filePath({ mustExist: true }), 'sub').problems).toEqual([
      `not a regular file: ${join(dir, 'sub')}`,
    ]);
    expect(parse(filePath({ mustExist: true }), '').problems).toEqual(['must be a file path']);
  });

  it.skipIf(process.getuid?.() === 0)('reports an unreadable file', () => {
    writeFileSync(join(dir, 'key.pem'), 'x');
    chmodSync(join(dir, 'key.pem'), 0o000);
    expect(parse(filePath({ mustExist: true }), 'key.pem').problems).toEqual([
      `file not readable: ${join(dir, 'key.pem')}`,
    ]);
  });
});

describe('lists and mappings', () => {
  const shape = object({
    name: required(string()),
    port: withDefault(integer({ min: 1, max: 65535 }), 8080),
    note: optional(string()),
    tags: withDefault(arrayOf(string(), { unique: true }), []),
    admin: section(object({ listen: withDefault(string(), '127.0.0.1:9901') })),
  });

  it('applies defaults and sections, omits absent optionals', () => {
    expect(ok(shape, { name: 'a' })).toEqual({
      name: 'a',
      port: 8080,
      tags: [],
      admin: { listen: '127.0.0.1:9901' },
    });
    expect('note' in ok(shape, { name: 'a' })).toBe(false);
    expect(ok(shape, { name: 'a', note: null, port: null })).toEqual(ok(shape, { name: 'a' }));
  });

  it('names unknown keys with a suggestion, or the known keys', () => {
    expect(bad(shape, { name: 'a', prot: 1 })).toEqual(['k.prot: unknown key "prot" (did you mean "port"?)']);
    expect(bad(shape, { name: 'a', Name: 'b' })).toEqual([
      'k.Name: unknown key "Name" (did you mean "name"?)',
    ]);
    expect(bad(shape, { name: 'a', nmae: 'b' })).toEqual([
      'k.nmae: unknown key "nmae" (did you mean "name"?)',
    ]);
    expect(bad(shape, { name: 'a', 'zz top': 1 })).toEqual([
      'k["zz top"]: unknown key "zz top" (known keys: name, port, note, tags, admin)',
    ]);
  });

  it('collects every problem, not just the first', () => {
    expect(
      bad(shape, { port: 0, tags: ['x', 'y', 'x', 3], admin: { listen: 1, other: 2 }, extra: 1 }),
    ).toEqual([
      'k.extra: unknown key "extra" (known keys: name, port, note, tags, admin)',
      'k.name: is required',
      'k.port: must be an integer from 1 to 65535',
      'k.tags[2]: duplicate of k.tags[0]',
      'k.tags[3]: must be a string',
      'k.admin.other: unknown key "other" (known keys: listen)',
      'k.admin.listen: must be a string',
    ]);
  });

  it('says "must not be empty" for a required key left blank', () => {
    expect(bad(shape, { name: null })).toEqual(['k.name: must not be empty']);
  });

  it('rejects non-mappings and non-lists', () => {
    expect(bad(shape, ['a'])).toEqual(['k: must be a mapping']);
    expect(bad(shape, 'a')).toEqual(['k: must be a mapping']);
    expect(bad(arrayOf(string()), { a: 1 })).toEqual(['k: must be a list']);
    expect(bad(arrayOf(string(), { minItems: 1 }), [])).toEqual(['k: must list at least 1']);
    expect(bad(arrayOf(string(), { minItems: 1, minMessage: 'needs one' }), [])).toEqual(['k: needs one']);
  });

  it('keyPath quotes keys that would not read as a path', () => {
    expect(keyPath('', 'a')).toBe('a');
    expect(keyPath('a', 'b-c')).toBe('a.b-c');
    expect(keyPath('a', 'b.c')).toBe('a["b.c"]');
  });

  it('closest only suggests likely typos', () => {
    expect(closest('wiat', ['wait', 'url'])).toBe('wait');
    expect(closest('signingPublickey', ['signingPublicKey', 'cacheFile'])).toBe('signingPublicKey');
    expect(closest('zzz', ['wait', 'url'])).toBeUndefined();
  });
});

describe('throwIfProblems and deepFreeze', () => {
  it('throws one ConfigError with problems ordered by line', () => {
    const lines: Record<string, number> = { a: 9, b: 3 };
    const ctx = createContext({ file: 'sidecar.yaml', lineOf: (p) => lines[p] ?? 0 });
    object({ a: required(oneOf(['tcp', 'http'])), b: required(boolean()) }).parse(
      { a: 'udp', b: 1 },
      '',
      ctx,
    );
    let err: unknown;
    try {
      throwIfProblems(ctx);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(
      'sidecar.yaml:3: b: must be true or false\nsidecar.yaml:9: a: must be "tcp" or "http"',
    );
    expect(() => throwIfProblems(createContext({ file: 'x' }))).not.toThrow();
  });

  it('freezes all the way down', () => {
    const v = deepFreeze({ a: { b: [{ c: 1 }] } });
    expect(Object.isFrozen(v.a.b[0])).toBe(true);
    expect(() => {
      (v.a.b[0] as { c: number }).c = 2;
    }).toThrow(TypeError);
  });
});
