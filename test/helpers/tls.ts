/**
 * TLS material for data-plane tests: a CA and a leaf written as files, loaded into a real
 * TlsMaterialStore (so rotation tests can rewrite the files), logging at debug into memory.
 */
import { TlsMaterialStore, type TlsFiles } from '../../src/dataplane/tls-context.js';
import { createLogger, MemorySink, type Logger } from '../../src/log.js';
import { writeTlsFiles, type PemPair } from './pki.js';

export interface TlsFixture {
  files: TlsFiles;
  sink: MemorySink;
  log: Logger;
  tls: TlsMaterialStore;
}

/** Write `caCert` and `leaf` into `dir` (ca.pem, cert.pem, key.pem) and load them. */
export function loadTlsFixture(dir: string, caCert: string, leaf: PemPair): TlsFixture {
  const files = writeTlsFiles(dir, caCert, leaf);
  const sink = new MemorySink();
  const log = createLogger({ sink, level: 'debug' });
  return { files, sink, log, tls: TlsMaterialStore.load(files, log) };
}
