/**
 * The sample upstreams `portlicense dev` puts behind the sidecar: an HTTP service that answers
 * with what it received (so the identity and license headers the sidecar adds are visible), and a
 * TCP echo service.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type AddressInfo } from 'node:net';

export interface SampleUpstreams {
  http: { host: string; port: number };
  tcp: { host: string; port: number };
  close(): Promise<void>;
}

export async function startSampleUpstreams(): Promise<SampleUpstreams> {
  const http: HttpServer = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify(
        {
          service: 'orders (sample upstream)',
          method: req.method,
          url: req.url,
          identity: req.headers['x-portlicense-identity'] ?? null,
          license: req.headers['x-portlicense-license'] ?? null,
          forwardedFor: req.headers['x-forwarded-for'] ?? null,
          bodyBytes: Buffer.concat(chunks).length,
        },
        null,
        2,
      );
      res.writeHead(200, { 'content-type': 'application/json' }).end(body + '\n');
    });
  });
  const tcp: TcpServer = createTcpServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  const listen = (srv: HttpServer | TcpServer): Promise<{ host: string; port: number }> =>
    new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () =>
        resolve({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port }),
      );
    });
  const [h, t] = await Promise.all([listen(http), listen(tcp)]);
  return {
    http: h,
    tcp: t,
    close: async () => {
      http.closeAllConnections();
      await Promise.all([
        new Promise<void>((r) => http.close(() => r())),
        new Promise<void>((r) => tcp.close(() => r())),
      ]);
    },
  };
}

/** `preferred` when it can be bound on 127.0.0.1, otherwise a free port chosen by the OS. */
export async function freePort(preferred: number): Promise<number> {
  const tryBind = (port: number): Promise<number | null> =>
    new Promise((resolve) => {
      const s = createTcpServer();
      s.once('error', () => resolve(null));
      s.listen(port, '127.0.0.1', () => {
        const got = (s.address() as AddressInfo).port;
        s.close(() => resolve(got));
      });
    });
  return (await tryBind(preferred)) ?? (await tryBind(0))!;
}
