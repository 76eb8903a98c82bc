/**
 * Request-target forms (RFC 9112 §3.2), checked as soon as the target ends so a bad one is refused
 * without waiting for the rest of the head, as llhttp does.
 */
import { AUTHORITY, CLASS } from './chars.js';

const SLASH = 0x2f;
const STAR = 0x2a;

/**
 * Request-target forms (RFC 9112 §3.2), over bytes already known to be visible ASCII: origin-form
 * ("/..."), asterisk-form ("*", OPTIONS only), authority-form (CONNECT only), absolute-form
 * (letters "://" authority, then "/" or "?" and anything visible).
 */
export function validTarget(buf: Buffer, s: number, e: number, method: string): boolean {
  if (method === 'CONNECT') {
    for (let i = s; i < e; i++) if ((CLASS[buf[i]!]! & AUTHORITY) === 0) return false;
    return true;
  }
  const first = buf[s]!;
  if (first === SLASH) return true;
  if (first === STAR) return e - s === 1 && method === 'OPTIONS';
  let i = s;
  while (i < e && (buf[i]! | 0x20) >= 0x61 && (buf[i]! | 0x20) <= 0x7a) i++;
  if (i === s || e - i < 3 || buf[i] !== 0x3a || buf[i + 1] !== SLASH || buf[i + 2] !== SLASH) return false;
  i += 3;
  while (i < e && (CLASS[buf[i]!]! & AUTHORITY) !== 0) i++;
  return i === e || buf[i] === SLASH || buf[i] === 0x3f;
}
