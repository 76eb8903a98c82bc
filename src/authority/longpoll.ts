/**
 * Held `GET /v1/bundle` requests (SPEC §4). A sidecar that already has the current version waits
 * here until a change raises the bundle version, its `wait` runs out, it hangs up, or the authority
 * shuts down. A change wakes every waiter at once: a revoke reaches all sidecars within one round
 * trip, not one poll interval.
 */
import type { Clock, TimerHandle } from '../clock.js';

/** Why a wait ended. */
export type WaitOutcome = 'changed' | 'timeout' | 'aborted' | 'closing';

interface Waiter {
  /** The version the sidecar has; a change to anything above it wakes the waiter. */
  readonly known: number;
  done(outcome: WaitOutcome): void;
}

export class LongPoll {
  private readonly waiters = new Set<Waiter>();
  private closing = false;

  constructor(private readonly clock: Clock) {}

  /** Held requests right now. */
  get size(): number {
    return this.waiters.size;
  }

  /** A change committed bundle version `version`: wake everyone who has less. */
  notify(version: number): void {
    for (const w of [...this.waiters]) if (version > w.known) w.done('changed');
  }

  /**
   * Wait until a version above `known` exists, `ms` pass, `signal` aborts (the client went away;
   * the timer and the entry are released at once), or {@link close} is called.
   */
  wait(known: number, ms: number, signal: AbortSignal): Promise<WaitOutcome> {
    if (this.closing) return Promise.resolve('closing');
    if (signal.aborted) return Promise.resolve('aborted');
    return new Promise((resolve) => {
      const waiter: Waiter = {
        known,
        done: (outcome) => {
          if (!this.waiters.delete(waiter)) return;
          timer.cancel();
          signal.removeEventListener('abort', onAbort);
          resolve(outcome);
        },
      };
      const onAbort = (): void => waiter.done('aborted');
      this.waiters.add(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
      const timer: TimerHandle = this.clock.setTimer(() => waiter.done('timeout'), ms);
    });
  }

  /** Release every waiter (they answer 304 and the sidecars re-poll elsewhere); later waits return at once. */
  close(): void {
    this.closing = true;
    for (const w of [...this.waiters]) w.done('closing');
  }
}
