/**
 * Storage benchmark (issue 4): PgStorage.persist of 100-byte entries, with the
 * hard state, as the agent persists a Ready: appends per second and latency at
 * batch sizes 1, 64 and 512, one call at a time.
 *
 * @module
 */

import type { PgServer } from "../lib/postgres/server.ts";
import type { Entry } from "../lib/raft/types.ts";
import { PgStorage } from "../lib/storage/mod.ts";
import { latencySummary, timedLoop } from "./stats.ts";

/** Persist benchmark on `server` (already migrated). */
export async function storageBench(
  server: PgServer,
  options: { quick: boolean },
): Promise<Record<string, unknown>> {
  const storage = await PgStorage.open({ connection: server.connection });
  try {
    const value = new Uint8Array(100).fill(120);
    let next = 1;
    const entry = (index: number): Entry => ({ index, term: 1, type: "normal", data: value });
    const persistBatch = async (size: number) => {
      const entries = Array.from({ length: size }, (_, i) => entry(next + i));
      await storage.persist({
        snapshot: null,
        entries,
        hardState: { term: 1, vote: 1, commit: next + size - 1 },
      });
      next += size;
    };
    // Warm up the pool's connections and the prepared statements.
    for (let i = 0; i < 20; i++) await persistBatch(1);
    const result: Record<string, unknown> = {};
    const plan: [number, number][] = options.quick
      ? [[1, 150], [64, 60], [512, 20]]
      : [[1, 500], [64, 200], [512, 80]];
    for (const [size, count] of plan) {
      const started = performance.now();
      const samples = await timedLoop(
        count,
        options.quick ? 3_000 : 10_000,
        () => persistBatch(size),
      );
      const seconds = (performance.now() - started) / 1000;
      result[`batch_${size}`] = {
        entries_per_s: Math.round((samples.length * size) / seconds),
        persists_per_s: Math.round(samples.length / seconds),
        ...latencySummary(samples),
      };
    }
    const one = result["batch_1"] as { p50_ms: number; p99_ms: number };
    result["durable_append_1_entry"] = { p50_ms: one.p50_ms, p99_ms: one.p99_ms };
    result["entry_bytes"] = value.length;
    result["log_entries_written"] = next - 1;
    result["note"] = "sequential persist calls (entries + hard state, one statement each)";
    return result;
  } finally {
    await storage.close();
  }
}
