/**
 * Mid-flow enforcement (SPEC §2.4): a long-lived connection is only as good as the license that
 * admitted it. Open flows are grouped by that license; one timer per license fires at its
 * `expiresAt`, and every policy swap re-checks the groups. A flow that another valid license still
 * covers is rebound silently; any other flow is closed, counted and logged. Shared by the tcp port
 * and the http port's upgraded (WebSocket) connections.
 *
 * Cost: a swap that leaves a license as it was (the common case, e.g. another license renewed) is
 * one Map lookup per license group, not per flow; only flows of a changed license are re-decided.
 */
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type {
  CompiledLicense,
  DenyReason,
  PolicySnapshot,
  PolicyView,
  TerminationReason,
} from '../policy/types.js';
import type { PortTelemetry } from '../telemetry/types.js';

/** An admitted, open flow as the registry sees it. */
export interface Flow {
  readonly identity: string;
  readonly origin: string;
  readonly portKey: string;
  /** The license currently covering the flow; the registry rebinds it when another one takes over. */
  license: CompiledLicense;
  /** For an upgraded http request (WebSocket): its method and normalised path, re-checked like the request was. */
  readonly method?: string;
  readonly path?: string;
  /**
   * Close the flow now. Called at most once, after the registry has already dropped it, counted
   * it in `telemetry.terminated` and logged it; `release` afterwards is harmless.
   */
  terminate(reason: TerminationReason): void;
}

export interface FlowRegistryDeps {
  readonly policy: PolicyView;
  readonly clock: Clock;
  readonly telemetry: PortTelemetry;
  readonly log: Logger;
  /**
   * Audit mode (SPEC §2.6): a flow that would be closed stays open, is logged and counted as an
   * `audit_deny` decision with the deny reason, and is no longer tracked.
   */
  readonly audit?: boolean;
}

interface Group {
  license: CompiledLicense;
  readonly flows: Set<Flow>;
  timer: TimerHandle | null;
  /** The expiresAt the timer is armed for. */
  armedFor: number;
}

function sameMethods(a: ReadonlySet<string> | null, b: ReadonlySet<string> | null): boolean {
  if (a === b) return true;
  if (a === null || b === null || a.size !== b.size) return false;
  for (const m of a) if (!b.has(m)) return false;
  return true;
}

function samePaths(a: CompiledLicense['paths'], b: CompiledLicense['paths']): boolean {
  if (a === b) return true;
  if (a === null || b === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.pattern !== b[i]!.pattern) return false;
  return true;
}

/** Whether `next` (same id as `prev`) still grants everything `prev` granted, at `now`. */
function stillGrants(prev: CompiledLicense, next: CompiledLicense, now: number): boolean {
  return (
    next.revokedAt === null &&
    next.notBefore <= now &&
    now < next.expiresAt &&
    next.subject === prev.subject &&
    next.portKey === prev.portKey &&
    sameMethods(prev.methods, next.methods) &&
    samePaths(prev.paths, next.paths)
  );
}

/** Why the flows of `prev` must close, judged by what became of that license. */
function terminationReason(current: CompiledLicense | undefined, now: number): TerminationReason {
  if (current === undefined) return 'license_removed';
  if (current.revokedAt !== null) return 'revoked';
  if (now >= current.expiresAt) return 'expired';
  return 'license_removed';
}

/** The open flows of one port, by admitting license. */
export class FlowRegistry {
  private readonly groups = new Map<string, Group>();
  private readonly unsubscribe: () => void;
  private count = 0;

  constructor(private readonly deps: FlowRegistryDeps) {
    this.unsubscribe = deps.policy.onSwap((next) => this.recheckAll(next));
  }

  /** Track an admitted flow until `release` (or until the registry terminates it). */
  admit(flow: Flow): void {
    this.join(flow, flow.license);
  }

  /** Forget a flow that closed. Idempotent. */
  release(flow: Flow): void {
    const g = this.groups.get(flow.license.id);
    if (g === undefined || !g.flows.delete(flow)) return;
    this.count--;
    if (g.flows.size === 0) this.drop(g);
  }

  /** Open flows being tracked. */
  size(): number {
    return this.count;
  }

  /** Stop watching the policy and cancel every timer; open flows are left alone. */
  close(): void {
    this.unsubscribe();
    for (const g of this.groups.values()) g.timer?.cancel();
    this.groups.clear();
    this.count = 0;
  }

  private join(flow: Flow, license: CompiledLicense): void {
    flow.license = license;
    let g = this.groups.get(license.id);
    if (g === undefined) {
      g = { license, flows: new Set(), timer: null, armedFor: NaN };
      this.groups.set(license.id, g);
      this.arm(g);
    }
    g.flows.add(flow);
    this.count++;
  }

  private arm(g: Group): void {
    if (g.armedFor === g.license.expiresAt && g.timer !== null) return;
    g.timer?.cancel();
    g.armedFor = g.license.expiresAt;
    g.timer = this.deps.clock.setTimer(() => {
      g.timer = null;
      this.recheck(g, this.deps.policy.current(), this.deps.clock.now());
    }, g.license.expiresAt - this.deps.clock.now());
  }

  private drop(g: Group): void {
    g.timer?.cancel();
    g.timer = null;
    if (this.groups.get(g.license.id) === g) this.groups.delete(g.license.id);
  }

  private recheckAll(snapshot: PolicySnapshot): void {
    const now = this.deps.clock.now();
    for (const g of [...this.groups.values()]) this.recheck(g, snapshot, now);
  }

  private recheck(g: Group, snapshot: PolicySnapshot, now: number): void {
    if (this.groups.get(g.license.id) !== g) return; // emptied meanwhile
    const current = snapshot.license(g.license.id);
    if (current !== undefined && stillGrants(g.license, current, now)) {
      if (current !== g.license) {
        g.license = current;
        for (const f of g.flows) f.license = current;
      }
      this.arm(g);
      return;
    }
    // The admitting license no longer grants: each flow gets a fresh decision.
    const reason = terminationReason(current, now);
    this.drop(g);
    const flows = [...g.flows];
    g.flows.clear();
    this.count -= flows.length;
    for (const f of flows) {
      const d = snapshot.decide(f.portKey, f.identity, now, f.method, f.path);
      if (typeof d !== 'string') this.join(f, d);
      else this.end(f, reason, d);
    }
  }

  private end(f: Flow, reason: TerminationReason, deny: DenyReason): void {
    const { telemetry, log } = this.deps;
    const fields = { license: f.license.id, identity: f.identity, origin: f.origin, reason };
    if (this.deps.audit) {
      telemetry.decision('audit_deny', deny);
      log.warn('audit: flow would be closed; left open (mode audit)', fields);
      return;
    }
    telemetry.terminated(reason);
    log.info('flow closed: license no longer grants it', fields);
    f.terminate(reason);
  }
}
