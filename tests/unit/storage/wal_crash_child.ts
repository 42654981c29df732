/**
 * Child process of wal_crash_test.ts: appends to a WalStorage in a loop and
 * prints the last index of every save once it resolved (acknowledged), until
 * it is killed. Every few saves it also takes a snapshot, so that compaction
 * and rollover run while it may be killed.
 *
 * Usage: deno run --allow-read --allow-write wal_crash_child.ts <dir> <seed>
 *
 * @module
 */

import type { Entry } from "../../../lib/raft/types.ts";
import { WalStorage } from "../../../lib/storage/wal_storage.ts";

/** Saves before the child stops by itself (the test kills it long before). */
const SAVES_MAX = 200_000;

/**
 * The term of entry `index` in the crash test's log.
 *
 * @param index the entry's index
 * @returns its term
 */
export function crashTerm(index: number): number {
  return 1 + Math.floor(index / 500);
}

/**
 * The entry at `index` the crash test writes: its data is derived from the index.
 *
 * @param index the entry's index
 * @returns the entry
 */
export function crashEntry(index: number): Entry {
  const data = new Uint8Array((index * 7919) % 300);
  for (let i = 0; i < data.length; i++) data[i] = (index + i * 31) & 0xff;
  return { index, term: crashTerm(index), type: index % 97 === 0 ? "conf_change" : "normal", data };
}

async function main(dir: string, seed: number): Promise<void> {
  let state = seed >>> 0 || 1;
  const random = (n: number) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  const storage = await WalStorage.open(dir, { nodeId: 1, segmentBytes: 32 * 1024 });
  const loaded = await storage.load();
  let next = (loaded.snapshot?.meta.index ?? 0) + loaded.entries.length + 1;
  for (let save = 0; save < SAVES_MAX; save++) {
    const count = 1 + random(40);
    const entries: Entry[] = [];
    for (let i = 0; i < count; i++) entries.push(crashEntry(next + i));
    const last = next + count - 1;
    await storage.save({
      snapshot: null,
      entries,
      hardState: { term: crashTerm(last), vote: 1, commit: last },
    });
    next = last + 1;
    console.log(last);
    if (save % 25 === 24) {
      const index = last - random(20);
      await storage.saveSnapshot({
        meta: { index, term: crashTerm(index), membership: { voters: [1], learners: [] } },
        data: new TextEncoder().encode(`snapshot ${index}`),
      });
    }
  }
  await storage.close();
}

if (import.meta.main) {
  const [dir, seed] = Deno.args;
  if (!dir || !seed) throw new Error("usage: wal_crash_child.ts <dir> <seed>");
  await main(dir, Number(seed));
}
