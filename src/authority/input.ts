/**
 * Validation of API input with the config schema DSL (src/config/schema.ts), so the API and the
 * config files phrase a problem the same way (`ttl: invalid duration "1x": ...`), unknown fields
 * are refused, and a 400 names every bad field at once. Query strings are checked as strictly:
 * an unknown or repeated parameter is a 400, never silently ignored.
 */
import { ConfigError, type ConfigProblem } from '../errors.js';
import { parseTime } from '../config/duration.js';
import {
  INVALID,
  createContext,
  name as nameSchema,
  subjectPattern,
  throwIfProblems,
  unknownKeyMessage,
  type Schema,
} from '../config/schema.js';
import { badRequest, type ApiError } from './api-error.js';

/** `ttl: must be ...; port: is required` — line numbers only when the input was YAML. */
export function problemsDetail(problems: readonly ConfigProblem[]): string {
  return problems
    .map((p) => {
      const where = p.line > 0 ? `line ${p.line}: ` : '';
      return p.path ? `${where}${p.path}: ${p.message}` : `${where}${p.message}`;
    })
    .join('; ');
}

/** A ConfigError from a validator as a 400. */
export function configErrorToApi(err: ConfigError): ApiError {
  return badRequest(problemsDetail(err.problems));
}

/**
 * Parse `value` with `schema`.
 * @throws ApiError 400 naming every bad field.
 */
export function validateInput<T>(schema: Schema<T>, value: unknown): T {
  const ctx = createContext({ file: 'body' });
  const out = schema.parse(value, '', ctx);
  try {
    throwIfProblems(ctx);
  } catch (err) {
    throw configErrorToApi(err as ConfigError);
  }
  if (out === INVALID) throw badRequest('invalid request body');
  return out;
}

/** Whether `value` passes `schema` (for query parameters, which reuse the body schemas). */
function check<T>(schema: Schema<T>, value: unknown, label: string): T {
  const ctx = createContext({ file: 'query' });
  const out = schema.parse(value, label, ctx);
  if (out === INVALID) throw badRequest(problemsDetail(ctx.problems));
  return out;
}

/** A query string with a fixed set of parameters. */
export class Query {
  private readonly params = new Map<string, string>();

  /** @throws ApiError 400 for an unknown or repeated parameter. */
  constructor(search: string, allowed: readonly string[]) {
    for (const [k, v] of new URLSearchParams(search)) {
      if (allowed.length === 0) throw badRequest(`unknown query parameter "${k}" (this route takes none)`);
      if (!allowed.includes(k))
        throw badRequest(
          unknownKeyMessage(k, allowed)
            .replace('unknown key', 'unknown query parameter')
            .replace('known keys', 'known parameters'),
        );
      if (this.params.has(k)) throw badRequest(`query parameter "${k}" is given more than once`);
      if (v !== '') this.params.set(k, v);
    }
  }

  /** The value, or undefined when absent or empty. */
  get(key: string): string | undefined {
    return this.params.get(key);
  }

  required(key: string): string {
    const v = this.params.get(key);
    if (v === undefined) throw badRequest(`query parameter "${key}" is required`);
    return v;
  }

  /** A whole number within [min, max], or `fallback` when absent. */
  integer(key: string, opts: { min: number; max: number; fallback: number }): number {
    const v = this.params.get(key);
    if (v === undefined) return opts.fallback;
    if (!/^[0-9]+$/.test(v) || Number(v) < opts.min || Number(v) > opts.max)
      throw badRequest(
        `query parameter "${key}": must be a whole number from ${opts.min} to ${opts.max}, not ${JSON.stringify(v)}`,
      );
    return Number(v);
  }

  /** An RFC 3339 time as epoch ms, or undefined when absent. */
  time(key: string): number | undefined {
    const v = this.params.get(key);
    if (v === undefined) return undefined;
    try {
      return parseTime(v);
    } catch (err) {
      throw badRequest(`query parameter "${key}": ${(err as Error).message}`);
    }
  }

  /** The value checked by `schema` (the body schemas: same rules, same messages), or undefined when absent. */
  parse<T>(key: string, schema: Schema<T>): T | undefined {
    const v = this.params.get(key);
    return v === undefined ? undefined : check(schema, v, key);
  }

  /** A service name, or undefined when absent. */
  name(key: string): string | undefined {
    return this.parse(key, nameSchema());
  }

  /** A subject (SPIFFE ID or `/*` prefix), or undefined when absent. */
  subject(key: string): string | undefined {
    return this.parse(key, subjectPattern());
  }

  /** One of `values`, or undefined when absent. */
  oneOf<const T extends string>(key: string, values: readonly T[]): T | undefined {
    const v = this.params.get(key);
    if (v === undefined) return undefined;
    if (!(values as readonly string[]).includes(v))
      throw badRequest(
        `query parameter "${key}": must be one of ${values.join(', ')}, not ${JSON.stringify(v)}`,
      );
    return v as T;
  }
}

/** Check one value (a list item of a query parameter) with `schema`; 400 naming `label`. */
export function checkValue<T>(schema: Schema<T>, value: string, label: string): T {
  return check(schema, value, label);
}
