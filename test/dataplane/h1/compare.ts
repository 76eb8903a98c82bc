/**
 * The differential rule between our parsers and node's: whenever node refuses, we refuse (at the
 * same message or earlier); whenever both accept a message, we agree on its head and its body.
 * Where we refuse and node does not, the verdict names our error code, and the test checks it
 * against its list of deliberate strictness.
 */
import type { RequestHead, ResponseHead } from '../../../src/dataplane/h1/index.js';
import { payload, type DrivenOutcome } from './drive.js';
import type { NodeOutcome } from './node-oracle.js';

export type Verdict = { ok: true; stricter?: string } | { ok: false; why: string };

/** Node errors that are not a refusal of the bytes: input ended (server: EOF state, client: socket hang up), or data after Connection: close. */
const NOT_REFUSAL = new Set(['HPE_INVALID_EOF_STATE', 'HPE_CLOSED_CONNECTION', 'ECONNRESET']);

function sameHeaders(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Index of the message where each side refused, or Infinity. */
function ourRefusal(o: DrivenOutcome<unknown>): number {
  if (o.error === undefined) return Infinity;
  return o.errorInBody ? o.messages.length - 1 : o.messages.length;
}

function nodeRefusal(n: NodeOutcome): number {
  if (n.error === undefined || NOT_REFUSAL.has(n.error)) return Infinity;
  const last = n.messages[n.messages.length - 1];
  return last !== undefined && !last.complete && last.kind === 'request'
    ? n.messages.length - 1
    : n.messages.length;
}

/** Compare one connection's worth of request bytes. */
export function compareRequests(ours: DrivenOutcome<RequestHead>, node: NodeOutcome): Verdict {
  const ourStop = ourRefusal(ours);
  const nodeStop = nodeRefusal(node);
  let stricter: string | undefined;
  const n = Math.min(ours.messages.length, node.messages.length);
  for (let i = 0; i < n; i++) {
    const o = ours.messages[i]!;
    const m = node.messages[i]!;
    const h = o.head;
    if (
      h.method !== m.method ||
      h.target !== m.url ||
      h.version !== m.version ||
      !sameHeaders(h.headers, m.rawHeaders)
    ) {
      return {
        ok: false,
        why: `message ${i}: head differs: ours ${JSON.stringify(h)} node ${JSON.stringify(m)}`,
      };
    }
    const ourSwitch = h.upgrade || h.method === 'CONNECT';
    if (ourSwitch !== (m.kind !== 'request'))
      return { ok: false, why: `message ${i}: upgrade ours ${ourSwitch} node ${m.kind}` };
    if (ourSwitch) continue;
    if (o.complete && m.complete && payload(o) !== m.body) {
      return {
        ok: false,
        why: `message ${i}: body ours ${JSON.stringify(payload(o))} node ${JSON.stringify(m.body)}`,
      };
    }
    if (o.complete && h.keepAlive && !m.keepAlive)
      return { ok: false, why: `message ${i}: we keep alive, node closes` };
    if (o.complete && !h.keepAlive && m.keepAlive && i + 1 < node.messages.length) stricter = 'keep_alive';
  }
  if (nodeStop !== Infinity) {
    // Node refused message nodeStop: we must have refused it or an earlier one, or closed before it.
    if (ourStop <= nodeStop) {
      return ourStop < nodeStop ? { ok: true, stricter: ours.error!.code } : { ok: true, stricter };
    }
    if (ours.stop === 'close' && ours.messages.length - 1 < nodeStop)
      return { ok: true, stricter: 'keep_alive' };
    return {
      ok: false,
      why: `node refused (${node.error}) at message ${nodeStop}, ours: ${ours.stop} after ${ours.messages.length}`,
    };
  }
  if (ourStop !== Infinity) return { ok: true, stricter: ours.error!.code };
  // Neither refused: same messages, same completeness.
  if (ours.stop === 'close' && ours.messages.length < node.messages.length)
    return { ok: true, stricter: stricter ?? 'keep_alive' };
  if (ours.messages.length !== node.messages.length) {
    return {
      ok: false,
      why: `message count ours ${ours.messages.length} (${ours.stop}) node ${node.messages.length} (${node.error})`,
    };
  }
  const lastOurs = ours.messages[ours.messages.length - 1];
  const lastNode = node.messages[node.messages.length - 1];
  if (lastOurs && lastNode && lastNode.kind === 'request' && lastOurs.complete !== lastNode.complete) {
    return { ok: false, why: `last body complete: ours ${lastOurs.complete} node ${lastNode.complete}` };
  }
  // A partial head left at the end was accepted by neither side (node does not always report it).
  return { ok: true, stricter };
}

/** Compare one response. */
export function compareResponse(ours: DrivenOutcome<ResponseHead>, node: NodeOutcome): Verdict {
  const ourStop = ourRefusal(ours);
  const nodeStop = nodeRefusal(node);
  const n = Math.min(ours.messages.length, node.messages.length);
  for (let i = 0; i < n; i++) {
    const o = ours.messages[i]!;
    const m = node.messages[i]!;
    const h = o.head;
    if (h.status !== m.status || h.version !== m.version || !sameHeaders(h.headers, m.rawHeaders)) {
      return {
        ok: false,
        why: `message ${i}: head differs: ours ${JSON.stringify(h)} node ${JSON.stringify(m)}`,
      };
    }
    if ((h.framing === 'switch') !== (m.kind === 'upgrade')) {
      return { ok: false, why: `message ${i}: switch ours ${h.framing} node ${m.kind}` };
    }
    if (o.complete && m.complete && !h.informational && payload(o) !== m.body) {
      return {
        ok: false,
        why: `message ${i}: body ours ${JSON.stringify(payload(o))} node ${JSON.stringify(m.body)}`,
      };
    }
  }
  const lastO = ours.messages[ours.messages.length - 1];
  if (
    nodeStop === node.messages.length &&
    ours.stop === 'close' &&
    n === node.messages.length &&
    lastO?.complete
  ) {
    // Node's client refuses bytes after a complete response; the engine does too (nothing was asked).
    return { ok: true };
  }
  if (nodeStop !== Infinity) {
    if (ourStop <= nodeStop) return { ok: true, stricter: ourStop < nodeStop ? ours.error!.code : undefined };
    return {
      ok: false,
      why: `node refused (${node.error}) at ${nodeStop}, ours: ${ours.stop} after ${ours.messages.length}`,
    };
  }
  if (ourStop !== Infinity) return { ok: true, stricter: ours.error!.code };
  if (ours.messages.length !== node.messages.length) {
    return {
      ok: false,
      why: `message count ours ${ours.messages.length} (${ours.stop}) node ${node.messages.length} (${node.error})`,
    };
  }
  const lastOurs = ours.messages[ours.messages.length - 1];
  const lastNode = node.messages[node.messages.length - 1];
  if (lastOurs && lastNode && lastNode.kind === 'request' && lastOurs.complete !== lastNode.complete) {
    return { ok: false, why: `body complete: ours ${lastOurs.complete} node ${lastNode.complete}` };
  }
  return { ok: true };
}
