/**
 * The API's route table: method + path pattern -> who may call it, what body and query it takes,
 * and its handler. The server does everything common (identity, 404/405, 403, 415/413/400 on the
 * body, unknown query parameters) before a handler runs, so handlers only hold the domain logic.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Role } from './auth.js';
import type { BodyInput, BodySpec, Reply } from './http-io.js';
import type { Query } from './input.js';

export interface RequestContext {
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  /** `:name` segments of the pattern, percent-decoded. */
  readonly params: Readonly<Record<string, string>>;
  readonly query: Query;
  readonly headers: IncomingHttpHeaders;
  /** The caller's verified SPIFFE ID. */
  readonly identity: string;
  readonly body: BodyInput;
  /** Aborted when the client goes away before the reply (releases a held long poll). */
  readonly signal: AbortSignal;
}

export interface Route {
  readonly method: 'GET' | 'POST';
  /** `/v1/licenses/:id/renew` */
  readonly pattern: string;
  readonly role: Role;
  /** Absent: the route reads no body. */
  readonly body?: BodySpec;
  /** Query parameters the route takes; any other one is a 400. */
  readonly query?: readonly string[];
  /** Called with the final status of every request to this route (errors before the handler included). */
  readonly observe?: (status: number) => void;
  handle(ctx: RequestContext): Reply | Promise<Reply>;
}

export type Match =
  | { kind: 'route'; route: Route; params: Record<string, string> }
  | { kind: 'method_not_allowed'; allow: string[] }
  | { kind: 'not_found' };

interface Compiled {
  route: Route;
  segments: string[];
}

export class Router {
  private readonly routes: Compiled[];

  constructor(routes: readonly Route[]) {
    this.routes = routes.map((route) => ({ route, segments: route.pattern.split('/').slice(1) }));
  }

  match(method: string, path: string): Match {
    const parts = path.split('/').slice(1);
    const allow: string[] = [];
    for (const c of this.routes) {
      const params = matchSegments(c.segments, parts);
      if (params === undefined) continue;
      if (c.route.method === method) return { kind: 'route', route: c.route, params };
      allow.push(c.route.method);
    }
    return allow.length > 0 ? { kind: 'method_not_allowed', allow } : { kind: 'not_found' };
  }
}

function matchSegments(pattern: string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const v = parts[i]!;
    if (p.startsWith(':')) {
      if (v === '') return undefined;
      let decoded: string;
      try {
        decoded = decodeURIComponent(v);
      } catch {
        return undefined;
      }
      params[p.slice(1)] = decoded;
    } else if (p !== v) return undefined;
  }
  return params;
}
