/**
 * The admin endpoint on its own port, never on a proxy listener (ghostunnel `--status`,
 * linkerd2-proxy's admin server): /metrics, /healthz, /readyz and, for the sidecar, /status.
 * Plain HTTP, meant for loopback; short timeouts so a stuck scraper holds nothing for long.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { isLoopbackHost } from '../config/schema.js';
import type { HostPort } from '../config/types.js';
import { errorMessage, PortlicenseError } from '../errors.js';
import type { Logger } from '../log.js';

export interface Readiness {
  ok: boolean;
  /** Why not ready, in words an operator can act on; empty when ready. */
  reasons: string[];
}

export interface AdminServerOptions {
  listen: HostPort;
  registry: Registry;
  ready: () => Readiness;
  /** Body of GET /status; without it /status is a 404 (the authority has none). */
  status?: () => unknown;
  log: Logger;
}

export interface AdminServer {
  /** The bound address (the real port when `listen.port` was 0). */
  readonly address: HostPort;
  /** Stop listening and cut open admin connections. Idempotent. */
  close(): Promise<void>;
}

const ROUTES = ['/metrics', '/healthz', '/readyz', '/status'] as const;

/** Bind the admin server. Rejects with PortlicenseError('LISTEN_FAILED') naming the address. */
export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const { registry, ready, status, log } = opts;
  const server = createServer(
    {
      // Admin requests are tiny; a client that dawdles over its head is dropped.
      headersTimeout: 5_000,
      requestTimeout: 10_000,
      keepAliveTimeout: 5_000,
      maxHeaderSize: 8 * 1024,
    },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        log.error('admin request failed', { path: req.url, err });
        if (!res.headersSent) sendJson(res, 500, { error: 'internal', detail: errorMessage(err) });
        else res.destroy();
      });
    },
  );
  // Idle admin sockets (a scraper's keep-alive) do not live forever.
  server.setTimeout(30_000, (socket) => socket.destroy());
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    else socket.destroy();
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const known =
      (ROUTES as readonly string[]).includes(path) && (path !== '/status' || status !== undefined);
    if (!known) {
      sendJson(res, 404, {
        error: 'not_found',
        detail: `no ${path}; try ${ROUTES.filter((r) => r !== '/status' || status).join(', ')}`,
      });
      return;
    }
    // GET, and HEAD which Node answers with the same headers and no body.
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      sendJson(res, 405, { error: 'method_not_allowed', detail: `${path} answers GET only` });
      return;
    }
    switch (path) {
      case '/metrics': {
        const text = await registry.metrics();
        send(res, 200, registry.contentType, text);
        return;
      }
      case '/healthz':
        send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
        return;
      case '/readyz': {
        const r = ready();
        sendJson(res, r.ok ? 200 : 503, { ready: r.ok, reasons: r.reasons });
        return;
      }
      default:
        sendJson(res, 200, status?.(), true);
    }
  }

  const address = await new Promise<HostPort>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(
        new PortlicenseError(
          'LISTEN_FAILED',
          `admin server cannot listen on ${formatHostPort(opts.listen)}: ${errorMessage(err)}`,
          { cause: err },
        ),
      );
    };
    server.once('error', onError);
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', onError);
      const a = server.address() as AddressInfo;
      resolve({ host: a.address, port: a.port });
    });
  });
  server.on('error', (err) => log.error('admin server error', { err }));
  log.info('admin server listening', { address: formatHostPort(address) });
  if (status !== undefined && !isLoopbackHost(address.host))
    log.warn('the admin server listens beyond loopback', {
      address: formatHostPort(address),
      detail:
        '/status lists license subjects, caller identities, origins and recent denials, in plain HTTP: ' +
        'make sure only your scraper and operators can reach this address',
    });

  let closing: Promise<void> | undefined;
  return {
    address,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

/** `127.0.0.1:9901`, `[::1]:9901`. */
export function formatHostPort(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function send(res: ServerResponse, code: number, type: string, body: string): void {
  res.writeHead(code, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

function sendJson(res: ServerResponse, code: number, body: unknown, pretty = false): void {
  send(
    res,
    code,
    'application/json; charset=utf-8',
    JSON.stringify(body ?? null, null, pretty ? 2 : undefined) + '\n',
  );
}
