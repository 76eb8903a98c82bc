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
import { serializeResponseHead } from '../../src/dataplane/http-upgrade.js';
import { httpDate } from '../../src/dataplane/http-responses.js';

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

  it('drops the fields that claim another method or URL, in any spelling', () => {
    // prettier-ignore
    const h = head([
      'Host', 'o',
      'X-HTTP-Method-Override', 'DELETE',
      'x_http_method', 'PUT',
      'X-Method-Override', 'PATCH',
      'X-Original-URL', '/admin',
      'x-rewrite_url', '/admin',
      'X-HTTP-Method-Overrides', 'kept: not the name',
    ]);
    expect(pairs(h.headers)).toEqual([
      ['Host', 'o'],
      ['X-HTTP-Method-Overrides', 'kept: not the name'],
      ['x-forwarded-for', '10.1.2.3'],
      ['x-forwarded-proto', 'https'],
    ]);
  });

  it('never lets Connection remove what frames and routes the message: Content-Length, Host', () => {
    // A removed Content-Length would send the body up unframed, read there as a second request.
    // prettier-ignore
    const h = head([
      'Host', 'o',
      'Connection', 'Content-Length, host , TRANSFER-ENCODING, X-Hop',
      'Content-Length', '3',
      'X-Hop', '1',
    ]);
    expect(pairs(h.headers)).toEqual([
      ['Host', 'o'],
      ['Content-Length', '3'],
      ['x-forwarded-for', '10.1.2.3'],
      ['x-forwarded-proto', 'https'],
    ]);
    expect(h.host).toBe('o');
    expect(h.bodyLength).toBe(3);
  });

  it('keeps Trailer only when the body goes on with its trailers, and not when Connection names it', () => {
    const raw = ['Host', 'o', 'Trailer', 'X-Sum', 'Transfer-Encoding', 'chunked'];
    const fwd = (r: string[], trailers: boolean): Array<[string, string]> => {
      const h = upstreamRequestHead(r, '10.1.2.3', false, trailers);
      if (typeof h === 'string') throw new Error(h);
      return pairs(h.headers).filter(([n]) => n !== 'x-forwarded-for' && n !== 'x-forwarded-proto');
    };
    expect(fwd(raw, true)).toEqual([
      ['Host', 'o'],
      ['Trailer', 'X-Sum'],
    ]);
    expect(fwd(raw, false)).toEqual([['Host', 'o']]);
    expect(fwd([...raw, 'Connection', 'trailer'], true)).toEqual([['Host', 'o']]);
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

  it('drops our headers spelled with underscores, in any case (CGI/WSGI/PHP read them as ours)', () => {
    // prettier-ignore
    const h = head([
      'Host', 'o',
      'x_portlicense_identity', 'forged',
      'X_PortLicense_Identity', 'forged',
      'X-PORTLICENSE_IDENTITY', 'forged',
      'x_portlicense-Identity', 'forged',
      'x-portlicense_license', 'forged',
      'X_PORTLICENSE_LICENSE', 'forged',
      'x_PortLicense_License', 'forged',
      'X-PortLicense-Anything_Else', 'forged',
      'X_Forwarded_Proto', 'http',
      'x-forwarded_proto', 'http',
      'X_Forwarded_For', '6.6.6.6',
      'Proxy', 'http://evil:1',
      'Proxy_Authorization', 'p',
      'X-Kept_Underscore', 'k',
      'x_portlicense', 'k',
      'X-PortLicenseX', 'k',
      'Proxyish', 'k',
    ]);
    expect(pairs(h.headers)).toEqual([
      ['Host', 'o'],
      ['X-Kept_Underscore', 'k'],
      ['x_portlicense', 'k'],
      ['X-PortLicenseX', 'k'],
      ['Proxyish', 'k'],
      ['x-forwarded-for', '10.1.2.3'],
      ['x-forwarded-proto', 'https'],
    ]);
  });

  it('drops our headers on an upgrade request too, underscores included', () => {
    const h = head(
      [
        'Host',
        'o',
        'Connection',
        'upgrade',
        'Upgrade',
        'websocket',
        'X_PortLicense_Identity',
        'f',
        'x-portlicense_license',
        'f',
      ],
      true,
    );
    expect(pairs(h.headers).filter(([n]) => /^x[-_]portlicense/i.test(n))).toEqual([]);
  });

  it('does not mistake other headers for framing or hop-by-hop ones', () => {
    // Underscores are folded only for the proxy's own names: Content_Length is not a length.
    const h = head([
      'Host',
      'o',
      'Content_Length',
      '5',
      'Transfer_Encoding',
      'chunked',
      'Hostx',
      'h',
      'TE_',
      't',
    ]);
    expect(h.bodyLength).toBe(0);
    expect(pairs(h.headers).map(([n]) => n)).toEqual([
      'Host',
      'Content_Length',
      'Transfer_Encoding',
      'Hostx',
      'TE_',
      'x-forwarded-for',
      'x-forwarded-proto',
    ]);
    expect(head(['CONTENT-LENGTH', '7']).bodyLength).toBe(7);
    expect(head(['transfer-ENCODING', 'chunked']).bodyLength).toBe(-1);
    expect(upstreamRequestHead(['HOST', 'a', 'host', 'b'], 'x', false)).toBe('duplicate_host');
  });

  it('accepts only Upgrade: websocket on an upgrade request', () => {
    for (const value of ['websocket', 'WebSocket', ' WEBSOCKET ']) {
      const h = head(['Host', 'o', 'Connection', 'Upgrade', 'Upgrade', value], true);
      expect(pairs(h.headers)).toContainEqual(['upgrade', 'websocket']);
    }
    for (const raw of [
      ['Upgrade', 'h2c'],
      ['Upgrade', 'websocket, h2c'],
      ['Upgrade', 'h2c, websocket'],
      ['Upgrade', 'websocket/13'],
      ['Upgrade', 'websockets'],
      ['Upgrade', ''],
      ['Upgrade', 'websocket', 'upgrade', 'websocket'],
      ['Upgrade', 'websocket', 'UPGRADE', 'h2c'],
      [],
    ]) {
      expect(upstreamRequestHead(['Host', 'o', 'Connection', 'Upgrade', ...raw], 'x', true), raw.join()).toBe(
        'unsupported_upgrade',
      );
    }
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
  it('keeps Trailer only when the body goes on with its trailers', () => {
    const raw = ['Trailer', 'X-T', 'A', '1'];
    expect(callerResponseHeaders(raw, false, null, true)).toEqual(['Trailer', 'X-T', 'A', '1']);
    expect(callerResponseHeaders(raw, false)).toEqual(['A', '1']);
  });

  it("takes Node's latin1 strings as well as undici's Buffers", () => {
    expect(callerResponseHeaders(['A', 'caf\u00e9', 'Connection', 'keep-alive'], true)).toEqual([
      'A',
      'caf\u00e9',
      'connection',
      'close',
    ]);
  });

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

  it("keeps a response's Content-Length when its Connection header names it", () => {
    const out = callerResponseHeaders(
      raw(['Connection', 'content-length, x-hop', 'Content-Length', '5', 'X-Hop', '1']),
      false,
    );
    expect(pairs(out)).toEqual([['Content-Length', '5']]);
  });

  it('adds connection: close while draining', () => {
    expect(callerResponseHeaders(raw(['A', '1']), true)).toEqual(['A', '1', 'connection', 'close']);
  });

  it('adds the Date it is given to a response without one, and only then', () => {
    const now = 'Sun, 29 Nov 2026 05:25:18 GMT';
    const upstreams = 'Mon, 02 Jan 2006 15:04:05 GMT';
    expect(callerResponseHeaders(raw(['A', '1']), false, now)).toEqual(['A', '1', 'date', now]);
    expect(callerResponseHeaders(raw(['DATE', upstreams]), true, now)).toEqual([
      'DATE',
      upstreams,
      'connection',
      'close',
    ]);
    // A Date the Connection header names is hop-by-hop: dropped, and replaced.
    expect(callerResponseHeaders(raw(['Connection', 'Date', 'Date', upstreams]), false, now)).toEqual([
      'date',
      now,
    ]);
    expect(callerResponseHeaders(raw(['A', '1']), false)).toEqual(['A', '1']);
  });
});

describe('httpDate', () => {
  it('formats an IMF-fixdate, the same within a second and the next one after it', () => {
    const t = Date.UTC(2026, 10, 29, 5, 25, 18, 0);
    expect(httpDate(t)).toBe('Sun, 29 Nov 2026 05:25:18 GMT');
    expect(httpDate(t + 999)).toBe('Sun, 29 Nov 2026 05:25:18 GMT');
    expect(httpDate(t + 1000)).toBe('Sun, 29 Nov 2026 05:25:19 GMT');
    expect(httpDate(Date.UTC(2027, 0, 1, 0, 0, 0))).toBe('Fri, 01 Jan 2027 00:00:00 GMT');
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

describe('serializeResponseHead', () => {
  it('writes a response head for a raw caller socket, latin1 as parsed', () => {
    const head = serializeResponseHead(101, 'Switching Protocols', [
      'Upgrade',
      'websocket',
      'X-Latin',
      'caf\u00e9',
    ]);
    expect(head.toString('latin1')).toBe(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX-Latin: caf\u00e9\r\n\r\n',
    );
    expect(head.length).toBe(head.toString('latin1').length);
  });
});
