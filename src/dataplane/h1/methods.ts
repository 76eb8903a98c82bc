/**
 * The request methods node's parser (llhttp) accepts, as a trie walked byte by byte: a method is
 * recognised without allocating a string, and a byte that cannot continue any method is refused
 * at once, as llhttp does. The list is `http.METHODS` of node 20 (a test keeps them equal); PRI,
 * the HTTP/2 preface, is not a method here.
 */

/** Every accepted method. */
export const METHODS: readonly string[] = [
  'ACL',
  'BIND',
  'CHECKOUT',
  'CONNECT',
  'COPY',
  'DELETE',
  'GET',
  'HEAD',
  'LINK',
  'LOCK',
  'M-SEARCH',
  'MERGE',
  'MKACTIVITY',
  'MKCALENDAR',
  'MKCOL',
  'MOVE',
  'NOTIFY',
  'OPTIONS',
  'PATCH',
  'POST',
  'PROPFIND',
  'PROPPATCH',
  'PURGE',
  'PUT',
  'QUERY',
  'REBIND',
  'REPORT',
  'SEARCH',
  'SOURCE',
  'SUBSCRIBE',
  'TRACE',
  'UNBIND',
  'UNLINK',
  'UNLOCK',
  'UNSUBSCRIBE',
];

/** Methods use "A"-"Z" and "-": 27 edges per trie node. */
const EDGES = 27;
function edge(b: number): number {
  if (b >= 0x41 && b <= 0x5a) return b - 0x40;
  return b === 0x2d ? 0 : -1;
}

const next: number[] = [];
const complete: Array<string | undefined> = [];
function addNode(): number {
  for (let k = 0; k < EDGES; k++) next.push(-1);
  complete.push(undefined);
  return complete.length - 1;
}
addNode();
for (const m of METHODS) {
  let node = 0;
  for (let i = 0; i < m.length; i++) {
    const slot = node * EDGES + edge(m.charCodeAt(i));
    if (next[slot] === -1) next[slot] = addNode();
    node = next[slot]!;
  }
  complete[node] = m;
}
const NEXT = Int16Array.from(next);

/** The trie root: no byte of the method read yet. */
export const METHOD_ROOT = 0;

/** The trie node after byte `b`, or -1 when no method continues with it. */
export function methodStep(node: number, b: number): number {
  const e = edge(b);
  return e < 0 ? -1 : NEXT[node * EDGES + e]!;
}

/** The method ending at `node`, or undefined if the bytes so far are only a prefix. */
export function methodAt(node: number): string | undefined {
  return complete[node];
}
