import { describe, expect, it } from 'vitest';
import { compilePathRule, pathRuleMatches } from '../../src/policy/compile.js';
import { joinTarget, normalizePath, normalizeTarget, splitTarget } from '../../src/policy/path.js';
import type { PathRule } from '../../src/policy/types.js';

const rule = (pattern: string): PathRule => {
  const r = compilePathRule(pattern);
  if (typeof r === 'string') throw new Error(r);
  return r;
};

describe('normalizePath', () => {
  const cases: [string, string][] = [
    ['/', '/'],
    ['/api', '/api'],
    ['/api/', '/api/'],
    ['/api/v1/orders', '/api/v1/orders'],
    ["/a-b_c~d!$&'()*+,;=:@x", "/a-b_c~d!$&'()*+,;=:@x"],
    ['/file.txt', '/file.txt'],
    ['/a/.well-known/x', '/a/.well-known/x'],
    ['/a/...', '/a/...'],
    ['/api/../admin', '/admin'],
    ['/api/%2e%2e/admin', '/admin'],
    ['/api/%2E%2E/admin', '/admin'],
    ['/api/.%2e/admin', '/admin'],
    ['//api///x', '/api/x'],
    ['/api//', '/api/'],
    ['///', '/'],
    ['/a/./b', '/a/b'],
    ['/a/.', '/a/'],
    ['/a/..', '/'],
    ['/a/b/..', '/a/'],
    ['/a/b/../', '/a/'],
    ['/..', '/'],
    ['/../../x', '/x'],
    ['/a//../b', '/b'],
    ['/a\\b', '/a/b'],
    ['/\\x', '/x'],
    ['/%61%70%69', '/api'],
    ['/%7e%2D%5f', '/~-_'],
    ['/a%2fb', '/a%2Fb'],
    ['/a%2Fb', '/a%2Fb'],
    ['/a%5cb', '/a%5Cb'],
    ['/a%25b', '/a%25b'],
    ['/a%252e', '/a%252e'],
    ['/a%3bb', '/a%3Bb'],
    ['/a%3Fb', '/a%3Fb'],
    ['/a%23b', '/a%23b'],
    ['/a%20b', '/a%20b'],
    ['/a b', '/a%20b'],
    ['/a"<>^`{|}[]', '/a%22%3C%3E%5E%60%7B%7C%7D%5B%5D'],
    ['/caf%c3%a9', '/caf%C3%A9'],
    ['/café', '/caf%C3%A9'],
    ['/€', '/%E2%82%AC'],
    ['/😀', '/%F0%9F%98%80'],
    ['/%f0%9f%98%80', '/%F0%9F%98%80'],
    ['/a/%2e', '/a/'],
    ['/a/%2e%2e', '/'],
  ];
  it.each(cases)('%j → %j', (raw, want) => {
    expect(normalizePath(raw)).toBe(want);
  });

  it('is idempotent', () => {
    for (const [, want] of cases) expect(normalizePath(want)).toBe(want);
  });

  it('returns the very input for a canonical path', () => {
    const raw = '/api/v1/orders/123';
    expect(normalizePath(raw)).toBe(raw);
  });

  const invalid: [string, string][] = [
    ['', 'empty'],
    ['api', 'no leading slash'],
    ['*', 'asterisk'],
    ['/a%', 'truncated escape'],
    ['/a%2', 'truncated escape'],
    ['/a%zz', 'bad hex'],
    ['/a%%32%65', 'double percent'],
    ['/a%00', 'decoded NUL'],
    ['/a%0a', 'decoded LF'],
    ['/a%0D', 'decoded CR'],
    ['/a%7f', 'decoded DEL'],
    ['/a%c2%85', 'decoded C1 (NEL)'],
    ['/a\u0000', 'raw NUL'],
    ['/a\tb', 'raw tab'],
    ['/a\u0085', 'raw C1'],
    ['/a?b', 'raw ?'],
    ['/a#b', 'raw #'],
    ['/a%c3', 'truncated UTF-8'],
    ['/a%c3/b', 'UTF-8 cut by separator'],
    ['/a%c3%28', 'bad continuation'],
    ['/a%80', 'lone continuation'],
    ['/a%c0%ae', 'overlong dot'],
    ['/a%c0%af', 'overlong slash'],
    ['/a%e0%80%ae', 'overlong 3-byte'],
    ['/a%ed%a0%80', 'UTF-8 surrogate'],
    ['/a%f4%90%80%80', 'above U+10FFFF'],
    ['/a%ff', 'invalid byte'],
    ['/a\ud800', 'lone high surrogate'],
    ['/a\udc00', 'lone low surrogate'],
    ['/a/..;/b', 'dot segment with parameters'],
    ['/a/.;x/b', 'dot segment with parameters'],
    ['/a/..%3b/b', 'dot segment with encoded parameters'],
    ['/a/..%2fb', 'dots before an encoded slash'],
    ['/a/b%2F..', 'dots after an encoded slash'],
    ['/a/%5c..%5cb', 'dots between encoded backslashes'],
  ];
  it.each(invalid)('%j is refused (%s)', (raw) => {
    expect(normalizePath(raw)).toBeNull();
  });
});

describe('attack paths never pass a /api/* rule', () => {
  const api = rule('/api/*');
  const attacks = [
    '/api/../admin',
    '/api/%2e%2e/admin',
    '/api/%2E%2E/admin',
    '/api/.%2e/admin',
    '/api/%2e./admin',
    '/api/./../admin',
    '/api/x/../../admin',
    '/api/../../admin',
    '//api/../admin',
    '/api/..\\admin',
    '/api\\..\\admin',
    '/api/..%2fadmin',
    '/api/..%2Fadmin',
    '/api/%2e%2e%2fadmin',
    '/api/..%5cadmin',
    '/api/%5c../admin',
    '/api/..;/admin',
    '/api/..;jsessionid=1/admin',
    '/api/..%3b/admin',
    '/api/.;/../admin',
    '/api/%c0%ae%c0%ae/admin',
    '/api/%e0%80%ae%e0%80%ae/admin',
    '/api/..%c0%afadmin',
    '/api/%00/../../admin',
    '/api/..%00/admin',
    '/api/%%32%65%%32%65/admin',
    '/api/%2/admin',
    '/api/\t../admin',
    '/api#/../admin',
    '/api?/../admin',
    '/apix',
    '/apix/y',
    '/api.x',
    '/ap%69x',
    '/API/x',
    '/api%2Fx',
    '/api%5Cx',
    '/api%2F..%2Fadmin',
    '/api;/x',
    ' /api/x',
    'api/x',
    '/%2e%2e/api2',
  ];
  it.each(attacks)('%j', (raw) => {
    const path = normalizePath(raw);
    if (path !== null) expect(pathRuleMatches(api, path)).toBe(false);
    expect(path === null || !path.startsWith('/api/')).toBe(true);
  });

  it('equivalent spellings of paths below /api do pass', () => {
    for (const raw of ['/api', '/api/', '/%61pi/x', '//api//x', '/admin/../api/x', '/api/./x', '/api\\x']) {
      const path = normalizePath(raw);
      expect(path).not.toBeNull();
      expect(pathRuleMatches(api, path!)).toBe(true);
    }
  });
});

describe('splitTarget / normalizeTarget', () => {
  it('splits origin-form at the first ?', () => {
    expect(splitTarget('/a/b?x=1&y=/..')).toEqual({ path: '/a/b', query: 'x=1&y=/..' });
    expect(splitTarget('/a?')).toEqual({ path: '/a', query: '' });
    expect(splitTarget('/a')).toEqual({ path: '/a', query: null });
  });

  it('accepts absolute-form and drops the authority', () => {
    expect(splitTarget('http://orders.internal:8443/api/x?q')).toEqual({ path: '/api/x', query: 'q' });
    expect(splitTarget('HTTPS://[::1]:8443/p')).toEqual({ path: '/p', query: null });
    expect(splitTarget('http://host')).toEqual({ path: '/', query: null });
    expect(splitTarget('http://host?q')).toEqual({ path: '/', query: 'q' });
  });

  it('refuses userinfo, other schemes, authority-form, fragments and relative targets', () => {
    for (const t of [
      'http://user@host/x',
      'http://user:pw@host/x',
      'ftp://host/x',
      'http:///x',
      'host:443',
      'example.org:8443',
      'a/b',
      '',
      '/a#frag',
      '/a?q#frag',
    ])
      expect(splitTarget(t)).toBeNull();
  });

  it('allows * only for OPTIONS', () => {
    expect(splitTarget('*', 'OPTIONS')).toEqual({ path: '*', query: null });
    expect(splitTarget('*', 'GET')).toBeNull();
    expect(splitTarget('*')).toBeNull();
    expect(normalizeTarget('*', 'OPTIONS')).toEqual({ path: '*', query: null });
  });

  it('normalises the path and leaves the query untouched', () => {
    expect(normalizeTarget('/api/%2e%2e/admin?a=%2e%2e')).toEqual({ path: '/admin', query: 'a=%2e%2e' });
    expect(normalizeTarget('/a%zz?x')).toBeNull();
    expect(joinTarget('/a', 'x=1')).toBe('/a?x=1');
    expect(joinTarget('/a', '')).toBe('/a?');
    expect(joinTarget('/a', null)).toBe('/a');
  });
});

describe('path rules', () => {
  it('a /* prefix covers the base, base/ and below, never a sibling', () => {
    const r = rule('/api/*');
    expect(r).toEqual({ pattern: '/api/*', base: '/api', prefix: true });
    for (const p of ['/api', '/api/', '/api/x', '/api/x/y']) expect(pathRuleMatches(r, p)).toBe(true);
    for (const p of ['/apix', '/ap', '/', '/x/api', '/api2/x']) expect(pathRuleMatches(r, p)).toBe(false);
  });

  it('an exact rule matches only itself', () => {
    const r = rule('/health');
    expect(pathRuleMatches(r, '/health')).toBe(true);
    expect(pathRuleMatches(r, '/health/')).toBe(false);
    expect(pathRuleMatches(r, '/healthz')).toBe(false);
  });

  it('/* matches every path but not the OPTIONS asterisk', () => {
    const r = rule('/*');
    expect(pathRuleMatches(r, '/')).toBe(true);
    expect(pathRuleMatches(r, '/x/y')).toBe(true);
    expect(pathRuleMatches(r, '*')).toBe(false);
  });

  it('refuses patterns that are not canonical or use * elsewhere', () => {
    expect(compilePathRule('api/*')).toMatch(/must start with "\/"/);
    expect(compilePathRule('/api/*/x')).toMatch(/only allowed as a final/);
    expect(compilePathRule('/files/*.txt')).toMatch(/only allowed as a final/);
    expect(compilePathRule('/api/../admin')).toMatch(/write "\/admin"/);
    expect(compilePathRule('/a b/*')).toMatch(/write "\/a%20b\/\*"/);
    expect(compilePathRule('/api//*')).toMatch(/write "\/api\/\*"/);
    expect(compilePathRule('/a%zz')).toMatch(/not a valid path/);
    expect(compilePathRule('/a?x')).toMatch(/not a valid path/);
  });
});
