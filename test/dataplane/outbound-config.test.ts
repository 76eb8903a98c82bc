/**
 * The `outbound:` section as `config validate` and the sidecar see it (issue 6 point 2): loopback
 * unless allowNonLoopback, unique names and listen addresses, valid targets and SPIFFE IDs, and no
 * target that is one of the sidecar's own outbound listeners.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadSidecarConfig } from '../../src/config/sidecar.js';
import { configErrorOf } from '../helpers/errors.js';
import { removeDir, tempDir, writePlaceholders } from '../helpers/tmp.js';

let root: string;

beforeEach(() => {
  root = tempDir('pl-outbound-config-');
  writePlaceholders(join(root, 'certs'), ['ca.pem', 'app.pem', 'app-key.pem', 'signing.pub.pem']);
});

afterEach(() => {
  removeDir(root);
});

/** A client-only sidecar (no ports) with the given outbound entries; line 8 is outbound[0]. */
function config(...entries: string[]): string {
  const text = `node: app-node
trustDomains: [example.org]
tls: { ca: certs/ca.pem, cert: certs/app.pem, key: certs/app-key.pem }
authority: { url: "https://127.0.0.1:7443", signingPublicKey: certs/signing.pub.pem }
ports: []
admin: { listen: 127.0.0.1:9911 }
outbound:
${entries.map((e) => `  - ${e}\n`).join('')}`;
  const file = join(root, 'sidecar.yaml');
  writeFileSync(file, text);
  return file;
}

function problems(file: string): string[] {
  const err = configErrorOf(() => loadSidecarConfig(file), 'expected the config to be rejected');
  return err.message.split('\n').map((l) => l.replace(`${root}/`, ''));
}

const ORDERS = 'spiffe://example.org/ns/default/sa/orders';

describe('outbound config', () => {
  it('accepts a client-only sidecar whose outbound listens on loopback', () => {
    const c = loadSidecarConfig(
      config(`{ name: orders, listen: 127.0.0.1:7001, target: orders.internal:8443, serverId: "${ORDERS}" }`),
    );
    expect(c.ports).toEqual([]);
    expect(c.outbound).toEqual([
      {
        name: 'orders',
        listen: { host: '127.0.0.1', port: 7001 },
        target: { host: 'orders.internal', port: 8443 },
        serverId: ORDERS,
        allowNonLoopback: false,
        connectTimeout: 5_000,
        idleTimeout: 300_000,
        maxConnections: 10_000,
      },
    ]);
  });

  it('refuses a non-loopback listen unless allowNonLoopback: true', () => {
    expect(
      problems(
        config(
          `{ name: orders, listen: 10.1.2.3:7001, target: orders.internal:8443, serverId: "${ORDERS}" }`,
        ),
      ),
    ).toEqual([
      'sidecar.yaml:8: outbound[0].listen: must be a loopback address (127.0.0.1, ::1, localhost): the local app connects in plaintext; set allowNonLoopback: true to override',
    ]);
    const c = loadSidecarConfig(
      config(
        `{ name: orders, listen: 0.0.0.0:7001, target: orders.internal:8443, serverId: "${ORDERS}", allowNonLoopback: true }`,
      ),
    );
    expect(c.outbound[0]).toMatchObject({ listen: { host: '0.0.0.0', port: 7001 }, allowNonLoopback: true });
  });

  it('refuses duplicate names and listen addresses, bad targets and bad SPIFFE IDs, all at once', () => {
    expect(
      problems(
        config(
          `{ name: orders, listen: 127.0.0.1:7001, target: orders.internal:8443, serverId: "${ORDERS}" }`,
          `{ name: orders, listen: 127.0.0.1:7001, target: "orders.internal", serverId: "spiffe://Example.org/x" }`,
          `{ name: pay, listen: 127.0.0.1:9911, target: "pay.internal:70000", serverId: "spiffe://example.org/a?b" }`,
        ),
      ),
    ).toEqual([
      'sidecar.yaml:9: outbound[1].target: must be host:port (IPv6 in brackets: [::1]:8080)',
      'sidecar.yaml:9: outbound[1].serverId: invalid subject "spiffe://Example.org/x": trust domain "Example.org" may only hold a-z, 0-9, ".", "-", "_" (no port, no userinfo, lower case)',
      'sidecar.yaml:9: outbound[1].name: duplicate outbound name "orders" (also at outbound[0])',
      'sidecar.yaml:9: outbound[1].listen: 127.0.0.1:7001 clashes with outbound[0].listen (127.0.0.1:7001)',
      'sidecar.yaml:10: outbound[2].target: port must be a number from 1 to 65535',
      'sidecar.yaml:10: outbound[2].serverId: invalid subject "spiffe://example.org/a?b": path segment "a?b" may only hold A-Z, a-z, 0-9, ".", "-", "_" (no query, fragment or percent-encoding)',
      'sidecar.yaml:10: outbound[2].listen: 127.0.0.1:9911 clashes with admin.listen (127.0.0.1:9911)',
    ]);
  });

  it("refuses a target that is one of the sidecar's own outbound listeners", () => {
    expect(
      problems(
        config(
          `{ name: a, listen: 127.0.0.1:7001, target: "127.0.0.1:7002", serverId: "${ORDERS}" }`,
          `{ name: b, listen: 127.0.0.1:7002, target: "localhost:7001", serverId: "${ORDERS}" }`,
        ),
      ),
    ).toEqual([
      "sidecar.yaml:8: outbound[0].target: points at this sidecar's own outbound listener outbound[1].listen (plaintext; it would dial itself)",
      "sidecar.yaml:9: outbound[1].target: points at this sidecar's own outbound listener outbound[0].listen (plaintext; it would dial itself)",
    ]);
  });
});
