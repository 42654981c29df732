import assert from "node:assert/strict";
import { type ApplyResult, STATE_IMAGE_VERSION, StateMachine } from "../../../lib/state/mod.ts";
import { crc32c } from "../../../lib/crc32c.ts";
import { Rng } from "../../sim/rng.ts";
import { bytes, ctx, machineWith, randomEntries } from "./helpers.ts";

/** Everything a machine exposes, for deep comparison. */
function view(sm: StateMachine) {
  return {
    lastApplied: sm.lastApplied,
    clusterId: sm.clusterId,
    clusterName: sm.clusterName,
    members: sm.members(),
    settings: sm.settings(),
    primary: sm.primary(),
    postgresSystem: sm.postgresSystem,
    kv: sm.kvList("", Number.MAX_SAFE_INTEGER),
    kvBytes: sm.kvBytes,
    kvCount: sm.kvCount,
    kvQuotaBytes: sm.kvQuotaBytes,
  };
}

function sample(): StateMachine {
  return machineWith([
    { kind: "add_voter", nodeId: 1, context: ctx("10.0.0.1", 7001) },
    { op: "init_cluster", clusterId: "4f1c2a9e-0000-4000-8000-000000000001", clusterName: "main" },
    { kind: "add_learner", nodeId: 2, context: ctx("10.0.0.2", 7002) },
    { op: "member_postgres", nodeId: 2, host: "db-2", port: 5433 },
    { op: "set_config", name: "heartbeat_interval", value: "50ms" },
    { op: "set_config", name: "kv_quota", value: "5000" },
    { op: "set_primary", nodeId: 1, timeline: 3 },
    { op: "postgres_system", systemIdentifier: "7324870912345678901" },
    { op: "kv_put", key: "a/é", value: bytes("x") },
    { op: "kv_put", key: "a/\u{1f600}", value: new Uint8Array(300) },
    { op: "kv_put", key: "b", value: new Uint8Array() },
  ]);
}

Deno.test("snapshot then restore gives an identical state, and an identical snapshot", () => {
  const sm = sample();
  const image = sm.snapshot();
  const restored = StateMachine.restore(image);
  assert.deepEqual(view(restored), view(sm));
  assert.deepEqual(restored.snapshot(), image);
  restored.checkInvariants();
});

Deno.test("an empty machine's image is 35 bytes and restores to an empty machine", () => {
  const image = new StateMachine().snapshot();
  assert.equal(image.length, 16 + 1 + 1 + 1 + 4 + 4 + 4 + 4);
  assert.deepEqual([...image.subarray(0, 6)], [0x50, 0x47, 0x52, 0x53, 0, STATE_IMAGE_VERSION]);
  assert.deepEqual(view(StateMachine.restore(image)), view(new StateMachine()));
});

Deno.test("the image is compact: per key 14 bytes beyond the key and value", () => {
  const sm = new StateMachine();
  const base = sm.snapshot().length;
  machineWith([{ op: "kv_put", key: "key", value: new Uint8Array(100) }], sm);
  assert.equal(sm.snapshot().length - base, 14 + 3 + 100);
});

Deno.test("a restored machine behaves as the original on random entries after it", () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const rng = new Rng(seed);
    const options = { kvQuotaBytes: 2000 };
    const original = new StateMachine(options);
    for (const e of randomEntries(rng, 1, 300)) original.apply(e);
    const restored = StateMachine.restore(original.snapshot(), options);
    assert.deepEqual(view(restored), view(original), `seed ${seed}`);
    const results: [ApplyResult[], ApplyResult[]] = [[], []];
    for (const e of randomEntries(rng, 301, 300)) {
      results[0].push(original.apply(e));
      results[1].push(restored.apply(e));
    }
    assert.deepEqual(results[1], results[0], `seed ${seed}`);
    assert.deepEqual(restored.snapshot(), original.snapshot(), `seed ${seed}`);
    restored.checkInvariants();
    original.checkInvariants();
  }
});

/** An image with the bytes from `at` replaced and its checksum fixed, to reach the field checks. */
function patched(image: Uint8Array, at: number, replacement: number[]): Uint8Array {
  const out = image.slice();
  out.set(replacement, at);
  const end = out.length - 4;
  new DataView(out.buffer).setUint32(end, crc32c(out.subarray(0, end)));
  return out;
}

Deno.test("restore refuses corrupt data with a TypeError that names the problem", () => {
  const image = sample().snapshot();
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(), /only 0 bytes/],
    [image.subarray(0, 10), /only 10 bytes/],
    [patched(image, 0, [0x58]), /bad magic/],
    [patched(image, 4, [0, 3]), /unsupported version 3/],
    [patched(image, 4, [0, 0]), /unsupported version 0/],
    [image.subarray(0, image.length - 1), /checksum mismatch/],
    [
      (() => {
        const flipped = image.slice();
        flipped[image.length - 20]! ^= 1;
        return flipped;
      })(),
      /checksum mismatch/,
    ],
    [patched(image, 6, [0, 1]), /unknown flags/],
    [patched(image, 16, [2]), /identity flag 2/],
    [patched(image, 8, [0, 0, 0, 0, 0, 0, 0, 2]), /is not in 1\.\.2/],
    [patched(image, 8, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2]), /beyond 2\^53/],
  ];
  for (const [data, message] of cases) {
    assert.throws(
      () => StateMachine.restore(data),
      (e) =>
        e instanceof TypeError && /^bad state image: /.test(e.message) && message.test(e.message),
      String(message),
    );
  }
  assert.throws(() => StateMachine.restore("x" as unknown as Uint8Array), TypeError);
});

Deno.test("restore refuses keys out of order, invalid keys and trailing bytes", () => {
  const two = machineWith([
    { op: "kv_put", key: "a", value: new Uint8Array() },
    { op: "kv_put", key: "b", value: new Uint8Array() },
  ]).snapshot();
  // The key section is the last: "a" (u16 1, 0x61, u32 0, u64 1) then "b"; swap the key bytes.
  const bAt = two.length - 4 - 15 + 2;
  const aAt = bAt - 15;
  assert.equal(two[aAt], 0x61);
  assert.equal(two[bAt], 0x62);
  assert.throws(() => StateMachine.restore(patched(two, aAt, [0x62])), /"b" is out of order/);
  assert.throws(() => StateMachine.restore(patched(two, aAt, [0])), /key #0: invalid key: .*NUL/);
  assert.throws(() => StateMachine.restore(patched(two, aAt, [0xff])), /key #0 is not valid UTF-8/);
  // Revision 0 of "b".
  assert.throws(
    () => StateMachine.restore(patched(two, bAt + 5, [0, 0, 0, 0, 0, 0, 0, 0])),
    /revision 0 is not in 1\.\.2/,
  );
  // One more byte before the trailer.
  const longer = new Uint8Array(two.length + 1);
  longer.set(two.subarray(0, two.length - 4));
  assert.throws(() => StateMachine.restore(patched(longer, 0, [])), /1 unexpected bytes/);
  // A key count larger than the keys present.
  const countAt = aAt - 2 - 4;
  assert.throws(() => StateMachine.restore(patched(two, countAt, [0, 0, 0, 3])), /truncated/);
});

Deno.test("a restored machine's feed starts at the snapshot: an older cursor must resync", () => {
  const sm = sample();
  const restored = StateMachine.restore(sm.snapshot());
  assert.deepEqual(restored.changesSince(0), { resync: true, index: sm.lastApplied });
  assert.deepEqual(restored.changesSince(sm.lastApplied), {
    resync: false,
    changes: [],
    next: sm.lastApplied,
  });
});

Deno.test("restore keeps the quota the kv_quota setting gives", () => {
  const restored = StateMachine.restore(sample().snapshot(), { kvQuotaBytes: 10 });
  assert.equal(restored.kvQuotaBytes, 5000);
});

Deno.test("MiB values and many keys survive snapshot and restore", () => {
  const sm = new StateMachine();
  const big = new Uint8Array(1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
  const items = [];
  for (let i = 0; i < 5; i++) items.push({ op: "kv_put" as const, key: `big/${i}`, value: big });
  for (let i = 0; i < 5000; i++) {
    items.push({ op: "kv_put" as const, key: `small/${i}`, value: bytes(`v${i}`) });
  }
  machineWith(items, sm);
  const restored = StateMachine.restore(sm.snapshot());
  assert.deepEqual(restored.kvGet("big/3")?.value, big);
  assert.equal(restored.kvCount, 5005);
  assert.equal(restored.kvBytes, sm.kvBytes);
  assert.deepEqual(restored.kvList("small/4999", 1)[0]?.value, bytes("v4999"));
  restored.checkInvariants();
});

Deno.test("a version 1 image (before the PostgreSQL system was recorded) is still read", () => {
  // An empty machine's version 2 image without its system byte, as version 1 wrote it.
  const v2 = new StateMachine().snapshot();
  const body = new Uint8Array([...v2.subarray(0, 18), ...v2.subarray(19, v2.length - 4)]);
  body[5] = 1;
  const v1 = new Uint8Array(body.length + 4);
  v1.set(body);
  new DataView(v1.buffer).setUint32(body.length, crc32c(body));
  const restored = StateMachine.restore(v1);
  assert.equal(restored.postgresSystem, null);
  assert.deepEqual(view(restored), view(new StateMachine()));
});
