/**
 * Benchmark upstreams, run as their own process: an HTTP server answering a small fixed body, and
 * a TCP sink that echoes a byte count back when the client half-closes (so bulk transfer time is
 * measured end to end in one direction). Prints "ready http=<port> tcp=<port>".
 */
import { createServer as createHttp } from 'node:http';
import { createServer as createTcp, type AddressInfo } from 'node:net';

const body = Buffer.from('{"ok":true}\n');
const http = createHttp({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.resume();
  req.on('end', () =>
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body),
  );
});
const tcp = createTcp({ allowHalfOpen: true }, (s) => {
  let n = 0;
  s.on('data', (c: Buffer) => (n += c.length));
  s.on('end', () => s.end(`${n}\n`));
  s.on('error', () => s.destroy());
});
http.listen(0, '127.0.0.1', () =>
  tcp.listen(0, '127.0.0.1', () => {
    const hp = (http.address() as AddressInfo).port;
    const tp = (tcp.address() as AddressInfo).port;
    process.stdout.write(`ready http=${hp} tcp=${tp}\n`);
  }),
);
