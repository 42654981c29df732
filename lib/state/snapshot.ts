/**
 * The state image: the whole replicated state at one applied index, as the
 * `data` of a Raft snapshot. Binary, compact and canonical (two machines in
 * the same state produce the same bytes).
 *
 * Format, version 2 (version 1 had no `system` section; it is still read). Integers are big-endian; `u64` holds a safe integer
 * (< 2^53); `str` is a u32 byte length then UTF-8; `key` a u16 length then
 * UTF-8.
 *
 * ```
 * header    "PGRS" | u16 version = 2 | u16 flags = 0 | u64 lastApplied
 * identity  u8 present (0|1) [ str clusterId | str clusterName ]
 * primary   u8 present (0|1) [ u32 nodeId | u32 timeline | u64 index ]
 * system    u8 present (0|1) [ str systemIdentifier ]
 * members   u32 count, by nodeId ascending, each:
 *           u32 nodeId | u8 flags (1 voter, 2 has PostgreSQL address) | u16 port |
 *           str address | u64 addedIndex [ str pgHost | u16 pgPort ]
 * settings  u32 count, by name in code point order, each: str name | str value
 * kv        u32 count, by key in code point order, each:
 *           key key | u32 valueLength | value bytes | u64 revision
 * trailer   u32 CRC-32C of every byte before it
 * ```
 *
 * Decoding checks the magic, the version, the checksum, then every field
 * (ranges, order, UTF-8, key rules), and refuses anything else with a
 * TypeError.
 *
 * @module
 */

import { crc32c } from "../crc32c.ts";
import { decodeUtf8 } from "./_utf8.ts";
import { isNodeId } from "../raft/conf_change.ts";
import { NODE_ID_MAX } from "../raft/types.ts";
import { compareCodePoints, POSTGRES_SYSTEM_PATTERN, TIMELINE_MAX } from "./commands.ts";
import { type KvRecord, KvStore } from "./kv_store.ts";
import { sortForm } from "./sorted_index.ts";
import { KV_VALUE_BYTES_MAX, kvKeyProblem, MEMBER_PORT_MAX } from "./limits.ts";

/** The current image format version. */
export const STATE_IMAGE_VERSION = 2;

/** The oldest image format version still read. */
const STATE_IMAGE_VERSION_MIN = 1;

const MAGIC = [0x50, 0x47, 0x52, 0x53]; // "PGRS"
const HEADER_BYTES = 16;
const TRAILER_BYTES = 4;
const FLAG_VOTER = 1;
const FLAG_POSTGRES = 2;
const TWO_32 = 0x1_0000_0000;

/** A member as the state machine keeps it. */
export interface Member {
  nodeId: number;
  /** peer address (from the conf change context); "" when never given */
  address: string;
  /** peer port; 0 when never given */
  port: number;
  isVoter: boolean;
  /** its PostgreSQL host, as its agent reported it; null until reported */
  pgHost: string | null;
  pgPort: number | null;
  /** index of the conf change that first added it */
  addedIndex: number;
}

/** The PostgreSQL primary record. */
export interface PrimaryRecord {
  /** the primary's node id; 0 (NONE) when no server is primary */
  nodeId: number;
  timeline: number;
  /** index of the entry that set it */
  index: number;
}

/** The state an image holds. */
export interface StateImage {
  lastApplied: number;
  identity: { clusterId: string; clusterName: string } | null;
  primary: PrimaryRecord | null;
  /**
   * the PostgreSQL database system identifier of the cluster's servers
   * (decimal), recorded by the first primary's agent; null until then
   */
  postgresSystem: string | null;
  /** by nodeId ascending */
  members: Member[];
  /** by name in code point order */
  settings: [string, string][];
  kv: KvStore;
}

const encoder = new TextEncoder();

class Writer {
  readonly out: Uint8Array;
  readonly view: DataView;
  at = 0;
  constructor(size: number) {
    this.out = new Uint8Array(size);
    this.view = new DataView(this.out.buffer);
  }
  u8(v: number): void {
    this.out[this.at++] = v;
  }
  u16(v: number): void {
    this.view.setUint16(this.at, v);
    this.at += 2;
  }
  u32(v: number): void {
    this.view.setUint32(this.at, v);
    this.at += 4;
  }
  u64(v: number): void {
    this.view.setUint32(this.at, Math.floor(v / TWO_32));
    this.view.setUint32(this.at + 4, v >>> 0);
    this.at += 8;
  }
  bytes(b: Uint8Array): void {
    this.out.set(b, this.at);
    this.at += b.byteLength;
  }
  str(b: Uint8Array): void {
    this.u32(b.byteLength);
    this.bytes(b);
  }
  key(key: string, keyBytes: number): void {
    this.u16(keyBytes);
    if (keyBytes === key.length) {
      // ASCII (a non-ASCII character makes the UTF-8 longer than the UTF-16).
      for (let i = 0; i < keyBytes; i++) this.out[this.at + i] = key.charCodeAt(i);
    } else {
      const { written } = encoder.encodeInto(key, this.out.subarray(this.at, this.at + keyBytes));
      if (written !== keyBytes) throw new RangeError(`key ${JSON.stringify(key)}: bad length`);
    }
    this.at += keyBytes;
  }
}

/**
 * Encode `image`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { KvStore } from "./kv_store.ts";
 * const image = {
 *   lastApplied: 0, identity: null, primary: null, postgresSystem: null, members: [],
 *   settings: [], kv: new KvStore(),
 * };
 * assert.equal(decodeStateImage(encodeStateImage(image)).lastApplied, 0);
 * ```
 */
export function encodeStateImage(image: StateImage): Uint8Array {
  const identity = image.identity
    ? [encoder.encode(image.identity.clusterId), encoder.encode(image.identity.clusterName)]
    : [];
  const members = image.members.map((m) => ({
    m,
    address: encoder.encode(m.address),
    pgHost: m.pgHost === null ? null : encoder.encode(m.pgHost),
  }));
  const settings = image.settings.map(([n, v]) => [encoder.encode(n), encoder.encode(v)]);
  const system = image.postgresSystem === null ? null : encoder.encode(image.postgresSystem);
  let size = HEADER_BYTES + 1 + 1 + 1 + 4 + 4 + 4 + TRAILER_BYTES;
  for (const s of identity) size += 4 + s.byteLength;
  if (image.primary) size += 16;
  if (system) size += 4 + system.byteLength;
  for (const { address, pgHost } of members) {
    size += 4 + 1 + 2 + 4 + address.byteLength + 8;
    if (pgHost) size += 4 + pgHost.byteLength + 2;
  }
  for (const [n, v] of settings) size += 8 + n!.byteLength + v!.byteLength;
  // Per key: u16 key length, u32 value length, u64 revision; kv.bytes holds keys and values.
  size += image.kv.count * 14 + image.kv.bytes;

  const w = new Writer(size);
  w.bytes(new Uint8Array(MAGIC));
  w.u16(STATE_IMAGE_VERSION);
  w.u16(0);
  w.u64(image.lastApplied);
  w.u8(image.identity ? 1 : 0);
  for (const s of identity) w.str(s);
  w.u8(image.primary ? 1 : 0);
  if (image.primary) {
    w.u32(image.primary.nodeId);
    w.u32(image.primary.timeline);
    w.u64(image.primary.index);
  }
  w.u8(system ? 1 : 0);
  if (system) w.str(system);
  w.u32(members.length);
  for (const { m, address, pgHost } of members) {
    w.u32(m.nodeId);
    w.u8((m.isVoter ? FLAG_VOTER : 0) | (pgHost ? FLAG_POSTGRES : 0));
    w.u16(m.port);
    w.str(address);
    w.u64(m.addedIndex);
    if (pgHost) {
      w.str(pgHost);
      w.u16(m.pgPort ?? 0);
    }
  }
  w.u32(settings.length);
  for (const [n, v] of settings) {
    w.str(n!);
    w.str(v!);
  }
  w.u32(image.kv.count);
  image.kv.forEach((record) => {
    w.key(record.key, record.keyBytes);
    w.u32(record.length);
    w.bytes(image.kv.view(record));
    w.u64(record.revision);
  });
  w.u32(crc32c(w.out.subarray(0, w.at)));
  if (w.at !== size) throw new RangeError(`state image: wrote ${w.at} bytes, expected ${size}`);
  return w.out;
}

class Reader {
  readonly #data: Uint8Array;
  readonly #view: DataView;
  readonly #end: number;
  at = 0;
  constructor(data: Uint8Array, end: number) {
    this.#data = data;
    this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.#end = end;
  }
  #need(n: number, what: string): void {
    if (this.at + n > this.#end) fail(`${what} is truncated at byte ${this.at}`);
  }
  u8(what: string): number {
    this.#need(1, what);
    return this.#data[this.at++]!;
  }
  u16(what: string): number {
    this.#need(2, what);
    const v = this.#view.getUint16(this.at);
    this.at += 2;
    return v;
  }
  u32(what: string): number {
    this.#need(4, what);
    const v = this.#view.getUint32(this.at);
    this.at += 4;
    return v;
  }
  u64(what: string): number {
    this.#need(8, what);
    const hi = this.#view.getUint32(this.at);
    const lo = this.#view.getUint32(this.at + 4);
    if (hi > 0x1f_ffff) fail(`${what} is beyond 2^53`);
    this.at += 8;
    return hi * TWO_32 + lo;
  }
  bytes(length: number, what: string): Uint8Array {
    this.#need(length, what);
    const b = this.#data.subarray(this.at, this.at + length);
    this.at += length;
    return b;
  }
  text(length: number, what: string): string {
    const b = this.bytes(length, what);
    try {
      return decodeUtf8(b);
    } catch {
      return fail(`${what} is not valid UTF-8`);
    }
  }
  str(what: string): string {
    return this.text(this.u32(`length of ${what}`), what);
  }
  done(): boolean {
    return this.at === this.#end;
  }
}

function fail(message: string): never {
  throw new TypeError(`bad state image: ${message}`);
}

function range(value: number, min: number, max: number, what: string): number {
  if (value < min || value > max) fail(`${what} ${value} is not in ${min}..${max}`);
  return value;
}

/**
 * Decode an image made by {@link encodeStateImage}, checking it strictly.
 *
 * @throws TypeError naming what is wrong when `data` is not a valid image
 */
export function decodeStateImage(data: Uint8Array): StateImage {
  if (!(data instanceof Uint8Array)) fail("not bytes");
  if (data.byteLength < HEADER_BYTES + TRAILER_BYTES) fail(`only ${data.byteLength} bytes`);
  for (let i = 0; i < MAGIC.length; i++) {
    if (data[i] !== MAGIC[i]) fail("not a pgraft state image (bad magic)");
  }
  const end = data.byteLength - TRAILER_BYTES;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const version = view.getUint16(4);
  if (version < STATE_IMAGE_VERSION_MIN || version > STATE_IMAGE_VERSION) {
    fail(`unsupported version ${version}`);
  }
  const stored = view.getUint32(end);
  const actual = crc32c(data.subarray(0, end));
  if (stored !== actual) fail(`checksum mismatch (stored ${stored}, computed ${actual})`);

  const r = new Reader(data, end);
  r.at = 6;
  if (r.u16("flags") !== 0) fail("unknown flags");
  const lastApplied = r.u64("lastApplied");
  const at = (what: string) => (v: number) => range(v, 1, lastApplied, what);

  let identity: StateImage["identity"] = null;
  if (range(r.u8("identity flag"), 0, 1, "identity flag") === 1) {
    const clusterId = r.str("clusterId");
    identity = { clusterId, clusterName: r.str("clusterName") };
  }
  let primary: PrimaryRecord | null = null;
  if (range(r.u8("primary flag"), 0, 1, "primary flag") === 1) {
    primary = {
      nodeId: range(r.u32("primary nodeId"), 0, NODE_ID_MAX, "primary nodeId"),
      timeline: range(r.u32("primary timeline"), 1, TIMELINE_MAX, "primary timeline"),
      index: at("primary index")(r.u64("primary index")),
    };
  }
  let postgresSystem: string | null = null;
  if (version >= 2 && range(r.u8("system flag"), 0, 1, "system flag") === 1) {
    postgresSystem = r.str("systemIdentifier");
    if (!POSTGRES_SYSTEM_PATTERN.test(postgresSystem)) {
      fail(`bad systemIdentifier ${JSON.stringify(postgresSystem)}`);
    }
  }

  const members: Member[] = [];
  const memberCount = r.u32("member count");
  for (let i = 0; i < memberCount; i++) {
    const nodeId = r.u32("member nodeId");
    if (!isNodeId(nodeId)) fail(`bad member nodeId ${nodeId}`);
    if (i > 0 && nodeId <= members[i - 1]!.nodeId) fail(`member ${nodeId} is out of order`);
    const flags = r.u8("member flags");
    if ((flags & ~(FLAG_VOTER | FLAG_POSTGRES)) !== 0) fail(`member ${nodeId}: bad flags`);
    const port = r.u16("member port");
    const address = r.str("member address");
    const addedIndex = at("member addedIndex")(r.u64("member addedIndex"));
    let pgHost: string | null = null;
    let pgPort: number | null = null;
    if (flags & FLAG_POSTGRES) {
      pgHost = r.str("member pgHost");
      pgPort = range(r.u16("member pgPort"), 1, MEMBER_PORT_MAX, "member pgPort");
    }
    const isVoter = (flags & FLAG_VOTER) !== 0;
    members.push({ nodeId, address, port, isVoter, pgHost, pgPort, addedIndex });
  }

  const settings: [string, string][] = [];
  const settingCount = r.u32("setting count");
  for (let i = 0; i < settingCount; i++) {
    const name = r.str("setting name");
    if (i > 0 && compareCodePoints(settings[i - 1]![0], name) >= 0) {
      fail(`setting ${JSON.stringify(name)} is out of order`);
    }
    settings.push([name, r.str(`value of setting ${JSON.stringify(name)}`)]);
  }

  const kv = decodeKv(r, lastApplied);
  if (!r.done()) fail(`${end - r.at} unexpected bytes after the key-value store`);
  return { lastApplied, identity, primary, postgresSystem, members, settings, kv };
}

function decodeKv(r: Reader, lastApplied: number): KvStore {
  const count = r.u32("key count");
  const loader = KvStore.load();
  let previous: string | null = null;
  for (let i = 0; i < count; i++) {
    const keyBytes = r.u16("key length");
    // Messages are built only on failure: this loop runs once per key.
    const keyData = r.bytes(keyBytes, "key");
    let key: string;
    try {
      key = decodeUtf8(keyData);
    } catch {
      return fail(`key #${i} is not valid UTF-8`);
    }
    const problem = kvKeyProblem(key);
    if (problem) fail(`key #${i}: ${problem.message}`);
    // Sort forms compare natively in code point order.
    const form = sortForm(key);
    if (previous !== null && previous >= form) fail(`key ${JSON.stringify(key)} is out of order`);
    const length = range(r.u32("value length"), 0, KV_VALUE_BYTES_MAX, "value length");
    // A view of the image, which the store copies.
    const value = r.bytes(length, "value");
    const revision = range(r.u64("revision"), 1, lastApplied, "revision");
    const record: KvRecord = { key, form, home: value, offset: 0, length, revision, keyBytes };
    loader.add(record, value);
    previous = form;
  }
  return loader.finish();
}
