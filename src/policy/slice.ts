/**
 * Cooperative time slicing for control-path work on big bundles. Compiling or checking 10,000
 * licenses in one go holds the event loop for tens of milliseconds, and every request on every
 * port waits behind it; done in slices of a few milliseconds with a turn of the event loop
 * between them, the data path keeps flowing while a new bundle is prepared.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Default longest run between two turns of the event loop. */
export const DEFAULT_SLICE_MS = 4;

/** How many items a loop handles between two looks at the clock (a look costs ~50 ns). */
const CHECK_EVERY = 64;

export class Slicer {
  private sliceStart = performance.now();
  private readonly budgetMs: number;

  /** @param budgetMs longest run between two turns; 0 or less yields on every check. */
  constructor(budgetMs: number = DEFAULT_SLICE_MS) {
    this.budgetMs = budgetMs;
  }

  /**
   * For a loop over `i`: true every CHECK_EVERY items once the slice's budget is spent; the loop
   * then awaits `pause()`. Split so the loop only awaits (and allocates a promise) when it must.
   */
  due(i: number): boolean {
    return i % CHECK_EVERY === CHECK_EVERY - 1 && performance.now() - this.sliceStart >= this.budgetMs;
  }

  /** Whether the slice's budget is spent (for code that already checks only every so often). */
  spent(): boolean {
    return performance.now() - this.sliceStart >= this.budgetMs;
  }

  /** Let the event loop run (I/O, timers, requests), then start a new slice. */
  async pause(): Promise<void> {
    await nextTurn();
    this.sliceStart = performance.now();
  }

  /** Start a new slice now, e.g. after an await that already let the event loop run. */
  restart(): void {
    this.sliceStart = performance.now();
  }
}

/** Run a generator that yields at safe points to completion, in one go. */
export function runToEnd<T>(steps: Generator<void, T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/** Run a generator that yields at safe points, pausing whenever the slice's budget is spent. */
export async function runSliced<T>(steps: Generator<void, T>, slicer: Slicer): Promise<T> {
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
    if (slicer.spent()) await slicer.pause();
  }
}
