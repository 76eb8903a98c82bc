/**
 * Typed errors with stable codes. Callers match on `code`, never on message text.
 * The CLI maps error classes to exit codes (SPEC §5: 1 runtime failure, 2 usage/config error).
 */

export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'USAGE'
  | 'FILE_UNREADABLE'
  | 'TLS_MATERIAL_INVALID'
  | 'BUNDLE_INVALID'
  | 'BUNDLE_SIGNATURE'
  | 'BUNDLE_ROLLBACK'
  | 'LISTEN_FAILED'
  | 'AUTHORITY_UNREACHABLE'
  | 'AUTHORITY_REJECTED'
  | 'INTERNAL';

export class PortlicenseError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** One problem in a config file: where it is and what is wrong. */
export interface ConfigProblem {
  file: string;
  /** 1-based line, or 0 when the problem has no single location (e.g. a missing key at top level). */
  line: number;
  /** Key path such as `ports[0].protocol`; empty for the document itself. */
  path: string;
  message: string;
}

/** A config file (or CLI flag set) that cannot be used. Exit code 2. */
export class ConfigError extends PortlicenseError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super('CONFIG_INVALID', problems.map(formatProblem).join('\n'));
    this.problems = problems;
  }
}

/** Wrong command-line usage. Exit code 2. */
export class UsageError extends PortlicenseError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

/** `sidecar.yaml:9: ports[0].protocol: must be "tcp" or "http"` (SPEC §5). */
export function formatProblem(p: ConfigProblem): string {
  const where = p.line > 0 ? `${p.file}:${p.line}` : p.file;
  return p.path ? `${where}: ${p.path}: ${p.message}` : `${where}: ${p.message}`;
}

/** Exit code for an error that reached the top of a command (SPEC §5). */
export function exitCodeFor(err: unknown): 1 | 2 {
  return err instanceof ConfigError || err instanceof UsageError ? 2 : 1;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
