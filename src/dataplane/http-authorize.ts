/**
 * The per-request decision of an http port (SPEC §2.3, §2.5, §2.6), shared by plain requests and
 * Upgrade requests: decide against the current snapshot, apply the port's mode, and count. The
 * steady state of an allowed request on a kept-alive connection is one `decide` and two field
 * writes on the cached usage entry — no lookups, no allocation.
 */
import type { PortMode } from '../config/types.js';
import type { CompiledLicense, DenyReason, PolicyView } from '../policy/types.js';
import type { PortTelemetry, UsageEntry } from '../telemetry/types.js';
import type { Peer } from './types.js';

/** What an http connection remembers between its requests. */
export interface HttpConnection {
  readonly peer: Peer;
  /** Usage entry of the license that last admitted a request here (see `authorize`). */
  usage: UsageEntry | null;
  /** The forwarded request whose body is still being read, if any (see http-proxy's clientError). */
  reading: { abandon(): void } | null;
}

/**
 * The outcome for one request: the admitting license (allow), or the deny reason with
 * `forward` telling whether audit mode lets it through anyway.
 */
export interface Verdict {
  license: CompiledLicense | null;
  reason: DenyReason | null;
  forward: boolean;
}

export interface Authorizer {
  /**
   * Decide and count one request; `path` is normalised. Writes into `out` (one per request, owned
   * by the caller) and returns it.
   */
  authorize(conn: HttpConnection, method: string, path: string, now: number, out: Verdict): Verdict;
}

export function createAuthorizer(opts: {
  portKey: string;
  mode: PortMode;
  policy: PolicyView;
  telemetry: PortTelemetry;
}): Authorizer {
  const { portKey, policy, telemetry } = opts;
  const audit = opts.mode === 'audit';
  return {
    authorize(conn, method, path, now, out) {
      const identity = conn.peer.identity;
      const r =
        identity === null ? 'bad_identity' : policy.current().decide(portKey, identity, now, method, path);
      if (typeof r !== 'string') {
        let entry = conn.usage;
        if (entry === null || entry.licenseId !== r.id)
          entry = conn.usage = telemetry.usage(r.id, identity!, conn.peer.origin);
        entry.at = now;
        entry.count++;
        telemetry.decision('allow', null);
        out.license = r;
        out.reason = null;
        out.forward = true;
        return out;
      }
      out.license = null;
      out.reason = r;
      out.forward = audit;
      if (audit) {
        telemetry.decision('audit_deny', r);
      } else {
        telemetry.decision('deny', r);
        telemetry.denial(identity, r, conn.peer.origin, now);
      }
      return out;
    },
  };
}
