import { connect } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { MemorySink, createLogger, silentLogger } from '../../src/log.js';
import { PortlicenseError } from '../../src/errors.js';
import {
  formatHostPort,
  startAdminServer,
  type AdminServer,
  type AdminServerOptions,
  type Readiness,
} from '../../src/telemetry/admin-server.js';

const servers: AdminServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(over: Partial<AdminServerOptions> = {}): Promise<{ server: AdminServer; base: string }> {
  const server = await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    registry: new Registry(),
    ready: () => ({ ok: true, reasons: [] }),
    status: () => ({ node: 'node-a', ports: [] }),
    log: silentLogger,
    ...over,
  });
  servers.push(server);
  return { server, base: `http://127.0.0.1:${server.address.port}` };
}

/** Send raw bytes and collect the whole answer (the server closes the connection). */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (out += d));
    s.on('end', () => resolve(out));
    s.on('error', reject);
    s.write(bytes);
  });
}

describe('admin server', () => {
  it('binds to the requested address and reports the real port', async () => {
    const { server } = await start();
    expect(server.address.host).toBe('127.0.0.1');
    expect(server.address.port).toBeGreaterThan(0);
  });

  it('/healthz answers ok while the process runs', async () => {
    const { base } = await start({ ready: () => ({ ok: false, reasons: ['no bundle'] }) });
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok\n');
  });

  it('/readyz is 200 when ready and 503 with the reasons when not', async () => {
    let r: Readiness = { ok: true, reasons: [] };
    const { base } = await start({ ready: () => r });
    let res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ready: true, reasons: [] });

    r = { ok: false, reasons: ['last successful sync 11m ago exceeds maxStaleness 10m', 'no valid bundle'] };
    res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await res.json()).toEqual({ ready: false, reasons: r.reasons });
  });

  it('/status serves the status JSON, computed per request', async () => {
    let n = 0;
    const { base } = await start({ status: () => ({ node: 'node-a', calls: ++n }) });
    const res = await fetch(`${base}/status?verbose=1`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toEqual({ node: 'node-a', calls: 1 });
    expect(await (await fetch(`${base}/status`)).json()).toEqual({ node: 'node-a', calls: 2 });
  });

  it('/metrics serves the registry in its content type', async () => {
    const registry = new Registry();
    const { base } = await start({ registry });
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(registry.contentType);
  });

  it('unknown paths are a 404 JSON error naming the routes; without status(), /status is unknown', async () => {
    const { base } = await start();
    let res = await fetch(`${base}/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      error: 'not_found',
      detail: 'no /nope; try /metrics, /healthz, /readyz, /status',
    });

    const { base: authority } = await start({ status: undefined });
    res = await fetch(`${authority}/status`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { detail: string }).detail).toBe(
      'no /status; try /metrics, /healthz, /readyz',
    );
  });

  it('answers non-GET methods with 405 and Allow, and HEAD like GET without a body', async () => {
    const { base } = await start();
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const res = await fetch(`${base}/metrics`, { method });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD');
      expect(await res.json()).toMatchObject({ error: 'method_not_allowed' });
    }
    const head = await fetch(`${base}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('turns a failing status() into a 500 JSON error and logs it', async () => {
    const sink = new MemorySink();
    const { base } = await start({
      status: () => {
        throw new Error('boom');
      },
      log: createLogger({ sink }),
    });
    const res = await fetch(`${base}/status`);
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: 'internal', detail: 'boom' });
    expect(sink.lines.some((l) => l.msg === 'admin request failed')).toBe(true);
  });

  it('rejects malformed requests with 400 and oversize heads with 431', async () => {
    const { server } = await start();
    expect(await raw(server.address.port, 'GARBAGE\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    const big = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(16 * 1024)}\r\n\r\n`;
    expect(await raw(server.address.port, big)).toMatch(/^HTTP\/1\.1 431 /);
  });

  it('a listen failure rejects with LISTEN_FAILED naming the address', async () => {
    const { server } = await start();
    const err: unknown = await startAdminServer({
      listen: { host: '127.0.0.1', port: server.address.port },
      registry: new Registry(),
      ready: () => ({ ok: true, reasons: [] }),
      log: silentLogger,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortlicenseError);
    expect((err as PortlicenseError).code).toBe('LISTEN_FAILED');
    expect((err as Error).message).toContain(`127.0.0.1:${server.address.port}`);
    expect((err as Error).message).toContain('EADDRINUSE');
  });

  it('close() is idempotent, cuts keep-alive connections and frees the port', async () => {
    const { server, base } = await start();
    await fetch(`${base}/healthz`); // leaves a keep-alive connection open
    await Promise.all([server.close(), server.close()]);
    await server.close();
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });

  it('formats IPv6 addresses with brackets', () => {
    expect(formatHostPort({ host: '::1', port: 9901 })).toBe('[::1]:9901');
    expect(formatHostPort({ host: '127.0.0.1', port: 9901 })).toBe('127.0.0.1:9901');
  });
});
