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
 *   `Authorization: Bearer <clientToken(secret)>` or `Bearer <secret>`, see
 *   {@link authorized}.
 * - Without a secret, only loopback peers are accepted.
 *
 * @module
 */

import { createHash, createHmac, randomBytes } from "node:crypto";

/** The label the bearer token is derived from; changing it invalidates every token. */
const TOKEN_LABEL = "pgraft peer token v1";
/** Tokens remembered, so that checking one per request costs no HMAC (a node has one secret). */
const TOKENS_CACHED_MAX = 16;
const tokens = new Map<string, string>();

/**
 * The bearer token for a shared secret: HMAC-SHA256 of a fixed label, in hex.
 * The secret itself need not travel.
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
    token = createHmac("sha256", authSecret).update(TOKEN_LABEL).digest("hex");
    if (tokens.size >= TOKENS_CACHED_MAX) tokens.clear();
    tokens.set(authSecret, token);
  }
  return token;
}

/**
 * Whether an `Authorization` header admits a client of the cluster whose
 * shared secret is `authSecret`. This is the one rule for bearer tokens (the
 * peer server's `GET /status` and `GET /metrics`, the agent's KV API): the
 * scheme is `Bearer` in any case, and the credentials (what follows it and
 * whitespace, trailing whitespace ignored) are either the derived token
 * {@link clientToken} or the secret itself. Both are compared, always both,
 * with {@link constantTimeEqual}.
 *
 * @param header the request's `Authorization` header, or null
 * @param authSecret the cluster's shared secret
 * @returns whether the header carries the token or the secret
 * @example
 * ```ts
 * assert(authorized(`Bearer ${clientToken("s3cret")}`, "s3cret"));
 * assert(authorized("Bearer s3cret", "s3cret"));
 * assert(!authorized("Bearer other", "s3cret"));
 * ```
 */
export function authorized(header: string | null, authSecret: string): boolean {
  if (header === null) return false;
  const match = /^Bearer\s+(\S.*?)\s*$/i.exec(header);
  if (!match) return false;
  const credentials = match[1]!;
  const isToken = constantTimeEqual(credentials, clientToken(authSecret));
  const isSecret = constantTimeEqual(credentials, authSecret);
  return isToken || isSecret;
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
 * Compare two strings in time that depends only on their lengths, not on
 * where they differ: the one comparison for secrets, tokens and signatures.
 *
 * @param a one string
 * @param b the other
 * @returns whether they are equal
 * @example
 * ```ts
 * assert(constantTimeEqual("abc", "abc"));
 * assert(!constantTimeEqual("abc", "abd"));
 * ```
 */
export function constantTimeEqual(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a.charCodeAt(i) | 0) ^ (b.charCodeAt(i) | 0);
  return diff === 0;
}

/**
 * SHA-256 of `data`.
 *
 * @param data the bytes to hash
 * @returns the 32-byte digest
 */
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

/**
 * HMAC-SHA256 (RFC 2104).
 *
 * @param key the secret
 * @param message what to authenticate
 * @returns the 32-byte MAC
 */
export function hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(message).digest());
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

/** What a signature covers. */
export interface SignedParts {
  /** the HTTP method (any case) */
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
export function canonicalRequest(parts: SignedParts): Promise<string> {
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
  return Promise.resolve([
    SIGNATURE_LABEL,
    parts.method.toUpperCase(),
    parts.path,
    parts.timestamp,
    parts.from,
    createHash("sha256").update(parts.body).digest("hex"),
    ...extra,
  ].join("\n"));
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
  return createHmac("sha256", authSecret).update(text).digest("hex");
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

/** A random nonce for {@link HEADER_NONCE}: 16 hex characters. */
export function nonce(): string {
  return randomBytes(8).toString("hex");
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
   * Make an empty guard.
   *
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
