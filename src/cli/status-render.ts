/** Human rendering of a sidecar's /status document (`portlicense status`). */
import type { SidecarStatus } from '../telemetry/status.js';

export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

function age(seconds: number | null): string {
  if (seconds === null) return 'never';
  if (seconds < 120) return `${Math.round(seconds)}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

function left(seconds: number): string {
  if (seconds <= 0) return '-';
  if (seconds < 120) return `${Math.round(seconds)}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

export function renderStatus(body: unknown): string {
  const s = body as SidecarStatus;
  const out: string[] = [];
  const ready = s.ready ? (s.ready.ok ? 'ready' : `NOT READY: ${s.ready.reasons.join('; ')}`) : '';
  out.push(`node ${s.node}  ${ready}`.trimEnd() + '\n');
  const b = s.bundle;
  out.push(
    `bundle version ${b.version}, issued ${age(b.ageSeconds)}, last sync ${age(b.lastSuccessAgeSeconds)}` +
      (b.source ? ` from ${b.source}` : '') +
      (b.lastError ? `\n  last error: ${b.lastError}` : '') +
      '\n\n',
  );
  if (s.ports.length > 0) {
    out.push(
      table([
        ['PORT', 'PROTOCOL', 'LISTEN', 'MODE', 'CONNECTIONS'],
        ...s.ports.map((p) => [p.port, p.protocol, p.listen, p.mode, String(p.activeConnections)]),
      ]),
    );
    out.push('\n');
  }
  if (s.workers && s.workers.length > 0) {
    out.push(
      table([
        ['WORKER', 'STATE', 'PID', 'BUNDLE', 'RESTARTS', 'HEARTBEAT'],
        ...s.workers.map((w) => [
          String(w.slot),
          w.state,
          w.pid === null ? '-' : String(w.pid),
          w.bundleVersion === null ? '-' : String(w.bundleVersion),
          String(w.restarts),
          w.silentSeconds === null ? '-' : w.silentSeconds === 0 ? 'ok' : `silent ${w.silentSeconds}s`,
        ]),
      ]),
    );
    out.push('\n');
  }
  if (s.outbound && s.outbound.length > 0) {
    out.push(
      table([
        ['OUTBOUND', 'LISTEN', 'TARGET', 'SERVER ID', 'ACTIVE', 'CONNECTIONS', 'LAST ERROR'],
        ...s.outbound.map((o) => [
          o.name,
          o.listen,
          o.target,
          o.serverId,
          String(o.activeConnections),
          Object.entries(o.connections)
            .filter(([, n]) => n > 0)
            .map(([r, n]) => `${r}=${n}`)
            .join(' ') || '-',
          o.lastError ? `${o.lastError.at} ${o.lastError.result}: ${o.lastError.detail}` : '-',
        ]),
      ]),
    );
    out.push('\n');
  }
  if (s.ports.length === 0) return out.join('');
  out.push(
    s.licenses.length === 0
      ? 'no licenses: every port denies everything\n'
      : table([
          ['LICENSE', 'SUBJECT', 'PORT', 'STATE', 'EXPIRES IN', 'LAST ACCESS', 'COUNT'],
          ...s.licenses.map((l) => [
            l.id + (l.expiringSoon ? ' (!)' : ''),
            l.subject,
            `${l.service}/${l.port}`,
            l.state,
            left(l.secondsLeft),
            l.lastAccess ? `${l.lastAccess.at} ${l.lastAccess.origin}` : 'never',
            l.lastAccess ? String(l.lastAccess.count) : '0',
          ]),
        ]),
  );
  if (s.licenses.some((l) => l.expiringSoon)) out.push('(!) in use and expiring within the warning window\n');
  if (s.recentDenials.length > 0) {
    out.push('\nrecent denials\n');
    out.push(
      table([
        ['AT', 'PORT', 'IDENTITY', 'ORIGIN', 'REASON'],
        ...s.recentDenials.slice(0, 20).map((d) => [d.at, d.port, d.identity ?? '-', d.origin, d.reason]),
      ]),
    );
  }
  return out.join('');
}
