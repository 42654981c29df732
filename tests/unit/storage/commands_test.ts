import assert from "node:assert/strict";
import { type Command, decodeCommand, encodeCommand } from "../../../lib/storage/mod.ts";
import {
  compareCodePoints,
  decodeStateImage,
  parseMemberContext,
  prefixUpperBound,
} from "../../../lib/storage/commands.ts";

const EVERY_KIND: Command[] = [
  { op: "noop" },
  { op: "init_cluster", clusterId: "4f1c2a9e-0000-4000-8000-000000000001", clusterName: "main" },
  {
    op: "conf_change",
    change: { kind: "add_learner", nodeId: 3, context: '{"address":"10.0.0.3","port":7001}' },
  },
  { op: "conf_change", change: { kind: "add_voter", nodeId: 2147483647, context: "" } },
  { op: "conf_change", change: { kind: "remove_node", nodeId: 1, context: "" } },
  { op: "set_config", name: "heartbeat_interval", value: "100ms" },
  { op: "kv_put", key: "users/é/😀", value: new Uint8Array([0, 1, 2, 255]) },
  { op: "kv_put", key: "", value: new Uint8Array() },
  { op: "kv_delete", key: "users/x" },
];

Deno.test("every command kind survives encode then decode unchanged", () => {
  for (const c of EVERY_KIND) {
    assert.deepEqual(decodeCommand(encodeCommand(c)), c);
  }
});

Deno.test("an encoded command is never empty, so it is never mistaken for the leader's no-op", () => {
  for (const c of EVERY_KIND) assert.ok(encodeCommand(c).byteLength > 0, c.op);
});

Deno.test("empty entry data decodes as a no-op", () => {
  assert.deepEqual(decodeCommand(new Uint8Array()), { op: "noop" });
});

Deno.test("a kv_put value decodes into its own buffer, not a view of the entry data", () => {
  const data = encodeCommand({ op: "kv_put", key: "k", value: new Uint8Array([7, 8]) });
  const c = decodeCommand(data);
  data.fill(0);
  assert.deepEqual(c, { op: "kv_put", key: "k", value: new Uint8Array([7, 8]) });
});

Deno.test("decoding works on a subarray with a byte offset", () => {
  const inner = encodeCommand({ op: "set_config", name: "a", value: "b" });
  const outer = new Uint8Array(inner.length + 5);
  outer.set(inner, 3);
  assert.deepEqual(decodeCommand(outer.subarray(3, 3 + inner.length)), {
    op: "set_config",
    name: "a",
    value: "b",
  });
});

Deno.test("bad command data is a TypeError that says what is wrong", () => {
  const put = encodeCommand({ op: "kv_put", key: "key", value: new Uint8Array([1, 2, 3]) });
  assert.throws(() => decodeCommand(new Uint8Array([99])), /unknown tag 99/);
  assert.throws(() => decodeCommand(put.subarray(0, put.length - 1)), /value is truncated/);
  assert.throws(() => decodeCommand(new Uint8Array([6, 0, 0])), /truncated before the length/);
  const trailing = new Uint8Array(put.length + 2);
  trailing.set(put);
  assert.throws(() => decodeCommand(trailing), /2 unexpected trailing bytes/);
  assert.throws(
    () => decodeCommand(new Uint8Array([6, 0, 0, 0, 2, 0xc3, 0x28])),
    /not valid UTF-8/,
  );
  const notJson = new Uint8Array([3, 0, 0, 0, 1, 0x7b]);
  assert.throws(() => decodeCommand(notJson), /conf change is not JSON/);
  const badKind = new TextEncoder().encode('{"kind":"explode","nodeId":1,"context":""}');
  const badKindData = new Uint8Array(5 + badKind.length);
  badKindData[0] = 3;
  new DataView(badKindData.buffer).setUint32(1, badKind.length);
  badKindData.set(badKind, 5);
  assert.throws(() => decodeCommand(badKindData), /unknown kind "explode"/);
  for (const bad of [[99], [6, 0, 0], [3, 0, 0, 0, 1, 0x7b]]) {
    assert.throws(() => decodeCommand(new Uint8Array(bad)), TypeError);
  }
});

Deno.test("encoding rejects a malformed command with a TypeError", () => {
  assert.throws(() => encodeCommand({ op: "bogus" } as unknown as Command), /unknown command op/);
  assert.throws(
    () => encodeCommand({ op: "kv_put", key: "k", value: "text" } as unknown as Command),
    /value must be bytes/,
  );
  assert.throws(
    () =>
      encodeCommand({
        op: "conf_change",
        change: { kind: "add_voter", nodeId: 0, context: "" },
      }),
    /invalid nodeId 0/,
  );
});

Deno.test("a conf change context gives address and port, or nothing for a promotion", () => {
  assert.deepEqual(parseMemberContext('{"address":"h","port":5}'), { address: "h", port: 5 });
  assert.equal(parseMemberContext(""), null);
  assert.equal(parseMemberContext("{not json"), null);
  assert.equal(parseMemberContext('{"address":"h"}'), null);
});

Deno.test("code point order matches PostgreSQL's C collation, astral characters last", () => {
  const keys = ["b", "a", "\u{1F600}", "\uFFFD", "é", "", "aa"];
  assert.deepEqual(keys.sort(compareCodePoints), ["", "a", "aa", "b", "é", "\uFFFD", "\u{1F600}"]);
});

Deno.test("the prefix upper bound is the next string after every key with that prefix", () => {
  assert.equal(prefixUpperBound(""), null);
  assert.equal(prefixUpperBound("ab"), "ac");
  assert.equal(prefixUpperBound("a\u{10FFFF}"), "b");
  assert.equal(prefixUpperBound("\u{D7FF}"), "\u{E000}");
  assert.equal(prefixUpperBound("\u{10FFFF}"), null);
});

Deno.test("snapshot data that is not a state image is a TypeError", () => {
  const enc = new TextEncoder();
  assert.throws(() => decodeStateImage(enc.encode("nope")), /not UTF-8 JSON/);
  assert.throws(() => decodeStateImage(enc.encode('{"version":2}')), /not a pgraft state image/);
  const badMember = {
    version: 1,
    lastApplied: 1,
    clusterId: null,
    clusterName: null,
    members: [{ nodeId: "x" }],
    settings: [],
    kv: [],
  };
  assert.throws(() => decodeStateImage(enc.encode(JSON.stringify(badMember))), /bad member/);
});
