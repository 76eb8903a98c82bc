/**
 * `portlicense dev`: the whole model on one machine, from nothing. Creates a dev CA and workload
 * certificates, starts an authority on an embedded SQLite store, registers a sample service and
 * grants sample licenses, starts a sample HTTP upstream and a TCP echo upstream, and a sidecar in
 * front of both that syncs from the authority. A second sample service, frontend-app, gets its own
 * sidecar whose outbound listener carries the app's plaintext calls to orders/http over mTLS, so
 * both directions are visible. Prints commands to try. Ctrl-C stops everything.
 */
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadAuthorityConfig } from '../config/authority.js';
import { parseDeclarativeYaml } from '../config/declarative.js';
import { loadSidecarConfig } from '../config/sidecar.js';
import { authorityIdFor, initCa, CA_FILES } from '../pki/ca.js';
import { issueCert } from '../pki/issue.js';
import { parseFlags, str } from './args.js';
import { startAuthority } from './authority.js';
import { freePort, startSampleUpstreams } from './dev-upstreams.js';
import { startSidecar, waitForSignals } from './sidecar.js';

const HELP = `Usage: portlicense dev [--dir DIR]

Runs the whole model locally: a dev CA and certificates, an authority on an embedded SQLite store,
sample licenses, a sample HTTP upstream and a TCP echo upstream, and a sidecar in front of both
that syncs its licenses from the authority; plus the sidecar of a second sample service,
frontend-app, whose outbound listener lets it call orders/http in plaintext on loopback. DIR
defaults to a new temp folder; an existing DIR keeps its CA, certificates and store. Ctrl-C stops
everything.
`;

const TD = 'example.org';
export const DEV_IDENTITIES = {
  admin: `spiffe://${TD}/admin/dev`,
  orders: `spiffe://${TD}/ns/default/sa/orders`,
  frontend: `spiffe://${TD}/ns/default/sa/frontend`,
  intruder: `spiffe://${TD}/ns/default/sa/intruder`,
} as const;

const SAMPLE = `services:
  - name: orders
    ports: [ { name: http, protocol: http }, { name: db, protocol: tcp } ]
licenses:
  - subject: ${DEV_IDENTITIES.frontend}
    service: orders
    port: http
    ttl: 1h
    methods: [GET, POST]
    paths: ["/api/*"]
    reason: frontend reads and creates orders
  - subject: ${DEV_IDENTITIES.frontend}
    service: orders
    port: db
    ttl: 1h
    reason: frontend reaches the orders database port
`;

export async function devCommand(argv: string[]): Promise<number> {
  const p = parseFlags('dev', argv, { dir: { type: 'string' } });
  if (p.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const dirFlag = str(p, 'dir');
  const dir = resolve(dirFlag ?? mkdtempSync(join(tmpdir(), 'portlicense-dev-')));
  mkdirSync(join(dir, 'data'), { recursive: true });
  const certs = join(dir, 'certs');

  // 1. PKI: a CA with the authority's certificate and signing key, an admin, the sidecar, two callers.
  if (!existsSync(join(certs, CA_FILES.caCert))) initCa({ dir: certs, trustDomain: TD });
  for (const [name, id] of Object.entries(DEV_IDENTITIES)) {
    if (!existsSync(join(certs, `${name}.pem`)))
      issueCert({
        caDir: certs,
        spiffeId: id,
        out: join(certs, name),
        dns: ['localhost'],
        ips: ['127.0.0.1'],
      });
  }

  // 2. The authority, configured from a file like any other, on an embedded SQLite store.
  const [authorityPort, authorityAdmin] = [await freePort(7443), await freePort(9902)];
  const authorityFile = join(dir, 'authority.yaml');
  writeFileSync(
    authorityFile,
    `# Written by portlicense dev.
listen: 127.0.0.1:${authorityPort}
trustDomains: [${TD}]
tls: { ca: certs/ca.pem, cert: certs/authority.pem, key: certs/authority-key.pem }
signingKey: certs/${CA_FILES.signingKey}
store: { sqlite: data/authority.db }
admins: ["spiffe://${TD}/admin/*"]
# The orders sidecar may pull and report for orders only (docs/authority.md, "Who may call what").
sidecars: [{ identity: "${DEV_IDENTITIES.orders}", services: [orders] }]
defaults: { ttl: 24h, maxLifetime: 30d, autoRenew: true, warnBefore: 72h }
admin: { listen: 127.0.0.1:${authorityAdmin} }
drainTimeout: 2s
`,
  );
  const authority = await startAuthority(loadAuthorityConfig(authorityFile));
  const applied = authority.licensing.apply(
    parseDeclarativeYaml(SAMPLE, 'sample licenses'),
    'portlicense dev',
  );

  // 3. Upstreams and a sidecar in front of them, syncing from the authority.
  const upstreams = await startSampleUpstreams();
  const [httpPort, tcpPort, adminPort] = [await freePort(8443), await freePort(15432), await freePort(9901)];
  const sidecarFile = join(dir, 'sidecar.yaml');
  writeFileSync(
    sidecarFile,
    `# Written by portlicense dev.
node: dev-node
trustDomains: [${TD}]
tls: { ca: certs/ca.pem, cert: certs/orders.pem, key: certs/orders-key.pem }
authority:
  url: https://127.0.0.1:${authorityPort}
  serverId: ${authorityIdFor(TD)}
  signingPublicKey: certs/${CA_FILES.signingPublicKey}
  cacheFile: data/dev-node-bundle.json
  wait: 30s
  reportInterval: 5s
  maxStaleness: 10m
ports:
  - { name: http, service: orders, protocol: http, listen: 127.0.0.1:${httpPort}, upstream: 127.0.0.1:${upstreams.http.port} }
  - { name: db, service: orders, protocol: tcp, listen: 127.0.0.1:${tcpPort}, upstream: 127.0.0.1:${upstreams.tcp.port} }
admin: { listen: 127.0.0.1:${adminPort} }
log: { level: info, accessLogAllowedHttp: true }
drainTimeout: 2s
`,
  );
  const sidecar = await startSidecar(loadSidecarConfig(sidecarFile));

  // 4. frontend-app: a second sample service. Its sidecar guards no port; it carries the app's
  //    calls to orders/http, dialing with frontend's certificate and requiring the orders identity.
  const [outboundPort, frontendAdmin] = [await freePort(7001), await freePort(9911)];
  const frontendFile = join(dir, 'frontend-app-sidecar.yaml');
  writeFileSync(
    frontendFile,
    `# Written by portlicense dev. The sidecar beside frontend-app: outbound only.
node: dev-frontend-app
trustDomains: [${TD}]
tls: { ca: certs/ca.pem, cert: certs/frontend.pem, key: certs/frontend-key.pem }
authority:
  url: https://127.0.0.1:${authorityPort}
  serverId: ${authorityIdFor(TD)}
  signingPublicKey: certs/${CA_FILES.signingPublicKey}
ports: []
outbound:
  - { name: orders, listen: 127.0.0.1:${outboundPort}, target: localhost:${httpPort}, serverId: "${DEV_IDENTITIES.orders}" }
admin: { listen: 127.0.0.1:${frontendAdmin} }
drainTimeout: 2s
`,
  );
  const frontendSidecar = await startSidecar(loadSidecarConfig(frontendFile));
  // The sidecars serve at once and deny everything until their first bundle is in: wait for the
  // orders sidecar's (/readyz) so the commands printed below work as soon as they are read.
  if (!(await readyWithin(adminPort, 10_000)))
    process.stderr.write(
      `portlicense dev: the orders sidecar has no bundle from the authority after 10 s; the commands below answer 403 no_license until it does (see http://127.0.0.1:${adminPort}/readyz)\n`,
    );

  const c = (who: string): string =>
    `--cacert ${certs}/ca.pem --cert ${certs}/${who}.pem --key ${certs}/${who}-key.pem`;
  // apply() reports services too; with an existing --dir the licenses are there already (unchanged).
  const isLicense = (entry: string): boolean => entry.startsWith('license ');
  const newLicenses = applied.created.filter(isLicense).length;
  const sampleLicenses = newLicenses + [...applied.changed, ...applied.unchanged].filter(isLicense).length;
  process.stderr.write(`
portlicense dev is running in ${dir}
  authority   https://127.0.0.1:${authorityPort}   store ${dir}/data/authority.db   admin http://127.0.0.1:${authorityAdmin}
  sidecar     orders/http https://localhost:${httpPort} -> sample HTTP upstream 127.0.0.1:${upstreams.http.port}
              orders/db   127.0.0.1:${tcpPort} (mTLS)   -> TCP echo 127.0.0.1:${upstreams.tcp.port}
              admin http://127.0.0.1:${adminPort} (/metrics /healthz /readyz /status)
  frontend-app sidecar (identity ${DEV_IDENTITIES.frontend}, outbound only)
              outbound orders http://127.0.0.1:${outboundPort} (plaintext, loopback) -> mTLS -> orders/http localhost:${httpPort}
              admin http://127.0.0.1:${frontendAdmin}
  sample licenses: ${sampleLicenses} held by ${DEV_IDENTITIES.frontend} (${newLicenses} new)

Try it in another shell (npx lines from the repository folder):
  export PORTLICENSE_AUTHORITY=https://127.0.0.1:${authorityPort} PORTLICENSE_CA=${certs}/ca.pem \\
         PORTLICENSE_CERT=${certs}/admin.pem PORTLICENSE_KEY=${certs}/admin-key.pem
  # allowed: frontend holds a license for GET/POST /api/* on orders/http
  curl ${c('frontend')} https://localhost:${httpPort}/api/orders
  # denied 403 path_not_allowed, then 403 no_license (intruder holds no license)
  curl ${c('frontend')} https://localhost:${httpPort}/admin
  curl ${c('intruder')} https://localhost:${httpPort}/api/orders
  # grant intruder a 2-minute license: the sidecar has it within a second
  npx portlicense license grant --subject ${DEV_IDENTITIES.intruder} --service orders --port http --ttl 2m --reason "dev demo"
  curl ${c('intruder')} https://localhost:${httpPort}/api/orders
  # revoke every license of intruder: denied again within a second (403 revoked)
  npx portlicense license revoke --subject ${DEV_IDENTITIES.intruder} --reason "demo over"
  curl ${c('intruder')} https://localhost:${httpPort}/api/orders
  # the frontend app's side: plain HTTP to its own sidecar, no certificate; the sidecars do mTLS and licensing
  curl http://127.0.0.1:${outboundPort}/api/orders
  # the orders sidecar's 403 comes back unchanged (path_not_allowed)
  curl -i http://127.0.0.1:${outboundPort}/admin
  # outbound connections by result, and the last error, from the frontend-app sidecar
  curl -s http://127.0.0.1:${frontendAdmin}/status
  curl -s http://127.0.0.1:${frontendAdmin}/metrics | grep ^portlicense_outbound
  # a licensed TCP flow (type a line, see it echoed)
  openssl s_client -quiet -connect 127.0.0.1:${tcpPort} -CAfile ${certs}/ca.pem -cert ${certs}/frontend.pem -key ${certs}/frontend-key.pem
  # licenses with last access, the audit log, the sidecar's view, metrics
  npx portlicense license list
  npx portlicense audit
  npx portlicense status --admin http://127.0.0.1:${adminPort}
  curl -s http://127.0.0.1:${adminPort}/metrics | grep ^portlicense_

Ctrl-C stops everything.
`);
  const code = await waitForSignals({
    reloadTls: () => {
      frontendSidecar.reloadTls();
      sidecar.reloadTls();
      authority.reloadTls();
    },
    shutdown: async () => {
      await frontendSidecar.shutdown();
      await sidecar.shutdown();
      await authority.shutdown();
      await upstreams.close();
    },
  });
  return code;
}

/** Whether the sidecar whose admin port is `adminPort` reports ready within `timeoutMs`. */
async function readyWithin(adminPort: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
      await res.arrayBuffer();
      if (res.ok) return true;
    } catch {
      // not listening yet
    }
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}
