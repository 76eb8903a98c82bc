/**
 * Node's own HTTP/1.1 parser (llhttp inside http.Server and the http client) as an oracle for the
 * differential tests: raw bytes go over a real socket on 127.0.0.1 and we record what node made of
 * them — each request or response it emitted (head, body, whether the body completed) and the
 * parse error that ended the connection, if any.
 */
import {
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingMessage,
  type Server as HttpServer,
} from 'node:http';
import {
  connect,
  createServer as createNetServer,
  type AddressInfo,
  type Server,
  type Socket,
} from 'node:net';

/** One message node emitted, with its body as latin1 text (byte-exact). */
export interface NodeMessage {
  method: string;
  url: string;
  status: number;
  version: string;
  rawHeaders: string[];
  /** 'request' (normal), 'upgrade' or 'connect' (node handed the socket over). */
  kind: 'request' | 'upgrade' | 'connect';
  body: string;
  complete: boolean;
  /** Server side: whether node would keep the connection open after this request. */
  keepAlive: boolean;
}

/** What node did with one connection's bytes. */
export interface NodeOutcome {
  messages: NodeMessage[];
  /** llhttp's error code (HPE_...) if a parse error ended the connection. */
  error: string | undefined;
}

interface Pending {
  outcome: NodeOutcome;
  serverClosed: boolean;
  clientClosed: boolean;
  done: () => void;
}

/** An http.Server that records what it parses, driven by raw client connections. */
export interface RequestOracle {
  /** Send each byte string on its own connection (half-closed after writing), `concurrency` at a time. */
  run(cases: readonly Buffer[], concurrency?: number): Promise<NodeOutcome[]>;
  close(): Promise<void>;
}

/** Start node's parser as a request oracle. `requireHostHeader` is off: Host is the proxy's rule, not llhttp's. */
export async function startRequestOracle(maxHeaderSize: number): Promise<RequestOracle> {
  const byPort = new Map<number, Pending>();
  const server: HttpServer = createHttpServer({
    maxHeaderSize,
    requireHostHeader: false,
    insecureHTTPParser: false,
    keepAliveTimeout: 10_000,
  });
  const record = (req: IncomingMessage, kind: NodeMessage['kind']): NodeMessage | undefined => {
    const p = byPort.get(req.socket.remotePort ?? -1);
    if (!p) return undefined;
    const m: NodeMessage = {
      method: req.method ?? '',
      url: req.url ?? '',
      status: 0,
      version: req.httpVersion,
      rawHeaders: req.rawHeaders,
      kind,
      body: '',
      complete: false,
      keepAlive: false,
    };
    p.outcome.messages.push(m);
    return m;
  };
  server.on('connection', (s: Socket) => {
    // The client registers its port on 'connect', which may run after this: look it up at close.
    const remote = s.remotePort ?? -1;
    s.on('close', () => {
      const p = byPort.get(remote);
      if (!p) return;
      p.serverClosed = true;
      if (p.clientClosed) p.done();
    });
  });
  server.on('request', (req: IncomingMessage, res) => {
    const m = record(req, 'request');
    if (m) m.keepAlive = res.shouldKeepAlive;
    req.on('data', (c: Buffer) => m && (m.body += c.toString('latin1')));
    req.on('end', () => {
      if (m) m.complete = true;
      res.end('ok');
    });
  });
  const hijacked = (kind: 'upgrade' | 'connect') => (req: IncomingMessage, socket: Socket) => {
    record(req, kind);
    socket.destroy();
  };
  server.on('upgrade', hijacked('upgrade'));
  server.on('connect', hijacked('connect'));
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const p = byPort.get(socket.remotePort ?? -1);
    if (p && p.outcome.error === undefined) p.outcome.error = err.code ?? err.message;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const one = (bytes: Buffer): Promise<NodeOutcome> =>
    new Promise((resolve) => {
      const outcome: NodeOutcome = { messages: [], error: undefined };
      const c = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      const p: Pending = {
        outcome,
        serverClosed: false,
        clientClosed: false,
        done: () => {
          byPort.delete(c.localPort ?? -1);
          resolve(outcome);
        },
      };
      c.on('connect', () => {
        byPort.set(c.localPort!, p);
        c.end(bytes);
      });
      c.on('data', () => {});
      c.on('error', () => {});
      c.on('close', () => {
        p.clientClosed = true;
        if (p.serverClosed) p.done();
      });
    });

  return {
    run: async (cases, concurrency = 32) => {
      const out: NodeOutcome[] = new Array<NodeOutcome>(cases.length);
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < cases.length) {
          const i = next++;
          out[i] = await one(cases[i]!);
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, cases.length) }, worker));
      return out;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Node's http client as a response oracle: a raw server writes the bytes, http.request reads them. */
export interface ResponseOracle {
  /** For each case, one request with `method`; the server answers with `bytes` and half-closes. */
  run(cases: ReadonlyArray<{ method: string; bytes: Buffer }>, concurrency?: number): Promise<NodeOutcome[]>;
  close(): Promise<void>;
}

/** Start node's client parser as a response oracle. */
export async function startResponseOracle(maxHeaderSize: number): Promise<ResponseOracle> {
  const answers = new Map<string, Buffer>();
  const server: Server = createNetServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    let head = '';
    const onData = (c: Buffer): void => {
      head += c.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      const id = /x-case: (\d+)/i.exec(head)?.[1] ?? '';
      s.end(answers.get(id) ?? Buffer.alloc(0));
    };
    s.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let seq = 0;

  const one = (method: string, bytes: Buffer): Promise<NodeOutcome> =>
    new Promise((resolve) => {
      const id = String(seq++);
      answers.set(id, bytes);
      const outcome: NodeOutcome = { messages: [], error: undefined };
      let settled = false;
      const finish = (): void => {
        if (settled) return;
        settled = true;
        answers.delete(id);
        resolve(outcome);
      };
      const req = httpRequest({
        host: '127.0.0.1',
        port,
        method,
        path: '/',
        headers: { 'x-case': id, connection: 'close' },
        maxHeaderSize,
        insecureHTTPParser: false,
        agent: false,
      });
      req.on('information', (info) => {
        outcome.messages.push({
          method,
          url: '',
          status: info.statusCode,
          version: info.httpVersion,
          rawHeaders: info.rawHeaders,
          kind: 'request',
          body: '',
          complete: true,
          keepAlive: true,
        });
      });
      req.on('upgrade', (res: IncomingMessage, socket: Socket) => {
        outcome.messages.push({
          method,
          url: '',
          status: res.statusCode ?? 0,
          version: res.httpVersion,
          rawHeaders: res.rawHeaders,
          kind: 'upgrade',
          body: '',
          complete: true,
          keepAlive: true,
        });
        socket.destroy();
        finish();
      });
      req.on('response', (res: IncomingMessage) => {
        const m: NodeMessage = {
          method,
          url: '',
          status: res.statusCode ?? 0,
          version: res.httpVersion,
          rawHeaders: res.rawHeaders,
          kind: 'request',
          body: '',
          complete: false,
          keepAlive: false,
        };
        outcome.messages.push(m);
        res.on('data', (c: Buffer) => (m.body += c.toString('latin1')));
        res.on('end', () => {
          m.complete = true;
        });
        res.on('error', () => {});
        res.on('close', () => setImmediate(finish));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (outcome.error === undefined) outcome.error = err.code ?? err.message;
        setImmediate(finish);
      });
      req.on('close', () => setImmediate(finish));
      req.end();
    });

  return {
    run: async (cases, concurrency = 32) => {
      const out: NodeOutcome[] = new Array<NodeOutcome>(cases.length);
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < cases.length) {
          const i = next++;
          out[i] = await one(cases[i]!.method, cases[i]!.bytes);
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, cases.length) }, worker));
      return out;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
