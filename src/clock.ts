/**
 * Injectable time. Everything that compares against "now" or waits for a moment (license expiry,
 * renewal windows, staleness) takes a Clock, so tests move time instead of sleeping.
 */

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Run `fn` once `delayMs` from now. Timers never keep the process alive on their own. */
  setTimer(fn: () => void, delayMs: number): TimerHandle;
}

/** Largest delay Node's setTimeout accepts; longer timers are re-armed in steps. */
const MAX_DELAY = 2_147_483_647;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, delayMs) {
    let t: NodeJS.Timeout;
    const arm = (remaining: number): void => {
      const step = Math.min(Math.max(remaining, 0), MAX_DELAY);
      t = setTimeout(() => (remaining > MAX_DELAY ? arm(remaining - MAX_DELAY) : fn()), step);
      t.unref();
    };
    arm(delayMs);
    return { cancel: () => clearTimeout(t) };
  },
};

/** A clock that only moves when told to; timers fire in due order during `advance`. */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start: number | string | Date = '2026-11-28T10:00:00Z') {
    this.t = typeof start === 'number' ? start : new Date(start).getTime();
  }

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, delayMs: number): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, delayMs), fn });
    return { cancel: () => this.timers.delete(id) };
  }

  /** Move time forward by `ms`, firing every timer that falls due, earliest first. */
  advance(ms: number): void {
    const target = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= target && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = target;
  }

  /** Jump to an absolute time (never backwards). */
  set(to: number | string | Date): void {
    const ms = typeof to === 'number' ? to : new Date(to).getTime();
    this.advance(Math.max(0, ms - this.t));
  }

  pendingTimers(): number {
    return this.timers.size;
  }
}
