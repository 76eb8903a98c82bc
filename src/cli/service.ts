/** `portlicense service list` (SPEC §5): the services the authority knows and their ports. */
import { flag, parseFlags } from './args.js';
import { CLIENT_FLAGS, CLIENT_HELP, processIo, withAuthority, type CliIo } from './client.js';
import { renderServices, type ServiceJson } from './render.js';

const HELP = `Usage: portlicense service list [--json]

Lists the services registered with the authority and their named ports. Services are added and
changed with "portlicense apply -f FILE".
`;

/** `portlicense service list`. */
export async function serviceListCommand(argv: string[], io: CliIo = processIo()): Promise<number> {
  const command = 'service list';
  const p = parseFlags(command, argv, { ...CLIENT_FLAGS, json: { type: 'boolean' } });
  if (p.values.help) {
    io.out(HELP + '\n' + CLIENT_HELP);
    return 0;
  }
  const res = await withAuthority(command, p, io, (c) => c.get<{ services: ServiceJson[] }>('/v1/services'));
  const services = res.services ?? [];
  io.out(flag(p, 'json') ? JSON.stringify({ services }, null, 2) + '\n' : renderServices(services));
  return 0;
}
