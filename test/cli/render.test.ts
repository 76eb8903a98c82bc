/** The relative times the CLI prints beside timestamps (src/cli/render.ts). */
import { describe, expect, it } from 'vitest';
import { relative, span } from '../../src/cli/render.js';

describe('span', () => {
  it('rounds before it picks the unit, so a span just under a boundary reads as the larger unit', () => {
    expect(span(119_900)).toBe('2m'); // a 2-minute ttl read back a moment later
    expect(span(119_400)).toBe('119s');
    expect(span(7_199_000)).toBe('2h');
    expect(span(86_399_900)).toBe('24h');
    expect(span(172_790_000)).toBe('2d');
    expect(span(-90_000)).toBe('90s');
    expect(span(0)).toBe('0s');
  });

  it('says in, ago, or now', () => {
    const now = Date.parse('2026-11-28T10:00:00Z');
    expect(relative('2026-11-28T10:01:59.9Z', now)).toBe('in 2m');
    expect(relative('2026-11-28T09:00:00Z', now)).toBe('60m ago');
    expect(relative('2026-11-28T10:00:00.4Z', now)).toBe('now');
    expect(relative('not a time', now)).toBe('not a time');
  });
});
