/**
 * The sidecars the authority has seen (`GET /v1/nodes`, `portlicense_authority_sidecars`): each
 * bundle pull records the node's identity, services, the version it now holds and when; each
 * usage report records when. A node is `stale` when its last sync is older than
 * 2 × limits.maxWait + 30 s: a healthy sidecar is always either holding a long poll or a moment
 * away from its next one, so two missed polls mean it is down, cut off or stuck. A node silent for
 * limits.forgetNodesAfter (72 h by default, as Consul reaps a failed node) is forgotten: nodes
 * come and go (autoscaling, re-imaging), and their records would otherwise pile up for good.
 * Denials reported by sidecars are summed in memory (they are telemetry, not state to keep).
 */
import type { Clock, TimerHandle } from '../clock.js';
import { formatTime } from '../config/duration.js';
import type { Logger } from '../log.js';
import { conflict } from './api-error.js';
import type { NodeRecord } from './model.js';
import type { AuthorityStore } from './store.js';

export type NodeState = 'fresh' | 'stale';

export interface DenialCount {
  identity: string | null;
  reason: string;
  count: number;
}

/** A node as `GET /v1/nodes` shows it. */
export interface NodeView {
  node: string;
  identity: string;
  services: string[];
  bundleVersion: number;
  lastSync: string | null;
  lastReport: string | null;
  state: NodeState;
  /** Denials reported by this node since the authority started, by (identity, reason). */
  denials: DenialCount[];
}

/** Nodes forgotten per flush round at most (one transaction). */
const FORGET_BATCH = 500;

/** Distinct (identity, reason) pairs kept per node; further ones are summed under identity `*`. */
const MAX_DENIAL_KEYS = 200;

/** How long after its last sync a node counts as stale, for a given limits.maxWait. */
export function staleAfter(maxWaitMs: number): number {
  return 2 * maxWaitMs + 30_000;
}

/**
 * Nodes live in memory and in the store. A new node, or a node name now used by another identity,
 * is written at once (who holds a name must survive a restart); anything else — a new bundle
 * version, services, lastSync, lastReport — only marks the node dirty, and dirty nodes are written
 * together by `flush()` (periodically and at shutdown). So a thousand sidecars long-polling do not
 * cost a thousand fsyncs per wait period, nor a thousand when one change wakes them all.
 */
export class NodeTracker {
  private readonly denials = new Map<string, Map<string, DenialCount>>();
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly dirty = new Set<string>();

  constructor(
    private readonly store: AuthorityStore,
    private readonly clock: Clock,
    private readonly staleAfterMs: number,
    private readonly log: Logger,
    private readonly forgetAfterMs = 72 * 3_600_000,
  ) {
    for (const n of store.listNodes()) this.nodes.set(n.node, n);
  }

  private put(next: NodeRecord, prev: NodeRecord | undefined): void {
    this.nodes.set(next.node, next);
    if (prev !== undefined && prev.identity === next.identity) {
      this.dirty.add(next.node);
      return;
    }
    this.store.putNode(next);
    this.dirty.delete(next.node);
  }

  private flushTimer: TimerHandle | null = null;

  /** Flush every `intervalMs` until `stop()`; `stop()` flushes one last time. */
  startFlushing(intervalMs = 5_000): { stop(): void } {
    const loop = (): void => {
      try {
        this.forgetGone();
      } catch (err) {
        this.log.error('could not forget silent nodes; retrying', { err });
      }
      try {
        this.flush();
      } catch (err) {
        this.log.error('could not record node contact times; retrying', { err });
      }
      this.flushTimer = this.clock.setTimer(loop, intervalMs);
    };
    this.flushTimer = this.clock.setTimer(loop, intervalMs);
    return {
      stop: () => {
        this.flushTimer?.cancel();
        this.flush();
      },
    };
  }

  /**
   * Forget the nodes silent for forgetAfterMs (last sync and last report both older): at most
   * FORGET_BATCH per call, deleted in one transaction (one disk sync), so a backlog (the first start
   * of a version that forgets, an authority down for days) is worked off a batch per flush interval
   * without stalling the event loop.
   */
  forgetGone(now = this.clock.now()): void {
    const gone: NodeRecord[] = [];
    for (const n of this.nodes.values()) {
      if (now - lastContact(n) < this.forgetAfterMs) continue;
      gone.push(n);
      if (gone.length === FORGET_BATCH) break;
    }
    if (gone.length === 0) return;
    this.store.transaction(() => {
      for (const n of gone) this.store.deleteNode(n.node);
    });
    for (const n of gone) {
      this.nodes.delete(n.node);
      this.dirty.delete(n.node);
      this.denials.delete(n.node);
      this.log.info('node forgotten: silent for limits.forgetNodesAfter', {
        node: n.node,
        identity: n.identity,
        lastContact: formatTime(lastContact(n)),
      });
    }
  }

  /** Write the last-contact times of nodes that only checked in since the last flush. */
  flush(): void {
    if (this.dirty.size === 0) return;
    this.store.transaction(() => {
      for (const n of this.dirty) this.store.putNode(this.nodes.get(n)!);
    });
    this.dirty.clear();
  }

  /** A bundle request was answered (200 or 304): the node holds `version` as of now. */
  synced(node: string, identity: string, services: readonly string[], version: number): void {
    const prev = this.nodes.get(node);
    this.noteIdentity(node, prev, identity);
    this.put(
      {
        node,
        identity,
        services: [...services],
        bundleVersion: version,
        lastSync: this.clock.now(),
        lastReport: prev?.lastReport ?? null,
      },
      prev,
    );
  }

  /** A usage report from `node` was ingested. */
  reported(node: string, identity: string, denials: readonly DenialCount[]): void {
    const prev = this.nodes.get(node);
    this.noteIdentity(node, prev, identity);
    this.put(
      {
        node,
        identity,
        services: prev?.services ?? [],
        bundleVersion: prev?.bundleVersion ?? 0,
        lastSync: prev?.lastSync ?? null,
        lastReport: this.clock.now(),
      },
      prev,
    );
    if (denials.length === 0) return;
    let byKey = this.denials.get(node);
    if (!byKey) this.denials.set(node, (byKey = new Map<string, DenialCount>()));
    for (const d of denials) {
      let key = `${d.identity ?? ''}\u0000${d.reason}`;
      let identityOut = d.identity;
      if (!byKey.has(key) && byKey.size >= MAX_DENIAL_KEYS) {
        key = `*\u0000${d.reason}`;
        identityOut = '*';
      }
      const cell = byKey.get(key);
      if (cell) cell.count += d.count;
      else byKey.set(key, { identity: identityOut, reason: d.reason, count: d.count });
    }
  }

  /**
   * A node name belongs to the identity that last used it while the node is fresh: another
   * identity may take it over only once it has gone stale (a sidecar re-issued under a new SPIFFE
   * ID waits at most staleAfter). Without this, any sidecar certificate could sync and report as
   * another node and make it look alive.
   * @throws ApiError 409 naming the holder.
   */
  claim(node: string, identity: string): void {
    const prev = this.nodes.get(node);
    if (prev === undefined || prev.identity === identity) return;
    const now = this.clock.now();
    if (this.state(prev, now) === 'stale') return;
    const wait = Math.ceil((prev.lastSync! + this.staleAfterMs - now) / 1000);
    throw conflict(
      `node name ${node} is held by ${prev.identity}, which synced ${Math.round((now - prev.lastSync!) / 1000)}s ago: ` +
        `give this sidecar its own node name, or wait until that one has been silent for ${Math.round(this.staleAfterMs / 1000)}s (${wait}s from now)`,
    );
  }

  private noteIdentity(node: string, prev: NodeRecord | undefined, identity: string): void {
    if (prev && prev.identity !== identity)
      this.log.warn('node name now used by another identity', { node, identity, previous: prev.identity });
  }

  state(n: NodeRecord, now = this.clock.now()): NodeState {
    return n.lastSync !== null && now - n.lastSync <= this.staleAfterMs ? 'fresh' : 'stale';
  }

  list(): NodeView[] {
    const now = this.clock.now();
    return [...this.nodes.values()]
      .sort((a, b) => (a.node < b.node ? -1 : 1))
      .map((n) => ({
        node: n.node,
        identity: n.identity,
        services: n.services,
        bundleVersion: n.bundleVersion,
        lastSync: n.lastSync === null ? null : formatTime(n.lastSync),
        lastReport: n.lastReport === null ? null : formatTime(n.lastReport),
        state: this.state(n, now),
        denials: [...(this.denials.get(n.node)?.values() ?? [])].map((d) => ({ ...d })),
      }));
  }

  /** Nodes per state, for the sidecars gauge. */
  counts(): Record<NodeState, number> {
    const now = this.clock.now();
    const out: Record<NodeState, number> = { fresh: 0, stale: 0 };
    for (const n of this.nodes.values()) out[this.state(n, now)]++;
    return out;
  }
}

/** When a node was last heard from: its last sync or its last report. */
function lastContact(n: NodeRecord): number {
  return Math.max(n.lastSync ?? 0, n.lastReport ?? 0);
}
