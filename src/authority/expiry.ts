/**
 * The expiry ticker: expiry is never silent (SPEC §3). Licenses lapse by the clock alone, so
 * nothing in the API notices the moment; this ticker writes each lapse to the audit log (and the
 * log) shortly after it happens. It also renews licenses used since their last renewal once half
 * their ttl is left, when no report came at that moment to do it (Licensing.renewUsed).
 */
import type { Clock, TimerHandle } from '../clock.js';
import { formatTime } from '../config/duration.js';
import type { Logger } from '../log.js';
import type { Licensing } from './licensing.js';

/** How often expiries are looked for with the real clock. */
export const EXPIRY_INTERVAL_MS = 1_000;

export interface ExpiryTicker {
  /** Run one pass now; returns the ids newly recorded as expired. */
  tick(): string[];
  stop(): void;
}

export function startExpiryTicker(
  licensing: Licensing,
  clock: Clock,
  log: Logger,
  intervalMs = EXPIRY_INTERVAL_MS,
  renewed: (n: number) => void = () => undefined,
): ExpiryTicker {
  let timer: TimerHandle | undefined;
  let stopped = false;
  const tick = (): string[] => {
    try {
      const ids = licensing.renewUsed();
      renewed(ids.length);
      if (ids.length > 0)
        log.info('licenses renewed automatically', {
          licenses: ids,
          actor: 'authority',
          why: 'used since their last renewal, half their ttl left',
        });
    } catch (err) {
      log.error('renewal check failed; retrying', { err });
    }
    try {
      const ids = licensing.auditExpiries();
      for (const id of ids) {
        const l = licensing.get(id);
        log.info('license expired', {
          license: id,
          subject: l.subject,
          port: `${l.service}/${l.port}`,
          expiresAt: formatTime(l.expiresAt),
          actor: 'authority',
        });
      }
      return ids;
    } catch (err) {
      log.error('expiry check failed; retrying', { err });
      return [];
    }
  };
  const arm = (): void => {
    if (stopped) return;
    timer = clock.setTimer(() => {
      tick();
      arm();
    }, intervalMs);
  };
  arm();
  return {
    tick,
    stop: () => {
      stopped = true;
      timer?.cancel();
    },
  };
}
