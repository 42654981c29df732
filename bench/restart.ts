/**
 * Restart time of a node whose Raft log holds 100,000 entries (100-byte
 * key-value puts, no snapshot): open the write-ahead log, load it, and have
 * the replica apply every committed entry to a fresh state machine through its
 * Ready loop — what `pgraft run` does before the node serves its state.
 *
 * `deno run -A bench/restart.ts [--entries N]` prints the JSON.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { poll } from "../lib/async.ts";
import { raftConfig, Replica } from "../lib/agent/replica.ts";
import { timingFor } from "../lib/agent/settings.ts";
import type { PgraftSettings } from "../lib/config/mod.ts";
import { bootstrapState, type Entry } from "../lib/raft/mod.ts";
import { encodeCommand } from "../lib/state/mod.ts";
import { WalStorage } from "../lib/storage/mod.ts";
import { progress, round } from "./stats.ts";

const VALUE = new Uint8Array(100).fill(0x61);
const BATCH = 512;

/** Fill a data directory with a log of `entries` committed puts (plus the bootstrap entry). */
async function fill(dir: string, entries: number): Promise<number> {
  const storage = await WalStorage.open(dir, { nodeId: 1 });
  try {
    const boot = bootstrapState([{ id: 1, context: '{"address":"127.0.0.1","port":1}' }]);
    await storage.save({ snapshot: null, entries: boot.entries, hardState: boot.hardState });
    let index = boot.entries.length;
    for (let done = 0; done < entries; done += BATCH) {
      const batch: Entry[] = [];
      for (let k = 0; k < Math.min(BATCH, entries - done); k++) {
        index++;
        const key = `restart/${String(index).padStart(7, "0")}`;
        batch.push({
          index,
          term: 1,
          type: "normal",
          data: encodeCommand({ op: "kv_put", key, value: VALUE }),
        });
      }
      await storage.save({
        snapshot: null,
        entries: batch,
        hardState: { term: 1, vote: 1, commit: index },
      });
    }
    return index;
  } finally {
    await storage.close();
  }
}

/** Open, load and replay; the time until the state machine has applied everything. */
async function restart(dir: string, lastIndex: number): Promise<Record<string, number>> {
  const settings = {
    heartbeatIntervalMs: 100,
    electionTimeoutMs: 1000,
    appendBatchSize: 512,
    snapshotThreshold: 1_000_000,
  } as PgraftSettings;
  const timing = timingFor(settings);
  const started = performance.now();
  const storage = await WalStorage.open(dir, { nodeId: 1 });
  const opened = performance.now();
  const { replica } = await Replica.open({
    config: raftConfig(1, timing, true),
    tickMs: timing.tickMs,
    storage,
    send: () => {},
    events: {
      softStateChanged: () => {},
      logAppended: () => {},
      snapshotInstalled: () => {},
      entriesApplied: () => {},
      snapshotTaken: () => {},
      snapshotFailed: () => {},
      storageFailed: (error) => console.error(error),
    },
  });
  const loaded = performance.now();
  replica.start();
  await poll(() => replica.appliedIndex >= lastIndex, {
    timeoutMs: 120_000,
    intervalMs: 2,
    what: "the replay",
  });
  const replayed = performance.now();
  replica.stop();
  await replica.whenIdle();
  await storage.close();
  return {
    open_ms: round(opened - started),
    load_ms: round(loaded - opened),
    replay_ms: round(replayed - loaded),
    total_ms: round(replayed - started),
    keys: replica.state.kvCount,
    rss_mb: round(Deno.memoryUsage().rss / 1024 / 1024),
  };
}

/**
 * Measure the restart of a node with `entries` entries in its log.
 *
 * @returns the figures, JSON-able
 */
export async function restartBench(entries = 100_000): Promise<Record<string, unknown>> {
  const dir = await Deno.makeTempDir({ prefix: "pgraft-restart-bench-" });
  try {
    progress(`restart: writing a log of ${entries} entries`);
    const last = await fill(dir, entries);
    progress("restart: opening, loading and replaying it");
    return { entries, entry_bytes: VALUE.length, ...await restart(dir, last) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { entries: { type: "string" } } });
  console.log(JSON.stringify(await restartBench(Number(values.entries ?? 100_000)), null, 2));
}
