/**
 * Answers on one connection of the full path go out in the order of its requests (HTTP/1.1
 * pipelining), and nothing is served after an answer that closes the connection.
 *
 * Node's server queues its ServerResponses in request order, but the answers the proxy writes on
 * the raw socket (an upgrade's 101 or refusal, CONNECT's 400, a malformed head's 400 or 431) bypass
 * that queue: they wait here until every response started before them on the connection has
 * finished. And Node goes on parsing requests pipelined behind a `connection: close` answer: those
 * are left unserved, so none reaches the upstream without the caller ever seeing its answer.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

interface Pending {
  count: number;
  waiting: Array<() => void>;
}

const pending = new WeakMap<Socket, Pending>();
const closing = new WeakSet<Socket>();

/** `res` answers a request read from `socket`: raw answers wait for it until it closes. */
export function trackResponse(socket: Socket, res: ServerResponse): void {
  let p = pending.get(socket);
  if (p === undefined) {
    p = { count: 0, waiting: [] };
    pending.set(socket, p);
  }
  const q = p;
  q.count++;
  res.once('close', () => {
    if (--q.count !== 0) return;
    const waiting = q.waiting.splice(0);
    // A caller gone meanwhile takes no answer, and an upgrade of it dials nothing.
    if (!socket.destroyed) for (const fn of waiting) fn();
  });
}

/**
 * Write a raw answer in its turn: run `fn` once every response started on `socket` so far has
 * finished (now, when none is open), and never when an earlier answer closes the connection.
 */
export function answerInTurn(socket: Socket, fn: () => void): void {
  if (closing.has(socket)) return;
  const p = pending.get(socket);
  if (p === undefined || p.count === 0) fn();
  else p.waiting.push(fn);
}

/** An answer on `socket` said `connection: close`: serve nothing more on it. */
export function markClosing(socket: Socket): void {
  closing.add(socket);
}

/** Whether an answer on `socket` already said `connection: close`. */
export function isClosing(socket: Socket): boolean {
  return closing.has(socket);
}
