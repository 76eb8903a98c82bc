/**
 * The TLS front shared by the tcp and http ports: terminate TLS, require a client certificate that
 * chains to the CA bundle, refuse everything else by reason (SPEC §2.1), and hand each accepted
 * socket on with its identity (SPEC §2.2). Handshake first, with a deadline; only then does the
 * port dial anything.
 *
 * Node verifies the client chain after the handshake and, with `rejectUnauthorized`, destroys a
 * bad one silently (no event, no reason). So verification failures are classified here instead:
 * `rejectUnauthorized: false`, then `socket.authorized` / `authorizationError` are checked before
 * anyone reads from the socket, and a refused socket is destroyed without a byte of its application
 * data being read. Node offers no way to send a TLS alert at that point; the caller sees the
 * connection close.
 */
import { createHash, type X509Certificate } from 'node:crypto';
import type { Server as NetServer } from 'node:net';
import {
  createServer,
  DEFAULT_CIPHERS,
  type SecureContextOptions,
  type Server,
  type TLSSocket,
} from 'node:tls';
import type { Clock } from '../clock.js';
import type { HostPort, PortConfig } from '../config/types.js';
import { errorMessage, PortlicenseError } from '../errors.js';
import type { LogFields } from '../log.js';
import type { HandshakeErrorReason } from '../policy/types.js';
import { certificateIdentity } from './identity.js';
import type { TlsMaterial } from './tls-context.js';
import type { Peer, PortDeps } from './types.js';

export interface TlsListenerOptions {
  readonly deps: PortDeps;
  /**
   * A handshaken socket whose chain verified. `peer.identity` is null (with `identityError`) when
   * the certificate is not a usable SVID: the port denies it `bad_identity` its own way. Called
   * synchronously from 'secureConnection'; attach an 'error' listener before returning.
   */
  onConnection(socket: TLSSocket, peer: Peer): void;
}

/** Certificate verification errors that mean "outside its validity period". */
const EXPIRY_ERRORS = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/** Map Node's `authorizationError` code to a SPEC reason; every other chain failure is `untrusted_cert`. */
export function classifyAuthorizationError(code: string | null | undefined): HandshakeErrorReason {
  return code && EXPIRY_ERRORS.has(code) ? 'expired_cert' : 'untrusted_cert';
}

/** `::ffff:10.0.0.1` (an IPv4 caller on a dual-stack listener) → `10.0.0.1`; the caller's origin for logs and usage. */
export function originOf(address: string | undefined): string {
  if (address === undefined) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * Node's default cipher list with its TLS 1.3 suites reordered to AES-128-GCM, AES-256-GCM,
 * ChaCha20 (as Go's, BoringSSL's and Mozilla's configurations put them; haproxy and nginx use the
 * client's order, which from Go, curl and browsers puts AES-128 first). Node's servers choose by
 * their own order, whose first is AES-256-GCM with SHA-384: a third more AES rounds per record and
 * a handshake transcript and key schedule on SHA-512 blocks, which this CPU has no instructions for
 * (SHA-256 it has). Both are sound; the choice is cost. The TLS 1.2 part is node's, unchanged.
 */
export const SERVER_CIPHERS = ((): string => {
  const all = DEFAULT_CIPHERS.split(':');
  const v13 = all.filter((c) => c.startsWith('TLS_'));
  const first = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'].filter((c) => v13.includes(c));
  return [
    ...first,
    ...v13.filter((c) => !first.includes(c)),
    ...all.filter((c) => !c.startsWith('TLS_')),
  ].join(':');
})();

/**
 * The session ID context of a CA bundle: OpenSSL resumes a session (TLS 1.2 ticket or ID, TLS 1.3
 * PSK) only in the context it was made in. A resumed session skips chain verification, and with
 * `workers` every worker shares ticket keys that outlive a reload; keyed to the CA bundle, a
 * session made before the CA changed cannot resume after it, so a caller whose CA was rotated out
 * is refused as on a full handshake.
 */
export function sessionIdContext(ca: Buffer): string {
  return createHash('sha256').update(ca).digest('hex').slice(0, 32);
}

function secureOptions(m: TlsMaterial, ticketKeys: Buffer | undefined): SecureContextOptions {
  const o: SecureContextOptions = {
    ca: m.ca,
    cert: m.cert,
    key: m.key,
    minVersion: 'TLSv1.2',
    ciphers: SERVER_CIPHERS,
    sessionIdContext: sessionIdContext(m.ca),
  };
  if (ticketKeys !== undefined) o.ticketKeys = ticketKeys;
  return o;
}

/**
 * At most one line per key per interval; the next line says how many were suppressed. Refused
 * handshakes come from outside, so their logging must not be an amplifier.
 */
export class LogThrottle {
  private readonly windows = new Map<string, { start: number; suppressed: number }>();
  constructor(
    private readonly clock: Clock,
    private readonly intervalMs = 10_000,
  ) {}

  /** Whether to log now; when yes, `fields.suppressed` is set if lines were dropped since the last one. */
  allow(key: string, fields: LogFields): boolean {
    const now = this.clock.now();
    const w = this.windows.get(key);
    if (w === undefined) {
      this.windows.set(key, { start: now, suppressed: 0 });
      return true;
    }
    if (now - w.start < this.intervalMs) {
      w.suppressed++;
      return false;
    }
    if (w.suppressed > 0) fields.suppressed = w.suppressed;
    w.start = now;
    w.suppressed = 0;
    return true;
  }
}

/** Log levels per refusal: certificate problems are an operator's business, protocol noise is not. */
const LEVEL: Record<HandshakeErrorReason, 'warn' | 'debug'> = {
  no_client_cert: 'warn',
  untrusted_cert: 'warn',
  expired_cert: 'warn',
  handshake_timeout: 'debug',
  tls_error: 'debug',
};

const ignore = (): void => {};

/**
 * Create (not bind) the TLS server of one port. It follows `deps.tls` reloads (new connections
 * get the new material, open ones keep theirs), caps concurrent connections at
 * `port.maxConnections` (handshaking ones included), and counts every refusal in
 * `telemetry.handshakeError`.
 */
export function createTlsListener(opts: TlsListenerOptions): Server {
  const deps = opts.deps;
  const { telemetry, log, clock, trustDomains } = deps;
  const throttle = new LogThrottle(clock);

  const server = createServer({
    ...secureOptions(deps.tls.current(), deps.ticketKeys),
    requestCert: true,
    rejectUnauthorized: false,
    // An absolute deadline in Node (bytes trickled in do not extend it).
    handshakeTimeout: deps.handshakeTimeout,
    // Until the handshake is done: a peer that closes early is seen at once, not at the deadline.
    // Ports that splice bytes turn half-open on for their accepted sockets.
    allowHalfOpen: false,
    // Nagle would hold an answer written right after the session tickets until the caller ACKs
    // them (with delayed ACK, up to 40 ms): every first answer on a new connection.
    noDelay: true,
  });
  server.maxConnections = deps.port.maxConnections;
  // Accept errors (EMFILE...) arrive here once listening; without a listener they would crash the process.
  server.on('error', (err) => {
    if (server.listening) log.error('listener error', { error: errorMessage(err) });
  });

  const refused = (reason: HandshakeErrorReason, origin: string, detail: string): void => {
    telemetry.handshakeError(reason);
    const level = LEVEL[reason];
    const fields: LogFields = { reason, origin, detail };
    if (throttle.allow(reason, fields)) log[level]('TLS handshake refused', fields);
  };

  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    const origin = originOf(socket.remoteAddress); // gone once destroyed
    // Node does not destroy the socket after a handshake error (nor after its timeout).
    socket.on('error', ignore);
    socket.destroy();
    const timeout = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT';
    refused(timeout ? 'handshake_timeout' : 'tls_error', origin, err.code ?? err.message);
  });

  server.on('secureConnection', (socket: TLSSocket) => {
    const origin = originOf(socket.remoteAddress);
    const cert = socket.getPeerX509Certificate();
    let reason: HandshakeErrorReason | null = null;
    let detail = '';
    if (cert === undefined) {
      reason = 'no_client_cert';
      detail = 'the client sent no certificate';
    } else if (!socket.authorized) {
      detail = String(socket.authorizationError);
      reason = classifyAuthorizationError(detail);
    } else if (socket.isSessionReused() && !withinValidity(cert, clock.now())) {
      // A resumed session skips verification; its certificate may have expired since.
      reason = 'expired_cert';
      detail = 'CERT_HAS_EXPIRED (resumed session)';
    }
    if (reason !== null) {
      socket.on('error', ignore);
      socket.destroy();
      refused(reason, origin, detail);
      return;
    }
    const id = certificateIdentity(cert!, trustDomains);
    if (id.error !== undefined) {
      const fields: LogFields = { origin, detail: id.error };
      if (throttle.allow('bad_identity', fields))
        log.warn('client certificate has no usable identity', fields);
    }
    opts.onConnection(socket, { identity: id.identity ?? null, identityError: id.error ?? null, origin });
  });

  server.on('drop', (data?: { remoteAddress?: string }) => {
    const fields: LogFields = {
      origin: originOf(data?.remoteAddress),
      maxConnections: server.maxConnections,
    };
    if (throttle.allow('max_connections', fields))
      log.warn('connection refused: listener at maxConnections', fields);
  });

  const unsubscribe = deps.tls.onReload((m) => {
    try {
      server.setSecureContext(secureOptions(m, deps.ticketKeys));
    } catch (err) {
      log.error('cannot use reloaded TLS material; keeping the previous', { error: errorMessage(err) });
    }
  });
  server.once('close', unsubscribe);
  return server;
}

function withinValidity(cert: X509Certificate, now: number): boolean {
  return Date.parse(cert.validFrom) <= now && now < Date.parse(cert.validTo);
}

const LISTEN_HINTS: Record<string, string> = {
  EADDRINUSE: 'address already in use: another process, or another port of this config, is bound to it',
  EACCES: 'permission denied: ports below 1024 need privileges',
  EADDRNOTAVAIL: 'address not available: no local interface has that address',
};

/**
 * Bind `server` to `port.listen`. Rejects with PortlicenseError('LISTEN_FAILED') naming the listener
 * (`label`, default `port <key>`) and the address; resolves the bound address (the real port when 0
 * was asked for).
 */
export function listenOn(
  server: NetServer,
  port: Pick<PortConfig, 'key' | 'listen'>,
  label = `port ${port.key}`,
): Promise<HostPort> {
  const { host, port: number } = port.listen;
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      const why =
        err.code !== undefined && err.code in LISTEN_HINTS
          ? `${err.code} (${LISTEN_HINTS[err.code]})`
          : err.message;
      reject(
        new PortlicenseError('LISTEN_FAILED', `${label}: cannot listen on ${host}:${number}: ${why}`, {
          cause: err,
        }),
      );
    };
    const onListening = (): void => {
      server.off('error', onError);
      const a = server.address();
      resolve(
        a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : { host, port: number },
      );
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host, port: number });
  });
}
