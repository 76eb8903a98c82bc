/**
 * The sidecar's pull sync (SPEC §4): long-poll `GET /v1/bundle` over mTLS with the sidecar's own
 * certificate, verify each bundle (signature, never a lower version), swap the policy snapshot,
 * write the cache file; send usage reports every reportInterval. Errors are counted by reason and
 * retried with jittered backoff; nothing here ever blocks or fails open the data path: an outage
 * leaves the last good bundle in force, evaluated against the clock, so licenses still expire.
 */
import type { KeyObject } from 'node:crypto';
import { X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import { certificateIdentity } from '../dataplane/identity.js';
import { subjectMatches } from '../policy/spiffe.js';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { SidecarConfig } from '../config/types.js';
import { formatDuration, formatTime } from '../config/duration.js';
import { errorMessage, PortlicenseError } from '../errors.js';
import type { Logger } from '../log.js';
import type { TlsMaterialStore } from '../dataplane/tls-context.js';
import { canonicalJson, rollbackError, verifyBundleAsync } from '../policy/bundle.js';
import { buildSnapshot, buildSnapshotAsync } from '../policy/snapshot.js';
import type { PolicyStore } from '../policy/store.js';
import type { BundlePayload, PolicySnapshot } from '../policy/types.js';
import type { SidecarMetrics } from '../telemetry/metrics.js';
import { mergeUsageReports, type UsageReport, type UsageTracker } from '../telemetry/usage.js';
import { Backoff } from './backoff.js';
import { readCacheFile, writeFileDurably } from './cache-file.js';

/** Largest bundle document accepted from the authority. */
const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;
/** Exact usage keys kept while reports cannot be delivered; beyond, folded per license. */
const MAX_PENDING_KEYS = 20_000;
/**
 * Usage entries per POST /v1/usage: about 150 KB of JSON. A full tracker (10,000 keys) is about
 * 1.5 MB, more than the authority's default body limit (limits.maxBodyBytes, 1 MiB).
 */
export const REPORT_BATCH = 1_000;
/** JSON bytes per usage batch, about: entries with long identities or origins make fewer per batch. */
const REPORT_BATCH_BYTES = 256 * 1024;

/** Where the batch starting at `from` ends: at most `max` entries and about REPORT_BATCH_BYTES. */
function batchEnd(usage: UsageReport['usage'], from: number, max: number): number {
  const stop = Math.min(usage.length, from + max);
  let bytes = 0;
  let i = from;
  for (; i < stop; i++) {
    const u = usage[i]!;
    // The field names, the time and the count are under 100 bytes.
    bytes += u.licenseId.length + u.identity.length + u.origin.length + 100;
    if (bytes > REPORT_BATCH_BYTES && i > from) break;
  }
  return i;
}

export interface AuthoritySyncDeps {
  config: SidecarConfig;
  policy: PolicyStore;
  tls: TlsMaterialStore;
  publicKey: KeyObject;
  clock: Clock;
  log: Logger;
  metrics: SidecarMetrics;
  usage: UsageTracker;
  /** Retry delays after failed syncs; the default spreads sidecars over up to 30 s. */
  backoff?: Backoff;
}

/** How long a stopping sidecar tries to deliver its last usage report. */
export const FINAL_REPORT_MS = 2_000;

/**
 * The least time between two bundle requests that ended in a 304. The authority holds a poll for
 * at least a second (`wait` and `limits.maxWait` are 1 s or more) and answers one sooner only as
 * it shuts down, so this applies to something else answering at once (a proxy in between, a
 * stand-in): without it the sync would spin on the event loop the data path runs on. Measured on
 * the monotonic clock, paced on the system's timers: I/O pacing, not policy time.
 */
export const MIN_POLL_INTERVAL_MS = 1_000;

export type SyncFailure =
  'connect' | 'tls' | 'timeout' | 'http_4xx' | 'http_5xx' | 'invalid' | 'signature' | 'rollback';

export class AuthoritySync {
  private readonly url: URL;
  private agent: Agent;
  private readonly backoff: Backoff;
  private readonly abort = new AbortController();
  /** Stops usage reports: at close, only once the last report's time is up (FINAL_REPORT_MS). */
  private readonly reportAbort = new AbortController();
  /** The report under way, if any. */
  private reporting: Promise<void> | null = null;
  private closed = false;
  private sleepTimer: TimerHandle | null = null;
  private reportTimer: TimerHandle | null = null;
  private pending: UsageReport | null = null;
  /** Usage reports not delivered in a row: the first is a warning, the rest debug lines. */
  private reportFailures = 0;
  private readonly warned = new Set<string>();
  /** Licenses the authority said are in use but cannot be renewed (autoRenew off, max lifetime). */
  readonly unrenewable = new Set<string>();
  private loop: Promise<void> | null = null;
  private unsubscribeTls: () => void;
  lastSuccess: number | null = null;
  lastError: string | null = null;
  /** When the current run of failed syncs began; null while syncs succeed. */
  private failingSince: number | null = null;
  /** Whether this outage's "not ready" warning was logged. */
  private staleSaid = false;

  /** The services this sidecar fronts, sorted: what it asks the authority for. */
  private readonly services: readonly string[];
  /** Whether the bundle in force was issued for this node and exactly these services. */
  private inForceMatches = false;

  constructor(private readonly deps: AuthoritySyncDeps) {
    this.backoff = deps.backoff ?? new Backoff({ base: 500, max: 30_000, min: 100 });
    this.url = new URL(deps.config.authority.url!);
    this.services = [...new Set(deps.config.ports.map((p) => p.service))].sort();
    this.agent = this.makeAgent();
    // New certificates apply to the next request; the held long poll finishes on the old agent.
    this.unsubscribeTls = deps.tls.onReload(() => {
      const old = this.agent;
      this.agent = this.makeAgent();
      void old.close().catch(() => undefined);
    });
  }

  private makeAgent(): Agent {
    const m = this.deps.tls.current();
    const serverId = this.deps.config.authority.serverId;
    return new Agent({
      connect: {
        ca: m.ca,
        cert: m.cert,
        key: m.key,
        minVersion: 'TLSv1.2',
        timeout: 10_000,
        ...(serverId !== undefined && {
          checkServerIdentity: (host: string, cert: PeerCertificate): Error | undefined =>
            checkServerIdentity(host, cert) ??
            authorityIdentityError(cert, serverId, this.deps.config.trustDomains),
        }),
      },
      keepAliveTimeout: 60_000,
      headersTimeout: this.deps.config.authority.wait + 15_000,
      bodyTimeout: 60_000,
    });
  }

  /** Enforce the cache file if there is a good one, then start polling and reporting. */
  start(): void {
    const { config, log, publicKey } = this.deps;
    const cacheFile = config.authority.cacheFile;
    if (cacheFile) {
      try {
        const cached = readCacheFile(cacheFile, publicKey);
        if (cached) {
          // Synchronous: nothing is served yet, so there is no event loop to keep free.
          this.install(cached.payload, buildSnapshot(cached.payload), null);
          log.info('enforcing cached bundle until the authority answers', {
            cacheFile,
            version: cached.payload.version,
          });
        }
      } catch (err) {
        this.lastError = `cache file ${cacheFile} refused: ${errorMessage(err)}`;
        this.deps.metrics.syncFailed(reasonOf(err));
        log.error('cache file refused; waiting for the authority (deny-all until then)', {
          cacheFile,
          error: errorMessage(err),
        });
      }
    }
    this.loop = this.pollLoop();
    this.scheduleReport();
  }

  private install(payload: BundlePayload, snapshot: PolicySnapshot, bytes: Uint8Array | null): void {
    const { policy, metrics, clock, config, log } = this.deps;
    policy.swap(snapshot);
    metrics.bundleLoaded(payload.version, clock.now());
    for (const id of this.unrenewable) if (snapshot.license(id) === undefined) this.unrenewable.delete(id);
    this.inForceMatches =
      payload.node === config.node && [...payload.services].sort().join(',') === this.services.join(',');
    const cacheFile = config.authority.cacheFile;
    if (bytes !== null && cacheFile) {
      // Off the event loop: the data path never waits for this disk write.
      this.cacheWrite = this.cacheWrite
        .then(() => writeFileDurably(cacheFile, bytes))
        .catch((err: unknown) =>
          log.warn(
            'could not write the bundle cache file; a restart during an outage would not have this bundle',
            {
              cacheFile,
              error: errorMessage(err),
            },
          ),
        );
    }
  }

  /** Serialises cache-file writes. */
  private cacheWrite: Promise<void> = Promise.resolve();

  private bundleUrl(): string {
    const { config } = this.deps;
    const u = new URL('/v1/bundle', this.url);
    u.searchParams.set('node', config.node);
    u.searchParams.set('services', this.services.join(','));
    u.searchParams.set('wait', String(Math.round(config.authority.wait / 1000)));
    return u.href;
  }

  private async pollLoop(): Promise<void> {
    const { policy, log, metrics, publicKey } = this.deps;
    while (!this.closed) {
      const current = policy.current().version;
      const asked = performance.now();
      try {
        const res = await request(this.bundleUrl(), {
          dispatcher: this.agent,
          method: 'GET',
          // A bundle issued for another node name or service list (a cache file from before a config
          // change) is enforced until the authority answers, but never confirmed with a 304.
          headers: current > 0 && this.inForceMatches ? { 'if-none-match': `"${current}"` } : {},
          signal: this.abort.signal,
        });
        if (res.statusCode === 304) {
          await res.body.dump();
          this.succeeded();
          const elapsed = performance.now() - asked;
          if (elapsed < MIN_POLL_INTERVAL_MS) await this.sleep(MIN_POLL_INTERVAL_MS - elapsed, systemClock);
          continue;
        }
        if (res.statusCode !== 200) {
          const body = await res.body.text().catch(() => '');
          throw new SyncError(
            res.statusCode >= 500 ? 'http_5xx' : 'http_4xx',
            `authority answered ${res.statusCode}: ${body.slice(0, 300)}`,
          );
        }
        const bytes = await readLimited(res.body, MAX_BUNDLE_BYTES);
        // Decoded, verified and built in slices (the data path keeps flowing on a big bundle).
        const payload = await verifyBundleAsync(bytes, publicKey, {
          minVersion: this.inForceMatches ? current : 0,
        });
        if (payload.node !== this.deps.config.node)
          throw new SyncError(
            'invalid',
            `the authority sent a bundle for node "${payload.node}", not "${this.deps.config.node}"`,
          );
        if (payload.version > current || current === 0 || !this.inForceMatches) {
          const next = await buildSnapshotAsync(payload);
          if (this.closed) return;
          // Checked again at the swap: the version in force must never go backwards, even if
          // something else installed a newer bundle while this one was being prepared.
          const inForce = policy.current().version;
          if (this.inForceMatches && payload.version < inForce) throw rollbackError(payload.version, inForce);
          this.install(payload, next, bytes);
          log.info('bundle installed', {
            version: payload.version,
            licenses: payload.licenses.length,
            previous: current,
          });
        }
        this.succeeded();
      } catch (err) {
        if (this.closed) return;
        const reason = reasonOf(err);
        this.lastError = errorMessage(err);
        metrics.syncFailed(reason);
        const delay = this.backoff.next();
        const now = this.deps.clock.now();
        this.failingSince ??= now;
        const level = this.backoff.consecutiveFailures > 1 ? 'debug' : 'warn';
        log[level]('bundle sync failed; keeping the bundle in force and retrying', {
          reason,
          error: this.lastError,
          retryInMs: delay,
          version: current,
          authority: this.url.origin,
        });
        // The moment /readyz turns (the failures before it are debug lines): said once per outage.
        const stale = now - (this.lastSuccess ?? this.failingSince) > this.deps.config.authority.maxStaleness;
        if (stale && !this.staleSaid) {
          this.staleSaid = true;
          log.warn(
            'no bundle sync within maxStaleness: /readyz reports not ready; still enforcing the bundle in force',
            {
              version: current,
              lastSync: this.lastSuccess === null ? null : formatTime(this.lastSuccess),
              error: this.lastError,
              authority: this.url.origin,
            },
          );
        }
        await this.sleep(delay);
      }
    }
  }

  private succeeded(): void {
    const now = this.deps.clock.now();
    if (this.failingSince !== null) {
      this.deps.log.info('bundle sync recovered', {
        failedFor: formatDuration(now - this.failingSince),
        failures: this.backoff.consecutiveFailures,
        version: this.deps.policy.current().version,
        authority: this.url.origin,
      });
      this.failingSince = null;
      this.staleSaid = false;
    }
    this.lastSuccess = now;
    this.lastError = null;
    this.backoff.reset();
    this.deps.metrics.syncSucceeded(now);
  }

  /** Wait `ms` on `clock` (the policy clock unless told), or until close(), even one already made. */
  private sleep(ms: number, clock: Clock = this.deps.clock): Promise<void> {
    if (this.abort.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const onAbort = (): void => resolve();
      this.sleepTimer = clock.setTimer(() => {
        this.sleepTimer = null;
        this.abort.signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      this.abort.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private scheduleReport(): void {
    if (this.closed) return;
    this.reportTimer = this.deps.clock.setTimer(() => {
      const run = this.report();
      this.reporting = run;
      void run.finally(() => {
        this.reporting = null;
        this.scheduleReport();
      });
    }, this.deps.config.authority.reportInterval);
  }

  /**
   * Send what was used since the last report, in batches of at most REPORT_BATCH entries and about
   * REPORT_BATCH_BYTES of JSON (a full tracker's report is larger than the authority takes in one
   * body by default; a 413 halves the batches). When the authority is away (no answer, 5xx, 408,
   * 429), what was not delivered is kept for the next report (merged, bounded). A batch refused with
   * any other 4xx would be refused again: it is dropped and counted, and the rest is still sent, so
   * that it cannot block every later report (fresh use renews licenses just as well).
   */
  async report(): Promise<void> {
    const { usage, clock, metrics, log } = this.deps;
    const fresh = usage.takeReport(clock.now());
    let report = fresh;
    if (this.pending) {
      const merged = mergeUsageReports(this.pending, fresh, MAX_PENDING_KEYS);
      if (merged.dropped > 0) metrics.reportsDropped(merged.dropped);
      report = merged.report;
    }
    this.pending = null;
    let failed = false;
    let size = REPORT_BATCH;
    let sent = 0;
    let first = true;
    do {
      const end = batchEnd(report.usage, sent, size);
      const batch = report.usage.slice(sent, end);
      const denials = first ? report.denials : [];
      if (batch.length === 0 && denials.length === 0) break;
      let answer: string | null = null;
      try {
        answer = await this.postUsage(batch, denials);
      } catch (err) {
        const status = err instanceof SyncError ? err.status : 0;
        if (status === 413 && batch.length > 1) {
          size = Math.ceil(batch.length / 2);
          continue;
        }
        const refused = status >= 400 && status < 500 && status !== 408 && status !== 429;
        // Until reports get through, licenses in use here are not renewed: say so once, like a
        // failed bundle sync, not at every interval. (Stopping, close() says what was dropped.)
        if (!failed && (refused || !this.closed))
          log[this.reportFailures === 0 ? 'warn' : 'debug'](
            refused
              ? 'usage report entries refused by the authority; dropped (the rest of the report is still sent)'
              : 'usage report not delivered; kept for the next one, and licenses in use are not renewed until one is',
            { error: errorMessage(err), entries: batch.length + denials.length, authority: this.url.origin },
          );
        failed = true;
        if (!refused) {
          this.pending = { ...report, usage: report.usage.slice(sent), denials };
          this.reportFailures++;
          return;
        }
        metrics.reportsDropped(batch.length + denials.length);
      }
      if (answer !== null) this.readAnswer(answer);
      first = false;
      sent = end;
    } while (sent < report.usage.length);
    this.reportFailures = failed ? this.reportFailures + 1 : 0;
  }

  /** One POST /v1/usage; its answer's text. @throws SyncError when it was not taken. */
  private async postUsage(batch: UsageReport['usage'], denials: UsageReport['denials']): Promise<string> {
    const body = canonicalJson({
      node: this.deps.config.node,
      usage: batch.map((u) => ({
        license: u.licenseId,
        identity: u.identity,
        origin: u.origin,
        lastAccess: formatTime(u.lastAccess),
        count: u.count,
      })),
      denials: denials.map((d) => ({ identity: d.identity, reason: d.reason, count: d.count })),
    });
    const res = await request(new URL('/v1/usage', this.url).href, {
      dispatcher: this.agent,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      signal: AbortSignal.any([this.reportAbort.signal, AbortSignal.timeout(15_000)]),
    });
    const text = await res.body.text();
    const status = res.statusCode;
    if (status < 300) return text;
    throw new SyncError(
      status >= 500 ? 'http_5xx' : 'http_4xx',
      `usage report answered ${status}: ${text.slice(0, 300)}`,
      status,
    );
  }

  /**
   * The authority lists licenses that are in use but cannot be renewed, and licenses whose use it
   * ignored (their service is not among this sidecar's in its `sidecars` entries): say so once each.
   */
  private readAnswer(text: string): void {
    let parsed: {
      ignored?: unknown;
      expiring?: unknown;
    } | null;
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      return;
    }
    if (parsed === null || typeof parsed !== 'object') return;
    const ignored = Array.isArray(parsed.ignored) ? (parsed.ignored as unknown[]) : [];
    const expiring = Array.isArray(parsed.expiring)
      ? (parsed.expiring as Array<{
          id?: unknown;
          subject?: unknown;
          service?: unknown;
          port?: unknown;
          expiresAt?: unknown;
          why?: unknown;
        } | null>)
      : [];
    for (const id of ignored) {
      const key = `ignored ${String(id)}`;
      if (this.warned.has(key)) continue;
      this.warned.add(key);
      this.deps.log.warn(
        "the authority ignored this sidecar's use of a license: its sidecars entries do not allow the license's service, so use here does not renew it",
        { license: id, authority: this.url.origin },
      );
    }
    for (const e of expiring) {
      if (e === null || typeof e !== 'object') continue;
      this.unrenewable.add(String(e.id));
      const key = `${String(e.id)}@${String(e.expiresAt)}`;
      if (this.warned.has(key)) continue;
      this.warned.add(key);
      this.deps.log.warn('license in use expires soon and will not be renewed', {
        license: e.id,
        subject: e.subject,
        port: `${String(e.service)}/${String(e.port)}`,
        expiresAt: e.expiresAt,
        why: e.why,
      });
    }
  }

  /**
   * Stop syncing. What was used since the last report (the drain's requests included) is sent once
   * more, within FINAL_REPORT_MS, so a restart does not lose it; what the authority does not take by
   * then is dropped, counted and logged.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.sleepTimer?.cancel();
    this.reportTimer?.cancel();
    this.unsubscribeTls();
    await this.loop?.catch(() => undefined);
    await this.finalReport();
    await this.cacheWrite;
    await this.agent.close().catch(() => undefined);
  }

  private async finalReport(): Promise<void> {
    const { log, metrics } = this.deps;
    // A deadline on I/O, in real time like the requests' own timeouts.
    const limit = setTimeout(() => this.reportAbort.abort(), FINAL_REPORT_MS);
    try {
      await this.reporting; // it took its usage already: let it finish (or keep it pending)
      await this.report();
    } finally {
      clearTimeout(limit);
    }
    const left = this.pending === null ? 0 : this.pending.usage.length + this.pending.denials.length;
    if (left === 0) return;
    this.pending = null;
    metrics.reportsDropped(left);
    log.warn('usage not reported before stopping: the authority did not take it in time; dropped', {
      entries: left,
      authority: this.url.origin,
    });
  }
}

class SyncError extends Error {
  constructor(
    readonly reason: SyncFailure,
    message: string,
    /** The authority's answer, when there was one. */
    readonly status = 0,
  ) {
    super(message);
  }
}

function reasonOf(err: unknown): SyncFailure {
  if (err instanceof SyncError) return err.reason;
  if (err instanceof PortlicenseError) {
    if (err.code === 'BUNDLE_SIGNATURE') return 'signature';
    if (err.code === 'BUNDLE_ROLLBACK') return 'rollback';
    return 'invalid';
  }
  const code = (err as { code?: string }).code ?? '';
  if (/TIMEOUT/.test(code)) return 'timeout';
  if (/CERT|SSL|TLS|ERR_TLS/.test(code)) return 'tls';
  return 'connect';
}

/** Read a response body, refusing more than `limit` bytes whatever Content-Length says. */
async function readLimited(body: AsyncIterable<Buffer | Uint8Array>, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += c.length;
    if (n > limit) throw new SyncError('invalid', `bundle is over the ${limit} byte limit`);
    chunks.push(Buffer.from(c));
  }
  return Buffer.concat(chunks);
}

/** Why the authority's certificate is not the configured `authority.serverId`, or undefined. */
export function authorityIdentityError(
  cert: PeerCertificate,
  serverId: string,
  trustDomains: readonly string[],
): Error | undefined {
  const got = certificateIdentity(new X509Certificate(cert.raw), trustDomains);
  if (got.error !== undefined)
    return new Error(`the authority's certificate is not acceptable: ${got.error.replace('client ', '')}`);
  if (got.identity === serverId || subjectMatches(serverId, got.identity)) return undefined;
  return new Error(`the authority presented ${got.identity}, not authority.serverId ${serverId}`);
}
