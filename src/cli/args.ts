/**
 * Thin wrapper over node:util parseArgs: strict flags, usage errors that name the command and
 * the flag, and `--help` for every command.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

export type FlagSpec = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Parse `argv` for `command`; unknown flags and missing values are UsageErrors (exit 2). */
export function parseFlags(command: string, argv: string[], options: FlagSpec, maxPositionals = 0): Parsed {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(
      `${command}: ${(err as Error).message.replace(/\. To specify.*$/s, '')}\nRun "portlicense ${command} --help" for usage.`,
    );
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new UsageError(`${command}: unexpected argument "${parsed.positionals[maxPositionals]}"`);
  }
  return parsed;
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function required(command: string, p: Parsed, name: string): string {
  const v = str(p, name);
  if (v === undefined || v === '') throw new UsageError(`${command}: --${name} is required`);
  return v;
}

export function list(p: Parsed, name: string): string[] {
  const v = p.values[name];
  if (Array.isArray(v)) return v.flatMap((s) => s.split(',')).filter((s) => s !== '');
  return typeof v === 'string' ? v.split(',').filter((s) => s !== '') : [];
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}
