#!/usr/bin/env node
/**
 * portlicense command line: dispatch to a command module, map errors to exit codes (SPEC §5:
 * 0 ok, 1 runtime failure, 2 usage or config error). The only place that calls process.exit.
 */
import { errorMessage, exitCodeFor } from '../errors.js';

export type Command = (argv: string[]) => Promise<number>;

/** Commands are loaded lazily so a short verb does not pay for the proxy's dependencies. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  sidecar: async () => (await import('./sidecar.js')).sidecarCommand,
  authority: async () => (await import('./authority.js')).authorityCommand,
  dev: async () => (await import('./dev.js')).devCommand,
  'config validate': async () => (await import('./config-validate.js')).configValidateCommand,
  'ca init': async () => (await import('./pki.js')).caInitCommand,
  'cert issue': async () => (await import('./pki.js')).certIssueCommand,
  'bundle sign': async () => (await import('./bundle-sign.js')).bundleSignCommand,
  'license grant': async () => (await import('./license.js')).licenseGrantCommand,
  'license list': async () => (await import('./license.js')).licenseListCommand,
  'license show': async () => (await import('./license.js')).licenseShowCommand,
  'license renew': async () => (await import('./license.js')).licenseRenewCommand,
  'license revoke': async () => (await import('./license.js')).licenseRevokeCommand,
  'service list': async () => (await import('./service.js')).serviceListCommand,
  apply: async () => (await import('./apply.js')).applyCommand,
  audit: async () => (await import('./audit.js')).auditCommand,
  status: async () => (await import('./status.js')).statusCommand,
};

const USAGE = `portlicense — port licensing for internal services

Usage:
  portlicense sidecar   --config FILE
  portlicense authority --config FILE
  portlicense dev       [--dir DIR]
  portlicense config validate FILE
  portlicense ca init   --dir DIR --trust-domain TD [--force]
  portlicense cert issue --ca-dir DIR --spiffe-id ID --out PREFIX [--dns NAME...] [--ip IP...] [--ttl DURATION]
  portlicense bundle sign --key FILE --in LICENSES.yaml --out BUNDLE.json [--version N] [--node NAME]
  portlicense license grant  --subject ID --service S --port P [--ttl D] [--max-lifetime D] [--no-auto-renew]
                             [--methods GET,POST] [--paths '/api/*'] [--not-before TIME] [--reason TEXT]
  portlicense license list   [--service S] [--subject ID] [--state active|expired|revoked|pending] [--json]
  portlicense license show   ID [--json]
  portlicense license renew  ID [--ttl D] [--reason TEXT]
  portlicense license revoke ID [--reason TEXT]
  portlicense license revoke --subject PATTERN [--service S] [--reason TEXT]
  portlicense service list   [--json]
  portlicense apply -f FILE
  portlicense audit [--since TIME] [--limit N] [--json]
  portlicense status    [--admin URL] [--json]

Run "portlicense <command> --help" for a command's flags.
Commands that talk to the authority take --authority URL --cert F --key F --ca F, or
PORTLICENSE_AUTHORITY, PORTLICENSE_CERT, PORTLICENSE_KEY, PORTLICENSE_CA.
Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
`;

function resolve(argv: string[]): { name: string; rest: string[] } | undefined {
  const two = argv.slice(0, 2).join(' ');
  if (two in COMMANDS) return { name: two, rest: argv.slice(2) };
  const one = argv[0];
  if (one !== undefined && one in COMMANDS) return { name: one, rest: argv.slice(1) };
  return undefined;
}

async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === '--version') {
    const { version } = (await import('./version.js')).packageInfo();
    process.stdout.write(`${version}\n`);
    return 0;
  }
  const found = resolve(argv);
  if (!found) {
    process.stderr.write(`portlicense: unknown command "${argv.slice(0, 2).join(' ')}"\n\n${USAGE}`);
    return 2;
  }
  // `ps` and `pgrep portlicense` show what runs (node's own command line names only node and
  // dist/cli/main.js). Linux keeps at most the length of the original command line.
  process.title = ['portlicense', ...argv].join(' ');
  const command = await COMMANDS[found.name]!();
  return command(found.rest);
}

// A reader that stops early (`portlicense license list | head -1`) closes our stdout: that is the
// reader's choice, not a failure. Stop quietly, as other command-line tools do.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`portlicense: ${errorMessage(err)}\n`);
    process.exit(exitCodeFor(err));
  },
);
