/**
 * WalStorage against MemoryRaftStorage as a model: random sequences of
 * appends (with conflicts), hard states, snapshots made here and received
 * from the leader, and restarts; after every step both load the same state.
 * Small segments, so rollover and compaction happen along the way. A failure
 * names its seed.
 */

import assert from "node:assert/strict";
import type { Entry, HardState, Snapshot } from "../../../lib/raft/types.ts";
import { MemoryRaftDisk, MemoryRaftStorage } from "../../../lib/storage/memory_raft_storage.ts";
import type { LoadedState, RaftStorage } from "../../../lib/storage/raft_storage.ts";
import { WalStorage } from "../../../lib/storage/wal_storage.ts";

const SEEDS = 12;
const STEPS = 80;

function rng(seed: number): (n: number) => number {
  let s = seed * 2654435761 % 2147483647 || 1;
  return (n) => {
    s = (s * 48271) % 2147483647;
    return s % n;
  };
}

function termAt(state: LoadedState, index: number): number | null {
  const snap = state.snapshot?.meta;
  if (snap && index === snap.index) return snap.term;
  const first = state.entries[0];
  if (!first || index < first.index) return index === 0 ? 0 : null;
  return state.entries[index - first.index]?.term ?? null;
}

function makeEntries(from: number, count: number, term: number, random: (n: number) => number) {
  const out: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const data = new Uint8Array(random(200));
    for (let k = 0; k < data.length; k++) data[k] = (from + i + k) & 0xff;
    out.push({ index: from + i, term, type: random(10) === 0 ? "conf_change" : "normal", data });
  }
  return out;
}

function snapshotAt(index: number, term: number): Snapshot {
  return {
    meta: { index, term, membership: { voters: [1, 2], learners: [] } },
    data: new TextEncoder().encode(`snapshot ${index}/${term}`),
  };
}

async function runSeed(seed: number): Promise<void> {
  const random = rng(seed);
  const dir = await Deno.makeTempDir({ prefix: "pgraft-wal-model-" });
  const disk = new MemoryRaftDisk();
  const openBoth = async (): Promise<[RaftStorage, RaftStorage]> => [
    await WalStorage.open(dir, { nodeId: 1, segmentBytes: 1024 }),
    await MemoryRaftStorage.open(disk, { nodeId: 1 }),
  ];
  let [wal, model] = await openBoth();
  let term = 1;
  try {
    for (let step = 0; step < STEPS; step++) {
      const state = await model.load();
      const snapIndex = state.snapshot?.meta.index ?? 0;
      const last = snapIndex + state.entries.length;
      const hard = (): HardState => ({ term, vote: random(3), commit: random(last + 1) });
      const op = random(10);
      let what: string;
      if (op <= 4) {
        if (random(4) === 0) term++;
        const from = snapIndex + 1 + random(last - snapIndex + 1);
        const update = {
          snapshot: null,
          entries: makeEntries(from, random(6), term, random),
          hardState: random(2) ? hard() : null,
        };
        what = `append ${from} +${update.entries.length}`;
        await Promise.all([wal.save(update), model.save(update)]);
      } else if (op === 5 && last > snapIndex) {
        const index = snapIndex + 1 + random(last - snapIndex);
        const s = snapshotAt(index, termAt(state, index)!);
        what = `saveSnapshot ${index}`;
        await Promise.all([wal.saveSnapshot(s), model.saveSnapshot(s)]);
      } else if (op === 6) {
        const index = snapIndex + 1 + random(last - snapIndex + 5);
        const held = termAt(state, index);
        let snapTerm = term;
        if (held !== null && random(2)) snapTerm = held;
        else term = ++snapTerm;
        const update = {
          snapshot: snapshotAt(index, snapTerm),
          entries: random(2) ? makeEntries(index + 1, random(4), term, random) : [],
          hardState: { term, vote: 0, commit: index },
        };
        what = `leader snapshot ${index}/${snapTerm}`;
        await Promise.all([wal.save(update), model.save(update)]);
      } else if (op === 7) {
        what = "hard state";
        const update = { snapshot: null, entries: [], hardState: hard() };
        await Promise.all([wal.save(update), model.save(update)]);
      } else {
        what = "restart";
        await Promise.all([wal.close(), model.close()]);
        [wal, model] = await openBoth();
      }
      assert.deepEqual(await wal.load(), await model.load(), `seed ${seed}, step ${step}: ${what}`);
    }
  } finally {
    await Promise.all([wal.close(), model.close()]);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("WalStorage loads what the in-memory model loads after random saves, snapshots and restarts", async () => {
  const base = Date.now() % 100_000;
  for (let i = 0; i < SEEDS; i++) await runSeed(base + i);
});
