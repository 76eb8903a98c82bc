import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ManualClock } from '../../src/clock.js';
import { formatTime } from '../../src/config/duration.js';
import {
  ADMIN,
  FRONTEND,
  ORDERS_SERVICE,
  SIDECAR,
  startTestAuthority,
  type ApiClient,
  type TestAuthority,
} from '../helpers/authority.js';

const H = 3_600_000;
/** Bound to orders only. */
const ORDERS_NODE = 'spiffe://example.org/ns/orders/node/a';
/** Bound to payments and orders by two entries. */
const SHARED_NODE = 'spiffe://example.org/ns/shared/node/b';

describe('authority API: sidecars entries bound to services', () => {
  let t: TestAuthority;
  let admin: ApiClient;
  let clock: ManualClock;

  beforeEach(async () => {
    t = await startTestAuthority({
      sidecars: [
        '',
        '  - spiffe://example.org/node/*',
        '  - { identity: "spiffe://example.org/ns/orders/*", services: [orders] }',
        '  - { identity: "spiffe://example.org/ns/shared/*", services: [payments] }',
        '  - { identity: "spiffe://example.org/ns/shared/node/b", services: [orders] }',
      ].join('\n'),
    });
    clock = t.clock as ManualClock;
    admin = t.client(ADMIN);
    expect((await admin.post('/v1/services', ORDERS_SERVICE)).status).toBe(201);
    const payments = { name: 'payments', ports: [{ name: 'http', protocol: 'http' }] };
    expect((await admin.post('/v1/services', payments)).status).toBe(201);
  });
  afterEach(() => t.close());

  const grant = async (service: string, port: string): Promise<{ id: string; expiresAt: string }> => {
    const res = await admin.post('/v1/licenses', { subject: FRONTEND, service, port, ttl: '10h' });
    expect(res.status).toBe(201);
    return res.json as { id: string; expiresAt: string };
  };
  const usage = (license: string) => ({
    license,
    identity: FRONTEND,
    origin: '10.0.0.7',
    lastAccess: formatTime(clock.now() - 60_000),
    count: 1,
  });

  it('serves a bound sidecar the bundles of its services and refuses the others by name', async () => {
    const orders = t.client(ORDERS_NODE);
    expect((await orders.get('/v1/bundle?node=a&services=orders')).status).toBe(200);
    const other = await orders.get('/v1/bundle?node=a&services=orders,payments');
    expect(other.status).toBe(403);
    expect(other.json).toEqual({
      error: 'forbidden',
      detail: `identity ${ORDERS_NODE} may not pull bundles of service payments: its sidecars entries allow orders`,
    });
    // The refused pull left no trace of the node.
    const nodes = (await admin.get('/v1/nodes')).json.nodes as Array<{ node: string }>;
    expect(nodes.map((n) => n.node)).toEqual(['a']);
  });

  it('unites the services of every entry an identity matches; a plain subject allows all', async () => {
    const shared = t.client(SHARED_NODE);
    expect((await shared.get('/v1/bundle?node=b&services=payments,orders')).status).toBe(200);
    // Matches the shared prefix only: payments, not orders.
    const sibling = t.client('spiffe://example.org/ns/shared/node/c');
    expect((await sibling.get('/v1/bundle?node=c&services=payments')).status).toBe(200);
    const refused = await sibling.get('/v1/bundle?node=c&services=orders');
    expect(refused.status).toBe(403);
    expect(refused.json.detail).toBe(
      'identity spiffe://example.org/ns/shared/node/c may not pull bundles of service orders: its sidecars entries allow payments',
    );
    // A plain subject string: every service, as before.
    expect((await t.client(SIDECAR).get('/v1/bundle?node=n&services=orders,payments')).status).toBe(200);
  });

  it("ignores a bound sidecar's use of another service's licenses, names them, and renews the rest", async () => {
    const own = await grant('orders', 'http');
    const foreign = await grant('payments', 'http');
    clock.advance(6 * H); // 4 h of 10 h left: both due for renewal when in use
    const orders = t.client(ORDERS_NODE);
    const overflow = { ...usage(foreign.id), identity: '*', origin: '*' };
    const res = await orders.post('/v1/usage', {
      node: 'a',
      usage: [usage(own.id), usage(foreign.id), overflow, usage('lic_unknown')],
      denials: [],
    });
    expect(res.status).toBe(200);
    expect(res.json.renewed).toEqual([own.id]);
    // Unknown ids are ignored silently, as always; only the out-of-scope one is named.
    expect(res.json.ignored).toEqual([foreign.id]);
    expect((await admin.get(`/v1/licenses/${foreign.id}`)).json).toMatchObject({
      expiresAt: foreign.expiresAt,
      lastAccess: null,
    });
    expect((await admin.get(`/v1/licenses/${own.id}`)).json.lastAccess.identity).toBe(FRONTEND);
    const warned = t.sink.lines.filter((l) => /sidecars entries do not allow/.test(String(l.msg)));
    expect(warned).toEqual([
      expect.objectContaining({
        level: 'warn',
        identity: ORDERS_NODE,
        service: 'payments',
        allowed: ['orders'],
      }),
    ]);
    // A report with nothing out of scope has no `ignored`.
    const clean = await orders.post('/v1/usage', { node: 'a', usage: [usage(own.id)], denials: [] });
    expect(clean.status).toBe(200);
    expect(clean.json).not.toHaveProperty('ignored');
  });

  it('lets a plain-subject sidecar report use of any service', async () => {
    const foreign = await grant('payments', 'http');
    clock.advance(6 * H);
    const res = await t.client(SIDECAR).post('/v1/usage', {
      node: 'n',
      usage: [usage(foreign.id)],
      denials: [],
    });
    expect(res.status).toBe(200);
    expect(res.json.renewed).toEqual([foreign.id]);
  });
});

describe('authority API: a node name belongs to the identity using it', () => {
  let t: TestAuthority;
  afterEach(() => t.close());

  it('refuses another identity the name of a fresh node, and lets it take over a stale one', async () => {
    t = await startTestAuthority();
    const clock = t.clock as ManualClock;
    expect((await t.client(ADMIN).post('/v1/services', ORDERS_SERVICE)).status).toBe(201);
    const owner = t.client(SIDECAR);
    const other = t.client('spiffe://example.org/node/node-b');
    expect((await owner.get('/v1/bundle?node=node-a&services=orders')).status).toBe(200);

    clock.advance(10_000);
    const pull = await other.get('/v1/bundle?node=node-a&services=orders');
    expect(pull.status).toBe(409);
    expect(pull.json.detail).toBe(
      `node name node-a is held by ${SIDECAR}, which synced 10s ago: give this sidecar its own node name, ` +
        'or wait until that one has been silent for 150s (140s from now)',
    );
    const report = await other.post('/v1/usage', { node: 'node-a', usage: [], denials: [] });
    expect(report.status).toBe(409);
    const held = (await t.client(ADMIN).get('/v1/nodes')).json.nodes as Array<Record<string, unknown>>;
    expect(held).toEqual([expect.objectContaining({ node: 'node-a', identity: SIDECAR })]);
    // The holder itself is never refused.
    expect((await owner.post('/v1/usage', { node: 'node-a', usage: [], denials: [] })).status).toBe(200);

    clock.advance(150_000); // silent past staleAfter (2 × maxWait + 30 s)
    expect((await other.get('/v1/bundle?node=node-a&services=orders')).status).toBe(200);
    const taken = (await t.client(ADMIN).get('/v1/nodes')).json.nodes as Array<Record<string, unknown>>;
    expect(taken).toEqual([
      expect.objectContaining({
        node: 'node-a',
        identity: 'spiffe://example.org/node/node-b',
        state: 'fresh',
      }),
    ]);
  });
});
