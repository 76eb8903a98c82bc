/**
 * Expiry is never silent (SPEC §3). With a bundle file nothing renews licenses, so the sidecar
 * itself warns, once per license and expiry, when a license that admitted traffic will expire
 * within `warnBefore`. (With an authority, the authority decides what cannot be renewed and the
 * sync client relays its warnings.)
 */
import type { Clock, TimerHandle } from '../clock.js';
import { formatTime } from '../config/duration.js';
import type { Logger } from '../log.js';
import type { PolicyView } from '../policy/types.js';
import type { UsageEntry } from '../telemetry/types.js';

export interface ExpiryWarningDeps {
  policy: PolicyView;
  usage: { lastAccess(licenseId: string): Readonly<UsageEntry> | undefined };
  clock: Clock;
  log: Logger;
  warnBefore: number;
  /** How often to look (default 30 s). */
  intervalMs?: number;
}

/** Check now and then every interval; returns a handle that stops it. */
export function watchExpiringInUse(deps: ExpiryWarningDeps): { check(): void; close(): void } {
  const warned = new Set<string>();
  let timer: TimerHandle | null = null;
  const check = (): void => {
    const now = deps.clock.now();
    for (const l of deps.policy.current().licenses) {
      if (l.revokedAt !== null || l.expiresAt <= now || l.expiresAt - now > deps.warnBefore) continue;
      const used = deps.usage.lastAccess(l.id);
      if (!used || used.count === 0) continue;
      const key = `${l.id}@${l.expiresAt}`;
      if (warned.has(key)) continue;
      warned.add(key);
      deps.log.warn('license in use expires soon and nothing will renew it (bundle file)', {
        license: l.id,
        subject: l.subject,
        port: l.portKey,
        expiresAt: formatTime(l.expiresAt),
        lastAccess: formatTime(used.at),
      });
    }
  };
  const loop = (): void => {
    check();
    timer = deps.clock.setTimer(loop, deps.intervalMs ?? 30_000);
  };
  timer = deps.clock.setTimer(loop, deps.intervalMs ?? 30_000);
  return { check, close: () => timer?.cancel() };
}
