/**
 * The rules for what users write and what members advertise, in one place:
 * key-value keys, values, list limits and the store's quota, and a member's
 * peer address and its encoding in a conf change context. The HTTP API, the
 * SQL command path and the state machine all call these functions.
 *
 * Each check returns null when the input is fine, or a {@link Problem} that
 * carries the HTTP status, the SQLSTATE, a message and a hint, so that every
 * entry point answers the same thing in its own protocol.
 *
 * @module
 */

/** Why an input is refused, for HTTP (`status`) and SQL (`sqlstate`, `hint`) alike. */
export interface Problem {
  /** 400 bad input, 404 unknown, 409 conflict, 413 value too large, 414 key too long, 507 quota exceeded */
  status: 400 | 404 | 409 | 413 | 414 | 507;
  /** PostgreSQL error code, e.g. `22023` invalid_parameter_value */
  sqlstate: string;
  message: string;
  hint: string;
}

/** Longest key, in bytes of UTF-8. */
export const KV_KEY_BYTES_MAX = 1024;

/** Largest value, in bytes (1 MiB). */
export const KV_VALUE_BYTES_MAX = 1024 * 1024;

/** Most keys one list request returns. */
export const KV_LIST_LIMIT_MAX = 10_000;

/** Default quota of the key-value store: the sum of its keys' and values' bytes (64 MiB). */
export const KV_QUOTA_BYTES_DEFAULT = 64 * 1024 * 1024;

/** The cluster setting that overrides the quota (see {@link parseKvQuotaSetting}). */
export const KV_QUOTA_SETTING = "kv_quota";

/** Longest member address (a DNS name is at most 253 characters). */
export const MEMBER_ADDRESS_CHARS_MAX = 255;

/** Largest TCP port. */
export const MEMBER_PORT_MAX = 65535;

/** What a member address may look like: a host name or IP literal, no scheme or port. */
export const MEMBER_ADDRESS_PATTERN = /^[A-Za-z0-9._:\-\[\]]+$/;

/**
 * Bytes of the UTF-8 form of `s` (a lone surrogate counts as the 3 bytes of
 * U+FFFD, as TextEncoder writes it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(utf8Length("é😀"), 6);
 * ```
 */
export function utf8Length(s: string): number {
  let bytes = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      bytes += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 2; // a pair: 2 units, 4 bytes
        i++;
      } else {
        bytes += 2;
      }
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

/**
 * Why `key` cannot be a key of the store, or null. A key is non-empty, valid
 * Unicode (no lone surrogate), holds no NUL character (PostgreSQL text cannot)
 * and is at most {@link KV_KEY_BYTES_MAX} bytes of UTF-8.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(kvKeyProblem("config/feature-x"), null);
 * assert.equal(kvKeyProblem("")?.status, 400);
 * ```
 */
export function kvKeyProblem(key: string): Problem | null {
  if (typeof key !== "string" || key.length === 0) {
    return {
      status: 400,
      sqlstate: "22023",
      message: "invalid key: it must be a non-empty string",
      hint: "Keys are non-empty text, e.g. 'config/feature-x'.",
    };
  }
  if (key.includes("\0")) {
    return {
      status: 400,
      sqlstate: "22021",
      message: "invalid key: it contains a NUL character",
      hint: "PostgreSQL text cannot hold NUL; encode such keys, e.g. in hex.",
    };
  }
  if (!key.isWellFormed()) {
    return {
      status: 400,
      sqlstate: "22021",
      message: "invalid key: it is not valid Unicode (a lone surrogate)",
      hint: "Keys are UTF-8 text.",
    };
  }
  const bytes = utf8Length(key);
  if (bytes > KV_KEY_BYTES_MAX) {
    return {
      status: 414,
      sqlstate: "22001",
      message: `key too long: ${bytes} bytes (at most ${KV_KEY_BYTES_MAX})`,
      hint: "Use a shorter key; keep large data in the value.",
    };
  }
  return null;
}

/**
 * Why a value of `bytes` bytes cannot be stored, or null.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(kvValueProblem(100), null);
 * assert.equal(kvValueProblem(KV_VALUE_BYTES_MAX + 1)?.status, 413);
 * ```
 */
export function kvValueProblem(bytes: number): Problem | null {
  if (bytes <= KV_VALUE_BYTES_MAX) return null;
  return {
    status: 413,
    sqlstate: "22001",
    message: `value too large: ${bytes} bytes (at most ${KV_VALUE_BYTES_MAX})`,
    hint: "Values are limited to 1 MiB; store large objects elsewhere and keep a reference here.",
  };
}

/**
 * Why `limit` cannot be the limit of a list request, or null (1..{@link KV_LIST_LIMIT_MAX}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(kvListLimitProblem(1000), null);
 * assert.equal(kvListLimitProblem(0)?.status, 400);
 * ```
 */
export function kvListLimitProblem(limit: number): Problem | null {
  if (Number.isInteger(limit) && limit >= 1 && limit <= KV_LIST_LIMIT_MAX) return null;
  return {
    status: 400,
    sqlstate: "22023",
    message: `invalid limit: ${limit} (expected 1..${KV_LIST_LIMIT_MAX})`,
    hint: "Page through longer lists with a narrower prefix.",
  };
}

/** A write's effect on the store's size, for {@link kvQuotaProblem}. */
export interface KvGrowth {
  /** the store's size now (keys' UTF-8 bytes plus values' bytes) */
  currentBytes: number;
  /** its size after the write */
  nextBytes: number;
}

/**
 * The quota rule, as etcd's `--quota-backend-bytes`: a write that takes the
 * store from `currentBytes` to `nextBytes` is refused when it grows the store
 * beyond `quota`. A write that shrinks or keeps the size is always allowed, so
 * a store over its quota (the quota was lowered) can still be cleaned up.
 * The state machine applies this at apply time; the leader may call it (through
 * `StateMachine.kvPutProblem`) to refuse early.
 *
 * @param growth the store's size before and after the write
 * @param quota the quota in bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(kvQuotaProblem({ currentBytes: 90, nextBytes: 110 }, 100)?.status, 507);
 * // Shrinking is allowed even over the quota.
 * assert.equal(kvQuotaProblem({ currentBytes: 150, nextBytes: 120 }, 100), null);
 * ```
 */
export function kvQuotaProblem(growth: KvGrowth, quota: number): Problem | null {
  const { currentBytes, nextBytes } = growth;
  if (nextBytes <= currentBytes || nextBytes <= quota) return null;
  return {
    status: 507,
    sqlstate: "53400",
    message: `key-value quota exceeded: the write would bring the store to ${nextBytes} bytes, ` +
      `over the quota of ${quota} bytes`,
    hint:
      `Delete keys that are no longer needed, or raise the cluster setting ${KV_QUOTA_SETTING}.`,
  };
}

/**
 * The quota a `kv_quota` cluster setting sets, or null when `value` is not a
 * plain positive integer of bytes (then the state machine's own quota applies).
 * Units (`64MB`) are resolved by lib/config before the setting is proposed: the
 * replicated value is a byte count.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(parseKvQuotaSetting("1048576"), 1048576);
 * assert.equal(parseKvQuotaSetting("64MB"), null);
 * ```
 */
export function parseKvQuotaSetting(value: string): number | null {
  if (!/^[0-9]{1,16}$/.test(value)) return null;
  const bytes = Number(value);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
}

/** A member's peer address: where other agents reach its HTTP port. */
export interface MemberAddress {
  address: string;
  port: number;
}

/**
 * Why `address`/`port` cannot be a member's peer address, or null. The
 * address is a host name or an IP literal without scheme or port
 * (`^[A-Za-z0-9._:\-\[\]]+$`, at most 255 characters); the port is 1..65535.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(memberAddressProblem("10.0.0.12", 7001), null);
 * assert.equal(memberAddressProblem("http://x", 7001)?.sqlstate, "22023");
 * ```
 */
export function memberAddressProblem(address: string, port: number): Problem | null {
  if (typeof address !== "string" || address.trim() === "") {
    return {
      status: 400,
      sqlstate: "22023",
      message: "invalid address: it must be a host name or IP address",
      hint: "Give the address other agents use to reach this node, e.g. '10.0.0.12'.",
    };
  }
  if (address.length > MEMBER_ADDRESS_CHARS_MAX || !MEMBER_ADDRESS_PATTERN.test(address)) {
    const shown = address.length > 64 ? `${address.slice(0, 64)}…` : address;
    return {
      status: 400,
      sqlstate: "22023",
      message: `invalid address: "${shown}"`,
      hint: "Give a host name or an IP address, without a scheme or port " +
        `(at most ${MEMBER_ADDRESS_CHARS_MAX} characters).`,
    };
  }
  if (!Number.isInteger(port) || port < 1 || port > MEMBER_PORT_MAX) {
    return {
      status: 400,
      sqlstate: "22023",
      message: `invalid port: ${port} (expected 1..${MEMBER_PORT_MAX})`,
      hint: "This is the pgraft.port of the node's agent.",
    };
  }
  return null;
}

/**
 * The context of a conf change that adds a member: JSON
 * `{"address": string, "port": number}`.
 *
 * @throws RangeError when the address breaks {@link memberAddressProblem}
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(encodeMemberContext({ address: "a", port: 1 }), '{"address":"a","port":1}');
 * ```
 */
export function encodeMemberContext(member: MemberAddress): string {
  const problem = memberAddressProblem(member.address, member.port);
  if (problem) throw new RangeError(problem.message);
  return JSON.stringify({ address: member.address, port: member.port });
}

/**
 * Parse a conf change context. "" is a promotion (no address: null).
 *
 * @returns the address, or null for ""
 * @throws SyntaxError when the context is not JSON; TypeError when it is not
 *   `{"address": string, "port": number}` or breaks {@link memberAddressProblem}
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseMemberContext('{"address":"h","port":5}'), { address: "h", port: 5 });
 * assert.equal(parseMemberContext(""), null);
 * ```
 */
export function parseMemberContext(context: string): MemberAddress | null {
  if (context === "") return null;
  let value: unknown;
  try {
    value = JSON.parse(context);
  } catch (error) {
    throw new SyntaxError(`Cannot parse member context: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError("member context: not an object");
  }
  const { address, port } = value as Record<string, unknown>;
  if (typeof address !== "string") throw new TypeError("member context: address is not a string");
  if (typeof port !== "number") throw new TypeError("member context: port is not a number");
  const problem = memberAddressProblem(address, port);
  if (problem) throw new TypeError(`member context: ${problem.message}`);
  return { address, port };
}
