/**
 * prom-client's process metrics (CPU, memory, handles, GC, event-loop delay), as the sidecar and
 * the authority export them.
 *
 * The event-loop delay histogram is a libuv timer that records how late it fires. prom-client
 * leaves its interval at node's default, 10 ms, and that timer then wakes an idle process 100
 * times a second, forever: for a sidecar that waits most of the time, that was most of what it did
 * while nothing happened. Sampled every 100 ms, any stall of 100 ms or more is still seen, and a
 * shorter one with a chance in proportion to its length.
 */
import { collectDefaultMetrics, type Registry } from 'prom-client';

/** How often the event-loop delay histogram samples, in milliseconds. */
export const EVENT_LOOP_SAMPLE_MS = 100;

export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
}
