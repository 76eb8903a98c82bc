/**
 * The last good bundle on disk, so a sidecar restarted while the authority is down keeps enforcing
 * it. Written atomically (temp file, fsync, rename, fsync of the folder): a crash mid-write leaves
 * the previous file intact, never a torn one. Read back through the same verification as a bundle
 * from the network, so a tampered cache file is refused.
 */
import { readFileSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { verifyBundle } from '../policy/bundle.js';
import type { BundlePayload } from '../policy/types.js';

/** Write `data` to `file` atomically and durably (see the module comment). */
export async function writeFileDurably(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dir = await open(dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
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
