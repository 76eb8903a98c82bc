import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TlsMaterialStore, type TlsFiles } from '../../src/dataplane/tls-context.js';
import { PortlicenseError } from '../../src/errors.js';
import { createLogger, MemorySink } from '../../src/log.js';
import { generateRsaKey } from '../../src/pki/x509.js';
import { createTestCa, writeTlsFiles, type PemPair, type TestCa } from '../helpers/pki.js';
import { removeDir, tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/net.js';
import { thrown } from '../helpers/errors.js';

let ca: TestCa;
let serverA: PemPair;
let serverB: PemPair;

beforeAll(() => {
  ca = createTestCa();
  serverA = ca.svid('spiffe://example.org/ns/default/sa/orders');
  serverB = ca.issue({ commonName: 'rotated', uris: ['spiffe://example.org/ns/default/sa/orders'] });
});

let dir: string;
let files: TlsFiles;
let sink: MemorySink;
let store: TlsMaterialStore | undefined;
const log = () => createLogger({ sink, level: 'debug' });

function write(pair: PemPair, caPem = ca.cert): void {
  files = writeTlsFiles(dir, caPem, pair);
}

/** Replace a file the way rotation tools do: write aside, rename over. */
function replace(path: string, content: string): void {
  writeFileSync(`${path}.tmp`, content);
  renameSync(`${path}.tmp`, path);
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

const loadError = () =>
  thrown(() => TlsMaterialStore.load(files, log()), 'load succeeded') as PortlicenseError;

beforeEach(() => {
  dir = tempDir('pl-tls-');
  sink = new MemorySink();
  write(serverA);
});

afterEach(() => {
  store?.close();
  store = undefined;
  removeDir(dir);
});

describe('TlsMaterialStore.load', () => {
  it('loads matching material and exposes it as tls options', () => {
    store = TlsMaterialStore.load({ ...files, handshakeTimeout: 10_000 } as TlsFiles, log());
    const m = store.current();
    expect(m.generation).toBe(1);
    expect(fingerprint(m.cert.toString())).toBe(fingerprint(serverA.cert));
    expect(m.key.toString()).toBe(serverA.key);
    expect(m.ca.toString()).toBe(ca.cert);
    expect(m.leaf.fingerprint256).toBe(fingerprint(serverA.cert));
    expect(sink.lines.some((l) => l.msg === 'TLS material loaded')).toBe(true);
  });

  it('accepts a certificate file carrying its intermediate after the leaf', () => {
    const inter = ca.intermediate();
    const leaf = inter.svid('spiffe://example.org/x');
    write({ cert: leaf.cert + inter.cert, key: leaf.key });
    store = TlsMaterialStore.load(files, log());
    expect(store.current().leaf.fingerprint256).toBe(fingerprint(leaf.cert));
  });

  it('names a missing file and its config key', () => {
    rmSync(files.key);
    const err = loadError();
    expect(err).toBeInstanceOf(PortlicenseError);
    expect(err.code).toBe('TLS_MATERIAL_INVALID');
    expect(err.message).toContain(`tls.key (${files.key})`);
    expect(err.message).toMatch(/cannot read: ENOENT/);
  });

  it('refuses a key that does not belong to the certificate', () => {
    writeFileSync(files.key, generateRsaKey());
    const err = loadError();
    expect(err.code).toBe('TLS_MATERIAL_INVALID');
    expect(err.message).toContain(`tls.key (${files.key}): does not match the certificate in ${files.cert}`);
    expect(err.message).toContain('update both files together');
  });

  it('refuses a certificate file without a certificate, or with a broken one', () => {
    writeFileSync(files.cert, 'not a pem\n');
    expect(loadError().message).toContain(`tls.cert (${files.cert}): holds no PEM certificate`);
    writeFileSync(files.cert, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect(loadError().message).toContain(`tls.cert (${files.cert}): certificate #1 does not parse`);
  });

  it('refuses a CA file with no certificate, or with only a leaf', () => {
    writeFileSync(files.ca, '');
    expect(loadError().message).toContain(`tls.ca (${files.ca}): holds no PEM certificate`);
    writeFileSync(files.ca, serverA.cert);
    expect(loadError().message).toContain(`tls.ca (${files.ca}): holds no CA certificate`);
  });

  it('refuses an encrypted key and a file that is no key', () => {
    const encrypted = createPrivateKey(serverA.key).export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'secret',
    }) as string;
    writeFileSync(files.key, encrypted);
    expect(loadError().message).toContain(`tls.key (${files.key}): is encrypted`);
    writeFileSync(files.key, serverA.cert);
    expect(loadError().message).toContain(`tls.key (${files.key}): is not a usable PEM private key`);
  });

  it('warns when the serving certificate has expired', () => {
    const old = ca.svid('spiffe://example.org/x', {
      notBefore: new Date(Date.now() - 2 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    write(old);
    store = TlsMaterialStore.load(files, log());
    expect(sink.lines.some((l) => l.level === 'warn' && String(l.msg).includes('outside its validity'))).toBe(
      true,
    );
  });
});

describe('TlsMaterialStore.reload', () => {
  it('is a no-op when nothing changed', () => {
    store = TlsMaterialStore.load(files, log());
    let calls = 0;
    store.onReload(() => calls++);
    expect(store.reload()).toEqual({ ok: true, changed: false });
    expect(calls).toBe(0);
    expect(store.current().generation).toBe(1);
  });

  it('swaps in new material and tells the listeners', () => {
    store = TlsMaterialStore.load(files, log());
    const seen: string[] = [];
    store.onReload((m) => seen.push(m.leaf.fingerprint256));
    write(serverB);
    expect(store.reload()).toEqual({ ok: true, changed: true });
    expect(store.current().generation).toBe(2);
    expect(seen).toEqual([fingerprint(serverB.cert)]);
  });

  it('keeps the old material when the new files do not fit, and says which file', () => {
    store = TlsMaterialStore.load(files, log());
    const before = store.current();
    writeFileSync(files.cert, serverB.cert); // new cert, old key: a half-done rotation
    writeFileSync(files.key, generateRsaKey());
    const r = store.reload();
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toContain('does not match the certificate');
    expect(store.current()).toBe(before);
    const warn = sink.lines.find((l) => l.level === 'warn' && String(l.msg).startsWith('TLS reload failed'));
    expect(warn?.file).toBe(files.key);
  });

  it('keeps the old material when a file has vanished', () => {
    store = TlsMaterialStore.load(files, log());
    rmSync(files.ca);
    const r = store.reload();
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toContain(`tls.ca (${files.ca}): cannot read`);
    expect(store.current().generation).toBe(1);
  });

  it('stops calling a listener that unsubscribed', () => {
    store = TlsMaterialStore.load(files, log());
    let calls = 0;
    const off = store.onReload(() => calls++);
    off();
    write(serverB);
    store.reload();
    expect(calls).toBe(0);
  });
});

describe('TlsMaterialStore.watch', () => {
  it('reloads when a file is replaced by rename', async () => {
    store = TlsMaterialStore.load(files, log());
    store.watch({ debounceMs: 20, pollMs: 60_000 });
    replace(files.key, serverB.key); // same shared leaf key: still matches
    replace(files.cert, serverB.cert);
    await waitFor(() => store!.current().leaf.fingerprint256 === fingerprint(serverB.cert), {
      what: 'reload after rename',
    });
  });

  it('falls back on polling', async () => {
    store = TlsMaterialStore.load(files, log());
    // A debounce longer than the test: only the poll can pick the change up.
    store.watch({ debounceMs: 60_000, pollMs: 30 });
    write(serverB);
    await waitFor(() => store!.current().generation === 2, { what: 'reload by poll' });
  });

  it('warns once about a broken file however often it polls, then recovers', async () => {
    store = TlsMaterialStore.load(files, log());
    store.watch({ debounceMs: 60_000, pollMs: 20 });
    writeFileSync(files.cert, 'garbage');
    const failures = () => sink.lines.filter((l) => String(l.msg).startsWith('TLS reload failed')).length;
    await waitFor(() => failures() === 1, { what: 'first warning' });
    await new Promise((r) => setTimeout(r, 150));
    expect(failures()).toBe(1);
    write(serverB);
    await waitFor(() => store!.current().generation === 2, { what: 'recovery' });
  });

  it('says so when a broken file is put back as it was, with nothing to reload', async () => {
    store = TlsMaterialStore.load(files, log());
    store.watch({ debounceMs: 60_000, pollMs: 20 });
    const good = readFileSync(files.cert);
    writeFileSync(files.cert, 'garbage');
    await waitFor(() => sink.lines.some((l) => String(l.msg).startsWith('TLS reload failed')), {
      what: 'the warning',
    });
    writeFileSync(files.cert, good);
    const back = 'TLS files match the certificates in force again; nothing to reload';
    await waitFor(() => sink.lines.some((l) => l.msg === back), { what: 'the all-clear' });
    expect(store.current().generation).toBe(1);
    expect(sink.lines.filter((l) => l.msg === back)).toHaveLength(1);
  });

  it('stops after close()', async () => {
    store = TlsMaterialStore.load(files, log());
    store.watch({ debounceMs: 10, pollMs: 20 });
    store.close();
    write(serverB);
    await new Promise((r) => setTimeout(r, 100));
    expect(store.current().generation).toBe(1);
  });
});
