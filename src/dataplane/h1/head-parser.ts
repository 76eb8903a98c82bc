/**
 * What the request-head and response-head parsers share: one scanner per connection, the notes
 * taken on the fields that decide framing, and the feed loop. A subclass only builds its head from
 * a complete scan.
 *
 * A parser made with `headerStrings: false` leaves a head's `headers` empty: the code that reads it
 * (the fast lane) works on the head's bytes through `spans()`, and asks for `fieldList()` only for
 * the rare head it cannot rewrite in bytes. Either is valid until the next `execute` or `release`.
 */
import { NEED_MORE, type H1Error, type NeedMore } from './errors.js';
import { FieldNotes, fieldStrings, noteFields } from './head-fields.js';
import { DONE, HeadScanner, MORE, type HeadLimits, type HeadSpans } from './head-scanner.js';

/** The `headers` of a head parsed without header strings. */
export const NO_HEADERS: string[] = Object.freeze([]) as unknown as string[];

export abstract class HeadParser<H> {
  protected readonly scanner: HeadScanner;
  protected readonly notes = new FieldNotes();

  constructor(
    response: boolean,
    limits: HeadLimits,
    protected readonly headerStrings: boolean,
  ) {
    this.scanner = new HeadScanner(response, limits);
  }

  /**
   * Feed `chunk[offset..]`. "more": every byte belongs to a head still incomplete (call again with
   * the next chunk); a head: its `end` says where in this chunk the head ended; an error: the head
   * is refused. After a head or an error the parser is ready for the next head.
   */
  execute(chunk: Buffer, offset = 0): H | H1Error | NeedMore {
    const sc = this.scanner;
    const r = sc.execute(chunk, offset);
    if (r === MORE) return NEED_MORE;
    if (r !== DONE) {
      sc.reset();
      return sc.error;
    }
    const head = this.build();
    if ((head as H1Error).kind === 'error') sc.reset();
    return head;
  }

  /** The bytes of the head `execute` just returned, until the next `execute` or `release`. */
  spans(): HeadSpans {
    return this.scanner;
  }

  /** The header fields of the head `execute` just returned, as `headers` has them. */
  fieldList(): string[] {
    const sc = this.scanner;
    return fieldStrings(sc, sc.text());
  }

  /** Let go of the last head's bytes (the chunk they are in is the caller's). */
  release(): void {
    this.scanner.reset();
  }

  /** Note the framing fields; build `headers` unless made without header strings. */
  protected fields(): string[] | H1Error {
    const sc = this.scanner;
    const e = noteFields(sc, this.notes);
    if (e !== undefined) return e;
    return this.headerStrings ? this.fieldList() : NO_HEADERS;
  }

  /** The head of a complete scan, or why it is refused. */
  protected abstract build(): H | H1Error;
}
