/**
 * The real CLI (dist/cli/main.js) writing to a reader that has gone away, as `portlicense ... |
 * head -1` leaves it: it stops quietly with 0, without a stack trace.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

describe('stdout closed by the reader', () => {
  it('exits 0 and prints nothing on stderr when the reader closes before the output is written', async () => {
    const child = spawn(process.execPath, [CLI, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Close our end at once: the CLI's first write, after it has loaded, meets EPIPE.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  });
});
