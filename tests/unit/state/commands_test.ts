import assert from "node:assert/strict";
import {
  type Command,
  compareCodePoints,
  decodeCommand,
  encodeCommand,
  prefixUpperBound,
} from "../../../lib/state/mod.ts";
import { Rng } from "../../sim/rng.ts";
import { KEY_ALPHABET, randomKey } from "./helpers.ts";

const EVERY_KIND: Command[] = [
  { op: "noop" },
  { op: "init_cluster", clusterId: "4f1c2a9e-0000-4000-8000-000000000001", clusterName: "main" },
  { op: "set_config", name: "heartbeat_interval", value: "100ms" },
  { op: "kv_put", key: "users/é/😀", value: new Uint8Array([0, 1, 2, 255]) },
  { op: "kv_put", key: "", value: new Uint8Array() },
  { op: "kv_delete", key: "users/x" },
  { op: "set_primary", nodeId: 3, timeline: 7 },
  { op: "set_primary", nodeId: 0, timeline: 0xffff_ffff },
  { op: "member_postgres", nodeId: 2147483647, host: "db-2.example", port: 5432 },
  { op: "postgres_system", systemIdentifier: "7324870912345678901" },
  { op: "postgres_system", systemIdentifier: "18446744073709551615" },
];

Deno.test("every command kind survives encode then decode unchanged", () => {
  for (const c of EVERY_KIND) assert.deepEqual(decodeCommand(encodeCommand(c)), c);
});

Deno.test("an encoded command is never empty, so it is never mistaken for the leader's no-op", () => {
  for (const c of EVERY_KIND) assert.ok(encodeCommand(c).byteLength > 0, c.op);
});

Deno.test("empty entry data decodes as a no-op", () => {
  assert.deepEqual(decodeCommand(new Uint8Array()), { op: "noop" });
});

Deno.test("the commands lib/storage knew keep their bytes: tag, then length-prefixed fields", () => {
  assert.deepEqual(encodeCommand({ op: "noop" }), new Uint8Array([1]));
  assert.deepEqual(
    encodeCommand({ op: "init_cluster", clusterId: "i", clusterName: "n" }),
    new Uint8Array([2, 0, 0, 0, 1, 0x69, 0, 0, 0, 1, 0x6e]),
  );
  assert.deepEqual(
    encodeCommand({ op: "set_config", name: "a", value: "" }),
    new Uint8Array([4, 0, 0, 0, 1, 0x61, 0, 0, 0, 0]),
  );
  assert.deepEqual(
    encodeCommand({ op: "kv_put", key: "k", value: new Uint8Array([1, 2]) }),
    new Uint8Array([5, 0, 0, 0, 1, 0x6b, 0, 0, 0, 2, 1, 2]),
  );
  assert.deepEqual(
    encodeCommand({ op: "kv_delete", key: "é" }),
    new Uint8Array([6, 0, 0, 0, 2, 0xc3, 0xa9]),
  );
});

Deno.test("the integer fields of the new commands are fixed 4-byte big-endian fields", () => {
  assert.deepEqual(
    encodeCommand({ op: "set_primary", nodeId: 258, timeline: 1 }),
    new Uint8Array([7, 0, 0, 1, 2, 0, 0, 0, 1]),
  );
  assert.deepEqual(
    encodeCommand({ op: "member_postgres", nodeId: 1, host: "h", port: 5432 }),
    new Uint8Array([8, 0, 0, 0, 1, 0, 0, 0, 1, 0x68, 0, 0, 0x15, 0x38]),
  );
});

Deno.test("a kv_put value decodes into its own buffer, not a view of the entry data", () => {
  const data = encodeCommand({ op: "kv_put", key: "k", value: new Uint8Array([7, 8]) });
  const c = decodeCommand(data);
  data.fill(0);
  assert.deepEqual(c, { op: "kv_put", key: "k", value: new Uint8Array([7, 8]) });
});

Deno.test("decoding works on a subarray with a byte offset", () => {
  const inner = encodeCommand({ op: "member_postgres", nodeId: 4, host: "a", port: 1 });
  const outer = new Uint8Array(inner.length + 5);
  outer.set(inner, 3);
  assert.deepEqual(decodeCommand(outer.subarray(3, 3 + inner.length)), {
    op: "member_postgres",
    nodeId: 4,
    host: "a",
    port: 1,
  });
});

Deno.test("bad command data is a TypeError that says what is wrong", () => {
  const put = encodeCommand({ op: "kv_put", key: "key", value: new Uint8Array([1, 2, 3]) });
  const primary = encodeCommand({ op: "set_primary", nodeId: 1, timeline: 1 });
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array([99]), /unknown tag 99/],
    [new Uint8Array([3, 0, 0, 0, 0]), /tag 3 \(conf_change\) belongs in a conf_change entry/],
    [put.subarray(0, put.length - 1), /value is truncated/],
    [put.subarray(0, 3), /truncated before the length of key/],
    [new Uint8Array([...put, 0]), /1 unexpected trailing bytes/],
    [new Uint8Array([6, 0, 0, 0, 1, 0xff]), /key is not valid UTF-8/],
    [primary.subarray(0, 7), /timeline is truncated/],
    [new Uint8Array([7, 0x80, 0, 0, 0, 0, 0, 0, 1]), /set_primary nodeId 2147483648 is not in/],
    [new Uint8Array([7, 0, 0, 0, 1, 0, 0, 0, 0]), /set_primary timeline 0 is not in 1\.\./],
    [new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), /member_postgres nodeId 0/],
    [new Uint8Array([8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]), /member_postgres port 65536/],
    [new Uint8Array([9, 0, 0, 0, 2, 0x30, 0x31]), /postgres_system "01" is not a decimal u64/],
    [new Uint8Array([9, 0, 0, 0, 0]), /postgres_system "" is not a decimal u64/],
  ];
  for (const [data, message] of cases) {
    assert.throws(
      () => decodeCommand(data),
      (e) => e instanceof TypeError && message.test(e.message),
    );
  }
  assert.throws(() => decodeCommand("x" as unknown as Uint8Array), TypeError);
});

Deno.test("encoding refuses fields of the wrong type or out of range", () => {
  const bad = [
    { op: "kv_put", key: "k", value: "v" },
    { op: "kv_delete", key: 1 },
    { op: "init_cluster", clusterId: null, clusterName: "x" },
    { op: "set_primary", nodeId: -1, timeline: 1 },
    { op: "set_primary", nodeId: 1, timeline: 0 },
    { op: "set_primary", nodeId: 1.5, timeline: 1 },
    { op: "member_postgres", nodeId: 0, host: "h", port: 5432 },
    { op: "member_postgres", nodeId: 1, host: "h", port: 0 },
    { op: "member_postgres", nodeId: 1, host: 7, port: 5432 },
    { op: "postgres_system", systemIdentifier: "-1" },
    { op: "postgres_system", systemIdentifier: 7 },
    { op: "conf_change" },
  ] as unknown as Command[];
  for (const c of bad) assert.throws(() => encodeCommand(c), TypeError, JSON.stringify(c));
});

/** The UTF-8 bytes of `s` compared bytewise: the reference order. */
function compareUtf8(a: string, b: string): number {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

Deno.test("code point order is the UTF-8 byte order, astral characters included", () => {
  const rng = new Rng(11);
  for (let i = 0; i < 5000; i++) {
    const a = randomKey(rng, 5);
    const b = randomKey(rng, 5);
    assert.equal(Math.sign(compareCodePoints(a, b)), Math.sign(compareUtf8(a, b)), `${a} ${b}`);
  }
  // UTF-16 order disagrees here: U+FF5E is a higher unit than the surrogate of U+1F600.
  assert.ok(compareCodePoints("\uff5e", "\u{1f600}") < 0);
  assert.ok("\uff5e" > "\u{1f600}");
});

Deno.test("the prefix upper bound is the least string above every string with that prefix", () => {
  assert.equal(prefixUpperBound(""), null);
  assert.equal(prefixUpperBound("\u{10ffff}"), null);
  assert.equal(prefixUpperBound("ab"), "ac");
  assert.equal(prefixUpperBound("a\u{10ffff}"), "b");
  assert.equal(prefixUpperBound("\ud7ff"), "\ue000");
  const rng = new Rng(5);
  for (let i = 0; i < 2000; i++) {
    const prefix = randomKey(rng, 2);
    const key = randomKey(rng, 4);
    const bound = prefixUpperBound(prefix);
    const inRange = compareCodePoints(key, prefix) >= 0 &&
      (bound === null || compareCodePoints(key, bound) < 0);
    assert.equal(inRange, key.startsWith(prefix), `${prefix} ${key}`);
  }
  assert.ok(KEY_ALPHABET.length > 10);
});
