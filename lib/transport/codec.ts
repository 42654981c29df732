/**
 * The wire format of peer requests: an {@link Envelope} of Raft messages.
 *
 * Two forms decode to the same envelope:
 * - binary (what {@link encodeMessages} produces): the 4 magic bytes `PGR1`, a
 *   big-endian u32 with the length of a UTF-8 JSON header, the header, then a
 *   payload section. Every byte field (entry data, snapshot data) is written in
 *   the header as `[offset, length]` into the payload, so bytes are copied once
 *   and never base64-encoded;
 * - JSON text (for people and tools, e.g. `curl`): the same header where every
 *   byte field is a base64 string.
 *
 * {@link decodeMessages} treats a request body as hostile: it checks every field
 * of every message and throws a {@link CodecError} naming the first bad field
 * (`messages[3].entries[0].term: expected a positive integer`). Fields the
 * format does not know are ignored, so a newer sender can add some.
 *
 * @module
 */

import {
  type Entry,
  type EntryType,
  type Membership,
  type Message,
  type MessageType,
  NODE_ID_MAX,
  type RejectHint,
  type Snapshot,
} from "../raft/types.ts";
import { assert, unreachable } from "../assert.ts";

/** What one peer request carries. */
export interface Envelope {
  /** the sender's cluster id; null when the sender has not joined a cluster yet */
  clusterId: string | null;
  /** the sender's node id; every message's `from` equals it */
  from: number;
  /** where the sender can be reached, so a node can answer a leader it does not know yet */
  sender: { address: string; port: number } | null;
  messages: Message[];
  /**
   * the leader's view of every member, sent along with its heartbeats so that
   * followers can show every member's progress (for status displays only:
   * nothing in consensus reads it); absent on other requests
   */
  view?: MembersView;
}

/** The leader's view of the members' replication, as of when it sent it. */
export interface MembersView {
  /** the leader's last log index */
  lastIndex: number;
  /** the leader's commit index */
  commitIndex: number;
  members: MemberProgress[];
}

/** One member in a {@link MembersView}. */
export interface MemberProgress {
  id: number;
  /** highest index known to be replicated on the member */
  match: number;
  /** next index the leader sends it */
  next: number;
  /** the leader's replication state for it ("leader" for the leader itself) */
  state: "leader" | "probe" | "replicate" | "snapshot";
  /** ms since the leader last heard from it; null when never (0 for the leader itself) */
  lastContactMs: number | null;
}

/** Most members a view may list. */
export const VIEW_MEMBERS_MAX = 1024;

const VIEW_STATES: ReadonlySet<string> = new Set(["leader", "probe", "replicate", "snapshot"]);

/** A request body that is not a valid envelope. The message names the bad field. */
export class CodecError extends Error {
  override name = "CodecError";
}

/** Every message type the codec knows. */
export const MESSAGE_TYPES: readonly MessageType[] = [
  "vote_request",
  "vote_response",
  "append_request",
  "append_response",
  "heartbeat_request",
  "heartbeat_response",
  "snapshot_request",
  "timeout_now",
];

const MAGIC = [0x50, 0x47, 0x52, 0x31]; // "PGR1"
const HEADER_OFFSET = 8;
/** Longest cluster id accepted (a UUID is 36 characters). */
export const CLUSTER_ID_LENGTH_MAX = 128;
/** Longest sender address accepted (a DNS name is at most 253 characters). */
export const ADDRESS_LENGTH_MAX = 255;
/** Longest read context accepted. */
export const READ_CONTEXT_LENGTH_MAX = 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

// ---------------------------------------------------------------------------
// encoding

/**
 * Encode an envelope in the binary form.
 *
 * @param envelope what to send; the caller built it, so it is trusted
 * @returns the request body
 * @example
 * ```ts
 * const body = encodeMessages({ clusterId: null, from: 1, sender: null, messages: [] });
 * const back = decodeMessages(body, 2);
 * assert(back.from === 1);
 * ```
 */
export function encodeMessages(envelope: Envelope): string | Uint8Array {
  const blobs: Uint8Array[] = [];
  let payloadBytes = 0;
  const ref = (data: Uint8Array): [number, number] => {
    const at = payloadBytes;
    if (data.length > 0) {
      blobs.push(data);
      payloadBytes += data.length;
    }
    return [at, data.length];
  };
  const header = JSON.stringify({
    v: 1,
    clusterId: envelope.clusterId,
    from: envelope.from,
    sender: envelope.sender,
    messages: envelope.messages.map((m) => wireMessage(m, ref)),
    view: envelope.view,
  });
  const headerBytes = encoder.encode(header);
  const out = new Uint8Array(HEADER_OFFSET + headerBytes.length + payloadBytes);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(4, headerBytes.length);
  out.set(headerBytes, HEADER_OFFSET);
  let at = HEADER_OFFSET + headerBytes.length;
  for (const blob of blobs) {
    out.set(blob, at);
    at += blob.length;
  }
  assert(at === out.length, "encoded payload fills the body exactly");
  return out;
}

/**
 * Encode an envelope as JSON text with base64 byte fields (the text form).
 *
 * @param envelope what to send
 * @returns JSON text that {@link decodeMessages} accepts
 */
export function encodeMessagesJson(envelope: Envelope): string {
  return JSON.stringify({
    v: 1,
    clusterId: envelope.clusterId,
    from: envelope.from,
    sender: envelope.sender,
    messages: envelope.messages.map((m) => wireMessage(m, toBase64)),
    view: envelope.view,
  });
}

function toBase64(data: Uint8Array): string {
  return (data as Uint8Array & { toBase64(): string }).toBase64();
}

function wireMessage(m: Message, bytes: (data: Uint8Array) => unknown): Record<string, unknown> {
  switch (m.type) {
    case "append_request":
      return {
        ...m,
        entries: m.entries.map((e) => ({
          index: e.index,
          term: e.term,
          type: e.type,
          data: bytes(e.data),
        })),
      };
    case "snapshot_request":
      return {
        ...m,
        snapshot: { meta: m.snapshot.meta, data: bytes(m.snapshot.data) },
      };
    case "vote_request":
    case "vote_response":
    case "append_response":
    case "heartbeat_request":
    case "heartbeat_response":
    case "timeout_now":
      return m as unknown as Record<string, unknown>;
    default:
      return unreachable(m, "message type");
  }
}

// ---------------------------------------------------------------------------
// decoding

/** Reads byte fields: `[offset, length]` into the payload, or base64 text. */
type BytesReader = (value: unknown, path: string) => Uint8Array;

/**
 * Decode and validate a request body.
 *
 * @param body the binary form, or the JSON text form (as a string or UTF-8 bytes)
 * @param expectedTo this node's id: every message must be addressed to it
 * @param options.adopt the caller hands `body` over (it will not change it):
 *   byte fields may be views of `body` itself, saving a copy of the payload
 * @returns the envelope; byte fields are views of one copy of the payload,
 *   never of `body` itself unless `adopt` is set
 * @throws {CodecError} naming the first field that is wrong
 */
export function decodeMessages(
  body: string | Uint8Array,
  expectedTo: number,
  options: { adopt?: boolean } = {},
): Envelope {
  let header: unknown;
  let readBytes: BytesReader;
  if (typeof body !== "string" && hasMagic(body)) {
    if (body.length < HEADER_OFFSET) fail("body", "truncated binary header");
    const headerBytes = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(4);
    if (headerBytes > body.length - HEADER_OFFSET) {
      fail(
        "body",
        `header length ${headerBytes} exceeds the ${body.length - HEADER_OFFSET} bytes that follow`,
      );
    }
    // one copy of the payload; byte fields are views of it (cheaper than one
    // allocation per entry, and never aliases the caller's body)
    const payload = options.adopt
      ? body.subarray(HEADER_OFFSET + headerBytes)
      : body.slice(HEADER_OFFSET + headerBytes);
    header = parseJson(body.subarray(HEADER_OFFSET, HEADER_OFFSET + headerBytes));
    readBytes = (value, path) => {
      if (!Array.isArray(value) || value.length !== 2) fail(path, "expected [offset, length]");
      const offset = value[0];
      const length = value[1];
      if (!isNonNegativeInteger(offset)) {
        fail(`${path}[0]`, "expected a non-negative integer offset");
      }
      if (!isNonNegativeInteger(length)) {
        fail(`${path}[1]`, "expected a non-negative integer length");
      }
      if (offset + length > payload.length) {
        fail(
          path,
          `bytes ${offset}..${offset + length} lie beyond the ${payload.length}-byte payload`,
        );
      }
      return payload.subarray(offset, offset + length);
    };
  } else {
    header = parseJson(body);
    readBytes = (value, path) => {
      if (typeof value !== "string") fail(path, "expected a base64 string");
      try {
        return (Uint8Array as unknown as { fromBase64(s: string): Uint8Array }).fromBase64(value);
      } catch {
        return fail(path, "invalid base64");
      }
    };
  }
  return readEnvelope(header, expectedTo, readBytes);
}

function hasMagic(body: Uint8Array): boolean {
  return body.length >= 4 && MAGIC.every((b, i) => body[i] === b);
}

function parseJson(text: string | Uint8Array): unknown {
  let s: string;
  try {
    s = typeof text === "string" ? text : decoder.decode(text);
  } catch {
    return fail("body", "not valid UTF-8");
  }
  try {
    return JSON.parse(s);
  } catch (error) {
    return fail("body", `not valid JSON (${(error as Error).message})`);
  }
}

function fail(path: string, problem: string): never {
  throw new CodecError(`${path}: ${problem}`);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function object(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(path, "expected an object");
  }
  return value as Record<string, unknown>;
}

function array(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) fail(path, "expected an array");
  return value;
}

function uint(o: Record<string, unknown>, key: string, path: string): number {
  const value = o[key];
  if (!isNonNegativeInteger(value)) fail(`${path}.${key}`, "expected a non-negative integer");
  return value;
}

function positive(o: Record<string, unknown>, key: string, path: string): number {
  const value = o[key];
  if (!isNonNegativeInteger(value) || value < 1) {
    fail(`${path}.${key}`, "expected a positive integer");
  }
  return value;
}

function nodeIdValue(value: unknown, path: string): number {
  if (!isNonNegativeInteger(value) || value < 1 || value > NODE_ID_MAX) {
    fail(path, `expected a node id in 1..${NODE_ID_MAX}`);
  }
  return value;
}

function bool(o: Record<string, unknown>, key: string, path: string): boolean {
  const value = o[key];
  if (typeof value !== "boolean") fail(`${path}.${key}`, "expected a boolean");
  return value;
}

function string(o: Record<string, unknown>, key: string, path: string, lengthMax: number): string {
  const value = o[key];
  if (typeof value !== "string") fail(`${path}.${key}`, "expected a string");
  if (value.length > lengthMax) fail(`${path}.${key}`, `longer than ${lengthMax} characters`);
  return value;
}

function readEnvelope(header: unknown, expectedTo: number, readBytes: BytesReader): Envelope {
  const o = object(header, "body");
  if (o.v !== 1) fail("v", `unsupported format version ${JSON.stringify(o.v)} (expected 1)`);
  const clusterId = o.clusterId;
  if (clusterId !== null) {
    if (typeof clusterId !== "string" || clusterId.length === 0) {
      fail("clusterId", "expected a non-empty string or null");
    }
    if (clusterId.length > CLUSTER_ID_LENGTH_MAX) {
      fail("clusterId", `longer than ${CLUSTER_ID_LENGTH_MAX} characters`);
    }
  }
  const from = nodeIdValue(o.from, "from");
  let sender: Envelope["sender"] = null;
  if (o.sender !== null && o.sender !== undefined) {
    const s = object(o.sender, "sender");
    const address = string(s, "address", "sender", ADDRESS_LENGTH_MAX);
    if (address.length === 0) fail("sender.address", "expected a non-empty string");
    const port = s.port;
    if (!isNonNegativeInteger(port) || port < 1 || port > 65535) {
      fail("sender.port", "expected a port in 1..65535");
    }
    sender = { address, port };
  }
  const list = array(o.messages, "messages");
  const messages: Message[] = [];
  for (let i = 0; i < list.length; i++) {
    messages.push(readMessage(list[i], `messages[${i}]`, from, expectedTo, readBytes));
  }
  const envelope: Envelope = { clusterId: clusterId as string | null, from, sender, messages };
  if (o.view !== undefined && o.view !== null) envelope.view = readView(o.view);
  return envelope;
}

function readView(value: unknown): MembersView {
  const o = object(value, "view");
  const index = (v: unknown, path: string): number => {
    if (!isNonNegativeInteger(v)) fail(path, "expected a non-negative integer");
    return v;
  };
  const list = array(o.members, "view.members");
  if (list.length > VIEW_MEMBERS_MAX) fail("view.members", `more than ${VIEW_MEMBERS_MAX} members`);
  const members = list.map((item, i): MemberProgress => {
    const path = `view.members[${i}]`;
    const m = object(item, path);
    const state = m.state;
    if (typeof state !== "string" || !VIEW_STATES.has(state)) {
      fail(`${path}.state`, "expected leader, probe, replicate or snapshot");
    }
    const contact = m.lastContactMs;
    return {
      id: nodeIdValue(m.id, `${path}.id`),
      match: index(m.match, `${path}.match`),
      next: index(m.next, `${path}.next`),
      state: state as MemberProgress["state"],
      lastContactMs: contact === null ? null : index(contact, `${path}.lastContactMs`),
    };
  });
  return {
    lastIndex: index(o.lastIndex, "view.lastIndex"),
    commitIndex: index(o.commitIndex, "view.commitIndex"),
    members,
  };
}

function readMessage(
  value: unknown,
  path: string,
  from: number,
  expectedTo: number,
  readBytes: BytesReader,
): Message {
  const o = object(value, path);
  const type = o.type;
  if (typeof type !== "string" || !(MESSAGE_TYPES as readonly string[]).includes(type)) {
    fail(`${path}.type`, `unknown message type ${JSON.stringify(type)}`);
  }
  const term = uint(o, "term", path);
  const mFrom = nodeIdValue(o.from, `${path}.from`);
  if (mFrom !== from) fail(`${path}.from`, `is ${mFrom} but the request comes from node ${from}`);
  const to = nodeIdValue(o.to, `${path}.to`);
  if (to !== expectedTo) fail(`${path}.to`, `is ${to} but this is node ${expectedTo}`);
  const base = { term, from: mFrom, to };
  const t = type as MessageType;
  switch (t) {
    case "vote_request":
      return {
        type: t,
        ...base,
        preVote: bool(o, "preVote", path),
        transfer: bool(o, "transfer", path),
        lastLogIndex: uint(o, "lastLogIndex", path),
        lastLogTerm: uint(o, "lastLogTerm", path),
      };
    case "vote_response":
      return {
        type: t,
        ...base,
        preVote: bool(o, "preVote", path),
        granted: bool(o, "granted", path),
      };
    case "append_request":
      return readAppend(o, path, base, readBytes);
    case "append_response": {
      let hint: RejectHint | null = null;
      if (o.hint !== null) {
        const h = object(o.hint, `${path}.hint`);
        const p = `${path}.hint`;
        hint = {
          rejectedIndex: uint(h, "rejectedIndex", p),
          lastIndex: uint(h, "lastIndex", p),
          conflictTerm: uint(h, "conflictTerm", p),
          conflictIndex: uint(h, "conflictIndex", p),
        };
      }
      return {
        type: t,
        ...base,
        success: bool(o, "success", path),
        matchIndex: uint(o, "matchIndex", path),
        hint,
      };
    }
    case "heartbeat_request":
      return {
        type: t,
        ...base,
        commit: uint(o, "commit", path),
        readContext: string(o, "readContext", path, READ_CONTEXT_LENGTH_MAX),
      };
    case "heartbeat_response":
      return {
        type: t,
        ...base,
        readContext: string(o, "readContext", path, READ_CONTEXT_LENGTH_MAX),
      };
    case "snapshot_request":
      return {
        type: t,
        ...base,
        snapshot: readSnapshot(o.snapshot, `${path}.snapshot`, readBytes),
      };
    case "timeout_now":
      return { type: t, ...base };
    default:
      return unreachable(t, "message type");
  }
}

function readAppend(
  o: Record<string, unknown>,
  path: string,
  base: { term: number; from: number; to: number },
  readBytes: BytesReader,
): Message {
  const prevLogIndex = uint(o, "prevLogIndex", path);
  const prevLogTerm = uint(o, "prevLogTerm", path);
  if (prevLogTerm > base.term) {
    fail(`${path}.prevLogTerm`, `${prevLogTerm} is above the message term ${base.term}`);
  }
  if (prevLogIndex === 0 && prevLogTerm !== 0) {
    fail(`${path}.prevLogTerm`, "must be 0 when prevLogIndex is 0");
  }
  const commit = uint(o, "commit", path);
  const list = array(o.entries, `${path}.entries`);
  const entries: Entry[] = [];
  let lastTerm = prevLogTerm;
  for (let j = 0; j < list.length; j++) {
    const p = `${path}.entries[${j}]`;
    const e = object(list[j], p);
    const index = positive(e, "index", p);
    const expectedIndex = prevLogIndex + 1 + j;
    if (index !== expectedIndex) {
      fail(
        `${p}.index`,
        `is ${index} but entries must be contiguous from prevLogIndex+1 (expected ${expectedIndex})`,
      );
    }
    const term = positive(e, "term", p);
    if (term < lastTerm) {
      fail(`${p}.term`, `${term} is below the previous entry's term ${lastTerm}`);
    }
    if (term > base.term) fail(`${p}.term`, `${term} is above the message term ${base.term}`);
    lastTerm = term;
    const type = e.type;
    if (type !== "normal" && type !== "conf_change") {
      fail(`${p}.type`, `expected "normal" or "conf_change", got ${JSON.stringify(type)}`);
    }
    entries.push({ index, term, type: type as EntryType, data: readBytes(e.data, `${p}.data`) });
  }
  return { type: "append_request", ...base, prevLogIndex, prevLogTerm, entries, commit };
}

function readSnapshot(value: unknown, path: string, readBytes: BytesReader): Snapshot {
  const s = object(value, path);
  const m = object(s.meta, `${path}.meta`);
  const p = `${path}.meta`;
  const index = positive(m, "index", p);
  const term = positive(m, "term", p);
  const membership = readMembership(m.membership, `${p}.membership`);
  return { meta: { index, term, membership }, data: readBytes(s.data, `${path}.data`) };
}

function readMembership(value: unknown, path: string): Membership {
  const o = object(value, path);
  const seen = new Set<number>();
  const ids = (key: "voters" | "learners"): number[] => {
    const list = array(o[key], `${path}.${key}`);
    return list.map((v, i) => {
      const id = nodeIdValue(v, `${path}.${key}[${i}]`);
      if (seen.has(id)) fail(`${path}.${key}[${i}]`, `node ${id} is listed twice`);
      seen.add(id);
      return id;
    });
  };
  return { voters: ids("voters"), learners: ids("learners") };
}
