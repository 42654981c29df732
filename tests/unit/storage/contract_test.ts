/**
 * One storage contract, run against MemoryStorage and PgStorage (on a real
 * PostgreSQL, a fresh database per case).
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { AssertionError } from "../../../lib/assert.ts";
import { migrate } from "../../../lib/postgres/migrations.ts";
import type { Entry, Snapshot } from "../../../lib/raft/types.ts";
import {
  type ApplyItem,
  type Command,
  decodeCommand,
  encodeCommand,
  MemoryStorage,
  PgStorage,
  type RaftStorage,
} from "../../../lib/storage/mod.ts";
import { connect, type PgServer, withPgServer } from "../../helpers/pg.ts";

/** Opens fresh, empty storages; everything it opened is closed after the case. */
interface Harness {
  open(): Promise<RaftStorage>;
}

const enc = new TextEncoder();

function entry(index: number, term: number, text = `e${index}`): Entry {
  return { index, term, type: "normal", data: enc.encode(text) };
}

function item(index: number, command: Command, term = 1): ApplyItem {
  return { index, term, command };
}

function put(index: number, key: string, value: string): ApplyItem {
  return item(index, { op: "kv_put", key, value: enc.encode(value) });
}

const ctx = (address: string, port: number) => JSON.stringify({ address, port });

const CASES: { name: string; fn: (h: Harness) => Promise<void> }[] = [
  {
    name: "a fresh storage loads the empty state",
    fn: async (h) => {
      const s = await h.open();
      assert.deepEqual(await s.load(), {
        hardState: { term: 0, vote: 0, commit: 0 },
        snapshot: null,
        entries: [],
        applied: 0,
      });
      assert.deepEqual(await s.appliedState(), {
        lastApplied: 0,
        clusterId: null,
        clusterName: null,
        members: [],
        settings: {},
      });
      assert.equal(await s.kvGet("x"), null);
    },
  },
  {
    name: "persisted entries and hard state load back in order, bytes intact",
    fn: async (h) => {
      const s = await h.open();
      const conf: Entry = {
        index: 3,
        term: 2,
        type: "conf_change",
        data: enc.encode('{"kind":"add_voter","nodeId":1,"context":""}'),
      };
      const entries = [
        { index: 1, term: 1, type: "normal" as const, data: new Uint8Array() },
        { index: 2, term: 1, type: "normal" as const, data: new Uint8Array([0, 255, 92, 34, 0]) },
        conf,
      ];
      await s.persist({ snapshot: null, entries, hardState: { term: 2, vote: 1, commit: 1 } });
      await s.persist({ snapshot: null, entries: [entry(4, 2)], hardState: null });
      const state = await s.load();
      assert.deepEqual(state.entries, [...entries, entry(4, 2)]);
      assert.deepEqual(state.hardState, { term: 2, vote: 1, commit: 1 });
      assert.equal(state.applied, 0);
    },
  },
  {
    name: "appending at an index first deletes every entry from that index on",
    fn: async (h) => {
      const s = await h.open();
      await s.persist({
        snapshot: null,
        entries: [1, 2, 3, 4, 5].map((i) => entry(i, 1)),
        hardState: null,
      });
      await s.persist({
        snapshot: null,
        entries: [entry(3, 2, "new3"), entry(4, 2, "new4")],
        hardState: null,
      });
      assert.deepEqual((await s.load()).entries, [
        entry(1, 1),
        entry(2, 1),
        entry(3, 2, "new3"),
        entry(4, 2, "new4"),
      ]);
    },
  },
  {
    name: "the latest hard state wins and a persist without one keeps it",
    fn: async (h) => {
      const s = await h.open();
      await s.persist({ snapshot: null, entries: [], hardState: { term: 1, vote: 3, commit: 0 } });
      await s.persist({ snapshot: null, entries: [], hardState: { term: 5, vote: 0, commit: 0 } });
      await s.persist({ snapshot: null, entries: [entry(1, 5)], hardState: null });
      const state = await s.load();
      assert.deepEqual(state.hardState, { term: 5, vote: 0, commit: 0 });
      assert.equal(state.entries.length, 1);
    },
  },
  {
    name: "apply runs every command kind on the state machine",
    fn: async (h) => {
      const s = await h.open();
      const results = await s.apply([
        item(1, { op: "noop" }),
        item(2, { op: "init_cluster", clusterId: "c-1", clusterName: "main" }),
        item(3, {
          op: "conf_change",
          change: { kind: "add_voter", nodeId: 1, context: ctx("n1", 7001) },
        }),
        item(4, {
          op: "conf_change",
          change: { kind: "add_learner", nodeId: 2, context: ctx("n2", 7002) },
        }),
        item(5, { op: "conf_change", change: { kind: "add_voter", nodeId: 2, context: "" } }),
        item(6, {
          op: "conf_change",
          change: { kind: "add_learner", nodeId: 3, context: ctx("n3", 7003) },
        }),
        item(7, { op: "set_config", name: "heartbeat_interval", value: "100ms" }),
        item(8, { op: "set_config", name: "heartbeat_interval", value: "50ms" }),
        put(9, "a", "one"),
        put(10, "a", "two"),
        item(11, { op: "kv_delete", key: "a" }),
        item(12, { op: "kv_delete", key: "a" }),
        put(13, "b", "bee"),
        item(14, { op: "conf_change", change: { kind: "remove_node", nodeId: 3, context: "" } }),
        item(15, { op: "set_config", name: "failover_enabled", value: "off" }),
      ]);
      assert.deepEqual(results.slice(8, 13), [
        { index: 9, applied: true, existed: false, revision: 9 },
        { index: 10, applied: true, existed: true, revision: 10 },
        { index: 11, applied: true, existed: true, revision: 11 },
        { index: 12, applied: true, existed: false, revision: 12 },
        { index: 13, applied: true, existed: false, revision: 13 },
      ]);
      assert.deepEqual(results.map((r) => [r.index, r.applied]), [
        ...Array.from({ length: 15 }, (_, i) => [i + 1, true]),
      ]);
      assert.deepEqual(await s.appliedState(), {
        lastApplied: 15,
        clusterId: "c-1",
        clusterName: "main",
        members: [
          { nodeId: 1, address: "n1", port: 7001, isVoter: true },
          { nodeId: 2, address: "n2", port: 7002, isVoter: true },
        ],
        settings: { heartbeat_interval: "50ms", failover_enabled: "off" },
      });
      assert.equal(await s.kvGet("a"), null);
      assert.deepEqual(await s.kvGet("b"), { key: "b", value: enc.encode("bee"), revision: 13 });
      assert.equal((await s.load()).applied, 15);
    },
  },
  {
    name: "a promotion of an unknown node inserts it as a voter",
    fn: async (h) => {
      const s = await h.open();
      await s.apply([
        item(1, { op: "conf_change", change: { kind: "add_voter", nodeId: 9, context: "" } }),
      ]);
      assert.deepEqual((await s.appliedState()).members, [
        { nodeId: 9, address: "", port: 0, isVoter: true },
      ]);
    },
  },
  {
    name: "replayed items are skipped, so each entry is applied exactly once",
    fn: async (h) => {
      const s = await h.open();
      await s.apply([put(1, "k", "v1"), put(2, "n", "x"), put(3, "k", "v3")]);
      const results = await s.apply([
        put(2, "n", "replayed"),
        put(3, "k", "replayed"),
        put(4, "k", "v4"),
        item(5, { op: "kv_delete", key: "n" }),
      ]);
      assert.deepEqual(results, [
        { index: 2, applied: false },
        { index: 3, applied: false },
        { index: 4, applied: true, existed: true, revision: 4 },
        { index: 5, applied: true, existed: true, revision: 5 },
      ]);
      const all = await s.apply([put(4, "k", "again"), put(5, "k", "again")]);
      assert.deepEqual(all, [{ index: 4, applied: false }, { index: 5, applied: false }]);
      assert.deepEqual(await s.kvGet("k"), { key: "k", value: enc.encode("v4"), revision: 4 });
      assert.equal(await s.kvGet("n"), null);
      assert.equal((await s.appliedState()).lastApplied, 5);
    },
  },
  {
    name: "applying past a gap is an assertion and changes nothing",
    fn: async (h) => {
      const s = await h.open();
      await s.apply([put(1, "k", "v1")]);
      await assert.rejects(s.apply([put(2, "k", "v2"), put(4, "k", "v4")]), AssertionError);
      await assert.rejects(s.apply([put(3, "k", "v3")]), /expected 2/);
      assert.deepEqual(await s.kvGet("k"), { key: "k", value: enc.encode("v1"), revision: 1 });
      assert.equal((await s.appliedState()).lastApplied, 1);
    },
  },
  {
    name: "snapshotData, persisted as a snapshot on a second storage, reproduces the state",
    fn: async (h) => {
      const a = await h.open();
      await a.persist({
        snapshot: null,
        entries: [1, 2, 3, 4, 5, 6].map((i) => entry(i, 1)),
        hardState: { term: 1, vote: 1, commit: 6 },
      });
      const binary = new Uint8Array(300).map((_, i) => (i * 7) % 256);
      await a.apply([
        item(1, { op: "init_cluster", clusterId: "c-9", clusterName: "snap" }),
        item(2, {
          op: "conf_change",
          change: { kind: "add_voter", nodeId: 1, context: ctx("h1", 1) },
        }),
        item(3, {
          op: "conf_change",
          change: { kind: "add_learner", nodeId: 2, context: ctx("h2", 2) },
        }),
        item(4, { op: "set_config", name: "election_timeout", value: "1s" }),
        item(5, { op: "kv_put", key: "bin", value: binary }),
        put(6, "z%_", "pct"),
      ]);
      const { index, data } = await a.snapshotData();
      assert.equal(index, 6);
      const snapshot: Snapshot = {
        meta: { index, term: 1, membership: { voters: [1], learners: [2] } },
        data,
      };
      const b = await h.open();
      await b.persist({ snapshot: null, entries: [entry(1, 1, "stale")], hardState: null });
      await b.persist({
        snapshot,
        entries: [entry(7, 2)],
        hardState: { term: 2, vote: 1, commit: 7 },
      });
      assert.deepEqual(await b.appliedState(), await a.appliedState());
      assert.deepEqual(await b.kvList("", 100), await a.kvList("", 100));
      assert.deepEqual((await b.kvGet("bin"))?.value, binary);
      const loaded = await b.load();
      assert.deepEqual(loaded.snapshot, snapshot);
      assert.deepEqual(loaded.entries, [entry(7, 2)]);
      assert.equal(loaded.applied, 6);
      assert.deepEqual(loaded.hardState, { term: 2, vote: 1, commit: 7 });
      // The installed state keeps applying from the snapshot on.
      const results = await b.apply([put(6, "z%_", "replay"), put(7, "bin", "x")]);
      assert.deepEqual(results.map((r) => r.applied), [false, true]);
      assert.deepEqual((await b.snapshotData()).index, 7);
    },
  },
  {
    name: "a snapshot older than the stored one is ignored by persist and saveSnapshot",
    fn: async (h) => {
      const a = await h.open();
      await a.apply([put(1, "k", "v1"), put(2, "k", "v2")]);
      const { index, data } = await a.snapshotData();
      const b = await h.open();
      const meta = { index, term: 1, membership: { voters: [1], learners: [] } };
      await b.persist({ snapshot: { meta, data }, entries: [], hardState: null });
      const older = { meta: { ...meta, index: 1 }, data: new Uint8Array(enc.encode("old")) };
      await b.saveSnapshot(older);
      assert.equal((await b.load()).snapshot?.meta.index, 2);
      const olderImage = { ...meta, index: 1 };
      await b.persist({ snapshot: { meta: olderImage, data }, entries: [], hardState: null });
      assert.equal((await b.load()).snapshot?.meta.index, 2);
      assert.deepEqual(await b.kvGet("k"), { key: "k", value: enc.encode("v2"), revision: 2 });
    },
  },
  {
    name: "snapshot data that is not a state image is a TypeError and changes nothing",
    fn: async (h) => {
      const s = await h.open();
      await s.persist({ snapshot: null, entries: [entry(1, 1)], hardState: null });
      const bad: Snapshot = {
        meta: { index: 5, term: 1, membership: { voters: [1], learners: [] } },
        data: enc.encode("garbage"),
      };
      await assert.rejects(
        s.persist({ snapshot: bad, entries: [], hardState: { term: 9, vote: 0, commit: 0 } }),
        TypeError,
      );
      const state = await s.load();
      assert.equal(state.snapshot, null);
      assert.deepEqual(state.entries, [entry(1, 1)]);
      assert.deepEqual(state.hardState, { term: 0, vote: 0, commit: 0 });
    },
  },
  {
    name: "saveSnapshot compacts the log up to its index and keeps the rest",
    fn: async (h) => {
      const s = await h.open();
      await s.persist({
        snapshot: null,
        entries: [1, 2, 3, 4, 5].map((i) => entry(i, 1)),
        hardState: { term: 1, vote: 1, commit: 5 },
      });
      await s.apply([put(1, "a", "1"), put(2, "b", "2"), put(3, "c", "3")]);
      const { index, data } = await s.snapshotData();
      const snapshot: Snapshot = {
        meta: { index, term: 1, membership: { voters: [1], learners: [] } },
        data,
      };
      await s.saveSnapshot(snapshot);
      const state = await s.load();
      assert.deepEqual(state.snapshot, snapshot);
      assert.deepEqual(state.entries, [entry(4, 1), entry(5, 1)]);
      assert.equal(state.applied, 3);
      // Appending after the compaction point still works.
      await s.persist({ snapshot: null, entries: [entry(5, 2), entry(6, 2)], hardState: null });
      assert.deepEqual((await s.load()).entries, [entry(4, 1), entry(5, 2), entry(6, 2)]);
      assert.equal((await s.kvList("", 10)).length, 3);
    },
  },
  {
    name: "kvList matches the prefix literally, in byte order, up to the limit",
    fn: async (h) => {
      const s = await h.open();
      const keys = ["a%b", "a_b", "aXb", "a%", "ab", "b", "é", "a\u{1F600}", "a\uFFFD", "A", "a"];
      await s.apply(keys.map((k, i) => put(i + 1, k, k)));
      const list = async (prefix: string, limit: number) =>
        (await s.kvList(prefix, limit)).map((p) => p.key);
      assert.deepEqual(await list("", 100), [
        "A",
        "a",
        "a%",
        "a%b",
        "aXb",
        "a_b",
        "ab",
        "a\uFFFD",
        "a\u{1F600}",
        "b",
        "é",
      ]);
      assert.deepEqual(await list("a%", 100), ["a%", "a%b"]);
      assert.deepEqual(await list("a_", 100), ["a_b"]);
      assert.deepEqual(await list("a", 3), ["a", "a%", "a%b"]);
      assert.deepEqual(await list("a\u{1F600}", 10), ["a\u{1F600}"]);
      assert.deepEqual(await list("zz", 10), []);
      assert.deepEqual(await list("a", 0), []);
      const [pair] = await s.kvList("a_", 1);
      assert.deepEqual(pair, { key: "a_b", value: enc.encode("a_b"), revision: 2 });
      await assert.rejects(s.kvList("a", -1), RangeError);
      await assert.rejects(s.kvList("a", 1.5), RangeError);
    },
  },
  {
    name: "encoded commands stored as entries decode back after a reload",
    fn: async (h) => {
      const s = await h.open();
      const commands: Command[] = [
        { op: "kv_put", key: "k", value: new Uint8Array([1, 0, 2]) },
        { op: "set_config", name: "x", value: "y" },
        { op: "kv_delete", key: "k" },
      ];
      await s.persist({
        snapshot: null,
        entries: commands.map((c, i) => ({
          index: i + 1,
          term: 1,
          type: "normal",
          data: encodeCommand(c),
        })),
        hardState: null,
      });
      const { entries } = await s.load();
      assert.deepEqual(entries.map((e) => decodeCommand(e.data)), commands);
    },
  },
];

Deno.test("MemoryStorage meets the storage contract", async (t) => {
  for (const c of CASES) {
    const opened: RaftStorage[] = [];
    await t.step(c.name, async () => {
      try {
        await c.fn({
          open: () => {
            const s = new MemoryStorage();
            opened.push(s);
            return Promise.resolve(s);
          },
        });
      } finally {
        await Promise.all(opened.map((s) => s.close()));
      }
    });
  }
});

/** A fresh migrated database on `server`, and a PgStorage on it. */
export async function freshPgStorage(
  server: PgServer,
  database: string,
): Promise<PgStorage> {
  const admin = connect(server);
  try {
    await admin.unsafe(`create database ${database}`);
  } finally {
    await admin.end();
  }
  const sql = connect(server, { database });
  try {
    await migrate(sql);
  } finally {
    await sql.end();
  }
  return await PgStorage.open({
    connection: { host: server.host, port: server.port, user: server.user, database },
  });
}

Deno.test("PgStorage meets the storage contract", async (t) => {
  await withPgServer(async (server) => {
    let n = 0;
    for (const c of CASES) {
      const opened: RaftStorage[] = [];
      await t.step(c.name, async () => {
        try {
          await c.fn({
            open: async () => {
              const s = await freshPgStorage(server, `contract_${++n}`);
              opened.push(s);
              return s;
            },
          });
        } finally {
          await Promise.all(opened.map((s) => s.close()));
        }
      });
    }
  });
});

Deno.test("PgStorage.open names the missing migrations instead of failing later", async () => {
  await withPgServer(async (server) => {
    await assert.rejects(
      PgStorage.open({ connection: server.connection }),
      /run the migrations/,
    );
  });
});

Deno.test("PgStorage keeps its tables durable (logged) as written by the migration", async () => {
  await withPgServer(async (server) => {
    const s = await freshPgStorage(server, "durable");
    await s.close();
    const sql: postgres.Sql = connect(server, { database: "durable" });
    try {
      const rows = await sql`select c.relname, c.relpersistence from pg_class c
                               join pg_namespace n on n.oid = c.relnamespace
                              where n.nspname = 'pgraft' and c.relkind = 'r'
                                and c.relname in ('hard_state', 'log', 'snapshot', 'applied',
                                                  'members', 'cluster_settings', 'kv')
                              order by c.relname`;
      assert.equal(rows.length, 7);
      for (const r of rows) assert.equal(r.relpersistence, "p", r.relname);
    } finally {
      await sql.end();
    }
  });
});
