import { describe, expect, it } from 'vitest';
import { formatDuration, formatTime, parseDuration, parseTime } from '../../src/config/duration.js';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['90s', 90_000],
    ['15m', 900_000],
    ['24h', 86_400_000],
    ['30d', 2_592_000_000],
    ['1ms', 1],
  ])('%s -> %d ms', (s, ms) => {
    expect(parseDuration(s)).toBe(ms);
  });

  it.each([
    '',
    '30',
    '30 s',
    ' 30s',
    '30s ',
    '1.5h',
    '1h30m',
    '30S',
    '30w',
    'abc',
    's',
    '+30s',
    '0x10s',
    '3e2s',
  ])('rejects %j with the expected forms', (s) => {
    expect(() => parseDuration(s)).toThrow(
      /expected a whole number followed by ms, s, m, h or d \(e\.g\. 90s/,
    );
  });

  it('rejects zero and negative', () => {
    expect(() => parseDuration('0s')).toThrow('invalid duration "0s": must be greater than zero');
    expect(() => parseDuration('0ms')).toThrow(/greater than zero/);
    expect(() => parseDuration('-5s')).toThrow('invalid duration "-5s": must be positive');
  });

  it('rejects overflow', () => {
    expect(() => parseDuration('99999999999999999999d')).toThrow(/too large/);
    expect(() => parseDuration(`${Number.MAX_SAFE_INTEGER}d`)).toThrow(/too large/);
    expect(parseDuration(`${Number.MAX_SAFE_INTEGER}ms`)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('throws a plain Error', () => {
    let err: unknown;
    try {
      parseDuration('x');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).constructor).toBe(Error);
  });
});

describe('formatDuration', () => {
  it.each([
    [86_400_000, '24h'],
    [2_592_000_000, '30d'],
    [259_200_000, '72h'],
    [345_600_000, '4d'],
    [90_000, '90s'],
    [900_000, '15m'],
    [3_600_000, '1h'],
    [1_500, '1500ms'],
    [0, '0s'],
  ])('%d -> %s', (ms, s) => {
    expect(formatDuration(ms)).toBe(s);
  });

  it('round-trips through parseDuration', () => {
    for (const ms of [1, 999, 1_000, 61_000, 3_600_000, 86_400_000, 90 * 86_400_000, 123_456_789]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });

  it('rejects negative and fractional input', () => {
    expect(() => formatDuration(-1)).toThrow(/cannot format/);
    expect(() => formatDuration(1.5)).toThrow(/cannot format/);
  });
});

describe('parseTime', () => {
  it.each([
    ['2026-11-28T10:00:00Z', Date.UTC(2026, 10, 28, 10)],
    ['2026-11-28t10:00:00z', Date.UTC(2026, 10, 28, 10)],
    ['2026-11-28T11:00:00+01:00', Date.UTC(2026, 10, 28, 10)],
    ['2026-11-28T05:30:00-04:30', Date.UTC(2026, 10, 28, 10)],
    ['2026-11-28T10:00:00.5Z', Date.UTC(2026, 10, 28, 10, 0, 0, 500)],
    ['2026-11-28T10:00:00.123456789Z', Date.UTC(2026, 10, 28, 10, 0, 0, 123)],
    ['2024-02-29T00:00:00Z', Date.UTC(2024, 1, 29)],
    ['0050-01-01T00:00:00Z', -60589296000000],
  ])('%s', (s, ms) => {
    expect(parseTime(s)).toBe(ms);
  });

  it('requires a time zone, with a hint', () => {
    expect(() => parseTime('2026-11-28T10:00:00')).toThrow(/add a time zone: Z or \+hh:mm/);
  });

  it.each([
    '2026-11-28',
    '2026-11-28 10:00:00Z',
    '2026-11-28T10:00Z',
    '2026-11-28T10:00:00+0100',
    'yesterday',
    '1732787200',
    '2026-11-28T10:00:00Z ',
  ])('rejects %j', (s) => {
    expect(() => parseTime(s)).toThrow(/expected RFC 3339/);
  });

  it.each([
    ['2026-13-01T00:00:00Z', 'month'],
    ['2026-02-29T00:00:00Z', 'day'],
    ['2026-04-31T00:00:00Z', 'day'],
    ['2026-01-01T24:00:00Z', 'hour'],
    ['2026-01-01T00:60:00Z', 'minute'],
    ['2026-12-31T23:59:60Z', 'second'],
    ['2026-01-01T00:00:00+24:00', 'time zone offset'],
  ])('rejects out-of-range %s (%s)', (s, what) => {
    expect(() => parseTime(s)).toThrow(`${what} out of range`);
  });
});

describe('formatTime', () => {
  it('drops a zero fraction and keeps a real one', () => {
    expect(formatTime(Date.UTC(2026, 10, 28, 10))).toBe('2026-11-28T10:00:00Z');
    expect(formatTime(Date.UTC(2026, 10, 28, 10, 0, 0, 250))).toBe('2026-11-28T10:00:00.250Z');
    expect(parseTime(formatTime(1_790_000_000_123))).toBe(1_790_000_000_123);
  });
});
