/**
 * Temp folders for tests: real files in the OS temp dir, one fresh folder per test or suite,
 * removed afterwards whatever the test left in it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh, empty folder under the OS temp dir, named `<prefix>XXXXXX`. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Remove a folder and everything in it; one that is already gone is fine. */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Create `dir` holding a file `placeholder` for each name: for config loaders that check that
 * certificate files exist, not what they hold.
 */
export function writePlaceholders(dir: string, names: readonly string[]): void {
  mkdirSync(dir);
  for (const f of names) writeFileSync(join(dir, f), 'placeholder\n');
}
