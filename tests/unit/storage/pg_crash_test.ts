/**
 * PgStorage against a PostgreSQL that crashes, stops, has its sessions
 * terminated, or hangs: failures are StorageUnavailableError, what resolved is
 * durable, and the same storage object works again afterwards.
 */

import assert from "node:assert/strict";
import { migrate } from "../../../lib/postgres/migrations.ts";
import type { Entry } from "../../../lib/raft/types.ts";
import { type ApplyItem, PgStorage, StorageUnavailableError } from "../../../lib/storage/mod.ts";
import { connect, type PgServer, withPgServer } from "../../helpers/pg.ts";

const enc = new TextEncoder();

async function openStorage(server: PgServer, timeoutMs = 10_000): Promise<PgStorage> {
  const sql = connect(server);
  try {
    await migrate(sql);
  } finally {
    await sql.end();
  }
  return await PgStorage.open({
    connection: server.connection,
    timeoutMs,
  });
}

function entry(index: number): Entry {
  return { index, term: 1, type: "normal", data: enc.encode(`entry ${index}`) };
}

function putItem(index: number): ApplyItem {
  return {
    index,
    term: 1,
    command: { op: "kv_put", key: `k${index}`, value: enc.encode(`v${index}`) },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Retry `fn` while the storage says PostgreSQL is unavailable, bounded. */
async function untilAvailable<T>(fn: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (!(error instanceof StorageUnavailableError) || Date.now() > deadline) throw error;
      await sleep(50);
    }
  }
}

/**
 * Persist one entry at a time (with commit = its index) until a persist fails;
 * returns the last index whose persist resolved and the last one attempted.
 */
async function persistUntilFailure(
  storage: PgStorage,
  from: number,
): Promise<{ resolved: number; attempted: number; error: unknown }> {
  let resolved = from - 1;
  for (let i = from; i < from + 100_000; i++) {
    try {
      await storage.persist({
        snapshot: null,
        entries: [entry(i)],
        hardState: { term: 1, vote: 1, commit: i },
      });
      resolved = i;
    } catch (error) {
      return { resolved, attempted: i, error };
    }
  }
  throw new Error("PostgreSQL never went away");
}

/** The log after restart is a prefix of what was asked, containing all that resolved. */
async function checkPrefix(storage: PgStorage, resolved: number, attempted: number) {
  const state = await untilAvailable(() => storage.load());
  const last = state.entries.length;
  assert.ok(last >= resolved, `every resolved persist survived (${last} >= ${resolved})`);
  assert.ok(last <= attempted, `nothing beyond what was asked (${last} <= ${attempted})`);
  assert.deepEqual(state.entries, Array.from({ length: last }, (_, i) => entry(i + 1)));
  // Entry and hard state were one transaction: both or neither.
  assert.equal(state.hardState.commit, last);
  return last;
}

for (const how of ["kill -9", "stop immediate"] as const) {
  Deno.test(`after ${how} of PostgreSQL during persists, load returns every resolved persist`, async () => {
    await withPgServer(async (server) => {
      const storage = await openStorage(server);
      try {
        // Between persists: everything resolved is there.
        for (let i = 1; i <= 5; i++) {
          await storage.persist({
            snapshot: null,
            entries: [entry(i)],
            hardState: { term: 1, vote: 1, commit: i },
          });
        }
        if (how === "kill -9") await server.kill();
        else await server.stopImmediate();
        await server.start();
        assert.equal(await checkPrefix(storage, 5, 5), 5);

        // During persists.
        const loop = persistUntilFailure(storage, 6);
        await sleep(300);
        if (how === "kill -9") await server.kill();
        else await server.stopImmediate();
        const { resolved, attempted, error } = await loop;
        assert.ok(error instanceof StorageUnavailableError, `got ${error}`);
        assert.ok(resolved > 6, "the loop persisted something before the crash");
        // While PostgreSQL is down, calls fail as unavailable, quickly.
        await assert.rejects(storage.load(), StorageUnavailableError);
        await server.start();
        const last = await checkPrefix(storage, resolved, attempted);
        // And the same storage object goes on appending.
        await storage.persist({
          snapshot: null,
          entries: [entry(last + 1)],
          hardState: { term: 1, vote: 1, commit: last + 1 },
        });
        assert.equal((await storage.load()).entries.length, last + 1);
      } finally {
        await storage.close();
      }
    });
  });
}

Deno.test("apply interrupted by a crash applies every entry exactly once when replayed", async () => {
  await withPgServer(async (server) => {
    const storage = await openStorage(server);
    try {
      const total = 20_000;
      const batch = 64;
      const items = Array.from({ length: total }, (_, i) => putItem(i + 1));
      let attempted = 0;
      // Settles with the error that stopped it (handled at once: no unhandled rejection).
      const loop = (async () => {
        for (let i = 0; i < total; i += batch) {
          attempted = i + batch;
          await storage.apply(items.slice(i, i + batch));
        }
        return null;
      })().catch((error: unknown) => error);
      await sleep(400);
      await server.kill();
      const stopped = await loop;
      assert.ok(stopped instanceof StorageUnavailableError, `got ${stopped}`);
      await server.start();
      const before = await untilAvailable(() => storage.appliedState());
      assert.ok(before.lastApplied > 0 && before.lastApplied < total);
      assert.ok(before.lastApplied <= attempted);
      // The batch in flight was all or nothing: exactly the keys up to last_applied exist.
      const keys = await storage.kvList("k", total);
      assert.equal(keys.length, before.lastApplied);
      // Replay everything from the start, in batches that straddle last_applied.
      const results = [];
      for (let i = 0; i < total; i += 1000) {
        results.push(...await storage.apply(items.slice(i, i + 1000)));
      }
      for (const r of results) {
        assert.equal(r.applied, r.index > before.lastApplied, `index ${r.index}`);
        if (r.applied) assert.equal(r.existed, false, `k${r.index} was not written twice`);
      }
      const after = await storage.appliedState();
      assert.equal(after.lastApplied, total);
      const pair = await storage.kvGet(`k${total}`);
      assert.equal(pair?.revision, total);
      assert.equal((await storage.kvList("k", total + 1)).length, total);
    } finally {
      await storage.close();
    }
  });
});

Deno.test("terminating the storage's sessions mid-transaction gives StorageUnavailableError, then it works again", async () => {
  await withPgServer(async (server) => {
    const storage = await openStorage(server);
    const killer = connect(server, { max: 1 });
    try {
      let stop = false;
      const errors: unknown[] = [];
      let next = 1;
      let applied = 0;
      const work = (async () => {
        while (!stop) {
          // A big persist (one statement) and an apply (an explicit transaction).
          const entries = Array.from({ length: 64 }, (_, i) => entry(next + i));
          try {
            await storage.persist({
              snapshot: null,
              entries,
              hardState: { term: 1, vote: 1, commit: next + 63 },
            });
            next += 64;
          } catch (error) {
            errors.push(error);
          }
          try {
            const items = Array.from({ length: 32 }, (_, i) => putItem(applied + 1 + i));
            const results = await storage.apply(items);
            applied = results[results.length - 1]!.index;
          } catch (error) {
            errors.push(error);
            // After a failure the batch may or may not have committed: ask.
            applied = await untilAvailable(() => storage.appliedState()).then((s) => s.lastApplied);
          }
        }
      })();
      let terminated = 0;
      for (let round = 0; round < 25; round++) {
        await sleep(15 + (round % 5) * 7);
        const rows = await killer`select pg_terminate_backend(pid) as done from pg_stat_activity
                                   where application_name = 'pgraft agent storage'`;
        terminated += rows.filter((r) => r.done).length;
      }
      stop = true;
      await work;
      assert.ok(terminated >= 10, `sessions were terminated (${terminated})`);
      assert.ok(errors.length > 0, "some calls were interrupted");
      for (const e of errors) {
        assert.ok(e instanceof StorageUnavailableError, `unexpected ${e}`);
      }
      // Working again: the next call after the storm succeeds (at most one stale error).
      const state = await untilAvailable(() => storage.load(), 2_000);
      assert.equal(state.entries.length, next - 1);
      assert.deepEqual(state.entries.at(-1), entry(next - 1));
      assert.equal((await storage.appliedState()).lastApplied, applied);
      assert.equal((await storage.kvList("k", 100_000)).length, applied);
    } finally {
      await killer.end();
      await storage.close();
    }
  });
});

Deno.test("a persist blocked beyond the timeout is StorageUnavailableError and the next call works", async () => {
  await withPgServer(async (server) => {
    const storage = await openStorage(server, 500);
    const locker = connect(server, { max: 1 });
    try {
      await storage.persist({ snapshot: null, entries: [entry(1)], hardState: null });
      let release!: () => void;
      const released = new Promise<void>((r) => release = r);
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => locked = r);
      const holder = locker.begin(async (tx) => {
        await tx`lock table pgraft.hard_state in access exclusive mode`;
        locked();
        await released;
      });
      await isLocked;
      const started = Date.now();
      await assert.rejects(
        storage.persist({
          snapshot: null,
          entries: [entry(2)],
          hardState: { term: 1, vote: 0, commit: 1 },
        }),
        (e: unknown) => e instanceof StorageUnavailableError && /within 500 ms/.test(e.message),
      );
      assert.ok(Date.now() - started < 3_000);
      release();
      await holder;
      await storage.persist({ snapshot: null, entries: [entry(2)], hardState: null });
      assert.equal((await storage.load()).entries.length, 2);
    } finally {
      await locker.end();
      await storage.close();
    }
  });
});

Deno.test("PgStorage.open while PostgreSQL is down is StorageUnavailableError", async () => {
  await withPgServer(async (server) => {
    await server.stopImmediate();
    await assert.rejects(
      PgStorage.open({
        connection: { host: server.host, port: server.port, user: "postgres", database: "x" },
      }),
      StorageUnavailableError,
    );
    await server.start();
  });
});
