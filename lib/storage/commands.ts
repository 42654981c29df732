/**
 * The binary codec of state machine commands (the `data` of `normal` log
 * entries), and the shared apply rules both storages follow.
 *
 * Format: one tag byte, then the fields in order. A string or byte field is a
 * 4-byte big-endian length followed by that many bytes (strings are UTF-8).
 * The tag is never absent, so an encoded command is never empty (empty entry
 * data is the leader's no-op).
 *
 * | tag | op            | fields                      |
 * | --- | ------------- | --------------------------- |
 * | 1   | noop          | (none)                      |
 * | 2   | init_cluster  | clusterId, clusterName      |
 * | 3   | conf_change   | JSON of the ConfChange      |
 * | 4   | set_config    | name, value                 |
 * | 5   | kv_put        | key, value (bytes)          |
 * | 6   | kv_delete     | key                         |
 *
 * @module
 */

import type { ConfChange } from "../raft/types.ts";
import { NODE_ID_MAX } from "../raft/types.ts";
import type { Command } from "./types.ts";

const TAG_NOOP = 1;
const TAG_INIT_CLUSTER = 2;
const TAG_CONF_CHANGE = 3;
const TAG_SET_CONFIG = 4;
const TAG_KV_PUT = 5;
const TAG_KV_DELETE = 6;

/** Largest field the codec accepts (a 4-byte length). */
const FIELD_BYTES_MAX = 0xffff_ffff;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function fieldsSize(fields: Uint8Array[]): number {
  let size = 1;
  for (const f of fields) size += 4 + f.byteLength;
  return size;
}

function pack(tag: number, fields: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(fieldsSize(fields));
  const view = new DataView(out.buffer);
  out[0] = tag;
  let at = 1;
  for (const f of fields) {
    if (f.byteLength > FIELD_BYTES_MAX) throw new RangeError("command field too large");
    view.setUint32(at, f.byteLength);
    out.set(f, at + 4);
    at += 4 + f.byteLength;
  }
  return out;
}

function requireString(value: unknown, what: string): string {
  if (typeof value !== "string") throw new TypeError(`${what} must be a string`);
  return value;
}

/**
 * Encode a command for a `normal` log entry. Never returns an empty array.
 *
 * @example
 * ```ts
 * const data = encodeCommand({ op: "kv_delete", key: "a" });
 * // decodeCommand(data) deep-equals { op: "kv_delete", key: "a" }
 * ```
 */
export function encodeCommand(c: Command): Uint8Array {
  switch (c.op) {
    case "noop":
      return pack(TAG_NOOP, []);
    case "init_cluster":
      return pack(TAG_INIT_CLUSTER, [
        encoder.encode(requireString(c.clusterId, "clusterId")),
        encoder.encode(requireString(c.clusterName, "clusterName")),
      ]);
    case "conf_change":
      return pack(TAG_CONF_CHANGE, [encoder.encode(JSON.stringify(checkConfChange(c.change)))]);
    case "set_config":
      return pack(TAG_SET_CONFIG, [
        encoder.encode(requireString(c.name, "name")),
        encoder.encode(requireString(c.value, "value")),
      ]);
    case "kv_put":
      if (!(c.value instanceof Uint8Array)) throw new TypeError("kv_put value must be bytes");
      return pack(TAG_KV_PUT, [encoder.encode(requireString(c.key, "key")), c.value]);
    case "kv_delete":
      return pack(TAG_KV_DELETE, [encoder.encode(requireString(c.key, "key"))]);
    default:
      throw new TypeError(`unknown command op: ${String((c as { op: unknown }).op)}`);
  }
}

class Reader {
  #data: Uint8Array;
  #view: DataView;
  #at = 1;
  constructor(data: Uint8Array) {
    this.#data = data;
    this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }
  bytes(what: string): Uint8Array {
    if (this.#at + 4 > this.#data.byteLength) {
      throw new TypeError(`bad command: truncated before the length of ${what}`);
    }
    const length = this.#view.getUint32(this.#at);
    const start = this.#at + 4;
    if (start + length > this.#data.byteLength) {
      throw new TypeError(`bad command: ${what} is truncated`);
    }
    this.#at = start + length;
    return this.#data.subarray(start, start + length);
  }
  string(what: string): string {
    const bytes = this.bytes(what);
    try {
      return decoder.decode(bytes);
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

/**
 * Decode the data of a `normal` log entry.
 *
 * @returns `{ op: "noop" }` for empty data (the leader's no-op)
 * @throws TypeError when the data is not an encoded command
 */
export function decodeCommand(data: Uint8Array): Command {
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
    case TAG_CONF_CHANGE: {
      const text = r.string("conf change");
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new TypeError("bad command: conf change is not JSON");
      }
      command = { op: "conf_change", change: checkConfChange(parsed) };
      break;
    }
    case TAG_SET_CONFIG:
      command = { op: "set_config", name: r.string("name"), value: r.string("value") };
      break;
    case TAG_KV_PUT: {
      const key = r.string("key");
      // Copy: the caller's buffer may be reused; a command owns its value.
      const value = r.bytes("value").slice();
      command = { op: "kv_put", key, value };
      break;
    }
    case TAG_KV_DELETE:
      command = { op: "kv_delete", key: r.string("key") };
      break;
    default:
      throw new TypeError(`bad command: unknown tag ${tag}`);
  }
  r.end();
  return command;
}

const CONF_CHANGE_KINDS = new Set(["add_learner", "add_voter", "remove_node"]);

function checkConfChange(value: unknown): ConfChange {
  if (typeof value !== "object" || value === null) {
    throw new TypeError("bad conf change: not an object");
  }
  const v = value as Record<string, unknown>;
  if (typeof v.kind !== "string" || !CONF_CHANGE_KINDS.has(v.kind)) {
    throw new TypeError(`bad conf change: unknown kind ${JSON.stringify(v.kind)}`);
  }
  if (
    typeof v.nodeId !== "number" || !Number.isInteger(v.nodeId) || v.nodeId < 1 ||
    v.nodeId > NODE_ID_MAX
  ) {
    throw new TypeError(`bad conf change: invalid nodeId ${JSON.stringify(v.nodeId)}`);
  }
  if (typeof v.context !== "string") {
    throw new TypeError("bad conf change: context must be a string");
  }
  return { kind: v.kind as ConfChange["kind"], nodeId: v.nodeId, context: v.context };
}

/** Address and port a conf change carries in its context. */
export interface MemberAddress {
  address: string;
  port: number;
}

/**
 * Parse a conf change context: JSON `{"address": string, "port": number}`, or
 * "" (a promotion, nothing to change). A committed entry must be applied
 * whatever it holds, so a context that is not of that shape counts as "".
 */
export function parseMemberContext(context: string): MemberAddress | null {
  if (context === "") return null;
  try {
    const v = JSON.parse(context) as Record<string, unknown>;
    if (
      typeof v === "object" && v !== null && typeof v.address === "string" &&
      typeof v.port === "number" && Number.isInteger(v.port)
    ) {
      return { address: v.address, port: v.port };
    }
  } catch {
    // fall through
  }
  return null;
}

/**
 * The applied state as a snapshot carries it. `kv` holds [key, value (base64), revision].
 * Produced by `snapshotData()`, consumed by `persist({ snapshot })`.
 */
export interface StateImage {
  version: 1;
  lastApplied: number;
  clusterId: string | null;
  clusterName: string | null;
  members: {
    nodeId: number;
    address: string;
    port: number;
    isVoter: boolean;
    addedIndex: number;
  }[];
  settings: { name: string; value: string; setIndex: number }[];
  kv: [string, string, number][];
}

/** Serialize a state image (JSON, UTF-8). */
export function encodeStateImage(image: StateImage): Uint8Array {
  return encoder.encode(JSON.stringify(image));
}

function isInt(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x);
}

/**
 * Parse snapshot data made by {@link encodeStateImage}.
 *
 * @throws TypeError when it is not one
 */
export function decodeStateImage(data: Uint8Array): StateImage {
  let v: StateImage;
  try {
    v = JSON.parse(decoder.decode(data)) as StateImage;
  } catch {
    throw new TypeError("bad snapshot data: not UTF-8 JSON");
  }
  const ok = typeof v === "object" && v !== null && v.version === 1 &&
    isInt(v.lastApplied) && v.lastApplied >= 0 &&
    (v.clusterId === null || typeof v.clusterId === "string") &&
    (v.clusterName === null || typeof v.clusterName === "string") &&
    Array.isArray(v.members) && Array.isArray(v.settings) && Array.isArray(v.kv);
  if (!ok) throw new TypeError("bad snapshot data: not a pgraft state image");
  for (const m of v.members) {
    if (
      !isInt(m?.nodeId) || typeof m.address !== "string" || !isInt(m.port) ||
      typeof m.isVoter !== "boolean" || !isInt(m.addedIndex)
    ) throw new TypeError("bad snapshot data: bad member");
  }
  for (const s of v.settings) {
    if (typeof s?.name !== "string" || typeof s.value !== "string" || !isInt(s.setIndex)) {
      throw new TypeError("bad snapshot data: bad setting");
    }
  }
  for (const kv of v.kv) {
    if (
      !Array.isArray(kv) || typeof kv[0] !== "string" || typeof kv[1] !== "string" ||
      !isInt(kv[2])
    ) throw new TypeError("bad snapshot data: bad key");
  }
  return v;
}

/**
 * Compare strings by Unicode code point, which is the byte order of their
 * UTF-8 form and so PostgreSQL's `collate "C"` order.
 */
export function compareCodePoints(a: string, b: string): number {
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
