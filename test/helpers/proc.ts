/**
 * The real CLI as a child process, started the way an operator starts it: through the package's
 * launcher (bin/portlicense: the allocator and OpenSSL settings, then `exec node` on
 * dist/cli/main.js, built by `npm test`'s typecheck step), with the node running the tests first on
 * PATH. Its stdout/stderr are captured, with helpers to wait for a log line or for exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** The tcmalloc the launcher preloads when the system has one (its own search, in order), or null. */
export function tcmallocLibrary(): string | null {
  const multiarch = readdirSync('/usr/lib')
    .filter((d) => d.endsWith('-linux-gnu'))
    .sort()
    .map((d) => `/usr/lib/${d}/libtcmalloc_minimal.so.4`);
  const candidates = [
    ...multiarch,
    '/usr/lib64/libtcmalloc_minimal.so.4',
    '/usr/lib/libtcmalloc_minimal.so.4',
  ];
  return candidates.find((f) => existsSync(f)) ?? null;
}

/** What the sidecar's start-up line should name as its allocator, with the launcher's defaults. */
export const expectedAllocator = (): string => (tcmallocLibrary() === null ? 'system' : 'tcmalloc');
export const LAUNCHER = fileURLToPath(new URL('../../bin/portlicense', import.meta.url));

export interface CliProcess {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** JSON log lines printed so far. */
  logs(): Array<Record<string, unknown>>;
  /** Resolves with the first JSON log line for which `match` is true. */
  waitForLog(
    match: (l: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL if still running. */
  kill(): void;
}

export function startCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): CliProcess {
  const env = { ...process.env, ...opts.env };
  env.PATH = `${dirname(process.execPath)}:${env.PATH ?? ''}`;
  const child = spawn(LAUNCHER, args, {
    cwd: opts.cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const w of waiters) w();
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    for (const w of waiters) w();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      resolve({ code, signal });
      for (const w of waiters) w();
    }),
  );
  const logs = (): Array<Record<string, unknown>> =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    logs,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
    waitForLog: (match, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = logs().find(match);
          if (hit) {
            cleanup();
            resolve(hit);
          } else if (child.exitCode !== null) {
            cleanup();
            reject(
              new Error(
                `process exited (${child.exitCode}) before the log line appeared\nstdout:\n${out}\nstderr:\n${err}`,
              ),
            );
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for a log line\nstdout:\n${out}\nstderr:\n${err}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      }),
  };
}

/** Run a CLI command to completion. */
export async function runCli(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = startCli(args, opts);
  const { code } = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}
