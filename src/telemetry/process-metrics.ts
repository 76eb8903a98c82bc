/**
 * prom-client's process metrics (CPU, memory, handles, event-loop delay, heap), as the sidecar and
 * the authority export them — all of prom-client's defaults but one, the GC duration histogram.
 *
 * - The GC histogram is a `PerformanceObserver` on node's `gc` entries: node then times every
 *   collection (incremental marking steps too) and hands each to JavaScript. In same-run A/B
 *   runs of the open loop (2,000 req/s, `npm run bench`) a sidecar without it had 0.79–0.80× the
 *   p99 three times and 0.97× once, against an A/A spread of about 1.25×: likely a modest gain.
 *   A sidecar's operator has little use for GC durations, so it is left out; `nodejs_heap_*` still
 *   show the heap.
 * - The event-loop delay histogram is a libuv timer that records how late it fires. prom-client
 *   leaves its interval at node's default, 10 ms, and that timer then wakes an idle process 100
 *   times a second, forever: for a sidecar that waits most of the time, that was most of what it
 *   did while nothing happened. Sampled every 100 ms, any stall of 100 ms or more is still seen,
 *   and a shorter one with a chance in proportion to its length.
 *
 * prom-client registers its defaults all at once; one at a time they are its per-metric modules
 * (lib/metrics/<name>.js, one per entry of `collectDefaultMetrics.metricsList`), which its package
 * does not export as API: the version is pinned by package-lock.json, and
 * test/telemetry/metrics.test.ts checks every one of them is registered.
 */
import { createRequire } from 'node:module';
import { collectDefaultMetrics, type Registry } from 'prom-client';

/** How often the event-loop delay histogram samples, in milliseconds. */
export const EVENT_LOOP_SAMPLE_MS = 100;

/** The default metric left out (see above). */
export const LEFT_OUT = 'gc';

type RegisterMetric = (registry: Registry, config: { eventLoopMonitoringPrecision: number }) => void;

const require = createRequire(import.meta.url);

export function registerProcessMetrics(registry: Registry): void {
  const config = { eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS };
  for (const name of collectDefaultMetrics.metricsList) {
    if (name === LEFT_OUT) continue;
    (require(`prom-client/lib/metrics/${name}.js`) as RegisterMetric)(registry, config);
  }
}
