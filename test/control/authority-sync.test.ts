/**
 * The sidecar's sync client against a real in-process authority over mTLS: with
 * `authority.serverId` it installs bundles only from an authority presenting that SPIFFE ID.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { loadSidecarConfig } from '../../src/config/sidecar.js';
import { AuthoritySync } from '../../src/control/authority-sync.js';
import { TlsMaterialStore } from '../../src/dataplane/tls-context.js';
import { silentLogger } from '../../src/log.js';
import { loadEd25519PublicKey } from '../../src/policy/bundle.js';
import { PolicyStore } from '../../src/policy/store.js';
import { createSidecarMetrics } from '../../src/telemetry/metrics.js';
import { UsageTracker } from '../../src/telemetry/usage.js';
import {
  ADMIN,
  ORDERS_SERVICE,
  SIDECAR,
  startTestAuthority,
  type TestAuthority,
} from '../helpers/authority.js';
import { waitFor } from '../helpers/net.js';
import { svid, writeTlsFiles } from '../helpers/pki.js';

describe('AuthoritySync and authority.serverId', () => {
  let t: TestAuthority | undefined;
  let sync: AuthoritySync | undefined;
  afterEach(async () => {
    await sync?.close();
    await t?.close();
  });

  const start = async (serverId: string) => {
    t = await startTestAuthority();
    expect((await t.client(ADMIN).post('/v1/services', ORDERS_SERVICE)).status).toBeLessThan(300);
    const files = writeTlsFiles(t.dir, t.ca.cert, svid(SIDECAR), { name: 'node' });
    writeFileSync(join(t.dir, 'signing.pub.pem'), t.signingPublicKey.export({ type: 'spki', format: 'pem' }));
    const file = join(t.dir, 'sidecar.yaml');
    writeFileSync(
      file,
      `node: node-a
trustDomains: [example.org]
tls: { ca: ${files.ca}, cert: ${files.cert}, key: ${files.key} }
authority: { url: "https://127.0.0.1:${t.running.address.port}", serverId: "${serverId}", signingPublicKey: signing.pub.pem, wait: 1s }
ports:
  - { name: http, service: orders, protocol: http, listen: 127.0.0.1:0, upstream: 127.0.0.1:9 }
admin: { listen: 127.0.0.1:0 }
`,
    );
    const config = loadSidecarConfig(file);
    const policy = new PolicyStore();
    const usage = new UsageTracker({ policy });
    sync = new AuthoritySync({
      config,
      policy,
      tls: TlsMaterialStore.load(config.tls, silentLogger),
      publicKey: loadEd25519PublicKey(config.authority.signingPublicKey),
      clock: systemClock,
      log: silentLogger,
      metrics: createSidecarMetrics({ policy, usage, clock: systemClock, defaultMetrics: false }),
      usage,
    });
    sync.start();
    return { policy, sync };
  };

  it('installs bundles from an authority that presents the configured SPIFFE ID', async () => {
    const { policy } = await start('spiffe://example.org/authority');
    await waitFor(() => policy.current().version > 0, { what: 'a bundle from the authority' });
  });

  it('refuses an authority presenting another identity: nothing installed, the reason kept', async () => {
    const { policy, sync: s } = await start('spiffe://example.org/portlicense/authority');
    await waitFor(
      () => /not authority\.serverId spiffe:\/\/example\.org\/portlicense\/authority/.test(s.lastError ?? ''),
      {
        what: 'the identity mismatch',
      },
    );
    expect(s.lastError).toMatch(/presented spiffe:\/\/example\.org\/authority/);
    expect(policy.current().version).toBe(0);
    expect(s.lastSuccess).toBeNull();
  });
});
