/**
 * `npm run bench:alloc`: garbage collections during 3e6 rounds of the data path's telemetry calls
 * (a counter bump and a timestamp each), in a process of its own. Zero or one or two means no
 * per-call allocation; each 16 bytes per call would add several young-generation collections.
 * Prints `{"gcs": N, "count": N}`. (Inside the test runner this was not a stable measurement: the
 * runner's own traffic and a JIT starved of CPU on a loaded machine allocate too.)
 */
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { ManualClock } from '../src/clock.js';
import { MemorySink } from '../src/log.js';
import { createAccessLogger } from '../src/telemetry/access-log.js';
import { createSidecarMetrics } from '../src/telemetry/metrics.js';
import { createPortTelemetry } from '../src/telemetry/port-telemetry.js';
import { UsageTracker } from '../src/telemetry/usage.js';
import { TestPolicyView } from '../test/telemetry/helpers.js';

const clock = new ManualClock('2026-11-28T10:00:00Z');
const metrics = createSidecarMetrics({
  policy: new TestPolicyView(),
  usage: new UsageTracker(),
  clock,
  defaultMetrics: false,
});
const t = createPortTelemetry(
  metrics,
  { service: 'orders', name: 'http', protocol: 'http' },
  { accessLog: createAccessLogger(new MemorySink(), clock) },
);
const e = t.usage('lic_1', 'spiffe://example.org/ns/default/sa/frontend', '10.0.0.1');
const hot = (i: number): void => {
  t.connectionOpened();
  t.decision('allow', null);
  t.decision('deny', 'path_not_allowed');
  t.decision('audit_deny', 'expired');
  t.bytes('in', 512);
  t.bytes('out', 4096);
  t.requestDuration((i % 1000) * 1e-4);
  e.at = 1.79e12 + i; // a real timestamp: past the small-integer range, as byte counters get too
  e.count++;
  t.handshakeError('untrusted_cert');
  t.terminated('revoked');
  t.connectionClosed();
};
// The loop is a function of its own, warmed up like `hot`, so both run optimised: a loop left in
// module code runs unoptimised and boxes every double it passes on.
const run = (n: number): void => {
  for (let i = 0; i < n; i++) hot(i);
};
for (let k = 0; k < 8; k++) run(50_000);
await new Promise((r) => setTimeout(r, 50));
run(100_000);

const gcs: number[] = [];
const obs = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcs.push(entry.startTime);
});
obs.observe({ entryTypes: ['gc'] });
const start = performance.now();
run(3_000_000);
const end = performance.now();
// GC entries are delivered asynchronously; let the next macrotask drain them.
setTimeout(() => {
  obs.disconnect();
  process.stdout.write(
    JSON.stringify({ gcs: gcs.filter((at) => at >= start && at <= end).length, count: e.count }) + '\n',
  );
}, 20);
