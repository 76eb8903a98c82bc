/**
 * Entry point of a data-plane worker process, forked by the control plane (primary.ts) through
 * node:cluster. It is not a CLI command: it only speaks the IPC protocol of messages.ts.
 *
 * Signals are the control plane's business: a Ctrl-C reaches the whole process group, and a
 * worker that drained on its own would race the control plane's ordered drain. Workers ignore
 * SIGINT, SIGTERM and SIGHUP, and end when told to or when the control plane is gone (node:cluster
 * exits a worker whose IPC channel closes).
 */
import cluster from 'node:cluster';
import { lineAtomicSink } from './log-sink.js';
import type { ToPrimary } from './messages.js';
import { runWorker } from './worker.js';

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => {});
// As /status numbers it (slot 1..N, kept across restarts), not node's cluster id.
process.title = `portlicense sidecar worker ${process.env.PORTLICENSE_WORKER_SLOT ?? cluster.worker?.id ?? 0}`;

const sink = lineAtomicSink();
runWorker({
  id: cluster.worker?.id ?? 0,
  logSink: sink,
  channel: {
    send: (msg: ToPrimary, done?: () => void) => {
      if (!process.connected) return done?.();
      process.send!(msg, undefined, undefined, done ? () => done() : undefined);
    },
    onMessage: (cb) => process.on('message', cb),
  },
  exit: (code) => {
    sink.flush();
    process.exit(code);
  },
});
