/**
 * A deployment on disk for end-to-end tests, as an operator would lay it out: certs/ made by the
 * real CA code, authority.yaml and the sidecars' `authority:` block, the admin CLI's environment,
 * and the processes started from that folder.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { expect } from 'vitest';
import { initCa } from '../../src/pki/ca.js';
import { issueCert } from '../../src/pki/issue.js';
import type { ClientCreds } from './http-client.js';
import { unusedPort } from './net.js';
import { runCli } from './proc.js';

export const TD = 'example.org';

/** The one service every deployment registers: orders with an http and a tcp port. */
export const SERVICES_YAML =
  'services:\n  - name: orders\n    ports: [ { name: http, protocol: http }, { name: db, protocol: tcp } ]\n';

/**
 * A CA in `dir/certs` and, for each entry of `ids`, an SVID `certs/<name>.pem` with its key,
 * valid for localhost and 127.0.0.1.
 */
export function writeCerts(dir: string, ids: Record<string, string>): void {
  initCa({ dir: join(dir, 'certs'), trustDomain: TD });
  for (const [name, id] of Object.entries(ids))
    issueCert({
      caDir: join(dir, 'certs'),
      spiffeId: id,
      out: join(dir, 'certs', name),
      dns: ['localhost'],
      ips: ['127.0.0.1'],
    });
}

/** The CA and `name`'s certificate and key from `dir/certs`, for a test client. */
export function credsOf(dir: string, name: string): ClientCreds {
  return {
    ca: readFileSync(join(dir, 'certs/ca.pem'), 'utf8'),
    cert: readFileSync(join(dir, `certs/${name}.pem`), 'utf8'),
    key: readFileSync(join(dir, `certs/${name}-key.pem`), 'utf8'),
  };
}

/** Set every key of `ports` to a port nothing listens on. */
export async function pickPorts(ports: Record<string, number>): Promise<void> {
  const taken = new Set<number>();
  for (const k of Object.keys(ports)) {
    let port: number;
    do port = await freePortBelowEphemeral();
    while (taken.has(port));
    taken.add(port);
    ports[k] = port;
  }
}

/**
 * A port that is free now, from 20000–32767: below Linux's ephemeral range (32768–60999), which
 * every outgoing connection and every listener on port 0 draws from. A port picked there could be
 * taken by a test running alongside before the child process binds it; one down here can only be
 * taken by another picker.
 */
async function freePortBelowEphemeral(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_768);
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
  return unusedPort();
}

/** authority.yaml: API and admin ports, certs/ as written by `writeCerts`, `sidecars` allowed. */
export function authorityYaml(opts: { api: number; admin: number; sidecars: string }): string {
  return `listen: 127.0.0.1:${opts.api}
trustDomains: [${TD}]
tls: { ca: certs/ca.pem, cert: certs/authority.pem, key: certs/authority-key.pem }
signingKey: certs/bundle-signing-key.pem
store: { sqlite: data/authority.db }
admins: ["spiffe://${TD}/admin/*"]
sidecars: ["${opts.sidecars}"]
defaults: { ttl: 1h, maxLifetime: 30d, autoRenew: true, warnBefore: 72h }
admin: { listen: 127.0.0.1:${opts.admin} }
`;
}

/** The `authority:` block of a sidecar config: pull from the API on `api`, cache per node. */
export function sidecarAuthorityBlock(api: number, node: string): string {
  return `authority:
  url: https://127.0.0.1:${api}
  serverId: spiffe://example.org/portlicense/authority
  signingPublicKey: certs/bundle-signing.pub.pem
  cacheFile: data/${node}-bundle.json
  wait: 5s
  reportInterval: 1s
  maxStaleness: 10m`;
}

export interface OrdersSidecar {
  node: string;
  /** The `authority:` mapping or block, e.g. `sidecarAuthorityBlock(...)`. */
  authority: string;
  /** Listen port of orders/http and the HTTP upstream's port. */
  http: number;
  httpUpstream: number;
  /** Listen port of orders/db and the TCP upstream's port. */
  tcp: number;
  tcpUpstream: number;
  admin: number;
  drainTimeout: string;
}

/** sidecar.yaml for the sidecar beside orders (certs/orders.pem), guarding its http and db ports. */
export function ordersSidecarYaml(o: OrdersSidecar): string {
  return `node: ${o.node}
trustDomains: [${TD}]
tls: { ca: certs/ca.pem, cert: certs/orders.pem, key: certs/orders-key.pem }
${o.authority}
ports:
  - { name: http, service: orders, protocol: http, listen: 127.0.0.1:${o.http}, upstream: 127.0.0.1:${o.httpUpstream} }
  - { name: db, service: orders, protocol: tcp, listen: 127.0.0.1:${o.tcp}, upstream: 127.0.0.1:${o.tcpUpstream} }
admin: { listen: 127.0.0.1:${o.admin} }
drainTimeout: ${o.drainTimeout}
`;
}

/**
 * The usual deployment in `dir`: authority.yaml (admin API on `ports.api`, `sidecarId` allowed to
 * sync) and sidecar.yaml for `node-a` beside orders, syncing from it, in front of the given HTTP and
 * TCP upstreams, with a 2 s drain. `sidecarExtra` is appended to sidecar.yaml (e.g. `workers: 2`).
 */
export function writeOrdersDeployment(
  dir: string,
  o: {
    ports: { api: number; apiAdmin: number; http: number; tcp: number; admin: number };
    httpUpstream: number;
    tcpUpstream: number;
    sidecarId: string;
    sidecarExtra?: string;
  },
): void {
  const { ports } = o;
  writeFileSync(
    join(dir, 'authority.yaml'),
    authorityYaml({ api: ports.api, admin: ports.apiAdmin, sidecars: o.sidecarId }),
  );
  writeFileSync(
    join(dir, 'sidecar.yaml'),
    ordersSidecarYaml({
      node: 'node-a',
      authority: sidecarAuthorityBlock(ports.api, 'node-a'),
      http: ports.http,
      httpUpstream: o.httpUpstream,
      tcp: ports.tcp,
      tcpUpstream: o.tcpUpstream,
      admin: ports.admin,
      drainTimeout: '2s',
    }) + (o.sidecarExtra ?? ''),
  );
}

/** `bundle sign` of licenses.yaml into bundle.json with certs/bundle-signing-key.pem, as an operator runs it in `dir`. */
export const bundleSign = (dir: string, ...extra: string[]) =>
  runCli(
    [
      'bundle',
      'sign',
      '--key',
      'certs/bundle-signing-key.pem',
      '--in',
      'licenses.yaml',
      '--out',
      'bundle.json',
      ...extra,
    ],
    { cwd: dir },
  );

/** `--subject <subject> --service orders --port <port>`: how every grant in these tests starts. */
export const onOrders = (subject: string, port = 'http'): string[] => [
  '--subject',
  subject,
  '--service',
  'orders',
  '--port',
  port,
];

export interface AdminCli {
  /** Run a command; expects exit 0 and returns stdout. */
  cli: (...args: string[]) => Promise<string>;
  /** `license grant ... --json`; returns the license id. */
  grant: (...args: string[]) => Promise<string>;
}

/**
 * The admin's CLI in `dir()` against the authority on `api()`: both are read at each call, as
 * suites pick them in `beforeAll`, after the helpers are made.
 */
export function adminCli(dir: () => string, api: () => number): AdminCli {
  const cli = async (...args: string[]): Promise<string> => {
    const r = await runCli(args, {
      cwd: dir(),
      env: {
        PORTLICENSE_AUTHORITY: `https://127.0.0.1:${api()}`,
        PORTLICENSE_CA: join(dir(), 'certs/ca.pem'),
        PORTLICENSE_CERT: join(dir(), 'certs/admin.pem'),
        PORTLICENSE_KEY: join(dir(), 'certs/admin-key.pem'),
      },
    });
    expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(0);
    return r.stdout;
  };
  const grant = async (...args: string[]): Promise<string> =>
    (JSON.parse(await cli('license', 'grant', ...args, '--json')) as { id: string }).id;
  return { cli, grant };
}

/** The authority's start-up log line (for `CliProcess.waitForLog`). */
export const authorityStarted = (l: Record<string, unknown>): boolean =>
  /authority (started|listening)/.test(String(l.msg));

/** A sidecar's start-up log line. */
export const sidecarStarted = (l: Record<string, unknown>): boolean => l.msg === 'sidecar started';
