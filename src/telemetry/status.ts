/**
 * The JSON of the sidecar's GET /status (read by `portlicense status`): ports, outbound listeners,
 * the bundle and its age, every license with its state, time left and last access, and the recent
 * denials. Built from plain inputs at request time, so the CLI wires it without this module knowing
 * the control plane or the listeners.
 */
import { licenseStateAt, type LicenseState } from '../policy/state.js';
import type { HostPort, PortMode } from '../config/types.js';
import type { CompiledLicense, PortProtocol } from '../policy/types.js';
import { formatHostPort, type Readiness } from './admin-server.js';
import type { UsageEntry } from './types.js';
import type { RecentDenial } from './usage.js';

export interface StatusPortInput {
  readonly service: string;
  readonly name: string;
  readonly protocol: PortProtocol;
  /** The bound address, or the configured one. */
  readonly listen: HostPort;
  readonly mode: PortMode;
  readonly activeConnections: number;
}

/** One outbound listener (plain values, so this module needs nothing from the data plane). */
export interface StatusOutboundInput {
  readonly name: string;
  /** The bound address, or the configured one. */
  readonly listen: HostPort;
  readonly target: HostPort;
  readonly serverId: string;
  readonly activeConnections: number;
  /** Connections since start by `result` (the labels of `portlicense_outbound_connections_total`). */
  readonly connections: Readonly<Record<string, number>>;
  readonly lastError: {
    /** Epoch ms. */
    readonly at: number;
    readonly result: string;
    readonly detail: string;
    /** URI SANs of the certificate the server presented, when the failure was about it. */
    readonly presentedUris?: readonly string[];
  } | null;
}

export interface StatusInput {
  /** Epoch ms. */
  now: number;
  node: string;
  ports: readonly StatusPortInput[];
  /** Outbound listeners; the `outbound` section is left out when this is. */
  outbound?: readonly StatusOutboundInput[];
  /** The snapshot being enforced (version 0 before the first bundle). */
  policy: {
    readonly version: number;
    readonly issuedAt: number;
    readonly licenses: readonly CompiledLicense[];
  };
  sync: {
    /** Epoch ms of the last successful sync (a 304 counts), or null. */
    lastSuccess: number | null;
    /** Where bundles come from: the authority URL or the bundle file. */
    source?: string;
    lastError?: string | null;
  };
  usage: {
    lastAccess(licenseId: string): Readonly<UsageEntry> | undefined;
    recentDenials(): RecentDenial[];
  };
  /** A license in use that expires within this many ms is flagged `expiringSoon`. */
  warnBefore?: number;
  /**
   * Whether something may still renew a license before it expires (with an authority: unless the
   * authority said it cannot). Only licenses nothing will renew are flagged. Default: nothing renews.
   */
  mayRenew?: (licenseId: string) => boolean;
  ready?: Readiness;
  /** With `workers` above 1: the data-plane processes; the `workers` section is left out otherwise. */
  workers?: readonly StatusWorkerInput[];
}

/**
 * One data-plane worker slot, as the cluster pool sees it (its `SlotView`): the configured count
 * never changes, the process in a slot does.
 */
export interface StatusWorkerInput {
  /** 1-based, stable across restarts (`worker 2 of 4`). */
  readonly slot: number;
  /** starting (forked, no listeners yet), listening (serving), exited (restart scheduled). */
  readonly state: 'starting' | 'listening' | 'exited';
  readonly pid: number | null;
  /** Policy version the worker last said it enforces; null before it listens. */
  readonly version: number | null;
  readonly restarts: number;
  /**
   * Once it said hello: how long it has not answered the heartbeat, in ms (heartbeats missed in a
   * row times their interval; 0 while it answers); null before.
   */
  readonly silentMs: number | null;
}

export type { LicenseState } from '../policy/state.js';

export interface LicenseStatus {
  id: string;
  subject: string;
  service: string;
  port: string;
  methods: string[] | null;
  paths: string[] | null;
  notBefore: string;
  expiresAt: string;
  revokedAt: string | null;
  state: LicenseState;
  /** Seconds until expiresAt; 0 once expired or revoked. */
  secondsLeft: number;
  /** Used since start, expiring within warnBefore, and nothing will renew it. */
  expiringSoon: boolean;
  lastAccess: { at: string; identity: string; origin: string; count: number } | null;
}

export interface SidecarStatus {
  node: string;
  time: string;
  ready?: Readiness;
  ports: Array<{
    port: string;
    service: string;
    name: string;
    protocol: PortProtocol;
    listen: string;
    mode: PortMode;
    activeConnections: number;
  }>;
  /** With `workers` above 1: each worker slot (1-based), its process and the bundle it enforces. */
  workers?: Array<{
    slot: number;
    state: StatusWorkerInput['state'];
    pid: number | null;
    bundleVersion: number | null;
    restarts: number;
    /** Since it last answered the heartbeat, once it said hello; null before. */
    silentSeconds: number | null;
  }>;
  outbound?: Array<{
    name: string;
    listen: string;
    target: string;
    serverId: string;
    activeConnections: number;
    connections: Record<string, number>;
    lastError: { at: string; result: string; detail: string; presentedUris?: string[] } | null;
  }>;
  bundle: {
    /** 0 before the first bundle. */
    version: number;
    issuedAt: string | null;
    ageSeconds: number | null;
    lastSuccess: string | null;
    lastSuccessAgeSeconds: number | null;
    source: string | null;
    lastError: string | null;
  };
  licenses: LicenseStatus[];
  /** Newest first. */
  recentDenials: Array<{ at: string; port: string; identity: string | null; origin: string; reason: string }>;
}

/** The state of a license at `now` (SPEC §5 `state`). */
export const licenseState: (l: CompiledLicense, now: number) => LicenseState = licenseStateAt;

export function buildStatus(input: StatusInput): SidecarStatus {
  const { now, policy, sync, usage } = input;
  const hasBundle = policy.version > 0;
  const licenses = [...policy.licenses]
    .sort(
      (a, b) =>
        cmp(a.service, b.service) || cmp(a.port, b.port) || cmp(a.subject, b.subject) || cmp(a.id, b.id),
    )
    .map((l) => licenseStatus(l, input));
  return {
    node: input.node,
    time: iso(now),
    ...(input.ready ? { ready: input.ready } : {}),
    ports: input.ports.map((p) => ({
      port: `${p.service}/${p.name}`,
      service: p.service,
      name: p.name,
      protocol: p.protocol,
      listen: formatHostPort(p.listen),
      mode: p.mode,
      activeConnections: p.activeConnections,
    })),
    ...(input.workers
      ? {
          workers: input.workers.map((w) => ({
            slot: w.slot,
            state: w.state,
            pid: w.pid,
            bundleVersion: w.version,
            restarts: w.restarts,
            silentSeconds: w.silentMs === null ? null : seconds(w.silentMs),
          })),
        }
      : {}),
    ...(input.outbound ? { outbound: input.outbound.map(outboundStatus) } : {}),
    bundle: {
      version: policy.version,
      issuedAt: hasBundle ? iso(policy.issuedAt) : null,
      ageSeconds: hasBundle ? seconds(now - policy.issuedAt) : null,
      lastSuccess: sync.lastSuccess === null ? null : iso(sync.lastSuccess),
      lastSuccessAgeSeconds: sync.lastSuccess === null ? null : seconds(now - sync.lastSuccess),
      source: sync.source ?? null,
      lastError: sync.lastError ?? null,
    },
    licenses,
    recentDenials: usage.recentDenials().map((d) => ({ ...d, at: iso(d.at) })),
  };
}

function outboundStatus(o: StatusOutboundInput): NonNullable<SidecarStatus['outbound']>[number] {
  const e = o.lastError;
  return {
    name: o.name,
    listen: formatHostPort(o.listen),
    target: formatHostPort(o.target),
    serverId: o.serverId,
    activeConnections: o.activeConnections,
    connections: { ...o.connections },
    lastError:
      e === null
        ? null
        : {
            at: iso(e.at),
            result: e.result,
            detail: e.detail,
            ...(e.presentedUris ? { presentedUris: [...e.presentedUris] } : {}),
          },
  };
}

function licenseStatus(l: CompiledLicense, input: StatusInput): LicenseStatus {
  const { now } = input;
  const state = licenseState(l, now);
  const last = input.usage.lastAccess(l.id);
  const secondsLeft = state === 'active' || state === 'pending' ? seconds(l.expiresAt - now) : 0;
  return {
    id: l.id,
    subject: l.subject,
    service: l.service,
    port: l.port,
    methods: l.methods ? [...l.methods] : null,
    paths: l.paths ? l.paths.map((p) => p.pattern) : null,
    notBefore: iso(l.notBefore),
    expiresAt: iso(l.expiresAt),
    revokedAt: l.revokedAt === null ? null : iso(l.revokedAt),
    state,
    secondsLeft,
    expiringSoon:
      state === 'active' &&
      last !== undefined &&
      input.warnBefore !== undefined &&
      l.expiresAt - now <= input.warnBefore &&
      !(input.mayRenew?.(l.id) ?? false),
    lastAccess: last
      ? { at: iso(last.at), identity: last.identity, origin: last.origin, count: last.count }
      : null,
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function seconds(ms: number): number {
  return Math.max(0, Math.floor(ms / 1000));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
