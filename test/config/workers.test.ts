/**
 * The sidecar's `workers` key: an integer from 1 to MAX_WORKERS or `auto`, default 1, and a
 * clear `file:line: workers: ...` for anything else.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadSidecarConfig, MAX_WORKERS, workersSchema } from '../../src/config/sidecar.js';
import { createContext, INVALID } from '../../src/config/schema.js';
import { configErrorOf } from '../helpers/errors.js';
import { removeDir, tempDir, writePlaceholders } from '../helpers/tmp.js';

let root: string;

beforeEach(() => {
  root = tempDir('pl-workers-');
  writePlaceholders(join(root, 'certs'), ['ca.pem', 'orders.pem', 'orders-key.pem', 'signing.pub.pem']);
  mkdirSync(join(root, 'conf'));
});

afterEach(() => removeDir(root));

const BASE = `node: node-a
trustDomains: [example.org]
tls: { ca: ../certs/ca.pem, cert: ../certs/orders.pem, key: ../certs/orders-key.pem }
authority: { url: "https://127.0.0.1:7443", signingPublicKey: ../certs/signing.pub.pem }
ports:
  - { name: http, service: orders, protocol: http, listen: 0.0.0.0:8443, upstream: 127.0.0.1:8080 }
`;

function load(extra: string) {
  const file = join(root, 'conf', 'sidecar.yaml');
  writeFileSync(file, BASE + extra);
  return () => loadSidecarConfig(file);
}

describe('workers', () => {
  it('defaults to 1: one process, as before the key existed', () => {
    expect(load('')().workers).toBe(1);
  });

  it('takes a count', () => {
    expect(load('workers: 4\n')().workers).toBe(4);
    expect(load(`workers: ${MAX_WORKERS}\n`)().workers).toBe(MAX_WORKERS);
    expect(load('workers: 1\n')().workers).toBe(1);
  });

  it('resolves auto to the cores this process may use, once, at load', () => {
    expect(load('workers: auto\n')().workers).toBe(Math.min(MAX_WORKERS, availableParallelism()));
    const ctx = createContext({ file: 'x.yaml' });
    expect(workersSchema(() => 12).parse('auto', 'workers', ctx)).toBe(12);
    expect(workersSchema(() => 1000).parse('auto', 'workers', ctx)).toBe(MAX_WORKERS);
    expect(workersSchema(() => 0).parse('auto', 'workers', ctx)).toBe(1);
    expect(ctx.problems).toEqual([]);
  });

  it.each([['0'], ['-2'], ['1.5'], ['"2"'], ['many'], ['true'], ['[2]'], [String(MAX_WORKERS + 1)]])(
    'refuses workers: %s naming file, line and key',
    (value) => {
      const err = configErrorOf(load(`workers: ${value}\n`));
      expect(err.problems).toHaveLength(1);
      expect(err.message).toBe(
        `${join(root, 'conf', 'sidecar.yaml')}:7: workers: must be an integer from 1 to ${MAX_WORKERS}, or "auto" (one per core)`,
      );
    },
  );

  it('reports a bad workers value together with the other problems', () => {
    const err = configErrorOf(load('workers: 0\ndrainTimeout: 5\n'));
    expect(err.problems.map((p) => p.path)).toEqual(['workers', 'drainTimeout']);
  });

  it('is INVALID in the schema for a non-value', () => {
    const ctx = createContext({ file: 'x.yaml' });
    expect(workersSchema().parse(undefined, 'workers', ctx)).toBe(INVALID);
    expect(ctx.problems[0]?.path).toBe('workers');
  });
});

describe('workerHangTimeout', () => {
  it('defaults to 10 s and takes a duration from 2 s to 10 min', () => {
    expect(load('')().workerHangTimeout).toBe(10_000);
    expect(load('workerHangTimeout: 3s\n')().workerHangTimeout).toBe(3_000);
    expect(load('workerHangTimeout: 10m\n')().workerHangTimeout).toBe(600_000);
  });

  it.each([['1s'], ['11m'], ['soon'], ['5']])(
    'refuses workerHangTimeout: %s naming file, line and key',
    (v) => {
      const err = configErrorOf(load(`workerHangTimeout: ${v}\n`));
      expect(err.problems).toHaveLength(1);
      expect(err.message).toMatch(
        new RegExp(`^${join(root, 'conf', 'sidecar.yaml')}:7: workerHangTimeout: `),
      );
    },
  );
});
