/**
 * Structured JSON logging, one line per event on stdout. Writes are queued and flushed together
 * on the next tick, so a burst of access-log lines never turns into a burst of synchronous writes
 * on the data path (stdout to a pipe is synchronous in Node on Linux).
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose lines all carry `fields`. */
  child(fields: LogFields): Logger;
}

export interface LogSink {
  write(line: string): void;
}

/** Batches lines and hands them to a stream once per tick. */
export class BatchedSink implements LogSink {
  private buf: string[] = [];
  private scheduled = false;
  constructor(private readonly out: { write(chunk: string): unknown } = process.stdout) {}

  write(line: string): void {
    this.buf.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.buf.length === 0) return;
    const chunk = this.buf.join('\n') + '\n';
    this.buf = [];
    this.out.write(chunk);
  };
}

/** Keeps lines in memory; for tests. */
export class MemorySink implements LogSink {
  readonly lines: LogFields[] = [];
  write(line: string): void {
    this.lines.push(JSON.parse(line) as LogFields);
  }
}

export function createLogger(
  opts: { level?: LogLevel; sink?: LogSink; fields?: LogFields; now?: () => number } = {},
): Logger {
  const min = RANK[opts.level ?? 'info'];
  const sink = opts.sink ?? new BatchedSink();
  const base = opts.fields ?? {};
  const now = opts.now ?? Date.now;
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (RANK[level] < min) return;
    sink.write(
      JSON.stringify({ time: new Date(now()).toISOString(), level, msg, ...base, ...fields }, errorReplacer),
    );
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ ...opts, sink, fields: { ...base, ...fields } }),
  };
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { message: value.message, code: (value as { code?: unknown }).code };
  return value;
}

/** A logger that drops everything; the default in unit tests. */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
