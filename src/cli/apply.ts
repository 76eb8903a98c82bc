/**
 * `portlicense apply -f FILE` (SPEC §5): declarative services and licenses, idempotent. The file
 * is validated here first, so its mistakes read `file:line: path: message` and exit 2 before
 * anything is sent; the authority then receives the document as JSON and reports what changed.
 */
import { readFileSync } from 'node:fs';
import { declarativeFrom } from '../config/declarative.js';
import { parseYamlText, readYamlFile, type YamlDocument } from '../config/yaml.js';
import { UsageError } from '../errors.js';
import { flag, parseFlags, required } from './args.js';
import { CLIENT_FLAGS, CLIENT_HELP, processIo, withAuthority, type CliIo } from './client.js';
import { renderApply, type ApplyResultJson } from './render.js';

const HELP = `Usage: portlicense apply -f FILE [--json]

Registers the services and grants the licenses of a declarative YAML file (SPEC §5). Running it
again changes nothing: it prints what was created and changed, or "no changes". -f - reads
the file from standard input.
`;

function readDocument(file: string): YamlDocument {
  if (file !== '-') return readYamlFile(file);
  let text: string;
  try {
    text = readFileSync(0, 'utf8');
  } catch (err) {
    throw new UsageError(`apply: cannot read standard input: ${(err as Error).message}`);
  }
  return parseYamlText(text, '<stdin>');
}

/** `portlicense apply -f FILE`. */
export async function applyCommand(argv: string[], io: CliIo = processIo()): Promise<number> {
  const command = 'apply';
  const p = parseFlags(command, argv, {
    ...CLIENT_FLAGS,
    file: { type: 'string', short: 'f' },
    json: { type: 'boolean' },
  });
  if (p.values.help) {
    io.out(HELP + '\n' + CLIENT_HELP);
    return 0;
  }
  const doc = readDocument(required(command, p, 'file'));
  declarativeFrom(doc); // throws ConfigError (exit 2) naming file:line
  const res = await withAuthority(command, p, io, (c) => c.post<ApplyResultJson>('/v1/apply', doc.value));
  if (flag(p, 'json')) io.out(JSON.stringify(res, null, 2) + '\n');
  else
    io.out(
      renderApply({ created: res.created ?? [], changed: res.changed ?? [], unchanged: res.unchanged ?? [] }),
    );
  return 0;
}
