/**
 * Which malloc this process runs on, for the start-up log: the launcher (bin/portlicense) preloads
 * tcmalloc when the system has it. Read from the libraries mapped into the process (Linux).
 */
import { readFileSync } from 'node:fs';

const KNOWN: ReadonlyArray<readonly [RegExp, string]> = [
  [/\/libtcmalloc[^/]*\.so/, 'tcmalloc'],
  [/\/libjemalloc[^/]*\.so/, 'jemalloc'],
  [/\/libmimalloc[^/]*\.so/, 'mimalloc'],
];

/** `tcmalloc`, `jemalloc`, `mimalloc`, or `system` (the C library's, or unknown off Linux). */
export function allocatorInUse(mapsFile = '/proc/self/maps'): string {
  let maps: string;
  try {
    maps = readFileSync(mapsFile, 'utf8');
  } catch {
    return 'system';
  }
  for (const [re, name] of KNOWN) if (re.test(maps)) return name;
  return 'system';
}
