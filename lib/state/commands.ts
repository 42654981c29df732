/**
 * The binary codec of state machine commands: the `data` of `normal` log
 * entries. Membership changes are not commands: they travel in `conf_change`
 * entries whose data is the ConfChange JSON of lib/raft (`decodeConfChange`).
 *
 * Format: one tag byte, then the fields in order. A string or byte field is a
 * 4-byte big-endian length followed by that many bytes (strings are UTF-8); an
 * integer field (`u32`) is 4 bytes big-endian. The tag is never absent, so an
 * encoded command is never empty (empty entry data is the leader's no-op).
 *
 * | tag | op              | fields                                  |
 * | --- | --------------- | --------------------------------------- |
 * | 1   | noop            | (none)                                  |
 * | 2   | init_cluster    | clusterId, clusterName                  |
 * | 3   | (reserved)      | was conf_change; never in normal entries |
 * | 4   | set_config      | name, value                             |
 * | 5   | kv_put          | key, value (bytes)                      |
 * | 6   | kv_delete       | key                                     |
 * | 7   | set_primary     | nodeId u32, timeline u32                |
 * | 8   | member_postgres | nodeId u32, host, port u32              |
 * | 9   | postgres_system | systemIdentifier                        |
 *
 * Tags 1, 2, 4, 5 and 6 are byte for byte those of lib/storage/commands.ts.
 * The codec checks the format only; the rules for keys, values and addresses
 * are in `limits.ts`, checked by whoever proposes.
 *
 * @module
 */

import { isNodeId } from "../raft/conf_change.ts";
import { NODE_ID_MAX, type NodeId } from "../raft/types.ts";
import { MEMBER_PORT_MAX } from "./limits.ts";
import { decodeUtf8 } from "./_utf8.ts";

/** A PostgreSQL timeline id (an unsigned 32-bit integer, 1 for a new cluster). */
export const TIMELINE_MAX = 0xffff_ffff;

/**
 * A command of the replicated state machine, carried by a `normal` log entry
 * and encoded with {@link encodeCommand} (empty data = the leader's no-op).
 */
export type Command =
  | { op: "noop" }
  /** First entry a new cluster commits: its identity. */
  | { op: "init_cluster"; clusterId: string; clusterName: string }
  /** A cluster-wide setting, name without `pgraft.` (validated before it was proposed). */
  | { op: "set_config"; name: string; value: string }
  | { op: "kv_put"; key: string; value: Uint8Array }
  | { op: "kv_delete"; key: string }
  /**
   * The PostgreSQL primary record: which node's server is the primary, and its
   * timeline. nodeId 0 (NONE) records that no server is primary.
   */
  | { op: "set_primary"; nodeId: NodeId; timeline: number }
  /** A member's PostgreSQL address, reported by its agent. */
  | { op: "member_postgres"; nodeId: NodeId; host: string; port: number }
  /**
   * The database system identifier of the cluster's PostgreSQL servers
   * (decimal, as `pg_control_system()` shows it), recorded once by the first
   * primary's agent: a member whose data directory holds another system is
   * never wiped or joined.
   */
  | { op: "postgres_system"; systemIdentifier: string };

/** The `op` of every command. */
export type CommandOp = Command["op"];

const TAG_NOOP = 1;
const TAG_INIT_CLUSTER = 2;
const TAG_CONF_CHANGE_RESERVED = 3;
const TAG_SET_CONFIG = 4;
const TAG_KV_PUT = 5;
const TAG_KV_DELETE = 6;
const TAG_SET_PRIMARY = 7;
const TAG_MEMBER_POSTGRES = 8;
const TAG_POSTGRES_SYSTEM = 9;

/** A database system identifier: an unsigned 64-bit integer in decimal. */
export const POSTGRES_SYSTEM_PATTERN = /^(0|[1-9][0-9]{0,19})$/;

/** Largest field the codec accepts (a 4-byte length). */
const FIELD_BYTES_MAX = 0xffff_ffff;

const encoder = new TextEncoder();

/** A field to write: bytes (length-prefixed) or a u32. */
type Field = Uint8Array | number;

function pack(tag: number, fields: Field[]): Uint8Array {
  let size = 1;
  for (const f of fields) size += typeof f === "number" ? 4 : 4 + f.byteLength;
  const out = new Uint8Array(size);
  out[0] = tag;
  let at = 1;
  for (const f of fields) {
    if (typeof f === "number") {
      writeU32(out, at, f);
      at += 4;
      continue;
    }
    if (f.byteLength > FIELD_BYTES_MAX) throw new RangeError("command field too large");
    writeU32(out, at, f.byteLength);
    out.set(f, at + 4);
    at += 4 + f.byteLength;
  }
  return out;
}

function writeU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = v >>> 16;
  out[at + 2] = v >>> 8;
  out[at + 3] = v;
}

function text(value: unknown, what: string): Uint8Array {
  if (typeof value !== "string") throw new TypeError(`${what} must be a string`);
  return encoder.encode(value);
}

function integer(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new TypeError(`${what} must be an integer in ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

function systemIdentifier(value: unknown): Uint8Array {
  if (typeof value !== "string" || !POSTGRES_SYSTEM_PATTERN.test(value)) {
    throw new TypeError(
      `postgres_system systemIdentifier must be a decimal u64, got ${String(value)}`,
    );
  }
  return encoder.encode(value);
}

function nodeId(value: unknown, what: string): NodeId {
  if (!isNodeId(value)) throw new TypeError(`${what} must be a node id, got ${String(value)}`);
  return value;
}

/**
 * Encode a command for a `normal` log entry. Never returns an empty array.
 *
 * @throws TypeError when a field has the wrong type or is out of range
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const data = encodeCommand({ op: "kv_delete", key: "a" });
 * assert.deepEqual(decodeCommand(data), { op: "kv_delete", key: "a" });
 * ```
 */
export function encodeCommand(c: Command): Uint8Array {
  switch (c.op) {
    case "noop":
      return pack(TAG_NOOP, []);
    case "init_cluster":
      return pack(TAG_INIT_CLUSTER, [
        text(c.clusterId, "clusterId"),
        text(c.clusterName, "clusterName"),
      ]);
    case "set_config":
      return pack(TAG_SET_CONFIG, [text(c.name, "name"), text(c.value, "value")]);
    case "kv_put":
      if (!(c.value instanceof Uint8Array)) throw new TypeError("kv_put value must be bytes");
      return pack(TAG_KV_PUT, [text(c.key, "key"), c.value]);
    case "kv_delete":
      return pack(TAG_KV_DELETE, [text(c.key, "key")]);
    case "set_primary":
      return pack(TAG_SET_PRIMARY, [
        integer(c.nodeId, 0, NODE_ID_MAX, "set_primary nodeId"),
        integer(c.timeline, 1, TIMELINE_MAX, "set_primary timeline"),
      ]);
    case "member_postgres":
      return pack(TAG_MEMBER_POSTGRES, [
        nodeId(c.nodeId, "member_postgres nodeId"),
        text(c.host, "member_postgres host"),
        integer(c.port, 1, MEMBER_PORT_MAX, "member_postgres port"),
      ]);
    case "postgres_system":
      return pack(TAG_POSTGRES_SYSTEM, [systemIdentifier(c.systemIdentifier)]);
    default:
      throw new TypeError(`unknown command op: ${String((c as { op: unknown }).op)}`);
  }
}

/** Reads the fields of one encoded command; every failure is a TypeError naming the field. */
class Reader {
  #data: Uint8Array;
  #at = 1;
  constructor(data: Uint8Array) {
    this.#data = data;
  }
  u32(what: string): number {
    const d = this.#data;
    const at = this.#at;
    if (at + 4 > d.byteLength) throw new TypeError(`bad command: ${what} is truncated`);
    this.#at = at + 4;
    return (d[at]! * 0x100_0000) + ((d[at + 1]! << 16) | (d[at + 2]! << 8) | d[at + 3]!);
  }
  bytes(what: string): Uint8Array {
    const d = this.#data;
    if (this.#at + 4 > d.byteLength) {
      throw new TypeError(`bad command: truncated before the length of ${what}`);
    }
    const length = this.u32(what);
    const start = this.#at;
    if (start + length > d.byteLength) {
      throw new TypeError(`bad command: ${what} is truncated`);
    }
    this.#at = start + length;
    // A view made by the constructor: cheaper than subarray().
    return new Uint8Array(d.buffer, d.byteOffset + start, length);
  }
  string(what: string): string {
    const bytes = this.bytes(what);
    try {
      return decodeUtf8(bytes);
    } catch {
      throw new TypeError(`bad command: ${what} is not valid UTF-8`);
    }
  }
  end(): void {
    if (this.#at !== this.#data.byteLength) {
      throw new TypeError(
        `bad command: ${this.#data.byteLength - this.#at} unexpected trailing bytes`,
      );
    }
  }
}

function checked(value: number, min: number, max: number, what: string): number {
  if (value < min || value > max) {
    throw new TypeError(`bad command: ${what} ${value} is not in ${min}..${max}`);
  }
  return value;
}

/** Options of {@link decodeCommand}. */
export interface DecodeCommandOptions {
  /**
   * Copy a kv_put value into its own buffer. Without the copy the value is a
   * view of `data`, for a caller that copies it anyway (the state machine).
   * @default true
   */
  copyValue?: boolean;
}

/**
 * Decode the data of a `normal` log entry.
 *
 * @returns `{ op: "noop" }` for empty data (the leader's no-op)
 * @throws TypeError when the data is not an encoded command
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.deepEqual(decodeCommand(new Uint8Array()), { op: "noop" });
 * ```
 */
export function decodeCommand(data: Uint8Array, options: DecodeCommandOptions = {}): Command {
  if (!(data instanceof Uint8Array)) throw new TypeError("command data must be bytes");
  if (data.byteLength === 0) return { op: "noop" };
  const r = new Reader(data);
  let command: Command;
  const tag = data[0];
  switch (tag) {
    case TAG_NOOP:
      command = { op: "noop" };
      break;
    case TAG_INIT_CLUSTER:
      command = {
        op: "init_cluster",
        clusterId: r.string("clusterId"),
        clusterName: r.string("clusterName"),
      };
      break;
    case TAG_CONF_CHANGE_RESERVED:
      throw new TypeError("bad command: tag 3 (conf_change) belongs in a conf_change entry");
    case TAG_SET_CONFIG:
      command = { op: "set_config", name: r.string("name"), value: r.string("value") };
      break;
    case TAG_KV_PUT: {
      const key = r.string("key");
      // Copy: the caller's buffer may be reused; a command owns its value.
      const view = r.bytes("value");
      const value = options.copyValue === false ? view : view.slice();
      command = { op: "kv_put", key, value };
      break;
    }
    case TAG_KV_DELETE:
      command = { op: "kv_delete", key: r.string("key") };
      break;
    case TAG_SET_PRIMARY:
      command = {
        op: "set_primary",
        nodeId: checked(r.u32("nodeId"), 0, NODE_ID_MAX, "set_primary nodeId"),
        timeline: checked(r.u32("timeline"), 1, TIMELINE_MAX, "set_primary timeline"),
      };
      break;
    case TAG_MEMBER_POSTGRES:
      command = {
        op: "member_postgres",
        nodeId: checked(r.u32("nodeId"), 1, NODE_ID_MAX, "member_postgres nodeId"),
        host: r.string("host"),
        port: checked(r.u32("port"), 1, MEMBER_PORT_MAX, "member_postgres port"),
      };
      break;
    case TAG_POSTGRES_SYSTEM: {
      const value = r.string("systemIdentifier");
      if (!POSTGRES_SYSTEM_PATTERN.test(value)) {
        throw new TypeError(
          `bad command: postgres_system ${JSON.stringify(value)} is not a decimal u64`,
        );
      }
      command = { op: "postgres_system", systemIdentifier: value };
      break;
    }
    default:
      throw new TypeError(`bad command: unknown tag ${tag}`);
  }
  r.end();
  return command;
}

/**
 * Compare strings by Unicode code point, which is the byte order of their
 * UTF-8 form and so PostgreSQL's `collate "C"` order.
 *
 * @returns negative, zero or positive as `a` sorts before, with or after `b`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * // U+FF5E sorts before U+1F600 by code point, though not by UTF-16 unit.
 * assert.ok(compareCodePoints("\uff5e", "\u{1f600}") < 0);
 * ```
 */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (astral code points) sort after every other UTF-16 unit in code point order.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

/**
 * The least string greater than every string starting with `prefix` (code
 * point order), or null when there is none (empty prefix or only U+10FFFF).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(prefixUpperBound("ab"), "ac");
 * ```
 */
export function prefixUpperBound(prefix: string): string | null {
  const points = Array.from(prefix, (c) => c.codePointAt(0)!);
  while (points.length > 0) {
    const last = points.pop()!;
    if (last < 0x10ffff) {
      points.push(last + 1 === 0xd800 ? 0xe000 : last + 1);
      return String.fromCodePoint(...points);
    }
  }
  return null;
}
