/**
 * What the load is pointed at, all in front of one upstream and all pinned to CPU 0 with it:
 * the upstream directly (plain HTTP/TCP: the ceiling), the portlicense sidecar (the real CLI),
 * and haproxy and nginx configured for the same job from the templates beside this file.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { start, stop, sleep, waitForStdout, type Proc } from './procs.js';
import {
  ALLOWED,
  ALLOWED_CN,
  HTTP_LICENSE,
  LAUNCHER,
  benchLicenses,
  freePort,
  writeBundle,
  writeSidecarConfig,
  type BenchPki,
} from './setup.js';

/** Where BENCH_CPU_PROF=1 puts the sidecar's .cpuprofile files. */
export const PROFILE_DIR = fileURLToPath(new URL('./results/profiles/', import.meta.url));

/** The proxy and the upstream share this CPU; the load generator runs on the other. */
export const PROXY_CPU = 0;
export const LOAD_CPU = 1;

/** `variant`: a second sidecar with other node flags or from another checkout (BENCH_VARIANT_*), for A/B runs. */
export type TargetName = 'direct' | 'portlicense' | 'variant' | 'haproxy' | 'nginx';

export interface Target {
  name: TargetName;
  httpPort: number;
  /** null: this target cannot proxy raw TCP here. */
  tcpPort: number | null;
  /** false for direct: plain HTTP and TCP, no identity. */
  tls: boolean;
  /** The proxy process (its whole tree is measured); null for direct. */
  proc: Proc | null;
  /** How this target identifies the allowed caller, for the report. */
  identityCheck: string;
}

export type UpstreamPorts = Pick<Upstream, 'http' | 'tcp'>;

export interface Upstream {
  proc: Proc;
  http: number;
  tcp: number;
}

export async function startUpstream(loadgen: string): Promise<Upstream> {
  const proc = start('upstream', PROXY_CPU, [
    loadgen,
    'upstream',
    '-http',
    '127.0.0.1:0',
    '-tcp',
    '127.0.0.1:0',
  ]);
  const m = await waitForStdout(proc, /ready http=(\d+) tcp=(\d+)/);
  return { proc, http: Number(m[1]), tcp: Number(m[2]) };
}

async function waitForPort(port: number, proc: Proc, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (proc.child.exitCode !== null || Date.now() > deadline)
      throw new Error(`${proc.name} is not listening on ${port}: ${proc.stderrTail}`);
    await sleep(50);
  }
}

export interface SidecarOptions {
  /** Licenses in its bundle (2: the allowed identity's and one more). */
  licenses?: number;
  /** File names of its bundle and config, and its process name. */
  name?: string;
  /** The target name in the report: `portlicense`, or `variant` for an A/B run. */
  as?: 'portlicense' | 'variant';
  /** node/V8 flags, handed to the launcher in PORTLICENSE_NODE_ARGS. */
  nodeFlags?: readonly string[];
  /** The package launcher to run (another checkout's bin/portlicense); this checkout's by default. */
  launcher?: string;
}

/** node/V8 flags from BENCH_CPU_PROF=1 and a space-separated flags variable (BENCH_NODE_FLAGS). */
export function nodeFlagsFrom(flagsVar: string): string[] {
  return [
    ...(process.env.BENCH_CPU_PROF === '1' ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : []),
    ...(process.env[flagsVar] ?? '').split(/\s+/).filter((f) => f !== ''),
  ];
}

export async function startPortlicense(
  pki: BenchPki,
  up: UpstreamPorts,
  o: SidecarOptions = {},
): Promise<Target> {
  const name = o.name ?? o.as ?? 'portlicense';
  const bundle = writeBundle(pki, `${name}-bundle.json`, benchLicenses(o.licenses ?? 2));
  const ports = {
    http: await freePort(),
    tcp: await freePort(),
    admin: await freePort(),
    upHttp: up.http,
    upTcp: up.tcp,
  };
  const config = writeSidecarConfig(pki, name, bundle, ports);
  // Started the way an operator runs it, through the package's launcher (bin/portlicense: its
  // allocator and OpenSSL settings), node/V8 flags passed in PORTLICENSE_NODE_ARGS (node refuses
  // most V8 flags in NODE_OPTIONS).
  const launcher = o.launcher ?? LAUNCHER;
  const flags = o.nodeFlags ?? [];
  if (flags.some((f) => /\s/.test(f)))
    throw new Error(`node flags are passed split on spaces; this one has a space: ${flags.join(' ')}`);
  if (flags.length > 0 && !readFileSync(launcher, 'utf8').includes('PORTLICENSE_NODE_ARGS'))
    throw new Error(`${launcher} does not take node flags (PORTLICENSE_NODE_ARGS): it predates them`);
  const env = {
    ...process.env,
    PORTLICENSE_NODE_ARGS: flags.join(' '),
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
  };
  const proc = start(name, PROXY_CPU, [launcher, 'sidecar', '--config', config], env);
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${ports.admin}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (proc.child.exitCode !== null || Date.now() > deadline)
      throw new Error(`the sidecar (${launcher}) did not become ready: ${proc.stderrTail}`);
    await sleep(100);
  }
  return {
    name: o.as ?? 'portlicense',
    httpPort: ports.http,
    tcpPort: ports.tcp,
    tls: true,
    proc,
    identityCheck:
      'SPIFFE ID from the one URI SAN (X.509-SVID rules), license lookup' +
      (o.as === 'variant'
        ? ` (variant: ${[launcher === LAUNCHER ? 'this checkout' : launcher, ...flags].join(' ')})`
        : ''),
  };
}

function fill(template: string, values: Record<string, string | number>): string {
  return readFileSync(fileURLToPath(new URL(template, import.meta.url)), 'utf8').replace(
    /\{\{(\w+)\}\}/g,
    (_, k: string) => {
      if (!(k in values)) throw new Error(`${template}: no value for {{${k}}}`);
      return String(values[k]);
    },
  );
}

function checkConfig(bin: string, args: string[]): void {
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
}

export async function startHaproxy(bin: string, pki: BenchPki, up: Upstream): Promise<Target> {
  const httpPort = await freePort();
  const tcpPort = await freePort();
  const file = join(pki.dir, 'haproxy.cfg');
  writeFileSync(
    file,
    fill('./haproxy.cfg', {
      HTTP_PORT: httpPort,
      TCP_PORT: tcpPort,
      UP_HTTP: up.http,
      UP_TCP: up.tcp,
      SERVER_COMBINED: pki.serverCombined,
      CA: pki.ca,
      SAN_HEX: pki.allowedSanHex,
      ALLOWED,
      LICENSE: HTTP_LICENSE,
    }),
  );
  checkConfig(bin, ['-c', '-q', '-f', file]);
  const proc = start('haproxy', PROXY_CPU, [bin, '-db', '-f', file]);
  await waitForPort(httpPort, proc);
  await waitForPort(tcpPort, proc);
  return {
    name: 'haproxy',
    httpPort,
    tcpPort,
    tls: true,
    proc,
    identityCheck: 'DER of the URI SAN entry in ssl_c_der',
  };
}

export async function startNginx(
  bin: string,
  streamLine: string | null,
  pki: BenchPki,
  up: Upstream,
): Promise<Target> {
  const httpPort = await freePort();
  const tcpPort = streamLine === null ? null : await freePort();
  const dir = join(pki.dir, 'nginx');
  mkdirSync(join(dir, 'nginx-tmp'), { recursive: true });
  let conf = fill('./nginx.conf', {
    LOAD_STREAM: streamLine ?? '',
    USER: process.getuid?.() === 0 ? 'user root;' : '',
    DIR: dir,
    HTTP_PORT: httpPort,
    TCP_PORT: tcpPort ?? 0,
    UP_HTTP: up.http,
    UP_TCP: up.tcp,
    CLOSED_PORT: await freePort(),
    SERVER_CERT: pki.server.cert,
    SERVER_KEY: pki.server.key,
    CA: pki.ca,
    ALLOWED,
    ALLOWED_CN,
    LICENSE: HTTP_LICENSE,
    STREAM_BLOCK_START: '{{STREAM_BLOCK_START}}',
    STREAM_BLOCK_END: '{{STREAM_BLOCK_END}}',
  });
  conf =
    streamLine === null
      ? conf.replace(/\{\{STREAM_BLOCK_START\}\}[\s\S]*\{\{STREAM_BLOCK_END\}\}\n?/, '')
      : conf.replace(/\{\{STREAM_BLOCK_(START|END)\}\}\n?/g, '');
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  const common = ['-p', `${dir}/`, '-e', join(dir, 'nginx-error.log'), '-c', file];
  checkConfig(bin, ['-t', '-q', ...common]);
  const proc = start('nginx', PROXY_CPU, [bin, ...common]);
  await waitForPort(httpPort, proc);
  if (tcpPort !== null) await waitForPort(tcpPort, proc);
  return {
    name: 'nginx',
    httpPort,
    tcpPort,
    tls: true,
    proc,
    identityCheck: `subject DN CN=${ALLOWED_CN} (no URI SAN variable in nginx)`,
  };
}

export function directTarget(up: Upstream): Target {
  return {
    name: 'direct',
    httpPort: up.http,
    tcpPort: up.tcp,
    tls: false,
    proc: null,
    identityCheck: 'none (plain HTTP/TCP)',
  };
}

/** One request as `who`; the status, or 0 when the connection was refused or closed. */
export function statusAs(port: number, pki: BenchPki, who: { cert: string; key: string }): Promise<number> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/api/items',
        servername: 'localhost',
        ca: readFileSync(pki.ca),
        cert: readFileSync(who.cert),
        key: readFileSync(who.key),
        agent: false,
        timeout: 5_000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** Before any load: the allowed identity gets 200, the denied one 403. Throws otherwise. */
export async function checkIdentities(t: Target, pki: BenchPki): Promise<void> {
  const allowed = await statusAs(t.httpPort, pki, pki.client);
  const denied = await statusAs(t.httpPort, pki, pki.stranger);
  if (allowed !== 200 || denied !== 403)
    throw new Error(`${t.name}: allowed identity got ${allowed} (want 200), denied got ${denied} (want 403)`);
}

export async function stopTarget(t: Target): Promise<void> {
  if (t.proc !== null) await stop(t.proc);
}
