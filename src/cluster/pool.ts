/**
 * The data-plane worker processes of the control plane: fork them through node:cluster, give each
 * its init message when it says hello, follow what each is doing, restart one that dies (with
 * backoff, while the others keep serving its listeners) and drain them all at shutdown.
 *
 * A worker's life, as the pool sees it: starting (forked, no listeners yet) -> listening (serving,
 * with a known policy version) -> exited (restart scheduled). At start-up the pool resolves once
 * every worker listens and rejects with the first failure: a sidecar that cannot serve all its
 * ports does not start, as in one process.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Clock, TimerHandle } from '../clock.js';
import { Backoff } from '../control/backoff.js';
import { PortlicenseError, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { asToPrimary, type BoundListener, type ToPrimary, type ToWorker } from './messages.js';
import type { StatusWorkerInput } from '../telemetry/status.js';
import type { TelemetryBatch } from './telemetry-export.js';

/** One worker slot, as /status and /readyz show it. */
export type SlotView = StatusWorkerInput;
export type SlotState = SlotView['state'];

export interface PoolOptions {
  size: number;
  /** The worker entry module (worker-main.js). */
  exec: string;
  /** node:cluster scheduling policy for the shared listening sockets. */
  scheduling: 'rr' | 'none';
  log: Logger;
  clock: Clock;
  /** The init message for a worker that just said hello (the current config and policy). */
  init: () => Extract<ToWorker, { t: 'init' }>;
  onListening: (slot: number, ports: BoundListener[], outbound: BoundListener[]) => void;
  onTelemetry: (workerId: number, batch: TelemetryBatch) => void;
  /** A worker process is gone (whatever the reason): forget its live state. */
  onExit: (workerId: number) => void;
  /** Restart delays. Default 250 ms doubling up to 30 s, reset after a worker ran for `healthyAfterMs`. */
  backoff?: { base: number; max: number };
  healthyAfterMs?: number;
  /**
   * A worker that misses the heartbeat (sent every quarter of this) four times in a row is killed
   * and restarted: its event loop is blocked. Default 10 s.
   */
  hangTimeoutMs?: number;
}

interface Slot {
  readonly slot: number;
  worker: Worker | null;
  state: SlotState;
  version: number | null;
  inited: boolean;
  listeningAt: number;
  /** Whether the worker sent anything since the last heartbeat. */
  heard: boolean;
  /** Heartbeats in a row it did not answer. */
  missed: number;
  /** Killed for not answering; its exit restarts it. */
  hung: boolean;
  restarts: number;
  readonly backoff: Backoff;
  restartTimer: TimerHandle | null;
}

let primaryConfigured = false;

/** Heartbeats per hang timeout: a worker that misses this many in a row is killed. */
const BEATS = 4;

export class WorkerPool {
  private readonly slots: Slot[];
  private readonly beatMs: number;
  private heartbeat: TimerHandle | null = null;
  private lastBeat = 0;
  private stopping = false;
  private startup: { resolve: () => void; reject: (err: Error) => void } | null = null;

  constructor(private readonly opts: PoolOptions) {
    const b = opts.backoff ?? { base: 250, max: 30_000 };
    this.beatMs = Math.max(100, Math.floor((opts.hangTimeoutMs ?? 10_000) / BEATS));
    this.slots = Array.from({ length: opts.size }, (_, i) => ({
      slot: i + 1,
      worker: null,
      state: 'exited',
      version: null,
      inited: false,
      listeningAt: 0,
      heard: false,
      missed: 0,
      hung: false,
      restarts: 0,
      backoff: new Backoff({ base: b.base, max: b.max, min: b.base }),
      restartTimer: null,
    }));
  }

  /** Fork every worker; resolves when all listen, rejects with the first one's failure. */
  start(): Promise<void> {
    if (!primaryConfigured) {
      // Only the first fork reads these; NODE_CLUSTER_SCHED_POLICY, when set, is the operator's choice.
      if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined)
        cluster.schedulingPolicy = this.opts.scheduling === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
      primaryConfigured = true;
    }
    cluster.setupPrimary({ exec: this.opts.exec, args: [], silent: false });
    const done = new Promise<void>((resolve, reject) => (this.startup = { resolve, reject }));
    for (const s of this.slots) this.fork(s);
    this.beat();
    return done;
  }

  /**
   * The heartbeat: ping every worker that said hello, and kill one that missed BEATS of them in a
   * row. A blocked event loop (an endless loop, a stuck native call) would otherwise keep its share
   * of the connections, accepted and never served, on a node that says it is ready. Misses are
   * counted, not measured on the clock, so a clock step cannot kill healthy workers; and a beat that
   * comes late (this process was stalled, and the answers may still be unread) counts no misses.
   */
  private readonly beat = (): void => {
    this.heartbeat = null;
    if (this.stopping) return;
    const now = this.opts.clock.now();
    const late = this.lastBeat !== 0 && now - this.lastBeat > 2 * this.beatMs;
    this.lastBeat = now;
    for (const s of this.slots) {
      const w = s.worker;
      if (w === null || !s.inited || s.hung || s.state === 'exited') continue;
      if (s.heard) s.missed = 0;
      else if (!late) s.missed++;
      s.heard = false;
      if (s.missed < BEATS) {
        if (w.isConnected()) w.send({ pl: 1, t: 'ping' } satisfies ToWorker);
        continue;
      }
      s.hung = true;
      this.opts.log.error('worker not answering; killing it to restart it (the other workers keep serving)', {
        worker: s.slot,
        pid: w.process.pid,
        state: s.state,
        silentMs: s.missed * this.beatMs,
      });
      w.process.kill('SIGKILL');
    }
    this.heartbeat = this.opts.clock.setTimer(this.beat, this.beatMs);
  };

  /** Send to every worker that has its init (a later one gets the current state in its init). */
  broadcast(msg: ToWorker): void {
    for (const s of this.slots) if (s.inited && s.worker?.isConnected()) s.worker.send(msg);
  }

  views(): SlotView[] {
    return this.slots.map((s) => ({
      slot: s.slot,
      state: s.state,
      pid: s.worker?.process.pid ?? null,
      version: s.version,
      restarts: s.restarts,
      silentMs: s.inited ? s.missed * this.beatMs : null,
    }));
  }

  /** How long a worker may be silent before /readyz names it: half the hang timeout. */
  get unresponsiveAfterMs(): number {
    return (BEATS / 2) * this.beatMs;
  }

  /**
   * Drain every worker (they stop accepting, finish until `deadline`, send their last telemetry
   * and exit); a worker still alive `graceMs` after the deadline is killed. No restarts from now on.
   */
  async drain(deadline: number, graceMs = 5_000): Promise<void> {
    this.stopping = true;
    this.heartbeat?.cancel();
    const exits: Promise<void>[] = [];
    for (const s of this.slots) {
      s.restartTimer?.cancel();
      s.restartTimer = null;
      const w = s.worker;
      if (w === null || w.isDead()) continue;
      exits.push(new Promise<void>((resolve) => w.once('exit', () => resolve())));
      if (w.isConnected()) w.send({ pl: 1, t: 'drain', deadline } satisfies ToWorker);
      else w.process.kill('SIGKILL');
    }
    const killer = this.opts.clock.setTimer(
      () => {
        for (const s of this.slots) if (s.worker && !s.worker.isDead()) s.worker.process.kill('SIGKILL');
      },
      Math.max(0, deadline - this.opts.clock.now()) + graceMs,
    );
    await Promise.all(exits);
    killer.cancel();
  }

  /** Kill every worker now (a failed start). */
  async kill(): Promise<void> {
    this.stopping = true;
    this.heartbeat?.cancel();
    const exits: Promise<void>[] = [];
    for (const s of this.slots) {
      s.restartTimer?.cancel();
      const w = s.worker;
      if (w === null || w.isDead()) continue;
      exits.push(new Promise<void>((resolve) => w.once('exit', () => resolve())));
      w.process.kill('SIGKILL');
    }
    await Promise.all(exits);
  }

  private fork(s: Slot): void {
    s.restartTimer = null;
    s.state = 'starting';
    s.version = null;
    s.inited = false;
    s.hung = false;
    s.heard = false;
    s.missed = 0;
    // The slot, for the worker's process title: the WORKER column of /status and `status`.
    const w = cluster.fork({ PORTLICENSE_WORKER_SLOT: String(s.slot) });
    s.worker = w;
    w.on('message', (raw: unknown) => {
      const msg = asToPrimary(raw);
      if (msg === null) {
        this.opts.log.warn('unexpected message from a worker; ignored', { worker: s.slot });
        return;
      }
      if (s.worker === w) s.heard = true;
      this.onMessage(s, w, msg);
    });
    // An IPC error (the worker died mid-send) is followed by 'exit', which handles it.
    w.on('error', () => {});
    w.once('exit', (code, signal) => this.onExit(s, w, code, signal));
  }

  private onMessage(s: Slot, w: Worker, msg: ToPrimary): void {
    switch (msg.t) {
      case 'hello':
        s.inited = true;
        w.send(this.opts.init());
        return;
      case 'listening':
        s.state = 'listening';
        s.version = msg.version;
        s.listeningAt = this.opts.clock.now();
        this.opts.log.info('worker listening', {
          worker: s.slot,
          pid: w.process.pid,
          bundleVersion: msg.version,
          ...(s.restarts > 0 ? { restarts: s.restarts } : {}),
        });
        this.opts.onListening(s.slot, msg.ports, msg.outbound);
        if (this.startup && this.slots.every((x) => x.state === 'listening')) {
          this.startup.resolve();
          this.startup = null;
        }
        return;
      case 'policy-applied':
        s.version = msg.version;
        return;
      case 'policy-rejected':
        // The worker denies everything and exits; it is restarted (onExit) with the current bundle.
        s.version = null;
        this.opts.log.error('a worker rejected the bundle; it stops and is restarted with it', {
          worker: s.slot,
          version: msg.version,
          error: msg.error,
        });
        return;
      case 'telemetry':
        this.opts.onTelemetry(w.id, msg.batch);
        return;
      case 'fatal': {
        const err = new PortlicenseError(msg.code as ErrorCode, msg.error);
        if (this.startup) {
          this.startup.reject(err);
          this.startup = null;
        } else this.opts.log.error('worker failed', { worker: s.slot, error: msg.error });
        return;
      }
      case 'drained':
      case 'pong':
        return;
    }
  }

  private onExit(s: Slot, w: Worker, code: number | null, signal: string | null): void {
    this.opts.onExit(w.id);
    if (s.worker !== w) return;
    s.state = 'exited';
    s.version = null;
    s.inited = false;
    if (this.stopping) return;
    if (this.startup) {
      this.startup.reject(
        new PortlicenseError(
          'INTERNAL',
          `data-plane worker ${s.slot} exited during start-up (${signal ?? `code ${code}`})`,
        ),
      );
      this.startup = null;
      return;
    }
    if (this.opts.clock.now() - s.listeningAt >= (this.opts.healthyAfterMs ?? 30_000)) s.backoff.reset();
    const delay = s.backoff.next();
    s.restarts++;
    this.opts.log.error('worker exited; restarting it (the other workers keep serving)', {
      worker: s.slot,
      pid: w.process.pid,
      ...(signal ? { signal } : { code }),
      restartInMs: delay,
    });
    s.restartTimer = this.opts.clock.setTimer(() => {
      if (!this.stopping) this.fork(s);
    }, delay);
  }
}
