/**
 * Draining a listener (SIGTERM): stop accepting, let open connections finish on their own, and
 * cut whatever is still open at the deadline. Shared by the tcp port and the outbound listeners;
 * idempotent (the first call's promise is returned to every caller).
 */
import type { Server } from 'node:net';
import type { Clock, TimerHandle } from '../clock.js';

export interface DrainOptions {
  /** The listener to close (a function: it may be created after the drainer). */
  server: () => Server;
  readonly clock: Clock;
  /** Open connections now. */
  size: () => number;
  /** Close every open connection: the deadline has passed. */
  cut: () => void;
  /** Last step once everything is closed (release registries, subscriptions). */
  done: () => void;
}

export class Drainer {
  private draining: Promise<void> | null = null;
  private drained: (() => void) | null = null;

  constructor(private readonly opts: DrainOptions) {}

  /** Whether a drain has begun: new connections are refused from then on. */
  get active(): boolean {
    return this.draining !== null;
  }

  /** Tell the drainer a connection closed; the drain finishes with the last one. */
  closed(): void {
    if (this.opts.size() === 0) this.drained?.();
  }

  drain(deadlineMs: number): Promise<void> {
    const { server, clock, size, cut, done } = this.opts;
    return (this.draining ??= new Promise<void>((resolve) => {
      server().close(() => {});
      let deadline: TimerHandle | null = null;
      const finish = (): void => {
        this.drained = null;
        deadline?.cancel();
        done();
        resolve();
      };
      if (size() === 0) return finish();
      this.drained = finish;
      const remaining = deadlineMs - clock.now();
      if (remaining <= 0) cut();
      else deadline = clock.setTimer(cut, remaining);
    }));
  }
}
