/**
 * What every inbound listener (tcp or http) is given and what it offers back to the process
 * lifecycle. The CLI wires one of these per configured port.
 */
import type { Clock } from '../clock.js';
import type { HostPort, PortConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { PolicyView } from '../policy/types.js';
import type { PortTelemetry } from '../telemetry/types.js';
import type { TlsMaterialStore } from './tls-context.js';

export interface PortDeps {
  readonly port: PortConfig;
  readonly policy: PolicyView;
  readonly clock: Clock;
  readonly telemetry: PortTelemetry;
  readonly tls: TlsMaterialStore;
  readonly trustDomains: readonly string[];
  /** Deadline for the client's TLS handshake, ms. */
  readonly handshakeTimeout: number;
  /**
   * TLS session-ticket keys (48 bytes) when several processes serve this port and must accept
   * each other's tickets; otherwise each listener keeps random keys of its own.
   */
  readonly ticketKeys?: Buffer;
  readonly log: Logger;
}

export interface PortListener {
  readonly port: PortConfig;
  /** Bind; rejects with PortlicenseError('LISTEN_FAILED') naming the port and address. Resolves the bound address. */
  listen(): Promise<HostPort>;
  activeConnections(): number;
  /** Stop accepting; let open requests/flows finish until `deadlineMs` passes, then cut them. Idempotent. */
  drain(deadlineMs: number): Promise<void>;
}

/** Who is on the other end of an accepted, handshaken connection. */
export interface Peer {
  /** The verified SPIFFE ID, or null when the certificate chained but the identity is unusable. */
  readonly identity: string | null;
  /** Why identity is null (SPEC §2.2 `bad_identity`), for logs. */
  readonly identityError: string | null;
  /** Remote IP address of the caller (the request origin). */
  readonly origin: string;
}
