/**
 * `portlicense dev`: the whole model on one machine, from nothing. Creates a dev CA and workload
 * certificates, signs a bundle of sample licenses, starts sample upstreams and a sidecar in front
 * of them, and prints commands to try. Ctrl-C stops everything.
 */
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadDeclarativeFile } from '../config/declarative.js';
import { loadSidecarConfig } from '../config/sidecar.js';
import { buildOfflinePayload } from '../control/offline-bundle.js';
import { initCa, CA_FILES } from '../pki/ca.js';
import { writeFileAtomic } from '../pki/files.js';
import { issueCert } from '../pki/issue.js';
import { loadEd25519PrivateKey, signBundle } from '../policy/bundle.js';
import { parseFlags, str } from './args.js';
import { nextVersion } from './bundle-sign.js';
import { freePort, startSampleUpstreams } from './dev-upstreams.js';
import { startSidecar, waitForSignals } from './sidecar.js';

const HELP = `Usage: portlicense dev [--dir DIR]

Runs the whole model locally: a dev CA and certificates, signed sample licenses, a sample HTTP
upstream and a TCP echo upstream, and a sidecar in front of both. DIR defaults to a new temp
folder; an existing DIR keeps its CA and certificates. Ctrl-C stops everything.
`;

const TD = 'example.org';
const WORKLOADS = {
  orders: `spiffe://${TD}/ns/default/sa/orders`,
  frontend: `spiffe://${TD}/ns/default/sa/frontend`,
  intruder: `spiffe://${TD}/ns/default/sa/intruder`,
} as const;

function licensesYaml(): string {
  return `# Sample licenses for portlicense dev. Edit, then re-sign (see the commands printed at start).
services:
  - name: orders
    ports: [ { name: http, protocol: http }, { name: db, protocol: tcp } ]
licenses:
  - subject: ${WORKLOADS.frontend}
    service: orders
    port: http
    ttl: 1h
    methods: [GET, POST]
    paths: ["/api/*"]
    reason: frontend reads and creates orders
  - subject: ${WORKLOADS.frontend}
    service: orders
    port: db
    ttl: 1h
    reason: frontend reaches the orders database port
`;
}

export async function devCommand(argv: string[]): Promise<number> {
  const p = parseFlags('dev', argv, { dir: { type: 'string' } });
  if (p.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const dirFlag = str(p, 'dir');
  const dir = resolve(dirFlag ?? mkdtempSync(join(tmpdir(), 'portlicense-dev-')));
  mkdirSync(dir, { recursive: true });
  const certs = join(dir, 'certs');

  // 1. PKI: a CA, the sidecar's server certificate and two callers.
  if (!existsSync(join(certs, CA_FILES.caCert))) initCa({ dir: certs, trustDomain: TD });
  for (const [name, id] of Object.entries(WORKLOADS)) {
    if (!existsSync(join(certs, `${name}.pem`)))
      issueCert({
        caDir: certs,
        spiffeId: id,
        out: join(certs, name),
        dns: ['localhost'],
        ips: ['127.0.0.1'],
      });
  }

  // 2. Licenses, signed into a bundle the sidecar watches.
  const licensesFile = join(dir, 'licenses.yaml');
  if (!existsSync(licensesFile)) writeFileSync(licensesFile, licensesYaml());
  const bundleFile = join(dir, 'bundle.json');
  const signingKey = join(certs, CA_FILES.signingKey);
  const payload = buildOfflinePayload(loadDeclarativeFile(licensesFile), {
    version: nextVersion(bundleFile),
    node: 'dev',
    now: Date.now(),
  });
  writeFileAtomic(
    bundleFile,
    JSON.stringify(signBundle(payload, loadEd25519PrivateKey(signingKey)), null, 2) + '\n',
    0o644,
  );

  // 3. Upstreams and the sidecar config, validated like any other.
  const upstreams = await startSampleUpstreams();
  const [httpPort, tcpPort, adminPort] = [await freePort(8443), await freePort(15432), await freePort(9901)];
  const sidecarFile = join(dir, 'sidecar.yaml');
  writeFileSync(
    sidecarFile,
    `# Written by portlicense dev.
node: dev
trustDomains: [${TD}]
tls: { ca: certs/ca.pem, cert: certs/orders.pem, key: certs/orders-key.pem }
authority:
  bundleFile: bundle.json
  signingPublicKey: certs/${CA_FILES.signingPublicKey}
ports:
  - { name: http, service: orders, protocol: http, listen: 127.0.0.1:${httpPort}, upstream: 127.0.0.1:${upstreams.http.port} }
  - { name: db, service: orders, protocol: tcp, listen: 127.0.0.1:${tcpPort}, upstream: 127.0.0.1:${upstreams.tcp.port} }
admin: { listen: 127.0.0.1:${adminPort} }
log: { level: info, accessLogAllowedHttp: true }
drainTimeout: 5s
`,
  );
  const sidecar = await startSidecar(loadSidecarConfig(sidecarFile));

  const c = (who: string): string =>
    `--cacert ${certs}/ca.pem --cert ${certs}/${who}.pem --key ${certs}/${who}-key.pem`;
  const cli = 'npx portlicense';
  process.stderr.write(`
portlicense dev is running in ${dir}
  sidecar  orders/http https://localhost:${httpPort}  -> sample HTTP upstream 127.0.0.1:${upstreams.http.port}
           orders/db   127.0.0.1:${tcpPort} (TLS)   -> TCP echo 127.0.0.1:${upstreams.tcp.port}
  admin    http://127.0.0.1:${adminPort}  (/metrics /healthz /readyz /status)

Try it (from the repository folder for the npx lines):
  # allowed: frontend holds a license for GET/POST /api/* on orders/http
  curl ${c('frontend')} https://localhost:${httpPort}/api/orders
  # denied 403 path_not_allowed: the license covers /api/* only
  curl ${c('frontend')} https://localhost:${httpPort}/admin
  # denied 403 no_license: intruder holds no license
  curl ${c('intruder')} https://localhost:${httpPort}/api/orders
  # a licensed TCP flow (type a line, see it echoed)
  openssl s_client -quiet -connect 127.0.0.1:${tcpPort} -CAfile ${certs}/ca.pem -cert ${certs}/frontend.pem -key ${certs}/frontend-key.pem
  # grant or revoke: edit ${licensesFile}, then re-sign; the sidecar swaps it in within a second
  ${cli} bundle sign --key ${signingKey} --in ${licensesFile} --out ${bundleFile}
  # state and metrics
  ${cli} status --admin http://127.0.0.1:${adminPort}
  curl -s http://127.0.0.1:${adminPort}/metrics | grep ^portlicense_

Ctrl-C stops everything.
`);
  const code = await waitForSignals(sidecar);
  await upstreams.close();
  return code;
}
