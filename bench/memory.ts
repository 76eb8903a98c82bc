/**
 * Sidecar memory per license: the resident set of a sidecar whose bundle holds one license and of
 * one whose bundle holds many (10,000 by default), each after start-up and one request, in
 * alternating rounds; the difference of the medians divided by the extra licenses.
 */
import { processTree, rssBytes } from './procfs.js';
import { sleep } from './procs.js';
import type { BenchPki } from './setup.js';
import { summarize, type Summary } from './stats.js';
import { startPortlicense, statusAs, stopTarget, type UpstreamPorts } from './targets.js';

export interface MemoryResult {
  small: { licenses: number; rssBytes: Summary };
  large: { licenses: number; rssBytes: Summary };
  bytesPerLicense: number;
}

/** Settling time after the request, so start-up garbage has had a chance to be collected. */
const SETTLE_MS = 1_500;

export async function measureLicenseMemory(
  pki: BenchPki,
  up: UpstreamPorts,
  rounds: number,
  large: number,
): Promise<MemoryResult> {
  const rss: Record<number, number[]> = { 1: [], [large]: [] };
  for (let r = 0; r < rounds; r++) {
    for (const n of r % 2 === 0 ? [1, large] : [large, 1]) {
      const t = await startPortlicense(pki, up, { licenses: n, name: `memory-${n}` });
      try {
        await statusAs(t.httpPort, pki, pki.client);
        await sleep(SETTLE_MS);
        rss[n]!.push(rssBytes(processTree(t.proc!.pid)));
      } finally {
        await stopTarget(t);
      }
    }
  }
  const small = summarize(rss[1]!);
  const big = summarize(rss[large]!);
  return {
    small: { licenses: 1, rssBytes: small },
    large: { licenses: large, rssBytes: big },
    bytesPerLicense: (big.median - small.median) / (large - 1),
  };
}
