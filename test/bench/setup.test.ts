/** bench/setup.ts: the ports a run hands its targets never repeat within the run. */
import { describe, expect, it } from 'vitest';
import { freePort } from '../../bench/setup.js';

describe('freePort', () => {
  it('never hands out a port twice in one process, even when the kernel offers it again', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 300; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
    for (const p of ports) expect(p).toBeGreaterThan(0);
  });
});
