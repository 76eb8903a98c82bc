/**
 * With several processes writing JSON lines to one stdout, a line must never be cut in two by
 * another process's write. A pipe write of at most PIPE_BUF bytes is atomic (POSIX), so the
 * batched chunk of log.ts is written in pieces of whole lines that each fit in PIPE_BUF; a single
 * line longer than that is written alone (and is the only one that could interleave).
 */
import { BatchedSink, type LogSink } from '../log.js';

/** Linux's PIPE_BUF, the POSIX minimum being 512. */
export const PIPE_BUF = 4096;

/** Split `chunk` (lines ending in `\n`) into pieces of whole lines of at most `max` bytes. */
export function splitLines(chunk: string, max = PIPE_BUF): string[] {
  if (Buffer.byteLength(chunk) <= max) return [chunk];
  const out: string[] = [];
  let piece = '';
  let pieceBytes = 0;
  let start = 0;
  while (start < chunk.length) {
    const nl = chunk.indexOf('\n', start);
    const end = nl === -1 ? chunk.length : nl + 1;
    const line = chunk.slice(start, end);
    const bytes = Buffer.byteLength(line);
    if (pieceBytes > 0 && pieceBytes + bytes > max) {
      out.push(piece);
      piece = '';
      pieceBytes = 0;
    }
    piece += line;
    pieceBytes += bytes;
    start = end;
  }
  if (pieceBytes > 0) out.push(piece);
  return out;
}

/** A batched sink whose writes never interleave with other processes' lines on a shared pipe. */
export function lineAtomicSink(out: { write(chunk: string): unknown } = process.stdout): BatchedSink {
  return new BatchedSink({
    write: (chunk: string) => {
      for (const piece of splitLines(chunk)) out.write(piece);
    },
  });
}

/**
 * A sink that adds `fields` at the end of every JSON-object line written through it. The fields
 * are serialised once, so a line costs one string concatenation, not a parse and a re-encode.
 */
export function withFields(sink: LogSink, fields: Record<string, unknown>): LogSink {
  const members = JSON.stringify(fields).slice(1); // `"worker":3}`
  if (members === '}') return sink;
  return {
    write: (line) => {
      if (!line.endsWith('}')) sink.write(line);
      else if (line.length > 2) sink.write(`${line.slice(0, -1)},${members}`);
      else sink.write(`{${members}`);
    },
  };
}
