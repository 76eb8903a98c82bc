/**
 * Hand-built policy snapshots and a Prometheus text parser for the telemetry tests. The snapshot
 * implements PolicySnapshot directly so these tests do not depend on the policy engine.
 */
import type { CompiledLicense, PolicySnapshot, PolicyView } from '../../src/policy/types.js';

export interface LicenseSpec {
  id: string;
  subject: string;
  service: string;
  port: string;
  notBefore: string;
  expiresAt: string;
  revokedAt?: string;
}

export function compiled(s: LicenseSpec): CompiledLicense {
  return {
    id: s.id,
    subject: s.subject,
    service: s.service,
    port: s.port,
    portKey: `${s.service}/${s.port}`,
    notBefore: Date.parse(s.notBefore),
    expiresAt: Date.parse(s.expiresAt),
    revokedAt: s.revokedAt ? Date.parse(s.revokedAt) : null,
    methods: null,
    paths: null,
    wire: { ...s },
  };
}

export function handSnapshot(version: number, issuedAt: string, specs: LicenseSpec[]): PolicySnapshot {
  const licenses = specs.map(compiled);
  return {
    version,
    issuedAt: Date.parse(issuedAt),
    node: 'node-a',
    licenses,
    decide: () => 'no_license',
    license: (id) => licenses.find((l) => l.id === id),
  };
}

/** A PolicyView whose snapshot the test swaps. */
export class TestPolicyView implements PolicyView {
  private listeners = new Set<(n: PolicySnapshot, p: PolicySnapshot) => void>();
  constructor(private snap: PolicySnapshot = handSnapshot(0, '1970-01-01T00:00:00Z', [])) {}
  current(): PolicySnapshot {
    return this.snap;
  }
  onSwap(l: (n: PolicySnapshot, p: PolicySnapshot) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  swap(next: PolicySnapshot): void {
    const prev = this.snap;
    this.snap = next;
    for (const l of this.listeners) l(next, prev);
  }
}

/** Sample lines of a text exposition, keyed by `name{labels}` exactly as printed. */
export function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

/** Sample keys of one metric (exact name, or name_bucket/_sum/_count for a histogram). */
export function samplesOf(samples: Map<string, number>, name: string): string[] {
  return [...samples.keys()].filter((k) => k === name || k.startsWith(`${name}{`));
}
