/**
 * bin/portlicense, the package's `bin`: a POSIX sh launcher that preloads tcmalloc when the system
 * has it, sets glibc's trim and (on AMD) `rep movsb` thresholds, passes node a V8 flag and
 * bin/openssl.cnf (unless OPENSSL_CONF is set) and execs node on dist/cli/main.js. Run for real
 * through `sh`, with a stand-in `node` first on PATH that prints what it was given, and through a
 * symlink the way npm links it into node_modules/.bin.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tcmallocLibrary } from '../helpers/proc.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

const LAUNCHER = fileURLToPath(new URL('../../bin/portlicense', import.meta.url));
/** What the launcher hands node: dist/ next to the launcher's real folder, not the symlink's. */
const MAIN = `${dirname(realpathSync(LAUNCHER))}/../dist/cli/main.js`;
/** V8 sweeps dead ArrayBuffers' memory on the main thread (TLS records churn it). */
const GC_FLAG = '--no-concurrent-array-buffer-sweeping';
/** The OpenSSL settings it passes node (one TLS 1.3 ticket per full handshake). */
const OPENSSL_FLAG = `--openssl-config=${dirname(realpathSync(LAUNCHER))}/openssl.cnf`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

let dir: string;
let env: Record<string, string>;

beforeEach(() => {
  dir = tempDir('pl-launcher-');
  mkdirSync(join(dir, 'stub'));
  // The stand-in node: one line per argument, then the variable, then a distinctive exit code.
  writeFileSync(
    join(dir, 'stub', 'node'),
    '#!/bin/sh\nfor a in "$@"; do echo "arg=$a"; done\necho "trim=$MALLOC_TRIM_THRESHOLD_"\n' +
      'echo "preload=${LD_PRELOAD:-}"\necho "tunables=${GLIBC_TUNABLES:-}"\nexit 7\n',
  );
  chmodSync(join(dir, 'stub', 'node'), 0o755);
  env = { PATH: `${join(dir, 'stub')}:/usr/bin:/bin` };
});

afterEach(() => removeDir(dir));

describe('bin/portlicense', () => {
  it('execs node on dist/cli/main.js with the arguments unchanged and passes the exit code through', async () => {
    const r = await run(LAUNCHER, ['sidecar', '--config', 'a file with spaces.yaml'], env);
    expect(r.code).toBe(7);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('arg='))).toEqual([
      `arg=${GC_FLAG}`,
      `arg=${OPENSSL_FLAG}`,
      `arg=${MAIN}`,
      'arg=sidecar',
      'arg=--config',
      'arg=a file with spaces.yaml',
    ]);
  });

  it('sets MALLOC_TRIM_THRESHOLD_ to 64 MiB unless the operator set it', async () => {
    expect((await run(LAUNCHER, [], env)).stdout).toContain('trim=67108864\n');
    const own = await run(LAUNCHER, [], { ...env, MALLOC_TRIM_THRESHOLD_: '1048576' });
    expect(own.stdout).toContain('trim=1048576\n');
  });

  it("keeps glibc's `rep movsb` out of large copies on AMD CPUs, after the operator's own tunables and unless they set it", async () => {
    const off = 'glibc.cpu.x86_rep_movsb_threshold=4294967295';
    // Only where it was measured: elsewhere the variable is left as it came.
    const amd = /^vendor_id\s*:\s*AuthenticAMD/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
    const tunables = async (given?: string): Promise<string> => {
      const r = await run(LAUNCHER, [], given === undefined ? env : { ...env, GLIBC_TUNABLES: given });
      return /^tunables=(.*)$/m.exec(r.stdout)![1]!;
    };
    expect(await tunables()).toBe(amd ? off : '');
    expect(await tunables('')).toBe(amd ? off : '');
    expect(await tunables('glibc.malloc.arena_max=2')).toBe(
      amd ? `glibc.malloc.arena_max=2:${off}` : 'glibc.malloc.arena_max=2',
    );
    const own = 'glibc.malloc.arena_max=2:glibc.cpu.x86_rep_movsb_threshold=4096';
    expect(await tunables(own)).toBe(own);
  });

  it("preloads the system's tcmalloc when there is one, unless told not to or given another preload", async () => {
    const tc = tcmallocLibrary();
    expect((await run(LAUNCHER, [], env)).stdout).toContain(`preload=${tc ?? ''}\n`);
    const optOut = await run(LAUNCHER, [], { ...env, PORTLICENSE_MALLOC: 'system' });
    expect(optOut.stdout).toContain('preload=\n');
    const own = await run(LAUNCHER, [], { ...env, LD_PRELOAD: '/opt/lib/libjemalloc.so.2' });
    expect(own.stdout).toContain('preload=/opt/lib/libjemalloc.so.2\n');
  });

  it('puts the flags of PORTLICENSE_NODE_ARGS after its own (so they can undo them), split on spaces only', async () => {
    const r = await run(LAUNCHER, ['--version'], {
      ...env,
      // `/bi*` would glob to /bin in a shell that globbed.
      PORTLICENSE_NODE_ARGS: ' --single-threaded-gc  --cpu-prof-dir=/tmp /bi* ',
    });
    expect(r.stdout.split('\n').filter((l) => l.startsWith('arg='))).toEqual([
      `arg=${GC_FLAG}`,
      'arg=--single-threaded-gc',
      'arg=--cpu-prof-dir=/tmp',
      'arg=/bi*',
      `arg=${OPENSSL_FLAG}`,
      `arg=${MAIN}`,
      'arg=--version',
    ]);
  });

  it('finds dist/ through a symlink, as npm links it into node_modules/.bin', async () => {
    mkdirSync(join(dir, '.bin'));
    symlinkSync(LAUNCHER, join(dir, '.bin', 'portlicense'));
    const r = await run(join(dir, '.bin', 'portlicense'), ['--version'], env);
    expect(r.stdout).toContain(`arg=${GC_FLAG}\narg=${OPENSSL_FLAG}\narg=${MAIN}\narg=--version\n`);
  });

  it('passes its OpenSSL config unless the operator set OPENSSL_CONF, whose file then applies', async () => {
    const own = await run(LAUNCHER, ['--version'], { ...env, OPENSSL_CONF: '/etc/ssl/mine.cnf' });
    expect(own.stdout.split('\n').filter((l) => l.startsWith('arg='))).toEqual([
      `arg=${GC_FLAG}`,
      `arg=${MAIN}`,
      'arg=--version',
    ]);
  });

  it('runs the real CLI with the node on PATH', async () => {
    const r = await run(LAUNCHER, ['--version'], { PATH: process.env.PATH ?? '' });
    expect(r).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+\.\d+\.\d+\n$/) });
  });
});
