/**
 * The programs the benchmark compares against and loads with: Go (to build the load generator),
 * haproxy and nginx, from Debian's packages. Missing ones are installed when the bench runs as
 * root with apt-get (never started as system services: a policy-rc.d forbids it during the
 * install, and any that started anyway are stopped); otherwise they are skipped with a line
 * saying so. BENCH_NO_INSTALL=1 never installs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface Tools {
  /** The built load generator, or null (then every load mode is skipped). */
  loadgen: string | null;
  haproxy: string | null;
  nginx: string | null;
  /** `load_module` line for nginx's stream module ('' when built in), or null: no TCP via nginx. */
  nginxStream: string | null;
  /** Human-readable notes: what was installed or skipped, and why. */
  notes: string[];
  versions: Record<string, string>;
}

const BUILD_DIR = fileURLToPath(new URL('./.build/', import.meta.url));
const LOADGEN_SRC = fileURLToPath(new URL('./loadgen/', import.meta.url));
const POLICY_RC = '/usr/sbin/policy-rc.d';
const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() || null : null;
}

/** The first version-looking token of a program's version output ("2.6.12-1+deb12u4", "go1.19.8"). */
function versionOf(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const text = `${r.stdout}${r.stderr}`;
  return /\b(?:go)?(\d+\.\d+[\w.+~-]*)/.exec(text)?.[1] ?? (text.split('\n')[0] ?? '').trim();
}

/** pids of running processes with one of these command names. */
function pidsNamed(names: readonly string[]): Set<number> {
  const out = new Set<number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (names.includes(readFileSync(`/proc/${entry}/comm`, 'utf8').trim())) out.add(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

/** nginx's stream module: '' when compiled in, the load_module line when a module file exists. */
function nginxStreamLine(nginx: string): string | null {
  const v = spawnSync(nginx, ['-V'], { encoding: 'utf8' }).stderr;
  if (/--with-stream(\s|$)/.test(v)) return '';
  if (/--with-stream=dynamic/.test(v) && existsSync(STREAM_MODULE)) return `load_module ${STREAM_MODULE};`;
  return null;
}

function aptInstall(pkgs: string[], notes: string[]): void {
  if (process.env.BENCH_NO_INSTALL === '1') {
    notes.push(`not installing ${pkgs.join(', ')}: BENCH_NO_INSTALL=1`);
    return;
  }
  if (process.getuid?.() !== 0 || which('apt-get') === null) {
    notes.push(
      `not installing ${pkgs.join(', ')}: needs root and apt-get (run: apt-get install -y ${pkgs.join(' ')})`,
    );
    return;
  }
  const before = pidsNamed(['nginx', 'haproxy']);
  const addedPolicy = !existsSync(POLICY_RC);
  if (addedPolicy)
    writeFileSync(
      POLICY_RC,
      '#!/bin/sh\n# portlicense bench: no service starts during its install\nexit 101\n',
      { mode: 0o755 },
    );
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    process.stderr.write(`bench: installing ${pkgs.join(', ')} from Debian's packages…\n`);
    execFileSync('apt-get', ['update', '-qq'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    for (const pkg of pkgs) {
      const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', pkg], {
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
        encoding: 'utf8',
      });
      notes.push(
        r.status === 0
          ? `installed ${pkg}`
          : `could not install ${pkg}: ${r.stderr.trim().split('\n').pop() ?? ''}`,
      );
    }
  } catch (err) {
    notes.push(`apt-get failed: ${(err as Error).message.split('\n')[0]}`);
  } finally {
    if (addedPolicy) rmSync(POLICY_RC, { force: true });
  }
  // A package whose service started anyway (no policy-rc.d honoured, systemd): stop it.
  const started = [...pidsNamed(['nginx', 'haproxy'])].filter((p) => !before.has(p));
  if (started.length > 0) {
    for (const svc of ['nginx', 'haproxy']) {
      spawnSync('systemctl', ['stop', svc], { stdio: 'ignore' });
      spawnSync('service', [svc, 'stop'], { stdio: 'ignore' });
    }
    for (const pid of started) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // stopped by its service script
      }
    }
    notes.push(`stopped the services that the install started (pids ${started.join(', ')})`);
  }
}

const TCMALLOC_PKG = 'libtcmalloc-minimal4';

/** The installed version of a Debian package, or null. */
function debVersion(pkg: string): string | null {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}|${Version}', pkg], { encoding: 'utf8' });
  const [status, version] = r.stdout.split('|');
  return r.status === 0 && status?.endsWith(' installed') === true ? (version ?? null) : null;
}

/** Build the Go load generator into bench/.build/ (GOPROXY=off: standard library only). */
function buildLoadgen(goBin: string, notes: string[]): string | null {
  mkdirSync(BUILD_DIR, { recursive: true });
  const out = `${BUILD_DIR}loadgen`;
  const r = spawnSync(goBin, ['build', '-trimpath', '-o', out, '.'], {
    cwd: LOADGEN_SRC,
    encoding: 'utf8',
    env: {
      ...process.env,
      GOCACHE: `${BUILD_DIR}go-cache`,
      GOPATH: `${BUILD_DIR}gopath`,
      GOPROXY: 'off',
      GOTOOLCHAIN: 'local',
      CGO_ENABLED: '0',
    },
  });
  if (r.status !== 0) {
    notes.push(`load generator did not build: ${r.stderr.trim()}`);
    return null;
  }
  return out;
}

/** Find or install what the benchmark needs; nothing here is fatal. */
export function ensureTools(): Tools {
  const notes: string[] = [];
  const missing: string[] = [];
  if (which('go') === null) missing.push('golang-go');
  if (which('haproxy') === null) missing.push('haproxy');
  if (which('nginx') === null) missing.push('nginx', 'libnginx-mod-stream');
  else if (nginxStreamLine(which('nginx')!) === null) missing.push('libnginx-mod-stream');
  // The sidecar's launcher preloads tcmalloc when installed, as the Docker image has it.
  if (debVersion(TCMALLOC_PKG) === null) missing.push(TCMALLOC_PKG);
  if (missing.length > 0) aptInstall(missing, notes);

  const go = which('go');
  const haproxy = which('haproxy');
  const nginx = which('nginx');
  const tcmalloc = debVersion(TCMALLOC_PKG);
  const versions: Record<string, string> = {
    node: process.version,
    openssl: versionOf('openssl', ['version']),
    'sidecar allocator': tcmalloc === null ? 'glibc' : `tcmalloc ${tcmalloc}`,
  };
  if (tcmalloc === null)
    notes.push(
      `the sidecar runs on glibc's malloc: ${TCMALLOC_PKG} is not installed (apt-get install -y ${TCMALLOC_PKG})`,
    );
  let loadgen: string | null = null;
  if (go === null) notes.push('SKIPPED every load mode: Go is not installed (apt-get install -y golang-go)');
  else {
    versions.go = versionOf(go, ['version']);
    loadgen = buildLoadgen(go, notes);
  }
  if (haproxy === null) notes.push('SKIPPED haproxy: not installed (apt-get install -y haproxy)');
  else versions.haproxy = versionOf(haproxy, ['-v']);
  let nginxStream: string | null = null;
  if (nginx === null) notes.push('SKIPPED nginx: not installed (apt-get install -y nginx)');
  else {
    versions.nginx = versionOf(nginx, ['-v']);
    nginxStream = nginxStreamLine(nginx);
    if (nginxStream === null)
      notes.push('SKIPPED nginx TCP bulk: no stream module (apt-get install -y libnginx-mod-stream)');
  }
  return { loadgen, haproxy, nginx, nginxStream, notes, versions };
}
