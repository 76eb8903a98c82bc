/**
 * The sidecar's sync client against a real in-process authority over mTLS: with
 * `authority.serverId` it installs bundles only from an authority presenting that SPIFFE ID.
 */
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock, type Clock } from '../../src/clock.js';
import { loadSidecarConfig } from '../../src/config/sidecar.js';
import {
  AuthoritySync,
  FINAL_REPORT_MS,
  MIN_POLL_INTERVAL_MS,
  REPORT_BATCH,
} from '../../src/control/authority-sync.js';
import { Backoff } from '../../src/control/backoff.js';
import { TlsMaterialStore } from '../../src/dataplane/tls-context.js';
import { createLogger, MemorySink, silentLogger } from '../../src/log.js';
import { loadEd25519PublicKey } from '../../src/policy/bundle.js';
import { PolicyStore } from '../../src/policy/store.js';
import { createSidecarMetrics } from '../../src/telemetry/metrics.js';
import { UsageTracker } from '../../src/telemetry/usage.js';
import {
  ADMIN,
  FRONTEND,
  ORDERS_SERVICE,
  SIDECAR,
  startTestAuthority,
  type TestAuthority,
  type TestAuthorityOptions,
} from '../helpers/authority.js';
import { waitFor } from '../helpers/net.js';
import { sharedCa, svid, writeTlsFiles } from '../helpers/pki.js';

describe('AuthoritySync and authority.serverId', () => {
  let t: TestAuthority | undefined;
  let sync: AuthoritySync | undefined;
  /** Stand-in authorities of the test (`standIn`), closed after the sync that polls them. */
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await sync?.close();
    for (const close of closers.splice(0)) await close();
    await t?.close();
  });

  const start = async (
    serverId: string,
    authority: TestAuthorityOptions = {},
    sink?: MemorySink,
    url?: (t: TestAuthority) => string,
    authorityExtra = '',
    opts: { backoff?: Backoff; clock?: Clock } = {},
  ) => {
    t = await startTestAuthority(authority);
    expect((await t.client(ADMIN).post('/v1/services', ORDERS_SERVICE)).status).toBeLessThan(300);
    const files = writeTlsFiles(t.dir, t.ca.cert, svid(SIDECAR), { name: 'node' });
    writeFileSync(join(t.dir, 'signing.pub.pem'), t.signingPublicKey.export({ type: 'spki', format: 'pem' }));
    const file = join(t.dir, 'sidecar.yaml');
    writeFileSync(
      file,
      `node: node-a
trustDomains: [example.org]
tls: { ca: ${files.ca}, cert: ${files.cert}, key: ${files.key} }
authority: { url: "${url?.(t) ?? `https://127.0.0.1:${t.running.address.port}`}", serverId: "${serverId}", signingPublicKey: signing.pub.pem, wait: 1s${authorityExtra} }
ports:
  - { name: http, service: orders, protocol: http, listen: 127.0.0.1:0, upstream: 127.0.0.1:9 }
admin: { listen: 127.0.0.1:0 }
`,
    );
    const config = loadSidecarConfig(file);
    const policy = new PolicyStore();
    const usage = new UsageTracker({ policy });
    const metrics = createSidecarMetrics({ policy, usage, clock: systemClock, defaultMetrics: false });
    sync = new AuthoritySync({
      config,
      policy,
      tls: TlsMaterialStore.load(config.tls, silentLogger),
      publicKey: loadEd25519PublicKey(config.authority.signingPublicKey),
      clock: opts.clock ?? systemClock,
      log: sink === undefined ? silentLogger : createLogger({ sink, level: 'debug' }),
      metrics,
      usage,
      backoff: opts.backoff,
    });
    sync.start();
    return { policy, sync, usage, metrics };
  };

  /**
   * A stand-in authority: the authority identity's certificate, real TLS, `handle` answering. Closed
   * after the test; close() drops its open connections, since a sync that keeps polling would hold
   * one forever.
   */
  const standIn = async (handle: RequestListener): Promise<string> => {
    const id = svid('spiffe://example.org/authority');
    const server = createServer(
      { cert: id.cert, key: id.key, ca: sharedCa().cert, requestCert: true },
      handle,
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(async () => {
      const closed = new Promise((r) => server.close(r));
      server.closeAllConnections();
      await closed;
    });
    return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
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

  /**
   * A synced sidecar whose log lands in a sink, a license for FRONTEND on `service`/http, and
   * `use(origin, count)` to record its use in the sidecar's tracker.
   */
  const synced = async (service = 'orders', authority: TestAuthorityOptions = {}, waitForBundle = true) => {
    const sink = new MemorySink();
    const {
      policy,
      sync: s,
      usage,
      metrics,
    } = await start('spiffe://example.org/authority', authority, sink);
    if (waitForBundle)
      await waitFor(() => policy.current().version > 0, { what: 'a bundle from the authority' });
    const admin = t!.client(ADMIN);
    if (service !== 'orders') {
      const other = { name: service, ports: [{ name: 'http', protocol: 'http' }] };
      expect((await admin.post('/v1/services', other)).status).toBe(201);
    }
    const granted = await admin.post('/v1/licenses', { subject: FRONTEND, service, port: 'http' });
    expect(granted.status).toBe(201);
    const id = granted.json.id as string;
    const use = (origin: string, count: number): void => {
      const e = usage.entry(id, FRONTEND, origin);
      e.at = Date.now();
      e.count += count;
    };
    const logged = (re: RegExp) => sink.lines.filter((l) => re.test(String(l.msg)));
    /** The value of a sidecar counter without labels. */
    const counter = async (name: string): Promise<number | undefined> =>
      (await metrics.registry.getSingleMetric(name)?.get())?.values[0]?.value;
    return { s, admin, id, use, logged, counter };
  };

  it('warns once when usage reports cannot be delivered, not at every interval', async () => {
    const { s, use, logged } = await synced();
    use('10.0.0.7', 1);
    await t!.close();
    t = undefined;
    await s.report();
    await s.report();
    const lines = logged(/usage report not delivered/);
    expect(lines.map((l) => l.level)).toEqual(['warn', 'debug']);
    expect(lines[0]).toMatchObject({ authority: expect.stringMatching(/^https:\/\/127\.0\.0\.1:\d+$/) });
  });

  it('sends what was used since the last report when it stops, so a restart loses none of it', async () => {
    const { s, admin, id, use, logged } = await synced();
    use('10.0.0.7', 3);
    await s.close();
    expect((await admin.get(`/v1/licenses/${id}`)).json.lastAccess).toMatchObject({
      count: 3,
      origin: '10.0.0.7',
    });
    expect(logged(/usage not reported before stopping/)).toEqual([]);
  });

  it('counts and logs the usage it could not deliver before stopping', async () => {
    const { s, use, logged, counter } = await synced();
    use('10.0.0.7', 1);
    use('10.0.0.8', 1);
    await t!.close();
    t = undefined;
    const started = Date.now();
    await s.close();
    expect(Date.now() - started).toBeLessThan(FINAL_REPORT_MS + 1_000);
    expect(logged(/usage not reported before stopping/)).toEqual([
      expect.objectContaining({ level: 'warn', entries: 2 }),
    ]);
    expect(await counter('portlicense_usage_reports_dropped_total')).toBe(2);
  });

  it("warns once per license whose use the authority ignored (a service outside the sidecar's entries)", async () => {
    const { s, admin, id, use, logged } = await synced('payments', {
      sidecars: '[{ identity: "spiffe://example.org/node/*", services: [orders] }]',
    });
    use('10.0.0.7', 1);
    await s.report();
    use('10.0.0.7', 1);
    await s.report();
    const ignored = logged(/authority ignored/);
    expect(ignored).toHaveLength(1);
    expect(ignored[0]).toMatchObject({ level: 'warn', license: id });
    expect(logged(/usage report not delivered/)).toEqual([]);
    expect((await admin.get(`/v1/licenses/${id}`)).json.lastAccess).toBeNull();
    // The authority said so too, once.
    const said = t!.sink.lines.filter((l) => /sidecars entries do not allow/.test(String(l.msg)));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatchObject({
      level: 'warn',
      identity: SIDECAR,
      service: 'payments',
      allowed: ['orders'],
    });
  });

  it('delivers a report of 10,000 usage keys, which is more than one request body may hold', async () => {
    const { s, admin, id, use, logged } = await synced();
    // The tracker's default bound: 10,000 distinct (license, identity, origin) keys, about 1.5 MB
    // of JSON, while the authority takes bodies of 1 MiB by default.
    for (let i = 0; i < 10_000; i++) use(`10.1.${i >> 8}.${i & 255}`, 2);
    await s.report();
    expect(logged(/usage report not delivered/)).toEqual([]);
    expect((await admin.get(`/v1/licenses/${id}`)).json.lastAccess.count).toBe(20_000);
  });

  it('halves its batches when the authority answers 413, and delivers every entry', async () => {
    // 100 keys are about 15 KB of JSON: over this authority's 2 KiB body limit.
    const { s, admin, id, use, logged } = await synced('orders', {
      extraConfig: 'limits: { maxBodyBytes: 2048 }',
    });
    for (let i = 0; i < 100; i++) use(`10.2.0.${i}`, 5);
    await s.report();
    expect(logged(/usage report/)).toEqual([]);
    expect((await admin.get(`/v1/licenses/${id}`)).json.lastAccess.count).toBe(500);
  });

  it('drops entries the authority refuses for good instead of re-sending them at every report', async () => {
    // This sidecar's identity is not in sidecars: every report is refused with 403.
    const { s, use, logged } = await synced(
      'orders',
      { sidecars: '["spiffe://example.org/other/*"]' },
      false,
    );
    for (let i = 0; i < 3; i++) use(`10.3.0.${i}`, 1);
    await s.report();
    use('10.3.0.9', 1);
    await s.report();
    const refused = logged(/usage report entries refused/);
    expect(refused.map((l) => [l.level, l.entries])).toEqual([
      ['warn', 3],
      ['debug', 1], // the three were not kept
    ]);
    expect(String(refused[0]!.error)).toContain('usage report answered 403');
  });

  it('logs when an outage makes it unready and when syncs come back, beyond the first failure', async () => {
    let up = false;
    const url = await standIn((_req, res) => {
      if (up) res.writeHead(304).end();
      else res.writeHead(503).end('down for maintenance');
    });
    const sink = new MemorySink();
    await start(
      'spiffe://example.org/authority',
      {},
      sink,
      () => url,
      ', maxStaleness: 1500ms',
      // Retries within 400 ms: the default's full jitter over up to 30 s could outlast the test.
      { backoff: new Backoff({ base: 100, max: 400, min: 50 }) },
    );
    const said = (msg: string) => sink.lines.filter((l) => l.msg === msg);
    const unready =
      'no bundle sync within maxStaleness: /readyz reports not ready; still enforcing the bundle in force';
    await waitFor(() => said(unready).length > 0, { timeoutMs: 10_000, what: 'the not-ready warning' });
    up = true;
    await waitFor(() => said('bundle sync recovered').length > 0, {
      timeoutMs: 20_000,
      what: 'the recovery line',
    });
    expect(said(unready)).toHaveLength(1);
    expect(said(unready)[0]).toMatchObject({ level: 'warn', error: expect.stringMatching(/503/) });
    expect(said('bundle sync recovered')[0]).toMatchObject({
      level: 'info',
      failures: expect.any(Number),
      failedFor: expect.any(String),
    });
  });

  it('waits between polls that something answers at once with 304, instead of spinning', async () => {
    let requests = 0;
    const url = await standIn((req, res) => {
      if (req.url?.startsWith('/v1/bundle')) requests++;
      res.writeHead(304).end();
    });
    await start('spiffe://example.org/authority', {}, undefined, () => url);
    await waitFor(() => requests > 0, { what: 'the first poll' });
    const first = Date.now();
    // What is checked is that little happens, so a wall-clock window it is.
    await new Promise((r) => setTimeout(r, 2_500));
    const polls = requests;
    const seconds = (Date.now() - first) / 1000;
    expect(polls).toBeGreaterThanOrEqual(2);
    expect(polls).toBeLessThanOrEqual(Math.ceil(seconds * (1000 / MIN_POLL_INTERVAL_MS)) + 2);
  });

  it('paces those polls by elapsed time, not by the wall clock: a clock stepped back does not stall them', async () => {
    // The wall clock steps back 10 s while the first poll is held (an NTP step, a VM resumed).
    let back = 0;
    const clock: Clock = { now: () => Date.now() - back, setTimer: (fn, ms) => systemClock.setTimer(fn, ms) };
    let requests = 0;
    const url = await standIn((req, res) => {
      if (!req.url?.startsWith('/v1/bundle')) return void res.writeHead(503).end();
      if (++requests > 1) return void res.writeHead(304).end();
      setTimeout(() => {
        back = 10_000;
        res.writeHead(304).end();
      }, 300);
    });
    await start('spiffe://example.org/authority', {}, undefined, () => url, '', { clock });
    // The second poll is due about 0.7 s after the first answer, not 10 s later.
    await waitFor(() => requests >= 3, { timeoutMs: 5_000, what: 'polls going on after the step' });
    expect(back).toBe(10_000);
  });

  it('keeps only what was not delivered when a later batch fails, and sends denials once', async () => {
    // A stand-in that takes the first batch, fails the second with 503, then takes everything.
    const bodies: Array<{ usage: unknown[]; denials: unknown[] }> = [];
    const answers = [200, 503];
    const url = await standIn((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        if (req.url !== '/v1/usage') return void res.writeHead(503).end();
        bodies.push(JSON.parse(body) as { usage: unknown[]; denials: unknown[] });
        res.writeHead(answers.shift() ?? 200, { 'content-type': 'application/json' }).end('{"renewed":[]}');
      });
    });
    const { sync: s, usage } = await start('spiffe://example.org/authority', {}, undefined, () => url);
    for (let i = 0; i < REPORT_BATCH + 500; i++) {
      const e = usage.entry('lic_0123456789abcdef01234567', FRONTEND, `10.4.${i >> 8}.${i & 255}`);
      e.at = Date.now();
      e.count = 1;
    }
    usage.recordDenial('orders/http', FRONTEND, 'no_license', '10.4.9.9', Date.now());
    await s.report(); // 1,000 entries and the denial taken; the other 500 fail (503)
    await s.report(); // those 500 again, nothing else
    expect(bodies.map((b) => [b.usage.length, b.denials.length])).toEqual([
      [REPORT_BATCH, 1],
      [500, 0],
      [500, 0],
    ]);
  });
});
