import assert from "node:assert/strict";
import { AssertionError } from "../../../lib/assert.ts";
import { KV_QUOTA_BYTES_DEFAULT, StateMachine } from "../../../lib/state/mod.ts";
import { bytes, conf, ctx, machineWith, normal } from "./helpers.ts";

Deno.test("a new machine is empty: nothing applied, no identity, members, settings or keys", () => {
  const sm = new StateMachine();
  assert.equal(sm.lastApplied, 0);
  assert.equal(sm.clusterId, null);
  assert.equal(sm.clusterName, null);
  assert.deepEqual(sm.members(), []);
  assert.deepEqual(sm.settings(), {});
  assert.equal(sm.primary(), null);
  assert.deepEqual([sm.kvCount, sm.kvBytes], [0, 0]);
  assert.equal(sm.kvQuotaBytes, KV_QUOTA_BYTES_DEFAULT);
});

Deno.test("each entry is applied once, in order: a repeat or a gap is a bug", () => {
  const sm = new StateMachine();
  sm.apply(normal(1, { op: "noop" }));
  assert.throws(() => sm.apply(normal(1, { op: "noop" })), AssertionError);
  assert.throws(() => sm.apply(normal(0, { op: "noop" })), AssertionError);
  assert.throws(() => sm.apply(normal(3, { op: "noop" })), /entry 3 after 1/);
  assert.equal(sm.lastApplied, 1);
});

Deno.test("an entry whose data does not decode is a bug, and leaves lastApplied alone", () => {
  const sm = new StateMachine();
  const bad = { index: 1, term: 1, type: "normal" as const, data: new Uint8Array([99]) };
  assert.throws(
    () => sm.apply(bad),
    (e) => e instanceof AssertionError && /unknown tag/.test(e.message),
  );
  const badConf = { index: 1, term: 1, type: "conf_change" as const, data: bytes("{") };
  assert.throws(() => sm.apply(badConf), AssertionError);
  assert.equal(sm.lastApplied, 0);
});

Deno.test("the leader's no-op (empty data) and the noop command change nothing but lastApplied", () => {
  const sm = new StateMachine();
  const empty = { index: 1, term: 2, type: "normal" as const, data: new Uint8Array() };
  assert.deepEqual(sm.apply(empty), { index: 1, op: "noop", ok: true });
  assert.deepEqual(sm.apply(normal(2, { op: "noop" })), { index: 2, op: "noop", ok: true });
  assert.equal(sm.lastApplied, 2);
  assert.deepEqual(sm.changesSince(0), { resync: false, changes: [], next: 2 });
});

Deno.test("init_cluster sets the identity once; another id is refused, the same id renames", () => {
  const sm = machineWith([{ op: "init_cluster", clusterId: "c-1", clusterName: "main" }]);
  assert.deepEqual([sm.clusterId, sm.clusterName], ["c-1", "main"]);
  const other = sm.apply(normal(2, { op: "init_cluster", clusterId: "c-2", clusterName: "x" }));
  assert.equal(other.ok, false);
  assert.equal(!other.ok && other.code, "already_initialized");
  assert.deepEqual([sm.clusterId, sm.clusterName], ["c-1", "main"]);
  assert.equal(
    sm.apply(normal(3, { op: "init_cluster", clusterId: "c-1", clusterName: "m2" })).ok,
    true,
  );
  assert.equal(sm.clusterName, "m2");
});

Deno.test("set_config records a setting as given; a later one replaces it", () => {
  const sm = machineWith([
    { op: "set_config", name: "heartbeat_interval", value: "100ms" },
    { op: "set_config", name: "election_timeout", value: "1s" },
    { op: "set_config", name: "heartbeat_interval", value: "50ms" },
    { op: "set_config", name: "__proto__", value: "x" },
  ]);
  assert.deepEqual(Object.entries(sm.settings()), [
    ["__proto__", "x"],
    ["election_timeout", "1s"],
    ["heartbeat_interval", "50ms"],
  ]);
  assert.equal(sm.setting("heartbeat_interval"), "50ms");
  assert.equal(sm.setting("missing"), undefined);
});

Deno.test("kv_put stores the value with the entry index as revision; kv_delete removes it", () => {
  const sm = new StateMachine();
  assert.deepEqual(sm.apply(normal(1, { op: "kv_put", key: "a", value: bytes("one") })), {
    index: 1,
    op: "kv_put",
    ok: true,
    revision: 1,
    existed: false,
  });
  assert.deepEqual(sm.apply(normal(2, { op: "kv_put", key: "a", value: bytes("two") })), {
    index: 2,
    op: "kv_put",
    ok: true,
    revision: 2,
    existed: true,
  });
  assert.deepEqual(sm.kvGet("a"), { key: "a", value: bytes("two"), revision: 2 });
  assert.deepEqual([sm.kvCount, sm.kvBytes], [1, 4]);
  assert.deepEqual(sm.apply(normal(3, { op: "kv_delete", key: "a" })), {
    index: 3,
    op: "kv_delete",
    ok: true,
    revision: 3,
    existed: true,
  });
  const again = sm.apply(normal(4, { op: "kv_delete", key: "a" }));
  assert.equal(again.ok && again.existed, false);
  assert.equal(sm.kvGet("a"), null);
  assert.deepEqual([sm.kvCount, sm.kvBytes], [0, 0]);
});

Deno.test("values handed out are copies: changing them changes nothing stored", () => {
  const sm = machineWith([{ op: "kv_put", key: "k", value: bytes("abc") }]);
  sm.kvGet("k")!.value.fill(0);
  sm.kvList("", 10)[0]!.value.fill(0);
  assert.deepEqual(sm.kvGet("k")!.value, bytes("abc"));
});

Deno.test("a kv_put breaking the key or value rules is refused at apply and changes nothing", () => {
  const sm = new StateMachine();
  const cases = [
    [{ op: "kv_put" as const, key: "", value: bytes("v") }, "invalid_key"],
    [{ op: "kv_put" as const, key: "a\0", value: bytes("v") }, "invalid_key"],
    [{ op: "kv_put" as const, key: "x".repeat(1025), value: bytes("v") }, "invalid_key"],
    [
      { op: "kv_put" as const, key: "k", value: new Uint8Array(1024 * 1024 + 1) },
      "value_too_large",
    ],
  ] as const;
  for (const [command, code] of cases) {
    const result = sm.apply(normal(sm.lastApplied + 1, command));
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.code, code);
  }
  assert.deepEqual([sm.kvCount, sm.kvBytes, sm.lastApplied], [0, 0, 4]);
  assert.deepEqual(sm.changesSince(0), { resync: false, changes: [], next: 4 });
});

Deno.test("conf changes add learners and voters with their address, and remove members", () => {
  const sm = machineWith([
    { kind: "add_voter", nodeId: 1, context: ctx("10.0.0.1", 7001) },
    { kind: "add_learner", nodeId: 3, context: ctx("10.0.0.3", 7003) },
  ]);
  assert.deepEqual(sm.members(), [
    {
      nodeId: 1,
      address: "10.0.0.1",
      port: 7001,
      isVoter: true,
      pgHost: null,
      pgPort: null,
      addedIndex: 1,
    },
    {
      nodeId: 3,
      address: "10.0.0.3",
      port: 7003,
      isVoter: false,
      pgHost: null,
      pgPort: null,
      addedIndex: 2,
    },
  ]);
  // A promotion with an empty context keeps the address and the index it was added at.
  const result = sm.apply(conf(3, { kind: "add_voter", nodeId: 3, context: "" }));
  assert.deepEqual(result, { index: 3, op: "conf_change", ok: true });
  assert.deepEqual(sm.member(3), {
    nodeId: 3,
    address: "10.0.0.3",
    port: 7003,
    isVoter: true,
    pgHost: null,
    pgPort: null,
    addedIndex: 2,
  });
  sm.apply(conf(4, { kind: "remove_node", nodeId: 1, context: "" }));
  assert.deepEqual(sm.members().map((m) => m.nodeId), [3]);
  assert.equal(sm.member(1), null);
});

Deno.test("a committed conf change with a malformed context is applied, keeping what was known", () => {
  const sm = machineWith([
    { kind: "add_learner", nodeId: 2, context: ctx("h2", 7002) },
    { kind: "add_voter", nodeId: 2, context: '{"address":"bad host","port":1}' },
    { kind: "add_voter", nodeId: 5, context: "not json" },
  ]);
  assert.deepEqual(
    sm.members().map((m) => [m.nodeId, m.address, m.port, m.isVoter]),
    [[2, "h2", 7002, true], [5, "", 0, true]],
  );
});

Deno.test("member_postgres records a member's PostgreSQL address; a non-member is refused", () => {
  const sm = machineWith([{ kind: "add_voter", nodeId: 1, context: ctx("h1", 7001) }]);
  const ok = sm.apply(normal(2, { op: "member_postgres", nodeId: 1, host: "db1", port: 5432 }));
  assert.deepEqual(ok, { index: 2, op: "member_postgres", ok: true });
  assert.deepEqual([sm.member(1)?.pgHost, sm.member(1)?.pgPort], ["db1", 5432]);
  const unknown = sm.apply(normal(3, { op: "member_postgres", nodeId: 9, host: "x", port: 1 }));
  assert.equal(!unknown.ok && unknown.code, "unknown_member");
  assert.equal(sm.member(9), null);
  // A promotion keeps it; removal forgets it, and a re-added node starts without one.
  sm.apply(conf(4, { kind: "add_voter", nodeId: 1, context: "" }));
  assert.equal(sm.member(1)?.pgHost, "db1");
  sm.apply(conf(5, { kind: "remove_node", nodeId: 1, context: "" }));
  sm.apply(conf(6, { kind: "add_learner", nodeId: 1, context: ctx("h1", 7001) }));
  assert.deepEqual([sm.member(1)?.pgHost, sm.member(1)?.pgPort, sm.member(1)?.addedIndex], [
    null,
    null,
    6,
  ]);
});

Deno.test("set_primary records the primary, its timeline and the index that set it", () => {
  const sm = machineWith([{ op: "set_primary", nodeId: 2, timeline: 1 }]);
  assert.deepEqual(sm.primary(), { nodeId: 2, timeline: 1, index: 1 });
  sm.apply(normal(2, { op: "set_primary", nodeId: 0, timeline: 2 }));
  assert.deepEqual(sm.primary(), { nodeId: 0, timeline: 2, index: 2 });
});

Deno.test("postgres_system records the database system once; another one is refused", () => {
  const sm = machineWith([{ op: "postgres_system", systemIdentifier: "7324870912345678901" }]);
  assert.equal(sm.postgresSystem, "7324870912345678901");
  const again = sm.apply(
    normal(2, { op: "postgres_system", systemIdentifier: "7324870912345678901" }),
  );
  assert.equal(again.ok, true);
  const other = sm.apply(normal(3, { op: "postgres_system", systemIdentifier: "42" }));
  assert.equal(other.ok, false);
  assert.equal(!other.ok && other.code, "postgres_system_recorded");
  assert.equal(sm.postgresSystem, "7324870912345678901");
});

Deno.test("a kv_put beyond the quota is refused and changes nothing", () => {
  const sm = new StateMachine({ kvQuotaBytes: 100 });
  assert.equal(sm.apply(normal(1, { op: "kv_put", key: "a", value: new Uint8Array(59) })).ok, true);
  const result = sm.apply(normal(2, { op: "kv_put", key: "b", value: new Uint8Array(40) }));
  assert.deepEqual(result, {
    index: 2,
    op: "kv_put",
    ok: false,
    code: "quota_exceeded",
    problem: {
      status: 507,
      sqlstate: "53400",
      message:
        "key-value quota exceeded: the write would bring the store to 101 bytes, over the quota of 100 bytes",
      hint: "Delete keys that are no longer needed, or raise the cluster setting kv_quota.",
    },
  });
  assert.deepEqual([sm.kvCount, sm.kvBytes, sm.lastApplied], [1, 60, 2]);
  assert.equal(sm.kvGet("b"), null);
  assert.equal(sm.kvPutProblem("b", 40)?.status, 507);
  assert.equal(sm.kvPutProblem("b", 39), null);
  // Up to the quota exactly is fine.
  assert.equal(sm.apply(normal(3, { op: "kv_put", key: "b", value: new Uint8Array(39) })).ok, true);
  assert.equal(sm.kvBytes, 100);
});

Deno.test("over the quota, a put that shrinks or keeps the size and any delete are allowed", () => {
  const sm = machineWith([
    { op: "kv_put", key: "a", value: new Uint8Array(500) },
    { op: "kv_put", key: "b", value: new Uint8Array(500) },
    { op: "set_config", name: "kv_quota", value: "100" },
  ]);
  assert.equal(sm.kvQuotaBytes, 100);
  const grow = sm.apply(normal(4, { op: "kv_put", key: "a", value: new Uint8Array(501) }));
  assert.equal(!grow.ok && grow.code, "quota_exceeded");
  assert.equal(
    sm.apply(normal(5, { op: "kv_put", key: "a", value: new Uint8Array(500) })).ok,
    true,
  );
  assert.equal(sm.apply(normal(6, { op: "kv_put", key: "a", value: new Uint8Array(10) })).ok, true);
  assert.equal(sm.apply(normal(7, { op: "kv_delete", key: "b" })).ok, true);
  assert.equal(sm.kvBytes, 11);
  const newKey = sm.apply(normal(8, { op: "kv_put", key: "c", value: new Uint8Array(100) }));
  assert.equal(newKey.ok, false);
});

Deno.test("the kv_quota setting changes the quota; a value that is not bytes falls back to the default", () => {
  const sm = new StateMachine({ kvQuotaBytes: 1000 });
  machineWith([{ op: "set_config", name: "kv_quota", value: "10" }], sm);
  assert.equal(sm.kvQuotaBytes, 10);
  assert.equal(
    sm.apply(normal(2, { op: "kv_put", key: "k", value: new Uint8Array(10) })).ok,
    false,
  );
  machineWith([{ op: "set_config", name: "kv_quota", value: "64MB" }], sm);
  assert.equal(sm.kvQuotaBytes, 1000);
  assert.equal(sm.apply(normal(4, { op: "kv_put", key: "k", value: new Uint8Array(10) })).ok, true);
});

Deno.test("a custom kv_quota parser (lib/config's units) is used for the setting", () => {
  const parseKvQuota = (v: string) => (v.endsWith("kB") ? Number(v.slice(0, -2)) * 1024 : null);
  const sm = machineWith(
    [{ op: "set_config", name: "kv_quota", value: "2kB" }],
    new StateMachine({ parseKvQuota }),
  );
  assert.equal(sm.kvQuotaBytes, 2048);
});

Deno.test("a quota that is not a positive integer is refused at construction", () => {
  for (const bad of [0, -1, 1.5, NaN]) {
    assert.throws(() => new StateMachine({ kvQuotaBytes: bad }), RangeError);
  }
});

Deno.test("kvList returns keys with the prefix in code point order, limited and paged", () => {
  const keys = ["b", "a/2", "a/1", "a/\u{1f600}", "a/\uff5e", "a/é", "ab"];
  const sm = machineWith(keys.map((key) => ({ op: "kv_put" as const, key, value: bytes(key) })));
  assert.deepEqual(sm.kvList("a/", 100).map((p) => p.key), [
    "a/1",
    "a/2",
    "a/é",
    "a/\uff5e",
    "a/\u{1f600}",
  ]);
  assert.deepEqual(sm.kvList("a/", 2).map((p) => p.key), ["a/1", "a/2"]);
  assert.deepEqual(sm.kvList("a/", 2, { after: "a/2" }).map((p) => p.key), ["a/é", "a/\uff5e"]);
  assert.deepEqual(sm.kvList("", 100).map((p) => p.key), [
    "a/1",
    "a/2",
    "a/é",
    "a/\uff5e",
    "a/\u{1f600}",
    "ab",
    "b",
  ]);
  assert.deepEqual(sm.kvList("a/", 0), []);
  assert.deepEqual(sm.kvList("zz", 10), []);
  assert.deepEqual(sm.kvList("a/1", 10)[0], { key: "a/1", value: bytes("a/1"), revision: 3 });
  assert.throws(() => sm.kvList("", -1), RangeError);
  assert.throws(() => sm.kvList("", 1.5), RangeError);
});
