/**
 * Outbound listeners (SPEC §5 `outbound:`): the sidecar carries its own service's calls to licensed
 * ports elsewhere, so the application never loads a certificate, verifies a server or rotates a
 * key. accept (plaintext, loopback) -> dial `target` -> mTLS handshake with the sidecar's own
 * certificate -> verify the server (outbound-verify.ts) -> splice (splice.ts) -> close.
 *
 * Nothing the app sends reaches the network before the server has proved who it is. A connection
 * that fails (target down, TLS failure, wrong or untrusted server) is closed toward the app with a
 * TCP reset, counted in `portlicense_outbound_connections_total{name,result}` and logged with what
 * the server presented. The licence check itself happens at the remote sidecar: a denied HTTP
 * request comes back as its 403, byte for byte, and a denied or revoked TCP flow is closed there.
 *
 * Certificates follow the TlsMaterialStore: a reload swaps the secure context used for the next
 * dial, while open connections keep the one they were made with.
 */
import { Drainer } from './drain.js';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import {
  connect as tlsConnect,
  createSecureContext,
  type ConnectionOptions,
  type SecureContext,
  type TLSSocket,
} from 'node:tls';
import type { Clock } from '../clock.js';
import type { HostPort, OutboundConfig } from '../config/types.js';
import { errorMessage } from '../errors.js';
import type { LogFields, Logger } from '../log.js';
import { OUTBOUND_RESULTS, type OutboundResult, type OutboundTelemetry } from '../telemetry/metrics.js';
import type { StatusOutboundInput } from '../telemetry/status.js';
import { listenOn, LogThrottle } from './handshake.js';
import { serverVerifier, type PresentedCertificate, type ServerVerifier } from './outbound-verify.js';
import { Splice } from './splice.js';
import type { TlsMaterial, TlsMaterialStore } from './tls-context.js';

export interface OutboundDeps {
  readonly outbound: OutboundConfig;
  /** The sidecar's own certificate, key and CA: its identity toward the target, and the trust anchor. */
  readonly tls: TlsMaterialStore;
  readonly clock: Clock;
  /** `portlicense_outbound_connections_total` cells of this entry (`metrics.outbound(name)`). */
  readonly telemetry: OutboundTelemetry;
  readonly log: Logger;
  /** Deadline for the target's TLS handshake, ms (the sidecar's `tls.handshakeTimeout`). */
  readonly handshakeTimeout: number;
}

/** The last failed connection of an outbound entry. */
export interface OutboundFailure {
  /** Epoch ms. */
  readonly at: number;
  readonly result: Exclude<OutboundResult, 'ok'>;
  readonly detail: string;
  /** The server's certificate, when the failure was about it. */
  readonly presented: PresentedCertificate | null;
}

export interface OutboundStats {
  /** Connections per result since the sidecar started (the same counts as the metric). */
  readonly results: Readonly<Record<OutboundResult, number>>;
  readonly activeConnections: number;
  readonly lastError: OutboundFailure | null;
}

/** An outbound entry as /status shows it: its config, where it is bound, and its stats. */
export function outboundStatusInput(
  o: OutboundConfig,
  s: OutboundStats,
  boundAt: HostPort | undefined,
): StatusOutboundInput {
  const e = s.lastError;
  return {
    name: o.name,
    listen: boundAt ?? o.listen,
    target: o.target,
    serverId: o.serverId,
    activeConnections: s.activeConnections,
    connections: s.results,
    lastError:
      e === null
        ? null
        : {
            at: e.at,
            result: e.result,
            detail: e.detail,
            ...(e.presented ? { presentedUris: e.presented.uris } : {}),
          },
  };
}

export interface OutboundListener {
  readonly outbound: OutboundConfig;
  /** Bind; rejects with PortlicenseError('LISTEN_FAILED') naming the entry and address. Resolves the bound address. */
  listen(): Promise<HostPort>;
  activeConnections(): number;
  stats(): OutboundStats;
  /** Stop accepting; let open connections finish until `deadlineMs` passes, then cut them. Idempotent. */
  drain(deadlineMs: number): Promise<void>;
}

const ignore = (): void => {};
const noHostnameCheck = (): undefined => undefined;

/** Shared by the connections of one outbound entry. */
interface ListenerState {
  readonly deps: OutboundDeps;
  readonly verify: ServerVerifier;
  readonly throttle: LogThrottle;
  /** The secure context for the next dial (follows TLS reloads). */
  context(): SecureContext;
  failed(f: OutboundFailure): void;
  succeeded(): void;
  closed(conn: OutboundConnection): void;
}

/** Log lines per failure kind; each is throttled on its own. */
const FAILURE_MESSAGE: Record<OutboundFailure['result'], string> = {
  dial_error: 'cannot reach the outbound target; closing the app connection',
  tls_error: 'TLS with the outbound target failed; closing the app connection',
  untrusted_server: 'outbound target refused: its certificate does not chain to tls.ca',
  server_id_mismatch: 'outbound target refused: it is not the expected server',
};

/**
 * One app connection, from dial to close. `closeReason` (debug log) is the first of: the failure
 * (`dial_error: CODE`, `tls_error: ...`, `untrusted_server`, `server_id_mismatch`), `client_close` /
 * `upstream_close`, `idle_timeout`, `shutdown`, `client_error: CODE`, `upstream_error: CODE`.
 */
class OutboundConnection {
  private readonly splice: Splice;
  private readonly start: number;
  /** Set once the connection has been counted, so it is counted once. */
  private counted = false;
  private handshaking = false;

  constructor(
    private readonly l: ListenerState,
    private readonly down: Socket,
  ) {
    this.start = l.deps.clock.now();
    this.splice = new Splice(down, {
      idleTimeout: l.deps.outbound.idleTimeout,
      onClosed: (reason) => this.finished(reason),
    });
  }

  open(): void {
    const { target, connectTimeout } = this.l.deps.outbound;
    // `allowHalfOpen` is passed on to the TLSSocket by tls.connect, though @types/node omits it.
    const options: ConnectionOptions & { allowHalfOpen: boolean } = {
      host: target.host,
      port: target.port,
      // SNI for a DNS name (an SNI-routing front needs it); an IP address is not a valid server name.
      ...(isIP(target.host) === 0 ? { servername: target.host } : {}),
      secureContext: this.l.context(),
      // Verified in outbound-verify.ts, with what the server presented in the log; the identity is
      // the SPIFFE ID, so Node's DNS hostname check does not apply.
      rejectUnauthorized: false,
      checkServerIdentity: noHostnameCheck,
      allowHalfOpen: true,
    };
    const up = tlsConnect(options);
    up.setNoDelay(true);
    // Before the splice's own 'close' listener: a target that closes during the handshake without
    // an error must still be counted.
    up.on('close', () => {
      if (!this.counted && !this.down.destroyed)
        this.fail('tls_error', 'the target closed the connection during the TLS handshake');
    });
    this.splice.attach(up);
    up.setTimeout(connectTimeout, () =>
      this.fail(
        this.handshaking ? 'tls_error' : 'dial_error',
        this.handshaking ? 'TLS handshake timeout' : `connect timeout after ${connectTimeout} ms`,
      ),
    );
    up.on('connect', () => {
      this.handshaking = true;
      up.setTimeout(this.l.deps.handshakeTimeout);
    });
    up.on('secureConnect', () => this.verified(up));
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (this.splice.started) return;
      const what = this.handshaking ? errorMessage(err) : (err.code ?? errorMessage(err));
      this.fail(this.handshaking ? 'tls_error' : 'dial_error', what);
    });
  }

  private verified(up: TLSSocket): void {
    up.setTimeout(0);
    const check = this.l.verify(up);
    if (!check.ok) return this.fail(check.result, check.detail, check.presented);
    this.counted = true;
    this.l.succeeded();
    this.splice.start();
  }

  private fail(
    result: OutboundFailure['result'],
    detail: string,
    presented: PresentedCertificate | null = null,
  ): void {
    if (this.counted) return;
    this.counted = true;
    this.l.failed({ at: this.l.deps.clock.now(), result, detail, presented });
    this.splice.abort(
      result === 'dial_error' || result === 'tls_error' ? `${result}: ${detail}` : result,
      true,
    );
  }

  /** Cut the connection (drain deadline). */
  abort(reason: string): void {
    this.splice.abort(reason);
  }

  private finished(closeReason: string): void {
    const { deps } = this.l;
    deps.log.debug('outbound connection closed', {
      bytesIn: this.down.bytesRead,
      bytesOut: this.down.bytesWritten,
      durationMs: deps.clock.now() - this.start,
      closeReason,
    });
    this.l.closed(this);
  }
}

function secureContextOf(m: TlsMaterial): SecureContext {
  return createSecureContext({ ca: m.ca, cert: m.cert, key: m.key, minVersion: 'TLSv1.2' });
}

/** Create the listener of one `outbound` entry. Nothing is bound until `listen()`. */
export function createOutboundListener(deps: OutboundDeps): OutboundListener {
  const { outbound, clock, log, telemetry } = deps;
  const target = `${outbound.target.host}:${outbound.target.port}`;
  const active = new Set<OutboundConnection>();
  const results = Object.fromEntries(OUTBOUND_RESULTS.map((r) => [r, 0])) as Record<OutboundResult, number>;
  const throttle = new LogThrottle(clock);
  let lastError: OutboundFailure | null = null;
  const drainer = new Drainer({
    server: () => server,
    clock,
    size: () => active.size,
    cut: () => {
      if (active.size > 0)
        log.warn('drain deadline reached; closing open outbound connections', { connections: active.size });
      for (const c of [...active]) c.abort('shutdown');
    },
    done: () => unsubscribe(),
  });

  // One parsed context per generation of the material, not one per connection.
  let context = secureContextOf(deps.tls.current());
  const unsubscribe = deps.tls.onReload((m) => {
    try {
      context = secureContextOf(m);
    } catch (err) {
      log.error('cannot use reloaded TLS material for outbound; keeping the previous', {
        error: errorMessage(err),
      });
    }
  });

  const state: ListenerState = {
    deps,
    verify: serverVerifier(outbound.serverId),
    throttle,
    context: () => context,
    succeeded() {
      results.ok++;
      telemetry.result('ok');
    },
    failed(f) {
      results[f.result]++;
      telemetry.result(f.result);
      lastError = f;
      const fields: LogFields = { target, serverId: outbound.serverId, result: f.result, detail: f.detail };
      if (f.presented !== null) {
        const p = f.presented;
        Object.assign(fields, {
          presentedUris: p.uris,
          presentedSubject: p.subject,
          presentedIssuer: p.issuer,
          presentedFingerprint: p.fingerprint256,
          presentedValidTo: p.validTo,
        });
      }
      if (throttle.allow(f.result, fields)) log.warn(FAILURE_MESSAGE[f.result], fields);
    },
    closed(conn) {
      active.delete(conn);
      drainer.closed();
    },
  };

  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    if (drainer.active) {
      socket.on('error', ignore);
      socket.resetAndDestroy();
      return;
    }
    const conn = new OutboundConnection(state, socket);
    active.add(conn);
    conn.open();
  });
  server.maxConnections = outbound.maxConnections;
  // Accept errors (EMFILE...) arrive here once listening; without a listener they would crash the process.
  server.on('error', (err) => {
    if (server.listening) log.error('outbound listener error', { error: errorMessage(err) });
  });
  server.on('drop', () => {
    const fields: LogFields = { maxConnections: server.maxConnections };
    if (throttle.allow('max_connections', fields))
      log.warn('outbound connection refused: listener at maxConnections', fields);
  });
  server.once('close', unsubscribe);

  return {
    outbound,
    listen: () =>
      listenOn(server, { key: outbound.name, listen: outbound.listen }, `outbound ${outbound.name}`),
    activeConnections: () => active.size,
    stats: () => ({ results: { ...results }, activeConnections: active.size, lastError }),
    drain: (deadlineMs: number): Promise<void> => drainer.drain(deadlineMs),
  };
}
