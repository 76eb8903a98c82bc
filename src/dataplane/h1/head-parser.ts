/**
 * What the request-head and response-head parsers share: one scanner per connection, the notes
 * taken on the fields that decide framing, and the feed loop. A subclass only builds its head from
 * a complete scan.
 */
import { NEED_MORE, type H1Error, type NeedMore } from './errors.js';
import { FieldNotes } from './head-fields.js';
import { DONE, HeadScanner, MORE, type HeadLimits } from './head-scanner.js';

export abstract class HeadParser<H> {
  protected readonly scanner: HeadScanner;
  protected readonly notes = new FieldNotes();

  constructor(response: boolean, limits: HeadLimits) {
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
    sc.reset();
    return head;
  }

  /** The head of a complete scan, or why it is refused. */
  protected abstract build(): H | H1Error;
}
