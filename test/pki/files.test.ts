import { mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PortlicenseError } from '../../src/errors.js';
import { PRIVATE_MODE, PUBLIC_MODE, readPemFile, writeFileAtomic } from '../../src/pki/files.js';
import { thrown } from '../helpers/errors.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

let tmp: string;
beforeEach(() => {
  tmp = tempDir('pl-files-');
});
afterEach(() => {
  removeDir(tmp);
});

const mode = (p: string): number => statSync(p).mode & 0o777;
const PEM = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';

const thrownBy = (fn: () => unknown) => thrown(fn) as PortlicenseError;

describe('writeFileAtomic', () => {
  it('writes the data with exactly the requested mode and leaves no temp file', () => {
    const key = join(tmp, 'key.pem');
    writeFileAtomic(key, 'secret', PRIVATE_MODE);
    expect(readFileSync(key, 'utf8')).toBe('secret');
    expect(mode(key)).toBe(0o600);
    expect(readdirSync(tmp)).toEqual(['key.pem']);
  });

  it('replaces an existing file, taking the new mode (a world-readable file becomes 0600)', () => {
    const key = join(tmp, 'key.pem');
    writeFileSync(key, 'old', { mode: 0o666 });
    writeFileAtomic(key, 'new', PRIVATE_MODE);
    expect(readFileSync(key, 'utf8')).toBe('new');
    expect(mode(key)).toBe(0o600);
  });

  it('replaces a symlink with a file instead of writing through it', () => {
    const target = join(tmp, 'target');
    writeFileSync(target, 'untouched');
    const link = join(tmp, 'cert.pem');
    symlinkSync(target, link);
    writeFileAtomic(link, 'cert', PUBLIC_MODE);
    expect(readFileSync(target, 'utf8')).toBe('untouched');
    expect(readFileSync(link, 'utf8')).toBe('cert');
    expect(mode(link)).toBe(0o644);
  });

  it('fails with the path in the message when the folder does not exist', () => {
    const file = join(tmp, 'missing', 'ca.pem');
    const err = thrownBy(() => writeFileAtomic(file, 'x', PUBLIC_MODE));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toMatch(new RegExp(`^cannot write ${file}: ENOENT`));
  });

  it('cleans up its temp file when the rename fails', () => {
    // Renaming a file over a non-empty folder fails after the temp file has been written.
    const dir = join(tmp, 'occupied');
    mkdirSync(join(dir, 'child'), { recursive: true });
    expect(() => writeFileAtomic(dir, 'x', PUBLIC_MODE)).toThrow(new RegExp(`^cannot write ${dir}: `));
    expect(readdirSync(tmp)).toEqual(['occupied']);
  });
});

describe('readPemFile', () => {
  it('returns the text of a PEM file', () => {
    writeFileSync(join(tmp, 'ca.pem'), PEM);
    expect(readPemFile(join(tmp, 'ca.pem'), 'CA certificate')).toBe(PEM);
  });

  it('names the file, what it should hold, and the hint when it is missing', () => {
    const file = join(tmp, 'ca.pem');
    const err = thrownBy(() => readPemFile(file, 'CA certificate', 'run portlicense ca init'));
    expect(err.code).toBe('FILE_UNREADABLE');
    expect(err.message).toBe(`CA certificate ${file}: not found (run portlicense ca init)`);
  });

  it('reports an unreadable path (a folder) without the not-found hint', () => {
    const err = thrownBy(() => readPemFile(tmp, 'CA certificate', 'run portlicense ca init'));
    expect(err.code).toBe('FILE_UNREADABLE');
    expect(err.message).toMatch(new RegExp(`^CA certificate ${tmp}: EISDIR`));
    expect(err.message).not.toContain('ca init');
  });

  it('rejects a file that holds no PEM block', () => {
    writeFileSync(join(tmp, 'ca-key.pem'), 'not a key');
    const err = thrownBy(() => readPemFile(join(tmp, 'ca-key.pem'), 'CA private key'));
    expect(err.code).toBe('TLS_MATERIAL_INVALID');
    expect(err.message).toContain('not a PEM file');
  });
});
