/**
 * The current policy snapshot. The control plane is the only writer (`swap`); the data plane only
 * reads `current()`. A swap is a single reference assignment, so a decision always sees one whole
 * bundle, never a mix — the TypeScript twin of linkerd2-proxy's per-port watch.
 */
import { errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { emptySnapshot } from './snapshot.js';
import type { PolicySnapshot, PolicyView } from './types.js';

type SwapListener = (next: PolicySnapshot, prev: PolicySnapshot) => void;

export class PolicyStore implements PolicyView {
  private snapshot: PolicySnapshot;
  private readonly listeners = new Set<SwapListener>();
  private readonly log: Logger;

  constructor(opts: { initial?: PolicySnapshot; log?: Logger } = {}) {
    this.snapshot = opts.initial ?? emptySnapshot();
    this.log = opts.log ?? silentLogger;
  }

  current(): PolicySnapshot {
    return this.snapshot;
  }

  /**
   * Install `next` and tell the listeners (e.g. the TCP proxy re-checking open flows). A listener
   * that throws is logged and does not stop the others: the swap itself has already happened.
   */
  swap(next: PolicySnapshot): void {
    const prev = this.snapshot;
    this.snapshot = next;
    for (const listener of [...this.listeners]) {
      try {
        listener(next, prev);
      } catch (err) {
        this.log.error('policy swap listener failed', { error: errorMessage(err), version: next.version });
      }
    }
  }

  onSwap(listener: SwapListener): () => void {
    // Wrapped so the same function can subscribe twice and unsubscribe each independently.
    const entry: SwapListener = (n, p) => listener(n, p);
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }
}
