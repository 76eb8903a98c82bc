/**
 * A cluster data-plane worker run in-process (src/cluster/worker.ts), driven through a fake IPC
 * channel the way the control plane drives it, and the sidecar config the cluster tests give it:
 * one `orders/db` TCP port in front of a local upstream.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ToPrimary, ToWorker } from '../../src/cluster/messages.js';
import type { TelemetryBatch } from '../../src/cluster/telemetry-export.js';
import { runWorker } from '../../src/cluster/worker.js';
import { loadSidecarConfig } from '../../src/config/sidecar.js';
import type { SidecarConfig } from '../../src/config/types.js';
import type { LogSink } from '../../src/log.js';

export interface TestWorker {
  /** Messages the worker sent, in order. */
  readonly sent: ToPrimary[];
  /** Exit codes it asked for. */
  readonly exits: number[];
  /** Hand the worker a message, as the control plane's IPC would. */
  readonly deliver: (msg: unknown) => void;
  /** Tell it to drain now. */
  readonly drain: () => void;
}

export function startTestWorker(opts: { id: number; logSink: LogSink; flushMs: number }): TestWorker {
  const sent: ToPrimary[] = [];
  const exits: number[] = [];
  let onMessage: (msg: unknown) => void = () => {};
  runWorker({
    ...opts,
    channel: {
      send: (msg, done) => {
        sent.push(msg);
        done?.();
      },
      onMessage: (cb) => (onMessage = cb),
    },
    exit: (code) => exits.push(code),
  });
  return {
    sent,
    exits,
    deliver: (msg) => onMessage(msg),
    drain: () => onMessage({ pl: 1, t: 'drain', deadline: Date.now() } satisfies ToWorker),
  };
}

/**
 * Write and load `dir/sidecar.yaml`: node-a, trust domain example.org, the TLS files of
 * `writeTlsFiles(dir, …, { name: 'orders' })`, a bundle file authority, and one `orders/db` TCP port
 * on 127.0.0.1:0 in front of 127.0.0.1:`upstreamPort`. `extra` is appended (e.g. `workers: 2`).
 */
export function dbSidecarConfig(dir: string, upstreamPort: number, extra = ''): SidecarConfig {
  const file = join(dir, 'sidecar.yaml');
  writeFileSync(
    file,
    `node: node-a
trustDomains: [example.org]
tls: { ca: ca.pem, cert: orders.pem, key: orders-key.pem }
authority: { bundleFile: bundle.json, signingPublicKey: signing.pub.pem }
ports:
  - { name: db, service: orders, protocol: tcp, listen: 127.0.0.1:0, upstream: 127.0.0.1:${upstreamPort} }
admin: { listen: 127.0.0.1:0 }
${extra}`,
  );
  return loadSidecarConfig(file);
}

/**
 * A worker's telemetry batch with nothing in it but `over`. Typed loosely on purpose: tests hand
 * the control plane batches it must refuse or partly skip.
 */
export function telemetryBatch(over: Record<string, unknown> = {}): TelemetryBatch {
  return {
    counters: [],
    gauges: [],
    histograms: [],
    usage: [],
    denials: [],
    recentDenials: [],
    merged: { usage: 0, denials: 0 },
    outbound: [],
    ...over,
  };
}
