import { existsSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN,
  ApiClient,
  authorityFiles,
  FRONTEND,
  ORDERS_SERVICE,
  type AuthorityFiles,
} from '../helpers/authority.js';
import { svid } from '../helpers/pki.js';
import { CLI, startCli, type CliProcess } from '../helpers/proc.js';
import { removeDir } from '../helpers/tmp.js';

/** The real `portlicense authority` process, as operators run it. */
describe('portlicense authority (process)', () => {
  let files: AuthorityFiles;
  const procs: CliProcess[] = [];
  const clients: ApiClient[] = [];

  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
  });
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
    for (const p of procs.splice(0)) {
      p.kill();
      await p.exited;
    }
    removeDir(files.dir);
  });

  const start = async (): Promise<{ proc: CliProcess; client: ApiClient }> => {
    const proc = startCli(['authority', '--config', files.configFile]);
    procs.push(proc);
    const started = await proc.waitForLog((l) => l.msg === 'authority started');
    const [host, port] = String(started.address).split(/:(?=\d+$)/);
    const client = new ApiClient({ host: host!, port: Number(port) }, { ca: files.ca.cert, ...svid(ADMIN) });
    clients.push(client);
    return { proc, client };
  };

  it('loses no acknowledged change when killed with SIGKILL right after the 201', async () => {
    files = authorityFiles();
    const first = await start();
    expect((await first.client.post('/v1/services', ORDERS_SERVICE)).status).toBe(201);
    const grant = await first.client.post('/v1/licenses', {
      subject: FRONTEND,
      service: 'orders',
      port: 'http',
      reason: 'durable',
    });
    expect(grant.status).toBe(201);
    first.proc.child.kill('SIGKILL');
    expect((await first.proc.exited).signal).toBe('SIGKILL');

    const second = await start();
    const show = await second.client.get(`/v1/licenses/${grant.json.id}`);
    expect(show.status).toBe(200);
    expect(show.json).toMatchObject({
      id: grant.json.id,
      subject: FRONTEND,
      reason: 'durable',
      state: 'active',
    });
    const audit = await second.client.get('/v1/audit');
    expect(
      (audit.json.entries as Array<{ action: string; actor: string }>).map((e) => [e.action, e.actor]),
    ).toEqual([
      ['grant', ADMIN],
      ['service', ADMIN],
    ]);
  });

  it('drains and exits 0 on SIGTERM', async () => {
    files = authorityFiles();
    const { proc, client } = await start();
    expect((await client.get('/v1/services')).status).toBe(200);
    proc.child.kill('SIGTERM');
    expect((await proc.exited).code).toBe(0);
    expect(proc.logs().some((l) => l.msg === 'authority stopped')).toBe(true);
  });

  it('exits 2 on a bad config without starting anything', async () => {
    files = authorityFiles();
    files.writeConfig({ extra: 'limits: { maxWiat: 5s }' });
    const proc = startCli(['authority', '--config', files.configFile]);
    procs.push(proc);
    expect((await proc.exited).code).toBe(2);
    expect(proc.stderr()).toMatch(
      /authority\.yaml:\d+: limits\.maxWiat: unknown key "maxWiat" \(did you mean "maxWait"\?\)/,
    );
    expect(existsSync(join(files.dir, 'data'))).toBe(false);

    files.writeConfig();
    writeFileSync(join(files.dir, 'signing-key.pem'), 'not a key\n');
    const badKey = startCli(['authority', '--config', files.configFile]);
    procs.push(badKey);
    expect((await badKey.exited).code).toBe(2);
    expect(badKey.stderr()).toMatch(/signingKey: .*not a PKCS#8 PEM private key/);
    expect(existsSync(join(files.dir, 'data'))).toBe(false);
  });

  it('exits 1 naming the address when the port cannot be bound', async () => {
    files = authorityFiles();
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      files.writeConfig({ listen: { api: `127.0.0.1:${port}`, admin: '127.0.0.1:0' } });
      const proc = startCli(['authority', '--config', files.configFile]);
      procs.push(proc);
      expect((await proc.exited).code).toBe(1);
      expect(proc.stderr()).toContain(`cannot listen on 127.0.0.1:${port}`);
      expect(proc.stderr()).toMatch(/EADDRINUSE/);
    } finally {
      busy.close();
    }
  });
});
