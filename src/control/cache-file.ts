/**
 * The last good bundle on disk, so a sidecar restarted while the authority is down keeps enforcing
 * it. Written atomically (temp file, fsync, rename, fsync of the folder): a crash mid-write leaves
 * the previous file intact, never a torn one. Read back through the same verification as a bundle
 * from the network, so a tampered cache file is refused.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { verifyBundle } from '../policy/bundle.js';
import type { BundlePayload } from '../policy/types.js';

export function writeFileDurably(file: string, text: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file is already gone
    }
    throw err;
  }
  const dir = openSync(dirname(file), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** The verified payload of the cache file, or undefined when there is none. Throws when it is bad. */
export function readCacheFile(
  file: string,
  publicKey: KeyObject,
): { payload: BundlePayload; text: string } | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return { payload: verifyBundle(text, publicKey), text };
}
