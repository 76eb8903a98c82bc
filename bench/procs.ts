/**
 * Every process the benchmark starts goes through here: pinned to a CPU with taskset, in its own
 * process group (so nginx's workers and taskset's exec'd child die with it), and killed when the
 * benchmark ends for any reason — normal exit, an exception, or SIGINT/SIGTERM.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';

/** A started child: its pid (the process group), stdout as received, and the tail of stderr. */
export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  stdout: string;
  stderrTail: string;
  exited: Promise<number | null>;
}

const running = new Set<Proc>();

/** Whether taskset exists and there are at least two CPUs to keep load and proxy apart. */
export const canPin: boolean =
  cpus().length > 1 && spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;

/** Pin this process (all its threads) to `cpu`; false when pinning is not possible. */
export function pinSelf(cpu: number): boolean {
  if (!canPin) return false;
  return (
    spawnSync('taskset', ['-a', '-cp', String(cpu), String(process.pid)], { stdio: 'ignore' }).status === 0
  );
}

/** Start `argv` on `cpu` (unpinned when pinning is impossible), tracked for cleanup. */
export function start(name: string, cpu: number, argv: string[], env?: NodeJS.ProcessEnv): Proc {
  const [cmd, ...args] = canPin ? ['taskset', '-c', String(cpu), ...argv] : argv;
  const child = spawn(cmd!, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: env ?? process.env,
  });
  const proc: Proc = {
    name,
    child,
    pid: child.pid ?? -1,
    stdout: '',
    stderrTail: '',
    exited: new Promise((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.once('error', (err) => {
        proc.stderrTail += String(err);
        resolve(null);
      });
    }),
  };
  child.stdout.setEncoding('utf8').on('data', (d: string) => (proc.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    proc.stderrTail = (proc.stderrTail + d).slice(-4000);
  });
  running.add(proc);
  void proc.exited.then(() => running.delete(proc));
  return proc;
}

/** Resolve with the first match of `pattern` on stdout; reject when the process exits first. */
export async function waitForStdout(
  proc: Proc,
  pattern: RegExp,
  timeoutMs = 15_000,
): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void proc.exited.then(() => (exited = true));
  for (;;) {
    const m = pattern.exec(proc.stdout);
    if (m) return m;
    if (exited) throw new Error(`${proc.name} exited before printing ${pattern}: ${proc.stderrTail}`);
    if (Date.now() > deadline)
      throw new Error(`${proc.name}: timed out waiting for ${pattern}: ${proc.stderrTail}`);
    await sleep(20);
  }
}

/** Wait for a process to end on its own, killing it after `timeoutMs`. Returns its exit code. */
export async function finish(proc: Proc, timeoutMs: number): Promise<number | null> {
  const timer = setTimeout(() => killGroup(proc, 'SIGKILL'), timeoutMs);
  const code = await proc.exited;
  clearTimeout(timer);
  return code;
}

/** SIGTERM the process group, then SIGKILL what is left after `graceMs`. */
export async function stop(proc: Proc, graceMs = 3_000): Promise<void> {
  if (!running.has(proc)) return;
  killGroup(proc, 'SIGTERM');
  const timer = setTimeout(() => killGroup(proc, 'SIGKILL'), graceMs);
  await proc.exited;
  clearTimeout(timer);
  // The leader is gone; anything it left in its group goes too.
  killGroup(proc, 'SIGKILL');
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => stop(p)));
}

function killGroup(proc: Proc, signal: NodeJS.Signals): void {
  if (proc.pid <= 0) return;
  try {
    process.kill(-proc.pid, signal);
  } catch {
    // already gone
  }
}

/** Last resort, synchronous: on process exit nothing asynchronous runs any more. */
function killAllNow(): void {
  for (const p of running) killGroup(p, 'SIGKILL');
}

process.once('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    console.error(`\nbench: ${sig}, stopping every process it started`);
    killAllNow();
    process.exit(130);
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
