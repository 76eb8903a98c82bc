/**
 * Catching the error a call must throw, for tests that look at its code and message: a call that
 * returns normally fails the test with `unexpected`.
 */
import { ConfigError } from '../../src/errors.js';

/** What `fn` throws; throws `Error(unexpected)` when it returns instead. */
export function thrown(fn: () => unknown, unexpected = 'expected an error'): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error(unexpected);
}

/** The ConfigError `fn` throws; any other error is thrown on, and returning fails too. */
export function configErrorOf(fn: () => unknown, unexpected = 'expected a ConfigError'): ConfigError {
  const err = thrown(fn, unexpected);
  if (err instanceof ConfigError) return err;
  throw err;
}
