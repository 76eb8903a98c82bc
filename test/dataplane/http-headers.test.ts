/**
 * Header rewriting in isolation: what the upstream is sent and what the caller gets back.
 */
import { describe, expect, it } from 'vitest';
import {
  callerResponseHeaders,
  targetAuthority,
  upstreamRequestHead,
  vouch,
  type UpstreamHead,
} from '../../src/dataplane/http-headers.js';
import { serializeHead } from '../../src/dataplane/http-upgrade.js';

function head(raw: string[], upgrade = false): UpstreamHead {
  const h = upstreamRequestHead(raw, '10.1.2.3', upgrade);
  if (typeof h === 'string') throw new Error(h);
  return h;
}

const pairs = (flat: readonly string[]): Array<[string, string]> =>
  flat.flatMap((v, i) => (i % 2 === 0 ? [[v, flat[i + 1]!] as [string, string]] : []));

describe('upstreamRequestHead', () => {
  it('keeps end-to-end headers in order and case, adds forwarding headers', () => {
    const h = head(['Host', 'orders', 'Accept', 'a/b', 'X-Custom', '1', 'x-custom', '2']);
    expect(pairs(h.headers)).toEqual([
      ['Host', 'orders'],
      ['Accept', 'a/b'],
      ['X-Custom', '1'],
      ['x-custom', '2'],
      ['x-forwarded-for', '10.1.2.3'],
      ['x-forwarded-proto', 'https'],
    ]);
    expect(h.host).toBe('orders');
    expect(h.bodyLength).toBe(0);
  });

  it('drops hop-by-hop headers, the ones Connection names, Expect and every caller copy of ours', () => {
    // prettier-ignore
    const h = head([
      'Host', 'o',
      'Connection', 'keep-alive, X-Secret , x-other',
      'X-Secret', 's',
      'X-OTHER', 'o',
      'Keep-Alive', '5',
      'TE', 'trailers',
      'Trailer', 'x',
      'Transfer-Encoding', 'chunked',
      'Upgrade', 'h2c',
      'Proxy-Authorization', 'p',
      'Proxy-Anything', 'p',
      'Expect', '100-continue',
      'X-PortLicense-Identity', 'forged',
      'x-portlicense-license', 'forged',
      'X-Forwarded-Proto', 'http',
      'X-Kept', 'k',
    ]);
    expect(pairs(h.headers)).toEqual([
      ['Host', 'o'],
      ['X-Kept', 'k'],
      ['x-forwarded-for', '10.1.2.3'],
      ['x-forwarded-proto', 'https'],
    ]);
    expect(h.bodyLength).toBe(-1);
  });

  it('keeps Upgrade and states Connection: upgrade for an upgrade request', () => {
    const h = head(
      ['Host', 'o', 'Connection', 'Upgrade, X-Drop', 'Upgrade', 'websocket', 'X-Drop', '1'],
      true,
    );
    expect(pairs(h.headers)).toEqual([
      ['Host', 'o'],
      ['connection', 'upgrade'],
      ['upgrade', 'websocket'],
      ['x-forwarded-for', '10.1.2.3'],
      ['x-forwarded-proto', 'https'],
    ]);
  });

  it("appends to the caller's x-forwarded-for", () => {
    const h = head(['X-Forwarded-For', '1.1.1.1, 2.2.2.2', 'x-forwarded-for', '3.3.3.3']);
    expect(pairs(h.headers)).toContainEqual(['x-forwarded-for', '1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3']);
  });

  it('reports the body length', () => {
    expect(head(['Content-Length', '42']).bodyLength).toBe(42);
    expect(head(['Content-Length', '0']).bodyLength).toBe(0);
    expect(head(['Transfer-Encoding', 'chunked']).bodyLength).toBe(-1);
  });

  it('refuses a second Host and differing Content-Lengths', () => {
    expect(upstreamRequestHead(['Host', 'a', 'host', 'a'], 'x', false)).toBe('duplicate_host');
    expect(upstreamRequestHead(['Content-Length', '1', 'content-length', '2'], 'x', false)).toBe(
      'conflicting_content_length',
    );
    const same = head(['Content-Length', '1', 'content-length', '1']);
    expect(pairs(same.headers).filter(([n]) => n.toLowerCase() === 'content-length')).toHaveLength(1);
  });

  it('vouch adds identity and license only when known', () => {
    const a: string[] = [];
    vouch(a, 'spiffe://example.org/x', 'lic_1');
    expect(a).toEqual(['x-portlicense-identity', 'spiffe://example.org/x', 'x-portlicense-license', 'lic_1']);
    const b: string[] = [];
    vouch(b, null, null);
    expect(b).toEqual([]);
  });
});

describe('callerResponseHeaders', () => {
  const raw = (flat: string[]): Buffer[] => flat.map((s) => Buffer.from(s, 'latin1'));

  it('drops hop-by-hop response headers and keeps repeated ones', () => {
    // prettier-ignore
    const out = callerResponseHeaders(
      raw([
        'Content-Type', 'text/plain',
        'Connection', 'keep-alive, X-Hop',
        'X-Hop', '1',
        'Keep-Alive', 'timeout=5',
        'Transfer-Encoding', 'chunked',
        'Proxy-Authenticate', 'Basic',
        'Set-Cookie', 'a=1',
        'Set-Cookie', 'b=2',
        'X-Latin', 'caf\u00e9',
      ]),
      false,
    );
    expect(pairs(out)).toEqual([
      ['Content-Type', 'text/plain'],
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
      ['X-Latin', 'caf\u00e9'],
    ]);
  });

  it('adds connection: close while draining', () => {
    expect(callerResponseHeaders(raw(['A', '1']), true)).toEqual(['A', '1', 'connection', 'close']);
  });
});

describe('targetAuthority', () => {
  it('reads the authority of an absolute-form target, lower-cased', () => {
    expect(targetAuthority('http://Orders.Internal:8443/api?x')).toBe('orders.internal:8443');
    expect(targetAuthority('https://a?x')).toBe('a');
    expect(targetAuthority('/api')).toBeNull();
    expect(targetAuthority('*')).toBeNull();
  });
});

describe('serializeHead', () => {
  it('writes a request head for a raw upstream socket', () => {
    expect(serializeHead('GET', '/ws?x=1', ['Host', 'o', 'upgrade', 'websocket']).toString('latin1')).toBe(
      'GET /ws?x=1 HTTP/1.1\r\nHost: o\r\nupgrade: websocket\r\n\r\n',
    );
  });
});
