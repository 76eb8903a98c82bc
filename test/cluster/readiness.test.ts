/** /readyz with workers: the source's reasons, plus every worker listening at the current version. */
import { describe, expect, it } from 'vitest';
import { readiness } from '../../src/cluster/primary.js';
import type { SlotView } from '../../src/cluster/pool.js';

const w = (slot: number, state: SlotView['state'], version: number | null, silentMs = 200): SlotView => ({
  slot,
  state,
  version,
  pid: state === 'exited' ? null : 100 + slot,
  restarts: 0,
  silentMs: state === 'listening' ? silentMs : null,
});
/** The pool's `unresponsiveAfterMs` with its default hang timeout. */
const SILENT = 5_000;
const ok = { ok: true, reasons: [] };

describe('cluster readiness', () => {
  it('is ready when the source is and every worker enforces the current version', () => {
    expect(readiness(ok, [w(1, 'listening', 4), w(2, 'listening', 4, 4_999)], 4, SILENT)).toEqual(ok);
  });

  it('names a worker that is restarting, behind or silent, and keeps the source reasons', () => {
    const r = readiness(
      { ok: false, reasons: ['no successful sync yet'] },
      [w(1, 'exited', null), w(2, 'listening', 3), w(3, 'starting', null), w(4, 'listening', 4, 6_250)],
      4,
      SILENT,
    );
    expect(r).toEqual({
      ok: false,
      reasons: [
        'no successful sync yet',
        'data-plane worker 1 of 4 is not serving (exited)',
        'data-plane worker 2 of 4 enforces bundle version 3, not 4',
        'data-plane worker 3 of 4 is not serving (starting)',
        'data-plane worker 4 of 4 has not answered for 6.3 s (event loop blocked?)',
      ],
    });
  });
});
