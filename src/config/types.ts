/**
 * The validated, frozen sidecar configuration (SPEC §5). Produced only by the config loader;
 * durations are milliseconds, file paths are absolute (resolved against the config file's folder).
 */
import type { PortProtocol } from '../policy/types.js';

export interface HostPort {
  host: string;
  port: number;
}

export type PortMode = 'enforce' | 'audit';

export interface PortConfig {
  /** Port name within the service (`http`). */
  readonly name: string;
  readonly service: string;
  readonly protocol: PortProtocol;
  readonly listen: HostPort;
  readonly upstream: HostPort;
  readonly mode: PortMode;
  /** `service/port`, the label used in metrics, logs and 403 bodies. */
  readonly key: string;
  /** http: time to wait for the upstream's response head (SPEC default 30s). */
  readonly upstreamTimeout: number;
  /**
   * How long dialing the upstream may take before the caller gets `502` (http) or is closed (tcp).
   * Default 5 s; on an http port at most `upstreamTimeout` unless set.
   */
  readonly connectTimeout: number;
  /** Concurrent downstream connections accepted on this listener; beyond it new ones are refused. */
  readonly maxConnections: number;
  /** tcp: close a flow with no bytes either way for this long. http: keep-alive idle timeout. */
  readonly idleTimeout: number;
  /** http: the whole request head must arrive within this (slowloris guard). */
  readonly headersTimeout: number;
  /** http: largest accepted request head in bytes; beyond it 431. */
  readonly maxHeaderSize: number;
  /**
   * http: a kept upstream connection idle this long is closed by the sidecar. Below the upstream's
   * own keep-alive timeout, the sidecar closes first, so a request never goes out on a connection
   * the upstream is closing (the keep-alive race).
   */
  readonly upstreamIdleTimeout: number;
}

export interface OutboundConfig {
  readonly name: string;
  readonly listen: HostPort;
  readonly target: HostPort;
  readonly serverId: string;
  readonly allowNonLoopback: boolean;
  /** How long the TCP connect to the target may take (the TLS handshake then has `tls.handshakeTimeout`). */
  readonly connectTimeout: number;
  /** Close a connection with no bytes either way for this long. */
  readonly idleTimeout: number;
  /** Concurrent app connections on this listener; beyond it new ones are refused. */
  readonly maxConnections: number;
}

export interface SidecarConfig {
  /** Absolute path of the file this came from. */
  readonly file: string;
  readonly node: string;
  readonly trustDomains: readonly string[];
  readonly tls: {
    readonly ca: string;
    readonly cert: string;
    readonly key: string;
    /** Deadline for a client to finish the TLS handshake. */
    readonly handshakeTimeout: number;
  };
  readonly authority: {
    /** Exactly one of url and bundleFile is set. */
    readonly url?: string;
    readonly bundleFile?: string;
    readonly signingPublicKey: string;
    readonly cacheFile?: string;
    /**
     * The authority's SPIFFE ID (exact or `/*` pattern). When set, the sidecar refuses an authority
     * whose certificate does not carry it, besides checking the chain and host name.
     */
    readonly serverId?: string;
    readonly wait: number;
    readonly reportInterval: number;
    readonly maxStaleness: number;
  };
  readonly ports: readonly PortConfig[];
  readonly outbound: readonly OutboundConfig[];
  readonly admin: { readonly listen: HostPort };
  readonly log: {
    readonly level: 'debug' | 'info' | 'warn' | 'error';
    /** Log one access line per allowed HTTP request too (denied ones and TCP flows are always logged). */
    readonly accessLogAllowedHttp: boolean;
  };
  /** On SIGTERM: how long open requests and flows may finish before they are cut. */
  readonly drainTimeout: number;
  /** Warn when a license in use expires within this window (SPEC §3). */
  readonly warnBefore: number;
  /**
   * Processes running the data plane (`workers:`, `auto` already resolved to a core count). 1, or
   * absent, is one process doing everything; above 1 the process that reads the config becomes
   * the control plane and forks this many data-plane workers (src/cluster/).
   */
  readonly workers?: number;
  /**
   * With workers: a worker that has not answered the control plane's heartbeat for this long (its
   * event loop is blocked) is killed and restarted; from half of it on, /readyz names it.
   */
  readonly workerHangTimeout?: number;
}
