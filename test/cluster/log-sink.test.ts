/** Log lines from several processes: chunks split at line boundaries, each piece within PIPE_BUF. */
import { describe, expect, it } from 'vitest';
import { lineAtomicSink, PIPE_BUF, splitLines, withFields } from '../../src/cluster/log-sink.js';
import { MemorySink } from '../../src/log.js';

describe('splitLines', () => {
  it('keeps a small chunk whole', () => {
    expect(splitLines('{"a":1}\n{"b":2}\n')).toEqual(['{"a":1}\n{"b":2}\n']);
  });

  it('cuts only between lines, every piece within the limit', () => {
    const lines = Array.from({ length: 50 }, (_, i) => `{"i":${i},"pad":"${'x'.repeat(i * 7)}"}\n`);
    const pieces = splitLines(lines.join(''), 512);
    expect(pieces.join('')).toBe(lines.join(''));
    for (const p of pieces) {
      expect(Buffer.byteLength(p) <= 512 || p.split('\n').length === 2).toBe(true);
      expect(p.endsWith('\n')).toBe(true);
    }
    expect(pieces.length).toBeGreaterThan(1);
  });

  it('writes a line longer than the limit alone', () => {
    const long = `{"x":"${'é'.repeat(300)}"}\n`;
    expect(splitLines(`{"a":1}\n${long}{"b":2}\n`, 256)).toEqual(['{"a":1}\n', long, '{"b":2}\n']);
  });

  it('counts bytes, not characters', () => {
    const line = `${'é'.repeat(100)}\n`; // 201 bytes
    expect(splitLines(line + line, 300)).toEqual([line, line]);
  });
});

describe('lineAtomicSink', () => {
  it('batches lines per tick and writes pieces of whole lines', async () => {
    const writes: string[] = [];
    const sink = lineAtomicSink({ write: (c: string) => writes.push(c) });
    const line = `{"pad":"${'y'.repeat(1000)}"}`;
    for (let i = 0; i < 10; i++) sink.write(line);
    expect(writes).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(writes.join('')).toBe(`${line}\n`.repeat(10));
    for (const w of writes) expect(Buffer.byteLength(w)).toBeLessThanOrEqual(PIPE_BUF);
  });
});

describe('withFields', () => {
  it('adds the fields at the end of every JSON-object line, keeping the rest byte for byte', () => {
    const lines: string[] = [];
    const sink = withFields({ write: (l) => lines.push(l) }, { worker: 3 });
    sink.write('{"time":"t","log":"access","port":"orders/\\"db\\"","path":"/a}"}');
    sink.write('{}');
    sink.write('not json');
    expect(lines).toEqual([
      '{"time":"t","log":"access","port":"orders/\\"db\\"","path":"/a}","worker":3}',
      '{"worker":3}',
      'not json',
    ]);
  });

  it('yields lines that parse, with the fields last', () => {
    const mem = new MemorySink();
    withFields(mem, { worker: 12, node: 'node-a' }).write(JSON.stringify({ a: 1, b: 'x"}' }));
    expect(mem.lines).toEqual([{ a: 1, b: 'x"}', worker: 12, node: 'node-a' }]);
    expect(Object.keys(mem.lines[0]!)).toEqual(['a', 'b', 'worker', 'node']);
  });

  it('is the sink itself when there is nothing to add', () => {
    const mem = new MemorySink();
    expect(withFields(mem, {})).toBe(mem);
  });
});
