import assert from "node:assert/strict";
import {
  CodecError,
  decodeMessages,
  encodeMessages,
  encodeMessagesJson,
  type Envelope,
  MESSAGE_TYPES,
} from "../../../lib/transport/mod.ts";
import type { Message } from "../../../lib/raft/types.ts";

function bytes(n: number, seed = 0): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

/** One message of every type, from node 1 to node 2, with binary data. */
function everyMessage(): Message[] {
  const base = { term: 7, from: 1, to: 2 };
  return [
    {
      type: "vote_request",
      ...base,
      preVote: true,
      transfer: false,
      lastLogIndex: 41,
      lastLogTerm: 6,
    },
    { type: "vote_response", ...base, preVote: false, granted: true },
    {
      type: "append_request",
      ...base,
      prevLogIndex: 10,
      prevLogTerm: 5,
      commit: 9,
      entries: [
        { index: 11, term: 5, type: "normal", data: bytes(256) },
        { index: 12, term: 6, type: "normal", data: new Uint8Array(0) },
        {
          index: 13,
          term: 7,
          type: "conf_change",
          data: new TextEncoder().encode('{"kind":"add_learner"}'),
        },
      ],
    },
    { type: "append_request", ...base, prevLogIndex: 0, prevLogTerm: 0, commit: 0, entries: [] },
    {
      type: "append_response",
      ...base,
      success: false,
      matchIndex: 0,
      hint: { rejectedIndex: 10, lastIndex: 8, conflictTerm: 4, conflictIndex: 6 },
    },
    { type: "append_response", ...base, success: true, matchIndex: 13, hint: null },
    { type: "heartbeat_request", ...base, commit: 13, readContext: "read-17" },
    { type: "heartbeat_response", ...base, readContext: "" },
    {
      type: "snapshot_request",
      ...base,
      snapshot: {
        meta: { index: 100, term: 6, membership: { voters: [1, 2, 3], learners: [4] } },
        data: bytes(70_000, 3),
      },
    },
    { type: "timeout_now", ...base },
  ];
}

function envelope(messages: Message[] = everyMessage()): Envelope {
  return {
    clusterId: "c0ffee00-0000-4000-8000-000000000001",
    from: 1,
    sender: { address: "10.0.0.1", port: 7001 },
    messages,
  };
}

Deno.test("codec round-trips every message type with binary entry and snapshot data", () => {
  const original = envelope();
  const types = new Set(original.messages.map((m) => m.type));
  assert.deepEqual([...types].sort(), [...MESSAGE_TYPES].sort());
  const body = encodeMessages(original);
  assert.ok(body instanceof Uint8Array);
  assert.deepEqual(decodeMessages(body, 2), original);
});

Deno.test("codec round-trips the JSON text form, as a string and as UTF-8 bytes", () => {
  const original = envelope();
  const text = encodeMessagesJson(original);
  assert.deepEqual(decodeMessages(text, 2), original);
  assert.deepEqual(decodeMessages(new TextEncoder().encode(text), 2), original);
});

Deno.test("codec keeps an envelope without cluster id, sender or messages", () => {
  const empty: Envelope = { clusterId: null, from: 2147483647, sender: null, messages: [] };
  assert.deepEqual(decodeMessages(encodeMessages(empty), 5), empty);
});

Deno.test("decoded byte fields are copies that do not alias the request body", () => {
  const body = encodeMessages(envelope()) as Uint8Array;
  const decoded = decodeMessages(body, 2);
  const append = decoded.messages[2];
  assert.ok(append?.type === "append_request");
  const before = append.entries[0]!.data.slice();
  body.fill(0);
  assert.deepEqual(append.entries[0]!.data, before);
});

/** Encode in the JSON text form, let `mutate` spoil the header, then decode. */
function decodeMutated(
  mutate: (h: Record<string, unknown>, m: Record<string, unknown>[]) => void,
): () => Envelope {
  const header = JSON.parse(encodeMessagesJson(envelope())) as Record<string, unknown>;
  mutate(header, header.messages as Record<string, unknown>[]);
  const text = JSON.stringify(header);
  return () => decodeMessages(text, 2);
}

function rejects(fn: () => unknown, message: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof CodecError, `expected CodecError, got ${error}`);
    assert.equal(error.message, message);
    return true;
  });
}

const BAD_FIELDS: [
  string,
  (h: Record<string, unknown>, m: Record<string, unknown>[]) => void,
  string,
][] = [
  [
    "negative term",
    (_h, m) => (m[0]!.term = -1),
    "messages[0].term: expected a non-negative integer",
  ],
  [
    "fractional term",
    (_h, m) => (m[1]!.term = 1.5),
    "messages[1].term: expected a non-negative integer",
  ],
  [
    "term as a string",
    (_h, m) => (m[6]!.term = "7"),
    "messages[6].term: expected a non-negative integer",
  ],
  [
    "unsafe integer",
    (_h, m) => (m[0]!.lastLogIndex = 2 ** 60),
    "messages[0].lastLogIndex: expected a non-negative integer",
  ],
  [
    "missing field",
    (_h, m) => delete m[6]!.commit,
    "messages[6].commit: expected a non-negative integer",
  ],
  ["envelope from 0", (h) => (h.from = 0), "from: expected a node id in 1..2147483647"],
  [
    "node id too large",
    (_h, m) => (m[0]!.to = 2147483648),
    "messages[0].to: expected a node id in 1..2147483647",
  ],
  ["message to another node", (_h, m) => (m[3]!.to = 3), "messages[3].to: is 3 but this is node 2"],
  [
    "message from another node",
    (_h, m) => (m[2]!.from = 4),
    "messages[2].from: is 4 but the request comes from node 1",
  ],
  [
    "unknown message type",
    (_h, m) => (m[9]!.type = "gossip"),
    'messages[9].type: unknown message type "gossip"',
  ],
  [
    "boolean as a number",
    (_h, m) => (m[0]!.preVote = 1),
    "messages[0].preVote: expected a boolean",
  ],
  ["missing boolean", (_h, m) => delete m[1]!.granted, "messages[1].granted: expected a boolean"],
  [
    "entry term 0",
    (_h, m) => ((m[2]!.entries as Record<string, unknown>[])[0]!.term = 0),
    "messages[2].entries[0].term: expected a positive integer",
  ],
  [
    "entry index gap",
    (_h, m) => ((m[2]!.entries as Record<string, unknown>[])[2]!.index = 14),
    "messages[2].entries[2].index: is 14 but entries must be contiguous from prevLogIndex+1 (expected 13)",
  ],
  [
    "first entry not after prevLogIndex",
    (_h, m) => (m[2]!.prevLogIndex = 11),
    "messages[2].entries[0].index: is 11 but entries must be contiguous from prevLogIndex+1 (expected 12)",
  ],
  [
    "entry terms going down",
    (_h, m) => ((m[2]!.entries as Record<string, unknown>[])[2]!.term = 5),
    "messages[2].entries[2].term: 5 is below the previous entry's term 6",
  ],
  [
    "entry term above the message term",
    (_h, m) => (m[2]!.term = 6),
    "messages[2].entries[2].term: 7 is above the message term 6",
  ],
  [
    "prevLogTerm without prevLogIndex",
    (_h, m) => (m[3]!.prevLogTerm = 1),
    "messages[3].prevLogTerm: must be 0 when prevLogIndex is 0",
  ],
  [
    "unknown entry type",
    (_h, m) => ((m[2]!.entries as Record<string, unknown>[])[1]!.type = "noop"),
    'messages[2].entries[1].type: expected "normal" or "conf_change", got "noop"',
  ],
  [
    "entry data not base64",
    (_h, m) => ((m[2]!.entries as Record<string, unknown>[])[0]!.data = "!!notbase64"),
    "messages[2].entries[0].data: invalid base64",
  ],
  [
    "entries not an array",
    (_h, m) => (m[2]!.entries = {}),
    "messages[2].entries: expected an array",
  ],
  [
    "hint with a bad field",
    (_h, m) => ((m[4]!.hint as Record<string, unknown>).conflictTerm = null),
    "messages[4].hint.conflictTerm: expected a non-negative integer",
  ],
  ["hint not an object", (_h, m) => (m[4]!.hint = 3), "messages[4].hint: expected an object"],
  [
    "read context not a string",
    (_h, m) => (m[7]!.readContext = 5),
    "messages[7].readContext: expected a string",
  ],
  [
    "duplicate member in a snapshot",
    (_h, m) => {
      const snapshot = m[8]!.snapshot as { meta: { membership: { learners: number[] } } };
      snapshot.meta.membership.learners = [3];
    },
    "messages[8].snapshot.meta.membership.learners[0]: node 3 is listed twice",
  ],
  [
    "snapshot index 0",
    (_h, m) => ((m[8]!.snapshot as { meta: { index: number } }).meta.index = 0),
    "messages[8].snapshot.meta.index: expected a positive integer",
  ],
  [
    "snapshot without data",
    (_h, m) => delete (m[8]!.snapshot as { data?: string }).data,
    "messages[8].snapshot.data: expected a base64 string",
  ],
  [
    "message not an object",
    (_h, m) => (m[5] = [] as unknown as Record<string, unknown>),
    "messages[5]: expected an object",
  ],
  ["empty cluster id", (h) => (h.clusterId = ""), "clusterId: expected a non-empty string or null"],
  [
    "cluster id too long",
    (h) => (h.clusterId = "x".repeat(129)),
    "clusterId: longer than 128 characters",
  ],
  [
    "sender port 0",
    (h) => ((h.sender as Record<string, unknown>).port = 0),
    "sender.port: expected a port in 1..65535",
  ],
  [
    "sender without address",
    (h) => ((h.sender as Record<string, unknown>).address = ""),
    "sender.address: expected a non-empty string",
  ],
  ["messages not an array", (h) => (h.messages = "all"), "messages: expected an array"],
  ["unknown format version", (h) => (h.v = 2), "v: unsupported format version 2 (expected 1)"],
];

for (const [what, mutate, message] of BAD_FIELDS) {
  Deno.test(`codec rejects ${what} naming the field`, () => {
    rejects(decodeMutated(mutate), message);
  });
}

Deno.test("codec rejects text that is not JSON or not an object", () => {
  assert.throws(
    () => decodeMessages("{nope", 2),
    (e: unknown) => e instanceof CodecError && /^body: not valid JSON/.test(e.message),
  );
  rejects(() => decodeMessages("[1]", 2), "body: expected an object");
  rejects(() => decodeMessages(new Uint8Array([0xff, 0xfe, 0x00]), 2), "body: not valid UTF-8");
});

Deno.test("codec rejects a binary body whose header or data refs lie beyond the body", () => {
  const body = encodeMessages(envelope()) as Uint8Array;
  rejects(() => decodeMessages(body.subarray(0, 6), 2), "body: truncated binary header");
  const bad = body.slice();
  new DataView(bad.buffer).setUint32(4, body.length);
  rejects(
    () => decodeMessages(bad, 2),
    `body: header length ${body.length} exceeds the ${body.length - 8} bytes that follow`,
  );
  // cut the payload short: the snapshot's data (the last blob) no longer fits
  const truncated = body.subarray(0, body.length - 1);
  assert.throws(
    () => decodeMessages(truncated, 2),
    (e: unknown) =>
      e instanceof CodecError &&
      /^messages\[8\]\.snapshot\.data: bytes \d+\.\.\d+ lie beyond the \d+-byte payload$/.test(
        e.message,
      ),
  );
});

Deno.test("codec rejects a binary data ref that is not [offset, length]", () => {
  const body = encodeMessages(envelope([
    {
      type: "append_request",
      term: 1,
      from: 1,
      to: 2,
      prevLogIndex: 0,
      prevLogTerm: 0,
      commit: 0,
      entries: [{ index: 1, term: 1, type: "normal", data: bytes(4) }],
    },
  ])) as Uint8Array;
  const headerLength = new DataView(body.buffer).getUint32(4);
  const header = new TextDecoder().decode(body.subarray(8, 8 + headerLength));
  const spoiled = new TextEncoder().encode(header.replace('"data":[0,4]', '"data":[-1,4]'));
  const out = new Uint8Array(8 + spoiled.length + 4);
  out.set(body.subarray(0, 4));
  new DataView(out.buffer).setUint32(4, spoiled.length);
  out.set(spoiled, 8);
  rejects(
    () => decodeMessages(out, 2),
    "messages[0].entries[0].data[0]: expected a non-negative integer offset",
  );
});

Deno.test("decodeMessages with adopt gives views of the body itself, else of a copy", () => {
  const encoded = encodeMessages({
    clusterId: null,
    from: 1,
    sender: null,
    messages: [{
      type: "append_request",
      term: 1,
      from: 1,
      to: 2,
      prevLogIndex: 0,
      prevLogTerm: 0,
      commit: 0,
      entries: [{ index: 1, term: 1, type: "normal", data: new Uint8Array([1, 2, 3]) }],
    }],
  }) as Uint8Array;
  const entryData = (adopt: boolean) => {
    const m = decodeMessages(encoded, 2, { adopt }).messages[0]!;
    assert.ok(m.type === "append_request");
    return m.entries[0]!.data;
  };
  assert.equal(entryData(true).buffer, encoded.buffer);
  assert.notEqual(entryData(false).buffer, encoded.buffer);
  assert.deepEqual([...entryData(true)], [1, 2, 3]);
});

Deno.test("a leader's members view travels with the envelope, in both forms", () => {
  const view = {
    lastIndex: 42,
    commitIndex: 41,
    members: [
      { id: 1, match: 42, next: 43, state: "leader" as const, lastContactMs: 0 },
      { id: 2, match: 40, next: 43, state: "replicate" as const, lastContactMs: 12 },
      { id: 3, match: 0, next: 1, state: "probe" as const, lastContactMs: null },
    ],
  };
  const envelope: Envelope = { clusterId: "c", from: 1, sender: null, messages: [], view };
  assert.deepEqual(decodeMessages(encodeMessages(envelope), 2).view, view);
  assert.deepEqual(decodeMessages(encodeMessagesJson(envelope), 2).view, view);
  assert.equal(decodeMessages(encodeMessages({ ...envelope, view: undefined }), 2).view, undefined);
});

Deno.test("a members view with a bad field is refused, naming it", () => {
  const good = { lastIndex: 1, commitIndex: 1, members: [] as unknown[] };
  const cases: [unknown, RegExp][] = [
    [{ ...good, lastIndex: -1 }, /view\.lastIndex/],
    [
      { ...good, members: [{ id: 0, match: 1, next: 2, state: "probe", lastContactMs: 1 }] },
      /view\.members\[0\]\.id/,
    ],
    [
      { ...good, members: [{ id: 2, match: 1, next: 2, state: "gone", lastContactMs: 1 }] },
      /view\.members\[0\]\.state/,
    ],
    [
      { ...good, members: [{ id: 2, match: 1, next: 2, state: "probe", lastContactMs: "x" }] },
      /lastContactMs/,
    ],
    [{
      ...good,
      members: Array(1025).fill({ id: 2, match: 1, next: 2, state: "probe", lastContactMs: 1 }),
    }, /more than 1024/],
  ];
  for (const [view, pattern] of cases) {
    const body = JSON.stringify({
      v: 1,
      clusterId: null,
      from: 1,
      sender: null,
      messages: [],
      view,
    });
    assert.throws(
      () => decodeMessages(body, 2),
      (e: unknown) => e instanceof CodecError && pattern.test(e.message),
    );
  }
});
