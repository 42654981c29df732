/**
 * The RaftStorage contract: one suite, run against every storage (Hono's
 * shared `runTest({ newRouter })` pattern). Each case acts, checks, reopens
 * the storage (a restart) and checks again.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AssertionError } from "../../../lib/assert.ts";
import type { Entry, HardState, Snapshot } from "../../../lib/raft/types.ts";
import {
  type LoadedState,
  type RaftStorage,
  StorageIdentityError,
} from "../../../lib/storage/raft_storage.ts";

/** Opens storages on one durable place (a directory, a memory disk). */
export interface StorageHarness {
  /** Open a storage; the first call on a fresh place, later calls see what was made durable. */
  open(options?: { nodeId?: number; clusterId?: string }): Promise<RaftStorage>;
  /** Remove everything the harness made. */
  dispose(): Promise<void>;
}

const enc = new TextEncoder();

/**
 * An entry whose data tells its index and term.
 *
 * @param index the index
 * @param term the term
 * @returns the entry
 */
export function entry(index: number, term: number): Entry {
  return { index, term, type: "normal", data: enc.encode(`entry ${index} of term ${term}`) };
}

function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term));
  return out;
}

function snapshot(index: number, term: number, text = `state at ${index}`): Snapshot {
  return {
    meta: { index, term, membership: { voters: [1, 2, 3], learners: [4] } },
    data: enc.encode(text),
  };
}

const hs = (term: number, vote: number, commit: number): HardState => ({ term, vote, commit });

const EMPTY: LoadedState = { hardState: hs(0, 0, 0), snapshot: null, entries: [] };

/** Check the loaded state, close, reopen, check again; returns the reopened storage. */
async function checkAndReopen(
  h: StorageHarness,
  s: RaftStorage,
  expected: LoadedState,
): Promise<RaftStorage> {
  assert.deepEqual(await s.load(), expected);
  await s.close();
  const reopened = await h.open();
  assert.deepEqual(await reopened.load(), expected, "after reopening");
  return reopened;
}

const CASES: { name: string; fn: (h: StorageHarness) => Promise<void> }[] = [
  {
    name: "a fresh storage loads the empty state and knows its node",
    fn: async (h) => {
      const s = await h.open();
      assert.deepEqual(s.identity, { nodeId: 1, clusterId: null });
      await (await checkAndReopen(h, s, EMPTY)).close();
    },
  },
  {
    name: "appended entries and hard state load back in order, bytes intact, as copies",
    fn: async (h) => {
      const s = await h.open();
      const batch: Entry[] = [
        { index: 1, term: 1, type: "normal", data: new Uint8Array() },
        { index: 2, term: 1, type: "normal", data: new Uint8Array([0, 255, 92, 34, 0]) },
        { index: 3, term: 2, type: "conf_change", data: enc.encode('{"kind":"add_voter"}') },
      ];
      await s.save({ snapshot: null, entries: batch, hardState: hs(2, 1, 1) });
      await s.save({ snapshot: null, entries: [entry(4, 2)], hardState: null });
      const expected = {
        hardState: hs(2, 1, 1),
        snapshot: null,
        entries: [...structuredClone(batch), entry(4, 2)],
      };
      batch[1]!.data[0] = 99; // the caller's buffers are not the stored ones
      const loaded = await s.load();
      loaded.entries[0]!.term = 77;
      const again = await checkAndReopen(h, s, expected);
      await again.close();
    },
  },
  {
    name: "entries at an index already stored replace it and everything after (conflict)",
    fn: async (h) => {
      let s = await h.open();
      await s.save({ snapshot: null, entries: entries(1, 5, 1), hardState: hs(1, 0, 2) });
      await s.save({ snapshot: null, entries: entries(3, 4, 2), hardState: hs(2, 0, 2) });
      s = await checkAndReopen(h, s, {
        hardState: hs(2, 0, 2),
        snapshot: null,
        entries: [...entries(1, 2, 1), ...entries(3, 4, 2)],
      });
      await s.save({ snapshot: null, entries: [entry(5, 2)], hardState: null });
      await s.save({ snapshot: null, entries: [entry(1, 3)], hardState: hs(3, 2, 0) });
      s = await checkAndReopen(h, s, {
        hardState: hs(3, 2, 0),
        snapshot: null,
        entries: [entry(1, 3)],
      });
      await s.close();
    },
  },
  {
    name: "a hard state alone is stored, and an empty update changes nothing",
    fn: async (h) => {
      let s = await h.open();
      await s.save({ snapshot: null, entries: [], hardState: hs(7, 3, 0) });
      await s.save({ snapshot: null, entries: [], hardState: null });
      s = await checkAndReopen(h, s, { hardState: hs(7, 3, 0), snapshot: null, entries: [] });
      await s.save({ snapshot: null, entries: [], hardState: hs(8, 0, 0) });
      s = await checkAndReopen(h, s, { hardState: hs(8, 0, 0), snapshot: null, entries: [] });
      await s.close();
    },
  },
  {
    name: "a snapshot from the leader replaces a shorter log, and appends continue after it",
    fn: async (h) => {
      let s = await h.open();
      await s.save({ snapshot: null, entries: entries(1, 3, 1), hardState: hs(1, 1, 3) });
      await s.save({ snapshot: snapshot(10, 2), entries: [], hardState: hs(2, 0, 10) });
      s = await checkAndReopen(h, s, {
        hardState: hs(2, 0, 10),
        snapshot: snapshot(10, 2),
        entries: [],
      });
      await s.save({ snapshot: null, entries: entries(11, 12, 2), hardState: null });
      // Not newer than the stored one: ignored.
      await s.save({ snapshot: snapshot(8, 2), entries: [], hardState: null });
      s = await checkAndReopen(h, s, {
        hardState: hs(2, 0, 10),
        snapshot: snapshot(10, 2),
        entries: entries(11, 12, 2),
      });
      await s.close();
    },
  },
  {
    name: "a snapshot from the leader whose last entry the log holds keeps the entries after it",
    fn: async (h) => {
      let s = await h.open();
      await s.save({ snapshot: null, entries: entries(1, 6, 1), hardState: hs(1, 1, 2) });
      await s.save({ snapshot: snapshot(4, 1), entries: [], hardState: hs(1, 1, 4) });
      s = await checkAndReopen(h, s, {
        hardState: hs(1, 1, 4),
        snapshot: snapshot(4, 1),
        entries: entries(5, 6, 1),
      });
      // Same index, other term: the log is discarded.
      await s.save({ snapshot: snapshot(6, 2), entries: [entry(7, 2)], hardState: hs(2, 0, 6) });
      s = await checkAndReopen(h, s, {
        hardState: hs(2, 0, 6),
        snapshot: snapshot(6, 2),
        entries: [entry(7, 2)],
      });
      await s.close();
    },
  },
  {
    name: "saveSnapshot compacts the log prefix; later snapshots replace it; reload after each",
    fn: async (h) => {
      let s = await h.open();
      await s.save({ snapshot: null, entries: entries(1, 10, 1), hardState: hs(1, 1, 10) });
      await s.saveSnapshot(snapshot(6, 1));
      s = await checkAndReopen(h, s, {
        hardState: hs(1, 1, 10),
        snapshot: snapshot(6, 1),
        entries: entries(7, 10, 1),
      });
      await s.saveSnapshot(snapshot(4, 1)); // older: ignored
      await assert.rejects(s.saveSnapshot(snapshot(9, 5)), RangeError); // wrong term
      await assert.rejects(s.saveSnapshot(snapshot(11, 1)), RangeError); // beyond the log
      await s.save({ snapshot: null, entries: entries(11, 20, 2), hardState: hs(2, 1, 18) });
      await s.saveSnapshot(snapshot(15, 2));
      s = await checkAndReopen(h, s, {
        hardState: hs(2, 1, 18),
        snapshot: snapshot(15, 2),
        entries: entries(16, 20, 2),
      });
      await s.saveSnapshot(snapshot(20, 2));
      await s.save({ snapshot: null, entries: [entry(21, 3)], hardState: hs(3, 0, 20) });
      s = await checkAndReopen(h, s, {
        hardState: hs(3, 0, 20),
        snapshot: snapshot(20, 2),
        entries: [entry(21, 3)],
      });
      await s.close();
    },
  },
  {
    name: "the commit loaded is never below the snapshot (commit alone need not be durable)",
    fn: async (h) => {
      let s = await h.open();
      await s.save({ snapshot: null, entries: entries(1, 5, 1), hardState: hs(1, 1, 2) });
      await s.saveSnapshot(snapshot(4, 1));
      s = await checkAndReopen(h, s, {
        hardState: hs(1, 1, 4),
        snapshot: snapshot(4, 1),
        entries: [entry(5, 1)],
      });
      await s.close();
    },
  },
  {
    name: "the cluster id is recorded once; a different one is refused, now and after reopening",
    fn: async (h) => {
      let s = await h.open();
      await s.setClusterId("c0ffee-1");
      await s.setClusterId("c0ffee-1");
      assert.deepEqual(s.identity, { nodeId: 1, clusterId: "c0ffee-1" });
      await assert.rejects(s.setClusterId("other-2"), (e: unknown) => {
        assert.ok(e instanceof StorageIdentityError);
        assert.match(e.message, /c0ffee-1/);
        assert.match(e.message, /other-2/);
        return true;
      });
      await s.close();
      s = await h.open();
      assert.deepEqual(s.identity, { nodeId: 1, clusterId: "c0ffee-1" });
      await s.close();
      await assert.rejects(h.open({ clusterId: "other-2" }), StorageIdentityError);
      s = await h.open({ clusterId: "c0ffee-1" });
      await s.close();
    },
  },
  {
    name: "a storage of another node id is refused",
    fn: async (h) => {
      const s = await h.open();
      await s.close();
      await assert.rejects(h.open({ nodeId: 2 }), (e: unknown) => {
        assert.ok(e instanceof StorageIdentityError);
        assert.match(e.message, /node 1/);
        assert.match(e.message, /node 2/);
        return true;
      });
    },
  },
  {
    name: "entries that leave a gap after the log are a bug of the caller (assertion)",
    fn: async (h) => {
      const s = await h.open();
      await s.save({ snapshot: null, entries: entries(1, 2, 1), hardState: null });
      await assert.rejects(
        s.save({ snapshot: null, entries: [entry(4, 1)], hardState: null }),
        AssertionError,
      );
      await assert.rejects(
        s.save({ snapshot: null, entries: [entry(3, 1), entry(5, 1)], hardState: null }),
        AssertionError,
      );
      assert.deepEqual((await s.load()).entries, entries(1, 2, 1));
      await s.close();
    },
  },
  {
    name: "a closed storage refuses calls",
    fn: async (h) => {
      const s = await h.open();
      await s.close();
      await assert.rejects(s.load());
      await assert.rejects(s.save({ snapshot: null, entries: [], hardState: hs(1, 0, 0) }));
    },
  },
];

/**
 * Register the contract's cases as Deno tests for one storage.
 *
 * @param name the storage's name (prefixes each test name)
 * @param newHarness makes a fresh harness per case
 */
export function runStorageContract(name: string, newHarness: () => Promise<StorageHarness>): void {
  for (const c of CASES) {
    Deno.test(`${name}: ${c.name}`, async () => {
      const h = await newHarness();
      try {
        await c.fn(h);
      } finally {
        await h.dispose();
      }
    });
  }
}
