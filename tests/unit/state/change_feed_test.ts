import assert from "node:assert/strict";
import { type ChangeBatch, StateMachine } from "../../../lib/state/mod.ts";
import { ChangeFeed } from "../../../lib/state/change_feed.ts";
import { Rng } from "../../sim/rng.ts";
import { bytes, ctx, machineWith, randomEntries } from "./helpers.ts";

Deno.test("each entry that changes something is one change, with its kind and key", () => {
  const sm = machineWith([
    { op: "init_cluster", clusterId: "c", clusterName: "n" },
    { kind: "add_voter", nodeId: 1, context: ctx("h", 1) },
    { op: "set_config", name: "x", value: "1" },
    { op: "kv_put", key: "k", value: bytes("v") },
    { op: "kv_delete", key: "k" },
    { op: "kv_delete", key: "never-there" },
    { op: "noop" },
    { op: "set_primary", nodeId: 1, timeline: 1 },
    { op: "member_postgres", nodeId: 1, host: "db", port: 5432 },
    { op: "member_postgres", nodeId: 7, host: "db", port: 5432 },
    { kind: "remove_node", nodeId: 1, context: "" },
    { kind: "remove_node", nodeId: 1, context: "" },
  ]);
  assert.deepEqual(sm.changesSince(0), {
    resync: false,
    changes: [
      { index: 1, kind: "identity" },
      { index: 2, kind: "members" },
      { index: 3, kind: "settings" },
      { index: 4, kind: "kv_put", key: "k" },
      { index: 5, kind: "kv_delete", key: "k" },
      { index: 8, kind: "primary" },
      { index: 9, kind: "members" },
      { index: 11, kind: "members" },
    ],
    next: 12,
  });
  const after8 = sm.changesSince(8);
  assert.deepEqual(!after8.resync && after8.changes, [
    { index: 9, kind: "members" },
    { index: 11, kind: "members" },
  ]);
  assert.deepEqual(sm.changesSince(12), { resync: false, changes: [], next: 12 });
});

Deno.test("a limited batch ends at its last change, and the next call goes on from there", () => {
  const sm = machineWith(
    Array.from(
      { length: 10 },
      (_, i) => ({ op: "kv_put" as const, key: `k${i}`, value: bytes("v") }),
    ),
  );
  const first = sm.changesSince(0, 4);
  assert.equal(first.resync, false);
  assert.deepEqual(!first.resync && first.changes.map((c) => c.index), [1, 2, 3, 4]);
  assert.equal(!first.resync && first.next, 4);
  const rest = sm.changesSince(4, 100);
  assert.deepEqual(!rest.resync && rest.changes.map((c) => c.index), [5, 6, 7, 8, 9, 10]);
  assert.equal(!rest.resync && rest.next, 10);
});

Deno.test("a consumer behind what the ring keeps is told to resync", () => {
  const sm = new StateMachine({ changeFeed: { recordsMax: 3 } });
  machineWith(
    Array.from(
      { length: 5 },
      (_, i) => ({ op: "kv_put" as const, key: `k${i}`, value: bytes("v") }),
    ),
    sm,
  );
  assert.equal(sm.changeFeedFloor, 2);
  assert.deepEqual(sm.changesSince(1), { resync: true, index: 5 });
  const batch = sm.changesSince(2);
  assert.deepEqual(!batch.resync && batch.changes.map((c) => c.key), ["k2", "k3", "k4"]);
});

Deno.test("the ring is bounded by the characters of the keys it holds too", () => {
  const feed = new ChangeFeed(0, { recordsMax: 100, keyCharsMax: 10 });
  feed.push(1, "kv_put", "aaaa");
  feed.push(2, "kv_put", "bbbb");
  feed.push(3, "members");
  feed.push(4, "kv_put", "cccc");
  assert.equal(feed.size, 3);
  assert.equal(feed.floor, 1);
  // A single key longer than the bound still is kept (the newest record always is).
  feed.push(5, "kv_put", "x".repeat(50));
  assert.equal(feed.size, 1);
  assert.equal(feed.floor, 4);
});

Deno.test("a cursor ahead of the state (a restart replaying its log) gets nothing yet", () => {
  const sm = machineWith([{ op: "kv_put", key: "k", value: bytes("v") }]);
  assert.deepEqual(sm.changesSince(7), { resync: false, changes: [], next: 7 });
});

/** What a publisher does: copy from the state what the feed names, resync when told. */
class Mirror {
  kv = new Map<string, string>();
  members = "";
  settings = "";
  cursor = 0;
  resyncs = 0;

  catchUp(sm: StateMachine, batch = 50): void {
    for (;;) {
      const b: ChangeBatch = sm.changesSince(this.cursor, batch);
      if (b.resync) {
        this.resyncs++;
        this.kv = new Map(sm.kvList("", Number.MAX_SAFE_INTEGER).map((p) => [p.key, hex(p.value)]));
        this.members = JSON.stringify(sm.members());
        this.settings = JSON.stringify(sm.settings());
        this.cursor = b.index;
        continue;
      }
      for (const c of b.changes) {
        if (c.kind === "kv_put" || c.kind === "kv_delete") {
          const pair = sm.kvGet(c.key!);
          if (pair) this.kv.set(c.key!, hex(pair.value));
          else this.kv.delete(c.key!);
        } else if (c.kind === "members") this.members = JSON.stringify(sm.members());
        else if (c.kind === "settings") this.settings = JSON.stringify(sm.settings());
      }
      this.cursor = b.next;
      if (b.changes.length < batch) return;
    }
  }
}

function hex(value: Uint8Array): string {
  return Array.from(value, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("a publisher following the feed, often or rarely, ends with a copy equal to the state", () => {
  for (const seed of [1, 2, 3, 4]) {
    const rng = new Rng(seed);
    const sm = new StateMachine({ kvQuotaBytes: 3000, changeFeed: { recordsMax: 64 } });
    const mirror = new Mirror();
    let index = 1;
    for (let round = 0; round < 40; round++) {
      const n = rng.chance(0.2) ? rng.range(100, 300) : rng.range(1, 40);
      for (const e of randomEntries(rng, index, n)) sm.apply(e);
      index += n;
      if (rng.chance(0.7)) mirror.catchUp(sm, rng.range(1, 80));
    }
    mirror.catchUp(sm);
    assert.equal(mirror.cursor, sm.lastApplied);
    const expected = new Map(
      sm.kvList("", Number.MAX_SAFE_INTEGER).map((p) => [p.key, hex(p.value)]),
    );
    assert.deepEqual(mirror.kv, expected, `seed ${seed}`);
    assert.equal(mirror.members, JSON.stringify(sm.members()));
    assert.equal(mirror.settings, JSON.stringify(sm.settings()));
    assert.ok(mirror.resyncs > 0, "the small ring forced at least one resync");
  }
});
