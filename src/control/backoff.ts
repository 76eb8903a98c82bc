/**
 * Jittered exponential backoff ("full jitter"): after the n-th consecutive failure wait a random
 * time in [0, min(max, base * 2^n)], at least `min`. Spreads hundreds of sidecars that lost the
 * authority at the same moment instead of having them return in lockstep.
 */
export class Backoff {
  private failures = 0;

  constructor(
    private readonly opts: { base: number; max: number; min?: number } = { base: 500, max: 30_000, min: 100 },
    private readonly random: () => number = Math.random,
  ) {}

  /** Delay before the next attempt after one more failure. */
  next(): number {
    const cap = Math.min(this.opts.max, this.opts.base * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return Math.max(this.opts.min ?? 0, Math.floor(this.random() * cap));
  }

  reset(): void {
    this.failures = 0;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }
}
