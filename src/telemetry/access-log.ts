/**
 * Access log: one JSON line per AccessRecord, tagged `"log":"access"` so it can be split from the
 * operational log that shares stdout. Lines go through the batched sink of log.ts, so a burst of
 * requests becomes one write per tick, never a synchronous write per request.
 */
import { systemClock, type Clock } from '../clock.js';
import { BatchedSink, type LogSink } from '../log.js';
import type { AccessRecord } from './types.js';

export interface AccessLogger {
  /** Log one access on `port` (`service/port`). */
  write(port: string, record: AccessRecord): void;
  /** A writer for one port, with its part of the line prepared once. */
  forPort(port: string): (record: AccessRecord) => void;
}

/**
 * Lines look like
 * `{"time":"2026-11-28T10:00:00.000Z","log":"access","port":"orders/http","kind":"http","decision":"deny",...}`:
 * time, the tag and the port first, then the record's own fields (absent optional ones omitted).
 */
export function createAccessLogger(
  sink: LogSink = new BatchedSink(),
  clock: Clock = systemClock,
): AccessLogger {
  const forPort = (port: string): ((record: AccessRecord) => void) => {
    const tail = `","log":"access","port":${JSON.stringify(port)}`;
    return (record) => {
      // Splice the record's JSON into the prefix instead of spreading it into a new object.
      const body = JSON.stringify(record);
      const rest = body.length > 2 ? `,${body.slice(1)}` : '}';
      sink.write(`{"time":"${new Date(clock.now()).toISOString()}${tail}${rest}`);
    };
  };
  return {
    write: (port, record) => forPort(port)(record),
    forPort,
  };
}
