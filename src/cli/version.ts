/** The package's own name and version, read from package.json next to dist/. */
import { readFileSync } from 'node:fs';

export function packageInfo(): { name: string; version: string } {
  const url = new URL('../../package.json', import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')) as { name: string; version: string };
}
