/**
 * Peer authentication.
 *
 * - Peer requests (`POST /raft/*`, `POST /rpc/*`) are signed: with the cluster's
 *   shared secret, every request carries `X-Pgraft-Timestamp` (ms since the
 *   epoch) and `X-Pgraft-Signature`, the HMAC-SHA256 of
 *   {@link canonicalRequest} (method, path, timestamp, sender node id, SHA-256
 *   of the body and every other `X-Pgraft-*` header). The server refuses a
 *   missing or bad signature, a timestamp outside its clock-skew window, and a
 *   signature it has already seen ({@link ReplayGuard}).
 * - Users' clients of the KV API (and `GET /status`, `GET /metrics`) send
 *   `Authorization: Bearer <clientToken(secret)>`, compared in constant time.
 * - Without a secret, only loopback peers are accepted.
 *
 * @module
 */

/** The label the bearer token is derived from; changing it invalidates every token. */
const TOKEN_LABEL = "pgraft peer token v1";

const tokens = new Map<string, string>();
const encoder = new TextEncoder();

/**
 * The bearer token for a shared secret: HMAC-SHA256 of a fixed label, in hex.
 * The secret itself never travels.
 *
 * @param authSecret the cluster's shared secret
 * @returns 64 hex characters
 * @example
 * ```ts
 * assert(clientToken("s3cret").length === 64);
 * ```
 */
export function clientToken(authSecret: string): string {
  let token = tokens.get(authSecret);
  if (token === undefined) {
    token = toHex(hmacSha256(encoder.encode(authSecret), encoder.encode(TOKEN_LABEL)));
    if (tokens.size > 16) tokens.clear();
    tokens.set(authSecret, token);
  }
  return token;
}

/**
 * Whether an `Authorization` header carries the token for `authSecret`.
 * Compares in constant time (for a given header length).
 *
 * @param header the request's `Authorization` header, or null
 * @param authSecret the cluster's shared secret
 */
export function authorized(header: string | null, authSecret: string): boolean {
  if (header === null) return false;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) return false;
  return constantTimeEqual(match[1]!, clientToken(authSecret));
}

/**
 * Whether a remote address is a loopback address: 127.0.0.0/8, ::1, or an
 * IPv4-mapped 127.x address.
 *
 * @param hostname the remote address as `Deno.NetAddr.hostname` gives it
 */
export function isLoopback(hostname: string | null | undefined): boolean {
  if (!hostname) return false;
  let h = hostname.toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  if (h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  if (h.startsWith("::ffff:")) h = h.slice("::ffff:".length);
  const parts = h.split(".");
  if (parts.length !== 4) return false;
  if (!parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return false;
  return parts[0] === "127";
}

/**
 * Compare two strings in time that depends only on their lengths.
 *
 * @returns whether they are equal
 */
export function constantTimeEqual(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a.charCodeAt(i) | 0) ^ (b.charCodeAt(i) | 0);
  return diff === 0;
}

function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

// SHA-256 (FIPS 180-4) and HMAC (RFC 2104), synchronous so that clientToken()
// needs no async crypto.subtle and the module no node: types.

const K = new Uint32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

/**
 * SHA-256 of `data`.
 *
 * @returns the 32-byte digest
 */
export function sha256(data: Uint8Array): Uint8Array {
  const bitLength = data.length * 8;
  const padded = new Uint8Array(Math.ceil((data.length + 9) / 64) * 64);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 0x100000000));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  const h = new Uint32Array([
    0x6a09e667,
    0xbb67ae85,
    0x3c6ef372,
    0xa54ff53a,
    0x510e527f,
    0x9b05688c,
    0x1f83d9ab,
    0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(block + i * 4);
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15]!;
      const b = w[i - 2]!;
      const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
      const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
      w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = [h[0]!, h[1]!, h[2]!, h[3]!, h[4]!, h[5]!, h[6]!, h[7]!];
    for (let i = 0; i < 64; i++) {
      const t1 =
        (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i]! + w[i]!) | 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h[0] = h[0]! + a;
    h[1] = h[1]! + b;
    h[2] = h[2]! + c;
    h[3] = h[3]! + d;
    h[4] = h[4]! + e;
    h[5] = h[5]! + f;
    h[6] = h[6]! + g;
    h[7] = h[7]! + hh;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(i * 4, h[i]!);
  return out;
}

/**
 * HMAC-SHA256 (RFC 2104).
 *
 * @param key the secret
 * @param message what to authenticate
 * @returns the 32-byte MAC
 */
export function hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
  const block = new Uint8Array(64);
  block.set(key.length > 64 ? sha256(key) : key);
  const inner = new Uint8Array(64 + message.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    inner[i] = block[i]! ^ 0x36;
    outer[i] = block[i]! ^ 0x5c;
  }
  inner.set(message, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

// ---------------------------------------------------------------------------
// request signing

/** Header with the time the request was signed, in ms since the epoch. */
export const HEADER_TIMESTAMP = "X-Pgraft-Timestamp";
/** Header with the request's HMAC-SHA256 signature, 64 hex characters. */
export const HEADER_SIGNATURE = "X-Pgraft-Signature";
/** Header with a random nonce, so two identical requests in one ms differ. */
export const HEADER_NONCE = "X-Pgraft-Nonce";
/** The prefix of the headers a signature covers (all but the signature itself). */
export const SIGNED_HEADER_PREFIX = "x-pgraft-";
/** Default accepted difference between a request's timestamp and the server's clock. */
export const MAX_CLOCK_SKEW_MS_DEFAULT = 30_000;

const SIGNATURE_LABEL = "pgraft-request-v1";
/**
 * Bodies up to this size are hashed by the synchronous SHA-256 here; larger
 * ones by WebCrypto, which is faster per byte but costs a thread hop.
 */
export const SYNC_DIGEST_BYTES_MAX = 8 * 1024;

async function bodyDigest(body: Uint8Array): Promise<Uint8Array> {
  if (body.length <= SYNC_DIGEST_BYTES_MAX) return sha256(body);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", body as Uint8Array<ArrayBuffer>));
}

/** What a signature covers. */
export interface SignedParts {
  method: string;
  /** the URL path, without query */
  path: string;
  /** ms since the epoch, as sent in {@link HEADER_TIMESTAMP} */
  timestamp: string;
  /** the sender's node id, as sent in `X-Pgraft-From` */
  from: string;
  /** the request body (empty for none) */
  body: Uint8Array;
  /**
   * every `X-Pgraft-*` header other than the signature, timestamp and from
   * (names in any case)
   */
  headers: Iterable<[string, string]>;
}

/**
 * The text a signature is computed over: a label, the method, the path, the
 * timestamp, the sender, the body's SHA-256 in hex, then the other
 * `x-pgraft-*` headers as `name:value` lines, names lower-cased and sorted.
 *
 * @returns the canonical text
 */
export async function canonicalRequest(parts: SignedParts): Promise<string> {
  const digest = await bodyDigest(parts.body);
  const skip = new Set([
    HEADER_SIGNATURE.toLowerCase(),
    HEADER_TIMESTAMP.toLowerCase(),
    "x-pgraft-from",
  ]);
  const extra: string[] = [];
  for (const [name, value] of parts.headers) {
    const lower = name.toLowerCase();
    if (lower.startsWith(SIGNED_HEADER_PREFIX) && !skip.has(lower)) extra.push(`${lower}:${value}`);
  }
  extra.sort();
  return [
    SIGNATURE_LABEL,
    parts.method.toUpperCase(),
    parts.path,
    parts.timestamp,
    parts.from,
    toHex(digest),
    ...extra,
  ].join("\n");
}

/**
 * Sign a peer request.
 *
 * @param authSecret the cluster's shared secret
 * @param parts what the signature covers
 * @returns the signature, 64 hex characters
 */
export async function signRequest(authSecret: string, parts: SignedParts): Promise<string> {
  const text = await canonicalRequest(parts);
  return toHex(hmacSha256(secretBytes(authSecret), encoder.encode(text)));
}

/**
 * Whether `signature` is the right one for `parts` (compared in constant time).
 *
 * @param authSecret the cluster's shared secret
 * @param parts what the signature covers
 * @param signature the header's value
 */
export async function verifyRequest(
  authSecret: string,
  parts: SignedParts,
  signature: string,
): Promise<boolean> {
  if (!/^[0-9a-fA-F]{64}$/.test(signature)) return false;
  const expected = await signRequest(authSecret, parts);
  return constantTimeEqual(signature.toLowerCase(), expected);
}

const secrets = new Map<string, Uint8Array>();

/** The secret as the HMAC key (hashed first when longer than a block, as HMAC does). */
function secretBytes(authSecret: string): Uint8Array {
  let key = secrets.get(authSecret);
  if (key === undefined) {
    key = encoder.encode(authSecret);
    if (key.length > 64) key = sha256(key);
    if (secrets.size > 16) secrets.clear();
    secrets.set(authSecret, key);
  }
  return key;
}

/** A random nonce for {@link HEADER_NONCE}: 16 hex characters. */
export function nonce(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(8)));
}

/** Default number of signatures a {@link ReplayGuard} remembers. */
export const REPLAY_CACHE_SIZE_DEFAULT = 65_536;

/**
 * Remembers the signatures of recent requests so that an exact replay is
 * refused. A signature is kept until its timestamp leaves the clock-skew
 * window (after which the timestamp check refuses it anyway). The set is
 * bounded: when full, the oldest entry is forgotten and its sender's
 * "floor" rises to that entry's timestamp, so any request from that sender
 * signed at or before it is refused too; memory stays bounded without ever
 * letting a replay through.
 */
export class ReplayGuard {
  readonly #capacity: number;
  readonly #windowMs: number;
  readonly #seen = new Map<string, { from: number; timestamp: number; expires: number }>();
  readonly #floors = new Map<number, number>();

  /**
   * @param capacity most signatures remembered
   * @param windowMs the clock-skew window of the timestamp check
   */
  constructor(capacity = REPLAY_CACHE_SIZE_DEFAULT, windowMs = MAX_CLOCK_SKEW_MS_DEFAULT) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`replay cache size: expected a positive integer, got ${capacity}`);
    }
    this.#capacity = capacity;
    this.#windowMs = windowMs;
  }

  /** Signatures remembered now. */
  get size(): number {
    return this.#seen.size;
  }

  /**
   * Record a verified request; false when it is (or may be) a replay.
   *
   * @param signature the request's signature
   * @param from the sender's node id
   * @param timestamp the request's timestamp, ms
   * @param now the server's clock, ms
   */
  admit(signature: string, from: number, timestamp: number, now: number): boolean {
    for (const [key, entry] of this.#seen) {
      if (entry.expires > now) break;
      this.#seen.delete(key);
    }
    const floor = this.#floors.get(from);
    if (floor !== undefined && timestamp <= floor) return false;
    const key = signature.toLowerCase();
    if (this.#seen.has(key)) return false;
    this.#seen.set(key, { from, timestamp, expires: timestamp + this.#windowMs });
    while (this.#seen.size > this.#capacity) {
      const [oldest, entry] = this.#seen.entries().next().value!;
      this.#seen.delete(oldest);
      const floor = this.#floors.get(entry.from) ?? -Infinity;
      this.#floors.set(entry.from, Math.max(floor, entry.timestamp));
    }
    return true;
  }
}
