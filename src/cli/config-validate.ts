/** `portlicense config validate FILE`: exit 0 with a summary of what the file configures, or 2 with every problem. */
import { validateConfigFile } from '../config/validate.js';
import { UsageError } from '../errors.js';
import { parseFlags } from './args.js';
import { authorityMaterial, checkSidecarMaterial } from './material.js';

const HELP = `Usage: portlicense config validate FILE

Checks a sidecar, authority or declarative (licenses) file, and the certificates and keys it
names, as the process would: every problem is printed as FILE:LINE: key.path: message. Exit 0
when valid, 2 when not.
`;

export async function configValidateCommand(argv: string[]): Promise<number> {
  const p = parseFlags('config validate', argv, {}, 1);
  if (p.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const file = p.positionals[0];
  if (!file) throw new UsageError('config validate: FILE is required\n\n' + HELP);
  const result = await Promise.resolve(validateConfigFile(file));
  if (result.sidecar) checkSidecarMaterial(result.sidecar);
  if (result.authority) authorityMaterial(result.authority);
  process.stdout.write(`${file}: valid ${result.summary}\n`);
  return 0;
}
