/**
 * What the request and upgrade handlers of one http port share: configuration, the decision and
 * its counters, the upstream pool, the per-connection state, and the end-of-request bookkeeping
 * (duration, bytes, access log). Built once per listener.
 *
 * Durations are measured with performance.now() (monotonic); the policy Clock is for license time.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Pool } from 'undici';
import type { Clock } from '../clock.js';
import type { PortConfig } from '../config/types.js';
import type { Logger, LogFields } from '../log.js';
import type { CompiledLicense, DenyReason } from '../policy/types.js';
import type { PortTelemetry } from '../telemetry/types.js';
import type { FlowRegistry } from './flows.js';
import { LogThrottle } from './handshake.js';
import { createAuthorizer, type Authorizer, type HttpConnection } from './http-authorize.js';
import { portResponses, type BadRequestReason, type PortResponses } from './http-responses.js';
import type { PortDeps } from './types.js';

/** A request that was forwarded (or whose forwarding failed), as the metrics and access log see it. */
export interface FinishedExchange {
  readonly conn: HttpConnection;
  /** performance.now() when the request head was complete. */
  readonly started: number;
  readonly method: string;
  /** Normalised path. */
  readonly path: string;
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly license: CompiledLicense | null;
  /** Null when allowed; the deny reason when audit mode let it through. */
  readonly reason: DenyReason | null;
}

export class HttpPortContext {
  readonly port: PortConfig;
  readonly clock: Clock;
  readonly telemetry: PortTelemetry;
  readonly log: Logger;
  readonly responses: PortResponses;
  readonly authorizer: Authorizer;
  /** True once drain() began: answers carry `connection: close`. */
  draining = false;
  private readonly connections = new WeakMap<Socket, HttpConnection>();
  private readonly throttle: LogThrottle;

  constructor(
    deps: PortDeps,
    readonly pool: Pool,
    /** Upgraded (spliced) flows, so a revoke or an expiry closes them (SPEC §2.4). */
    readonly flows: FlowRegistry,
  ) {
    this.port = deps.port;
    this.clock = deps.clock;
    this.telemetry = deps.telemetry;
    this.log = deps.log;
    this.responses = portResponses(deps.port.key);
    this.authorizer = createAuthorizer({
      portKey: deps.port.key,
      mode: deps.port.mode,
      policy: deps.policy,
      telemetry: deps.telemetry,
    });
    this.throttle = new LogThrottle(deps.clock);
  }

  /** Remember a handshaken connection's peer; set once per connection. */
  accept(socket: Socket, conn: HttpConnection): void {
    this.connections.set(socket, conn);
  }

  /** The state of a handshaken connection, or undefined for a socket this port did not accept. */
  connection(socket: Socket): HttpConnection | undefined {
    return this.connections.get(socket);
  }

  /** Record a forwarded exchange once its response is done or abandoned. */
  finish(x: FinishedExchange): void {
    const { telemetry } = this;
    const ms = performance.now() - x.started;
    telemetry.requestDuration(ms / 1000);
    if (x.bytesIn > 0) telemetry.bytes('in', x.bytesIn);
    if (x.bytesOut > 0) telemetry.bytes('out', x.bytesOut);
    if (x.reason === null && !telemetry.logAllowedHttp) return;
    const peer = x.conn.peer;
    telemetry.accessLog({
      kind: 'http',
      decision: x.reason === null ? 'allow' : 'audit_deny',
      reason: x.reason,
      identity: peer.identity,
      origin: peer.origin,
      license: x.license === null ? null : x.license.id,
      method: x.method,
      path: x.path,
      status: x.status,
      bytesIn: x.bytesIn,
      bytesOut: x.bytesOut,
      durationMs: ms,
    });
  }

  /** Record an enforced denial (403) in the access log. */
  denied(conn: HttpConnection, method: string, path: string, reason: DenyReason, started: number): void {
    this.telemetry.accessLog({
      kind: 'http',
      decision: 'deny',
      reason,
      identity: conn.peer.identity,
      origin: conn.peer.origin,
      license: null,
      method,
      path,
      status: 403,
      bytesIn: 0,
      bytesOut: 0,
      durationMs: performance.now() - started,
    });
  }

  /** Log a request the proxy would not forward because it is malformed (400). */
  rejected(conn: HttpConnection, method: string, target: string, reason: BadRequestReason): void {
    this.note('info', reason, 'http request rejected', {
      reason,
      identity: conn.peer.identity,
      origin: conn.peer.origin,
      method,
      target: target.slice(0, 256),
    });
  }

  /**
   * Log a condition that callers or a failing upstream can repeat at request rate: at most one line
   * per `key` per interval, the next one saying how many were suppressed.
   */
  note(level: 'info' | 'warn', key: string, msg: string, fields: LogFields): void {
    if (this.throttle.allow(key, fields)) this.log[level](msg, fields);
  }
}
