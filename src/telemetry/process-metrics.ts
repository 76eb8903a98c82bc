/**
 * prom-client's process metrics (CPU, memory, handles, GC, event-loop delay), as the sidecar and
 * the authority export them.
 *
 * The event-loop delay histogram is a libuv timer that records how late it fires. prom-client
 * leaves its interval at node's default, 10 ms, and that timer then wakes an idle process 100
 * times a second, forever: on a node with a sidecar beside every service that is the sidecar's
 * main cost while nothing happens. Sampled every 100 ms, any stall of 100 ms or more is still
 * seen, and a shorter one with a chance in proportion to its length.
 */
import { collectDefaultMetrics, type Registry } from 'prom-client';

/** How often the event-loop delay histogram samples, in milliseconds. */
export const EVENT_LOOP_SAMPLE_MS = 100;

export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
}
