/**
 * The signed bundle format (SPEC §4): canonical JSON, Ed25519 signing and strict verification.
 * Shared by the authority (signs), `bundle sign` (signs offline) and the sidecar (verifies), so the
 * bytes that are signed are defined in exactly one place.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PortlicenseError, errorMessage } from '../errors.js';
import { compileWireList, compileWireListAsync, parseRfc3339 } from './compile.js';
import { decodeUtf8Sliced, parseJsonSliced } from './bundle-text.js';
import { Slicer } from './slice.js';
import type { BundlePayload, SignedBundle } from './types.js';

const MAX_DEPTH = 64;

/**
 * Canonical JSON in the style of RFC 8785 (JCS): object keys sorted by UTF-16 code units at every
 * level, no whitespace, strings and numbers as JSON.stringify writes them. Object properties whose
 * value is undefined are omitted (as JSON.stringify does); anything JSON cannot represent exactly —
 * non-finite numbers, undefined/functions in arrays, bigint, symbols, lone surrogates, class
 * instances, nesting deeper than 64 — throws a TypeError, so two parties never sign different bytes
 * for what they believe is the same value.
 */
export function canonicalJson(value: unknown): string {
  return canon(value, 0);
}

function canon(v: unknown, depth: number): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`canonical JSON: ${v} is not a finite number`);
      return JSON.stringify(v);
    case 'string':
      if (!(v as unknown as { isWellFormed(): boolean }).isWellFormed())
        throw new TypeError('canonical JSON: string holds a lone surrogate');
      return JSON.stringify(v);
    case 'object':
      break;
    default:
      throw new TypeError(`canonical JSON: cannot encode a ${typeof v}`);
  }
  if (depth >= MAX_DEPTH) throw new TypeError(`canonical JSON: nested deeper than ${MAX_DEPTH}`);
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out += ',';
      out += canon(v[i], depth + 1);
    }
    return out + ']';
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null)
    throw new TypeError('canonical JSON: only plain objects, arrays and primitives can be encoded');
  const obj = v as Record<string, unknown>;
  // Default sort compares UTF-16 code units, which is what RFC 8785 §3.2.3 asks for.
  const keys = Object.keys(obj).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const item = obj[k];
    if (item === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += canon(k, depth) + ':' + canon(item, depth + 1);
  }
  return out + '}';
}

/**
 * The canonical JSON of a parsed payload, fast. JSON.parse keeps the text's key order, and the
 * authority writes keys sorted, so for every bundle it signed the native JSON.stringify already
 * yields the canonical bytes; a walk that only compares keys confirms that (no key of a payload is
 * integer-like, which is the one case where JS reorders keys). Anything else takes the slow,
 * general path. For input that canonicalJson accepts, both produce identical bytes.
 */
function signedBytesOf(payload: unknown): string {
  return keysSortedDeep(payload, 0) ? JSON.stringify(payload) : canonicalJson(payload);
}

function keysSortedDeep(v: unknown, depth: number): boolean {
  if (typeof v !== 'object' || v === null) return typeof v !== 'number' || Number.isFinite(v);
  if (depth >= MAX_DEPTH) return false;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++)
      if (!keysSortedDeep(v[i], depth + 1) || v[i] === undefined) return false;
    return true;
  }
  let prev: string | null = null;
  for (const k in v) {
    if (prev !== null && !(prev < k)) return false;
    if (/^[0-9]/.test(k)) return false;
    prev = k;
    if (!keysSortedDeep((v as Record<string, unknown>)[k], depth + 1)) return false;
  }
  return true;
}

/** Where canonical pieces go: a string buffer for the signed bytes, or a running hash. */
interface PieceSink {
  write(piece: string): void;
  /** Called before each pause, so what is buffered is encoded in the slice that produced it. */
  flush(): void;
}

/**
 * Write the canonical JSON of a plain object piece by piece, pausing between the items of its
 * array members (a bundle's licenses): the same bytes as `JSON.stringify(obj)` when `fast` (keys
 * already sorted, see keysSortedDeep), else as `canonicalJson(obj)`.
 */
async function writeCanonical(
  obj: Record<string, unknown>,
  fast: boolean,
  sink: PieceSink,
  slicer: Slicer,
): Promise<void> {
  const proto = Object.getPrototypeOf(obj) as unknown;
  if (!fast && proto !== Object.prototype && proto !== null)
    throw new TypeError('canonical JSON: only plain objects, arrays and primitives can be encoded');
  const keys = fast ? Object.keys(obj) : Object.keys(obj).sort();
  sink.write('{');
  let first = true;
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    sink.write((first ? '' : ',') + (fast ? JSON.stringify(k) : canon(k, 0)) + ':');
    first = false;
    if (!Array.isArray(v)) {
      sink.write(fast ? JSON.stringify(v) : canon(v, 1));
      continue;
    }
    sink.write('[');
    for (let i = 0; i < v.length; i++) {
      sink.write((i === 0 ? '' : ',') + (fast ? JSON.stringify(v[i]) : canon(v[i], 2)));
      if (slicer.due(i)) {
        sink.flush();
        await slicer.pause();
      }
    }
    sink.write(']');
  }
  sink.write('}');
  sink.flush();
}

/** keysSortedDeep(payload, 0), pausing between the items of its array members. */
async function keysSortedAsync(payload: object, slicer: Slicer): Promise<boolean> {
  let prev: string | null = null;
  for (const k in payload) {
    if (prev !== null && !(prev < k)) return false;
    if (/^[0-9]/.test(k)) return false;
    prev = k;
    const v = (payload as Record<string, unknown>)[k];
    if (!Array.isArray(v)) {
      if (!keysSortedDeep(v, 1)) return false;
      continue;
    }
    for (let i = 0; i < v.length; i++) {
      if (!keysSortedDeep(v[i], 2) || v[i] === undefined) return false;
      if (slicer.due(i)) await slicer.pause();
    }
  }
  return true;
}

/**
 * signedBytesOf as UTF-8, in slices. For a payload parsed from JSON text (no undefined, no
 * functions, no toJSON), the bytes are exactly those of signedBytesOf.
 */
async function signedBufferAsync(payload: object, slicer: Slicer): Promise<Buffer> {
  const fast = await keysSortedAsync(payload, slicer);
  const chunks: Buffer[] = [];
  let pending = '';
  await writeCanonical(
    payload as Record<string, unknown>,
    fast,
    {
      write: (piece) => void (pending += piece),
      flush: () => {
        chunks.push(Buffer.from(pending, 'utf8'));
        pending = '';
      },
    },
    slicer,
  );
  return Buffer.concat(chunks);
}

/**
 * sha256 (hex) of canonicalJson(payload), computed in slices: a content fingerprint that tells
 * two bundles of the same version apart without holding the event loop for the whole payload.
 */
export async function payloadDigestAsync(payload: BundlePayload, sliceMs?: number): Promise<string> {
  const hash = createHash('sha256');
  await writeCanonical(
    payload as unknown as Record<string, unknown>,
    false,
    { write: (piece) => void hash.update(piece, 'utf8'), flush: () => undefined },
    new Slicer(sliceMs),
  );
  return hash.digest('hex');
}

/** The public key's id: the first 16 hex characters of sha256 over its SPKI DER. Accepts a private key too. */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const der = pub.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

/**
 * Validate a payload's whole shape (every license field included) and return a clean copy with only
 * the known fields; its license list and licenses are frozen (their compiled form is kept for
 * buildSnapshot). Throws PortlicenseError('BUNDLE_INVALID') naming the field.
 */
export function validatePayload(input: unknown): BundlePayload {
  const p = checkHeader(input);
  return { ...p, licenses: compileWireList(p.licenses) };
}

/** validatePayload in slices (policy/slice.ts): the same result and errors, no long stall. */
export async function validatePayloadAsync(input: unknown, slicer = new Slicer()): Promise<BundlePayload> {
  const p = checkHeader(input);
  return { ...p, licenses: await compileWireListAsync(p.licenses, slicer) };
}

/** Every payload field but the licenses, checked and copied; `licenses` is passed through unchecked. */
function checkHeader(input: unknown): Omit<BundlePayload, 'licenses'> & { licenses: unknown } {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw invalid('payload: must be an object');
  const p = input as Record<string, unknown>;
  const version = p.version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1)
    throw invalid(`payload.version: ${JSON.stringify(version) ?? 'missing'} is not a positive integer`);
  if (typeof p.issuedAt !== 'string' || parseRfc3339(p.issuedAt) === null)
    throw invalid(`payload.issuedAt: ${JSON.stringify(p.issuedAt) ?? 'missing'} is not an RFC 3339 time`);
  if (typeof p.node !== 'string') throw invalid('payload.node: must be a string');
  if (!Array.isArray(p.services) || !p.services.every((s) => typeof s === 'string'))
    throw invalid('payload.services: must be an array of strings');
  return {
    version,
    issuedAt: p.issuedAt,
    node: p.node,
    services: p.services.slice(),
    licenses: p.licenses,
  };
}

function invalid(msg: string): PortlicenseError {
  return new PortlicenseError('BUNDLE_INVALID', `bundle ${msg}`);
}

function badSignature(msg: string): PortlicenseError {
  return new PortlicenseError('BUNDLE_SIGNATURE', `bundle signature: ${msg}`);
}

function requireEd25519(key: KeyObject, role: string): void {
  if (key.asymmetricKeyType !== 'ed25519')
    throw new PortlicenseError(
      'TLS_MATERIAL_INVALID',
      `${role} must be an Ed25519 key, not ${key.asymmetricKeyType ?? key.type}`,
    );
}

/**
 * Sign a payload with the authority's Ed25519 key. The payload is validated first, so nothing is
 * signed that a sidecar would refuse.
 */
export function signBundle(payload: BundlePayload, privateKey: KeyObject): SignedBundle {
  requireEd25519(privateKey, 'the bundle signing key');
  if (privateKey.type !== 'private')
    throw new PortlicenseError('TLS_MATERIAL_INVALID', 'the bundle signing key must be a private key');
  validatePayload(payload);
  const bytes = canonicalJson(payload);
  const value = sign(null, Buffer.from(bytes, 'utf8'), privateKey).toString('base64');
  // The document carries the payload with its keys in canonical order, so a verifier can take
  // the fast path (signedBytesOf) on the bytes as they arrive.
  return {
    payload: JSON.parse(bytes) as BundlePayload,
    signature: { alg: 'Ed25519', keyId: keyIdOf(privateKey), value },
  };
}

export interface VerifyOptions {
  /** Refuse (BUNDLE_ROLLBACK) a payload whose version is below this; equal is accepted. */
  minVersion?: number;
}

const SIGNATURE_B64 = /^[A-Za-z0-9+/]{86}==$/;

/**
 * Verify a signed bundle (a parsed document, or its JSON text) and return its validated payload.
 * Order: document shape → signature (alg, keyId, value over canonicalJson(payload)) → payload
 * fields → version. Nothing outside `payload` is trusted or returned.
 * Errors: BUNDLE_INVALID (not a bundle, or a signed payload with bad fields), BUNDLE_SIGNATURE
 * (missing, foreign or wrong signature: tampered or signed by another key), BUNDLE_ROLLBACK.
 */
export function verifyBundle(raw: unknown, publicKey: KeyObject, opts: VerifyOptions = {}): BundlePayload {
  requireEd25519(publicKey, 'the bundle signing public key');
  const { payload, signature } = openEnvelope(
    typeof raw === 'string' || raw instanceof Uint8Array ? parseText(raw) : raw,
    publicKey,
  );
  let signed: string;
  try {
    signed = signedBytesOf(payload);
  } catch (err) {
    throw invalid(`payload cannot be canonicalised: ${errorMessage(err)}`);
  }
  if (!verify(null, Buffer.from(signed, 'utf8'), publicKey, signature)) throw signatureMismatch();
  return checkVersion(validatePayload(payload), opts);
}

export interface AsyncVerifyOptions extends VerifyOptions {
  /** Longest run between two turns of the event loop (default policy/slice.ts DEFAULT_SLICE_MS). */
  sliceMs?: number;
}

/**
 * verifyBundle for a running sidecar: the same checks, result and errors, but the work on a big
 * bundle is cut into slices of a few milliseconds with turns of the event loop between them, and
 * the Ed25519 check runs on libuv's thread pool; decoding and parsing the text are sliced too
 * (policy/bundle-text.ts). Takes the text or its UTF-8 bytes (what the network and files deliver).
 */
export async function verifyBundleAsync(
  raw: string | Uint8Array,
  publicKey: KeyObject,
  opts: AsyncVerifyOptions = {},
): Promise<BundlePayload> {
  requireEd25519(publicKey, 'the bundle signing public key');
  const slicer = new Slicer(opts.sliceMs);
  const text = typeof raw === 'string' ? raw : await decodeUtf8Sliced(raw, slicer);
  let doc: unknown;
  try {
    doc = await parseJsonSliced(text, slicer);
  } catch (err) {
    throw invalid(`is not JSON: ${errorMessage(err)}`);
  }
  const { payload, signature } = openEnvelope(doc, publicKey);
  let signed: Buffer;
  try {
    signed = await signedBufferAsync(payload, slicer);
  } catch (err) {
    throw invalid(`payload cannot be canonicalised: ${errorMessage(err)}`);
  }
  const ok = await new Promise<boolean>((resolve, reject) =>
    verify(null, signed, publicKey, signature, (err, result) => (err ? reject(err) : resolve(result))),
  );
  slicer.restart();
  if (!ok) throw signatureMismatch();
  return checkVersion(await validatePayloadAsync(payload, slicer), opts);
}

/**
 * The refusal of a bundle older than the one in force; also for callers that find, when about to
 * swap, that a newer bundle was installed while this one was being prepared.
 */
export function rollbackError(version: number, inForce: number): PortlicenseError {
  return new PortlicenseError(
    'BUNDLE_ROLLBACK',
    `bundle version ${version} is older than the version in force (${inForce}); keeping ${inForce}`,
  );
}

function checkVersion(out: BundlePayload, opts: VerifyOptions): BundlePayload {
  if (opts.minVersion !== undefined && out.version < opts.minVersion)
    throw rollbackError(out.version, opts.minVersion);
  return out;
}

function parseText(raw: string | Uint8Array): unknown {
  const text =
    typeof raw === 'string' ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalid(`is not JSON: ${errorMessage(err)}`);
  }
}

/** The document's shape and its signature fields, checked before any work on the payload. */
function openEnvelope(doc: unknown, publicKey: KeyObject): { payload: object; signature: Buffer } {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid('must be a JSON object');
  const { payload, signature } = doc as { payload?: unknown; signature?: unknown };
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload))
    throw invalid('has no "payload" object');
  if (typeof signature !== 'object' || signature === null || Array.isArray(signature))
    throw badSignature('missing: the bundle has no "signature" object');
  const sig = signature as Record<string, unknown>;
  if (sig.alg !== 'Ed25519')
    throw badSignature(`alg ${JSON.stringify(sig.alg) ?? 'missing'} is not "Ed25519"`);
  const expectedKeyId = keyIdOf(publicKey);
  if (sig.keyId !== expectedKeyId)
    throw badSignature(
      `signed with key ${JSON.stringify(sig.keyId) ?? '(no keyId)'} but the configured signing public key is ` +
        `"${expectedKeyId}"; configure the authority's current public key or re-sign the bundle`,
    );
  if (typeof sig.value !== 'string' || !SIGNATURE_B64.test(sig.value))
    throw badSignature('value is not a base64 Ed25519 signature (64 bytes)');
  return { payload, signature: Buffer.from(sig.value, 'base64') };
}

function signatureMismatch(): PortlicenseError {
  return badSignature('does not match the payload: the bundle was modified or signed by another key');
}

/** Parse a PKCS#8 PEM Ed25519 private key; `source` names it in errors. */
export function ed25519PrivateKeyFromPem(pem: string, source: string): KeyObject {
  if (pem.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----'))
    throw keyError(
      source,
      'is an encrypted private key; store the Ed25519 signing key unencrypted (PKCS#8 PEM) with tight file permissions',
    );
  if (!pem.includes('-----BEGIN PRIVATE KEY-----'))
    throw keyError(source, 'is not a PKCS#8 PEM private key ("-----BEGIN PRIVATE KEY-----")');
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw keyError(source, `cannot be parsed as a private key: ${errorMessage(err)}`);
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw keyError(
      source,
      `holds a ${key.asymmetricKeyType ?? 'unknown'} key, but bundle signing needs Ed25519`,
    );
  return key;
}

/** Parse an SPKI PEM Ed25519 public key; `source` names it in errors. */
export function ed25519PublicKeyFromPem(pem: string, source: string): KeyObject {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem))
    throw keyError(
      source,
      'holds a private key; give sidecars only the public key ("-----BEGIN PUBLIC KEY-----")',
    );
  if (!pem.includes('-----BEGIN PUBLIC KEY-----'))
    throw keyError(source, 'is not an SPKI PEM public key ("-----BEGIN PUBLIC KEY-----")');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw keyError(source, `cannot be parsed as a public key: ${errorMessage(err)}`);
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw keyError(
      source,
      `holds a ${key.asymmetricKeyType ?? 'unknown'} key, but bundles are signed with Ed25519`,
    );
  return key;
}

function keyError(source: string, msg: string): PortlicenseError {
  return new PortlicenseError('TLS_MATERIAL_INVALID', `${source}: ${msg}`);
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new PortlicenseError('FILE_UNREADABLE', `${file}: cannot read the ${what}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

/** Load the authority's bundle-signing key (PKCS#8 PEM, Ed25519). */
export function loadEd25519PrivateKey(file: string): KeyObject {
  return ed25519PrivateKeyFromPem(readPem(file, 'Ed25519 signing key'), file);
}

/** Load the bundle-signing public key a sidecar verifies with (SPKI PEM, Ed25519). */
export function loadEd25519PublicKey(file: string): KeyObject {
  return ed25519PublicKeyFromPem(readPem(file, 'Ed25519 signing public key'), file);
}
