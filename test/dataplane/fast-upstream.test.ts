/**
 * The fast lane's upstream pool (src/dataplane/fast-upstream.ts) on real sockets: a released
 * connection is handed out again while fresh, closed by the pool's sweep once idle past
 * idleTimeout or the shorter limit it was released with (the sweep's timer armed only while
 * something is idle), never handed out past it, and reading again when handed back paused; a dial
 * that hangs ends in connect_timeout.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { UpstreamPool, type UpstreamConn, type UpstreamOwner } from '../../src/dataplane/fast-upstream.js';
import { startDeafPort, waitFor } from '../helpers/net.js';

let server: Server | undefined;
let pool: UpstreamPool | undefined;
let deaf: { close(): Promise<void> } | undefined;
afterEach(async () => {
  pool?.close();
  pool = undefined;
  await deaf?.close();
  deaf = undefined;
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

/** A TCP server on 127.0.0.1 that records the sockets it accepted and which of them closed. */
async function upstream(): Promise<{ port: number; accepted: Socket[]; closed: Set<Socket> }> {
  const accepted: Socket[] = [];
  const closed = new Set<Socket>();
  server = createServer((s) => {
    accepted.push(s);
    s.on('error', () => {});
    s.on('close', () => closed.add(s));
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, accepted, closed };
}

/** An owner that records what the pool tells it. */
function owner(): UpstreamOwner & { events: string[] } {
  const events: string[] = [];
  return {
    events,
    upstreamConnected: () => events.push('connected'),
    upstreamData: () => events.push('data'),
    upstreamEnd: () => events.push('end'),
    upstreamFailed: (code) => events.push(`failed:${code}`),
    upstreamDrain: () => events.push('drain'),
  };
}

/** A pool toward 127.0.0.1:`port` with a 1 s connect timeout. */
function poolFor(port: number, idleTimeout: number): UpstreamPool {
  return new UpstreamPool({ host: '127.0.0.1', port }, { connectTimeout: 1_000, idleTimeout });
}

/** Acquire a connection and wait until it is connected. */
async function dial(p: UpstreamPool): Promise<UpstreamConn> {
  const o = owner();
  const c = p.acquire(o);
  await waitFor(() => c.connected, { what: 'upstream connected' });
  expect(o.events).toEqual(['connected']);
  return c;
}

describe('UpstreamPool', () => {
  it('hands a released connection out again while it is fresh, with no socket timer', async () => {
    const up = await upstream();
    pool = poolFor(up.port, 2_000);
    const first = await dial(pool);
    pool.release(first);
    expect(first.socket.timeout).toBeFalsy();
    const again = pool.acquire(owner());
    expect(again).toBe(first);
    expect(again.socket.timeout).toBeFalsy();
    pool.release(again);
    expect(up.accepted).toHaveLength(1);
  });

  it('closes a connection idle past idleTimeout from its sweep, and dials anew afterwards', async () => {
    const up = await upstream();
    pool = poolFor(up.port, 200);
    const c = await dial(pool);
    expect(pool.sweeping).toBe(false);
    const released = Date.now();
    pool.release(c);
    expect(pool.sweeping).toBe(true);
    await waitFor(() => up.closed.size === 1, { timeoutMs: 3_000, what: 'the idle connection closed' });
    // The sweep runs every 50 ms here: closed after 200 ms, not long after.
    expect(Date.now() - released).toBeGreaterThanOrEqual(190);
    expect(Date.now() - released).toBeLessThan(1_500);
    expect(c.dead).toBe(true);
    // Nothing idle is left, so no timer wakes an idle sidecar for it.
    expect(pool.sweeping).toBe(false);
    const next = await dial(pool);
    expect(next).not.toBe(c);
    expect(up.accepted).toHaveLength(2);
    pool.release(next);
    expect(pool.sweeping).toBe(true);
  });

  it('reads again once released: a connection paused for a slow caller serves its next owner', async () => {
    const up = await upstream();
    pool = poolFor(up.port, 2_000);
    const c = await dial(pool);
    c.socket.pause(); // what the lane does while the caller cannot take more
    pool.release(c);
    const next = owner();
    expect(pool.acquire(next)).toBe(c);
    up.accepted[0]!.write('HTTP/1.1 200 OK\r\n');
    await waitFor(() => next.events.includes('data'), {
      timeoutMs: 2_000,
      what: 'the next owner hears the upstream',
    });
  });

  it('never hands out a connection past idleTimeout, even before the sweep reached it', async () => {
    const up = await upstream();
    // idleTimeout 400 ms: sweeps at 100 ms intervals. Blocking the event loop keeps the sweep from
    // running, so only acquire's own check can refuse the stale connection.
    pool = poolFor(up.port, 400);
    const c = await dial(pool);
    pool.release(c);
    const until = Date.now() + 450;
    while (Date.now() < until) {
      // busy: no timers run
    }
    const fresh = pool.acquire(owner());
    expect(fresh).not.toBe(c);
    expect(c.dead).toBe(true);
    await waitFor(() => fresh.connected && up.accepted.length === 2, { what: 'a new connection' });
  });

  it("keeps a connection released with a shorter limit (the upstream's Keep-Alive) only that long", async () => {
    const up = await upstream();
    // idleTimeout 2 s: the sweep runs every 500 ms. `short` may idle 100 ms, `long` the full 2 s.
    pool = poolFor(up.port, 2_000);
    const long = await dial(pool);
    const short = await dial(pool);
    pool.release(long);
    pool.release(short, 100);
    const until = Date.now() + 150;
    while (Date.now() < until) {
      // busy: no timers run, so only acquire's own check refuses `short`
    }
    // LIFO: `short` is on top; past its limit, it is closed and `long` handed out instead.
    expect(pool.acquire(owner())).toBe(long);
    expect(short.dead).toBe(true);
    // The sweep closes one past its limit while keeping the others (the list is not in expiry order).
    const third = await dial(pool);
    pool.release(long);
    pool.release(third, 100);
    await waitFor(() => third.dead, { timeoutMs: 3_000, what: 'the sweep closing the short-lived one' });
    expect(long.dead).toBe(false);
    expect(pool.acquire(owner())).toBe(long);
  });

  it('tells its owner connect_timeout when dialing hangs, and never hands that connection out', async () => {
    const silent = await startDeafPort();
    deaf = silent;
    pool = new UpstreamPool(
      { host: '127.0.0.1', port: silent.port },
      { connectTimeout: 300, idleTimeout: 2_000 },
    );
    const o = owner();
    const started = Date.now();
    const c = pool.acquire(o);
    await waitFor(() => o.events.length > 0, { timeoutMs: 5_000, what: 'the dial to end' });
    expect(o.events).toEqual(['failed:connect_timeout']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(c.dead).toBe(true);
    expect(c.connected).toBe(false);
    const next = pool.acquire(owner());
    expect(next).not.toBe(c);
    next.destroy();
  });
});
