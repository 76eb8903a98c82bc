/**
 * `portlicense status [--admin URL]`: a sidecar's state from its admin /status endpoint, as a
 * human summary (or the raw JSON with --json).
 */
import { errorMessage, PortlicenseError } from '../errors.js';
import { flag, parseFlags, str } from './args.js';
import { renderStatus } from './status-render.js';

const HELP = `Usage: portlicense status [--admin URL] [--json]

Reads a sidecar's admin endpoint (default http://127.0.0.1:9901, or PORTLICENSE_ADMIN) and prints
its ports, bundle version and age, licenses with expiry and last access, and recent denials.
`;

export async function statusCommand(argv: string[]): Promise<number> {
  const p = parseFlags('status', argv, { admin: { type: 'string' }, json: { type: 'boolean' } });
  if (p.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const base = str(p, 'admin') ?? process.env.PORTLICENSE_ADMIN ?? 'http://127.0.0.1:9901';
  const url = new URL('/status', base);
  let body: unknown;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    body = await res.json();
  } catch (err) {
    throw new PortlicenseError(
      'INTERNAL',
      `cannot read sidecar status from ${url.href}: ${errorMessage(err)} (is the sidecar running, and is --admin its admin.listen address?)`,
    );
  }
  process.stdout.write(flag(p, 'json') ? JSON.stringify(body, null, 2) + '\n' : renderStatus(body));
  return 0;
}
