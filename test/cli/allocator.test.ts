import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { allocatorInUse } from '../../src/cli/allocator.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const dir = tempDir('pl-allocator-');
afterAll(() => removeDir(dir));

/** A maps file listing these libraries, in /proc/<pid>/maps's format. */
function maps(name: string, libs: string[]): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    libs
      .map((l, i) => `7f00000${i}000-7f00000${i}fff r-xp 00000000 00:1f 1234 ${l}`)
      .concat('7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]')
      .join('\n'),
  );
  return file;
}

describe('allocatorInUse', () => {
  it('names the preloaded allocator from the mapped libraries', () => {
    const libc = '/usr/lib/x86_64-linux-gnu/libc.so.6';
    expect(
      allocatorInUse(maps('tc', [libc, '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10'])),
    ).toBe('tcmalloc');
    expect(allocatorInUse(maps('je', ['/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', libc]))).toBe('jemalloc');
    expect(allocatorInUse(maps('mi', ['/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0']))).toBe('mimalloc');
    expect(allocatorInUse(maps('glibc', [libc]))).toBe('system');
  });

  it('says system when the maps cannot be read (not Linux)', () => {
    expect(allocatorInUse(join(dir, 'missing'))).toBe('system');
  });
});
