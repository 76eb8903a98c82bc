/**
 * A `tcp` port (SPEC §2.4): accept -> handshake -> identity -> authorize once -> dial -> splice ->
 * close. The decision is made once per connection; after that the flow is watched by the
 * FlowRegistry, which closes it when its license stops granting it. Bytes are spliced both ways
 * by a Splice (splice.ts), shared with the outbound listeners.
 */
import { Drainer } from './drain.js';
import { connect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { TimerHandle } from '../clock.js';
import type { HostPort } from '../config/types.js';
import type { CompiledLicense, Decision, DenyReason } from '../policy/types.js';
import type { UsageEntry } from '../telemetry/types.js';
import { FlowRegistry, type Flow } from './flows.js';
import { createTlsListener, listenOn, LogThrottle } from './handshake.js';
import { Splice } from './splice.js';
import type { Peer, PortDeps, PortListener } from './types.js';

export interface TcpPortOptions {
  /** How often open flows publish their byte counts and refresh their last-access time. Default 10 s. */
  statsInterval?: number;
  /** How long a refused caller may take to read our close before it is cut. Default 1 s. */
  refuseGrace?: number;
}

const ignore = (): void => {};

/** Shared by the flows of one port. */
interface PortState {
  readonly deps: PortDeps;
  readonly registry: FlowRegistry;
  readonly active: Set<TcpFlow>;
  readonly throttle: LogThrottle;
  closed(flow: TcpFlow): void;
}

/**
 * One admitted connection, from dial to close. The bytes move in a Splice (half-close, idle
 * timeout); this class dials the upstream and keeps the flow's accounting.
 *
 * The access log's `closeReason` is the first of: `client_close` / `upstream_close` (that side
 * finished sending first), `idle_timeout`, `expired` / `revoked` / `license_removed` (mid-flow
 * enforcement), `shutdown` (drain deadline), `client_error: CODE`, `upstream_error: CODE`,
 * `upstream_connect_failed: CODE`, `upstream_connect_timeout`.
 */
class TcpFlow {
  /** What the FlowRegistry watches; null for an audit-allowed flow, which no license covers. */
  readonly tracked: Flow | null;
  private readonly splice: Splice;
  private up: Socket | null = null;
  private readonly start: number;
  /** Bytes already handed to telemetry by periodic flushes. */
  private reportedIn = 0;
  private reportedOut = 0;

  constructor(
    private readonly port: PortState,
    down: TLSSocket,
    private readonly identity: string | null,
    private readonly origin: string,
    license: CompiledLicense | null,
    private readonly decision: Decision,
    private readonly denyReason: DenyReason | null,
    private readonly usage: UsageEntry | null,
  ) {
    this.start = port.deps.clock.now();
    this.tracked =
      license === null || identity === null
        ? null
        : { identity, origin, portKey: port.deps.port.key, license, terminate: (r) => this.abort(r) };
    const { telemetry, port: config } = port.deps;
    this.splice = new Splice(down, {
      idleTimeout: config.idleTimeout,
      onIdle: () => telemetry.terminated('idle_timeout'),
      onClosed: (reason) => this.finished(reason),
    });
  }

  open(): void {
    const { deps } = this.port;
    const splice = this.splice;
    const { host, port } = deps.port.upstream;
    const up = connect({ host, port, allowHalfOpen: true, noDelay: true });
    this.up = up;
    splice.attach(up);
    const { connectTimeout } = deps.port;
    up.setTimeout(connectTimeout, () => {
      this.connectFailed(`connect timeout after ${connectTimeout} ms`);
      splice.abort('upstream_connect_timeout');
    });
    up.on('connect', () => {
      up.setTimeout(0);
      splice.start();
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (splice.started) return;
      const code = err.code ?? err.message;
      this.connectFailed(code);
      splice.abort(`upstream_connect_failed: ${code}`);
    });
  }

  /** Tell the operator (throttled) that the upstream could not be reached, and why. */
  private connectFailed(error: string): void {
    const { host, port } = this.port.deps.port.upstream;
    const fields = { upstream: `${host}:${port}`, error };
    if (this.port.throttle.allow('upstream_connect', fields))
      this.port.deps.log.warn('cannot connect to the upstream; closing the caller', fields);
  }

  /** Publish byte deltas and mark the license as in use; a long flow is use, not one past access. */
  tick(now: number): void {
    this.flushBytes();
    if (this.usage !== null) this.usage.at = now;
  }

  private flushBytes(): void {
    const up = this.up;
    if (up === null) return;
    const t = this.port.deps.telemetry;
    const bytesIn = up.bytesWritten;
    const bytesOut = up.bytesRead;
    if (bytesIn > this.reportedIn) t.bytes('in', bytesIn - this.reportedIn);
    if (bytesOut > this.reportedOut) t.bytes('out', bytesOut - this.reportedOut);
    this.reportedIn = bytesIn;
    this.reportedOut = bytesOut;
  }

  abort(reason: string): void {
    this.splice.abort(reason);
  }

  private finished(closeReason: string): void {
    const { deps } = this.port;
    this.flushBytes();
    if (this.usage !== null) this.usage.at = deps.clock.now();
    deps.telemetry.accessLog({
      kind: 'tcp',
      decision: this.decision,
      reason: this.denyReason,
      identity: this.identity,
      origin: this.origin,
      license: this.tracked?.license.id ?? null,
      bytesIn: this.reportedIn,
      bytesOut: this.reportedOut,
      durationMs: deps.clock.now() - this.start,
      closeReason,
    });
    this.port.closed(this);
  }
}

/** Create the listener of one `tcp` port. Nothing is bound until `listen()`. */
export function createTcpPort(deps: PortDeps, opts: TcpPortOptions = {}): PortListener {
  const { port, telemetry, clock, log } = deps;
  const statsInterval = opts.statsInterval ?? 10_000;
  const refuseGrace = opts.refuseGrace ?? 1_000;
  const active = new Set<TcpFlow>();
  const registry = new FlowRegistry({ ...deps, audit: port.mode === 'audit' });
  let stats: TimerHandle | null = null;
  const drainer = new Drainer({
    server: () => server,
    clock,
    size: () => active.size,
    cut: () => {
      if (active.size > 0) log.warn('drain deadline reached; closing open flows', { flows: active.size });
      for (const f of [...active]) {
        telemetry.terminated('shutdown');
        f.abort('shutdown');
      }
    },
    done: () => registry.close(),
  });

  const tick = (): void => {
    stats = null;
    if (active.size === 0) return;
    const now = clock.now();
    for (const f of active) f.tick(now);
    stats = clock.setTimer(tick, statsInterval);
  };

  const state: PortState = {
    deps,
    registry,
    active,
    throttle: new LogThrottle(clock),
    closed(flow) {
      active.delete(flow);
      if (flow.tracked !== null) registry.release(flow.tracked);
      telemetry.connectionClosed();
      if (active.size === 0) {
        stats?.cancel();
        stats = null;
        drainer.closed();
      }
    },
  };

  /** Close a caller that may not pass: no upstream is dialed, nothing it sent is read on its behalf. */
  const refuse = (socket: TLSSocket): void => {
    socket.on('error', ignore);
    socket.setTimeout(refuseGrace, () => socket.destroy());
    socket.resume();
    socket.end();
  };

  const admit = (socket: TLSSocket, peer: Peer): void => {
    if (drainer.active) {
      socket.on('error', ignore);
      socket.destroy();
      return;
    }
    const now = clock.now();
    const identity = peer.identity;
    const d = identity === null ? 'bad_identity' : deps.policy.current().decide(port.key, identity, now);
    let license: CompiledLicense | null = null;
    let decision: Decision = 'allow';
    let reason: DenyReason | null = null;
    if (typeof d === 'string') {
      reason = d;
      decision = port.mode === 'audit' ? 'audit_deny' : 'deny';
    } else {
      license = d;
    }
    telemetry.decision(decision, reason);
    if (decision === 'deny') {
      telemetry.denial(identity, reason!, peer.origin, now);
      telemetry.accessLog({
        kind: 'tcp',
        decision,
        reason,
        identity,
        origin: peer.origin,
        license: null,
        bytesIn: 0,
        bytesOut: 0,
        durationMs: 0,
        closeReason: 'denied',
      });
      refuse(socket);
      return;
    }
    let usage: UsageEntry | null = null;
    if (license !== null && identity !== null) {
      usage = telemetry.usage(license.id, identity, peer.origin);
      usage.at = now;
      usage.count++;
    }
    const flow = new TcpFlow(state, socket, identity, peer.origin, license, decision, reason, usage);
    active.add(flow);
    telemetry.connectionOpened();
    if (flow.tracked !== null) registry.admit(flow.tracked);
    stats ??= clock.setTimer(tick, statsInterval);
    flow.open();
  };

  const server = createTlsListener({ deps, onConnection: admit });

  return {
    port,
    listen: (): Promise<HostPort> => listenOn(server, port),
    activeConnections: () => active.size,
    drain: (deadlineMs: number): Promise<void> => drainer.drain(deadlineMs),
  };
}
