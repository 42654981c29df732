/**
 * PgStorage latency on a local PostgreSQL (fsync and synchronous_commit on):
 * prints p50/p99 as JSON and fails if a persist is far off the ~1 round trip
 * (plus one WAL flush) it should take.
 */

import assert from "node:assert/strict";
import { migrate } from "../../../lib/postgres/migrations.ts";
import type { Entry } from "../../../lib/raft/types.ts";
import { type ApplyItem, PgStorage } from "../../../lib/storage/mod.ts";
import { connect, withPgServer } from "../../helpers/pg.ts";

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function timed(n: number, fn: (i: number) => Promise<void>): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await fn(i);
    samples.push(performance.now() - start);
  }
  return samples;
}

const round = (ms: number) => Math.round(ms * 100) / 100;

Deno.test("persist and apply latencies stay within one transaction's cost", async () => {
  await withPgServer(async (server) => {
    const sql = connect(server);
    try {
      await migrate(sql);
    } finally {
      await sql.end();
    }
    const storage = await PgStorage.open({ connection: server.connection });
    try {
      const value = new Uint8Array(100).fill(120);
      let next = 1;
      const entry = (index: number): Entry => ({ index, term: 1, type: "normal", data: value });
      // Warm up the connections and prepared statements.
      for (let i = 0; i < 20; i++) {
        await storage.persist({
          snapshot: null,
          entries: [entry(next)],
          hardState: { term: 1, vote: 1, commit: next },
        });
        next++;
      }
      const one = await timed(300, async () => {
        await storage.persist({
          snapshot: null,
          entries: [entry(next)],
          hardState: { term: 1, vote: 1, commit: next },
        });
        next++;
      });
      const batch = await timed(40, async () => {
        const entries = Array.from({ length: 512 }, (_, i) => entry(next + i));
        await storage.persist({
          snapshot: null,
          entries,
          hardState: { term: 1, vote: 1, commit: next + 511 },
        });
        next += 512;
      });
      let applied = 0;
      const apply = await timed(40, async () => {
        const items: ApplyItem[] = Array.from({ length: 512 }, (_, i) => ({
          index: applied + 1 + i,
          term: 1,
          command: { op: "kv_put", key: `key/${(applied + i) % 5000}`, value },
        }));
        const results = await storage.apply(items);
        assert.equal(results.length, 512);
        applied += 512;
      });
      const figures = {
        persist1_p50_ms: round(percentile(one, 0.5)),
        persist1_p99_ms: round(percentile(one, 0.99)),
        persist512_p50_ms: round(percentile(batch, 0.5)),
        persist512_p99_ms: round(percentile(batch, 0.99)),
        apply512_kv_put_p50_ms: round(percentile(apply, 0.5)),
        apply512_kv_put_p99_ms: round(percentile(apply, 0.99)),
      };
      console.log(JSON.stringify(figures));
      assert.equal((await storage.load()).entries.length, next - 1);
      // Generous bounds (shared 2-core machines): these catch a per-entry round trip.
      assert.ok(figures.persist1_p50_ms < 15, `1-entry persist p50 ${figures.persist1_p50_ms} ms`);
      assert.ok(
        figures.persist512_p50_ms < 80,
        `512-entry persist p50 ${figures.persist512_p50_ms}`,
      );
      assert.ok(
        figures.apply512_kv_put_p50_ms < 150,
        `apply p50 ${figures.apply512_kv_put_p50_ms}`,
      );
    } finally {
      await storage.close();
    }
  });
});
