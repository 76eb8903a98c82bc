/**
 * File handling for PKI material. Keys and certificates are written atomically (temp file in the
 * same folder, fsync, rename) so a sidecar that hot-reloads them, or an operator who interrupts a
 * command, never sees a half-written PEM; modes are set exactly, not left to the umask.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { PortlicenseError } from '../errors.js';

/** Mode of private keys: owner read/write only. */
export const PRIVATE_MODE = 0o600;
/** Mode of certificates, public keys and metadata. */
export const PUBLIC_MODE = 0o644;

/**
 * Write `data` to `path` with exactly `mode`, atomically: readers see the old file or the new one,
 * never a prefix. The folder must exist.
 */
export function writeFileAtomic(path: string, data: string, mode: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    // 'wx' refuses to follow a planted file or symlink at the temp name; the mode is set at creation
    // so a private key is never readable by others, even for an instant.
    fd = openSync(tmp, 'wx', mode);
    fchmodSync(fd, mode);
    writeFileSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw new PortlicenseError('INTERNAL', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
  syncDir(dirname(path));
}

/** Persist the rename itself; best effort, since not every platform can fsync a directory. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Windows and some file systems refuse; the data is already written, only durability is weaker.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Read a PEM file, with errors that name the file and say what it was supposed to be.
 * @param what what the file holds, for the message: `CA certificate`, `CA private key`.
 * @param hint appended to a "not found" message, e.g. how to create the file.
 * @throws PortlicenseError FILE_UNREADABLE when missing or unreadable, TLS_MATERIAL_INVALID when
 * it holds no PEM block.
 */
export function readPemFile(path: string, what: string, hint?: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'not found' : (err as Error).message;
    const suffix = code === 'ENOENT' && hint ? ` (${hint})` : '';
    throw new PortlicenseError('FILE_UNREADABLE', `${what} ${path}: ${reason}${suffix}`, { cause: err });
  }
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(text)) {
    throw new PortlicenseError(
      'TLS_MATERIAL_INVALID',
      `${what} ${path}: not a PEM file (no "-----BEGIN" line)`,
    );
  }
  return text;
}
