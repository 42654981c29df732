/**
 * Raft log storage on the node's own disk: our write-ahead log (WalStorage)
 * beside node:sqlite (WAL journal, synchronous=FULL), on the same directory,
 * with the disk's raw fdatasync as the floor.
 *
 * Workloads: a durable append of one 100-byte entry (with its hard state),
 * one after another; a batch of 512 100-byte entries per durable append.
 * During each, a 1 ms setInterval measures how long the event loop was held
 * (timer lag: the gap between ticks minus 1 ms).
 *
 * `deno run -A bench/wal.ts [--quick] [--dir DIR]` prints the JSON.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import type { Entry } from "../lib/raft/types.ts";
import { WalStorage } from "../lib/storage/wal_storage.ts";
import { latencySummary, percentile, progress, round } from "./stats.ts";

/** Options of {@link walBench}. */
export interface WalBenchOptions {
  /** where to make the temporary directories (the disk under test). @default the system's temp dir */
  dir?: string;
  /** fewer rounds (a smoke run). @default false */
  quick?: boolean;
}

const ENTRY_BYTES = 100;
const BATCH_ENTRIES = 512;

interface LagSummary {
  ticks: number;
  p99_ms: number;
  worst_ms: number;
}

/** Watch the event loop with a 1 ms interval until stopped. */
function lagProbe(): { stop(): LagSummary } {
  const lags: number[] = [];
  let last = performance.now();
  const id = setInterval(() => {
    const now = performance.now();
    lags.push(Math.max(0, now - last - 1));
    last = now;
  }, 1);
  return {
    stop: () => {
      clearInterval(id);
      return {
        ticks: lags.length,
        p99_ms: round(percentile(lags, 0.99)),
        worst_ms: round(lags.length ? Math.max(...lags) : NaN),
      };
    },
  };
}

/** Let timers run between synchronous calls (a macrotask turn). */
const yieldToLoop = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** Run `op` `count` times (or until `maxMs`), timing each, with the lag probe on. */
async function measure(
  count: number,
  maxMs: number,
  op: (i: number) => Promise<void> | void,
  yieldBetween: boolean,
): Promise<{ samples: number[]; seconds: number; lag: LagSummary }> {
  const probe = lagProbe();
  const samples: number[] = [];
  const started = performance.now();
  const deadline = started + maxMs;
  for (let i = 0; i < count && performance.now() < deadline; i++) {
    const t = performance.now();
    await op(i);
    samples.push(performance.now() - t);
    if (yieldBetween) await yieldToLoop();
  }
  const seconds = (performance.now() - started) / 1000;
  return { samples, seconds, lag: probe.stop() };
}

function entryAt(index: number, value: Uint8Array): Entry {
  return { index, term: 1, type: "normal", data: value };
}

/** The file system type holding `path` (from /proc/self/mounts), or null. */
async function filesystemOf(path: string): Promise<string | null> {
  try {
    const real = await Deno.realPath(path);
    let best: { mount: string; type: string } | null = null;
    for (const line of (await Deno.readTextFile("/proc/self/mounts")).split("\n")) {
      const [, mount, type] = line.split(" ");
      if (!mount || !type || !(real === mount || real.startsWith(mount.replace(/\/$/, "") + "/"))) {
        continue;
      }
      if (!best || mount.length > best.mount.length) best = { mount, type };
    }
    return best ? `${best.type} on ${best.mount}` : null;
  } catch {
    return null;
  }
}

async function fdatasyncFloor(dir: string, count: number): Promise<Record<string, unknown>> {
  const file = await Deno.open(`${dir}/floor`, { write: true, create: true, append: true });
  try {
    const small = new Uint8Array(ENTRY_BYTES).fill(7);
    const run = await measure(count, 10_000, async () => {
      await file.write(small);
      await file.syncData();
    }, false);
    return { ...latencySummary(run.samples), event_loop_lag: run.lag };
  } finally {
    file.close();
  }
}

async function walWorkloads(dir: string, rounds: { one: number; batch: number }) {
  const storage = await WalStorage.open(`${dir}/wal-storage`, { nodeId: 1 });
  try {
    const value = new Uint8Array(ENTRY_BYTES).fill(120);
    let next = 1;
    // Warm up (JIT, file growth) with both shapes.
    for (let i = 0; i < 20; i++) {
      const count = i % 2 === 0 ? 1 : BATCH_ENTRIES;
      const entries: Entry[] = [];
      for (let k = 0; k < count; k++) entries.push(entryAt(next + k, value));
      next += count;
      await storage.save({ snapshot: null, entries, hardState: null });
    }
    const one = await measure(rounds.one, 15_000, async () => {
      await storage.save({
        snapshot: null,
        entries: [entryAt(next, value)],
        hardState: { term: 1, vote: 1, commit: next - 1 },
      });
      next++;
    }, false);
    const batch = await measure(rounds.batch, 15_000, async () => {
      const entries: Entry[] = new Array(BATCH_ENTRIES);
      for (let i = 0; i < BATCH_ENTRIES; i++) entries[i] = entryAt(next + i, value);
      next += BATCH_ENTRIES;
      await storage.save({
        snapshot: null,
        entries,
        hardState: { term: 1, vote: 1, commit: next - 1 },
      });
    }, false);
    return { one, batch };
  } finally {
    await storage.close();
  }
}

function sqliteWorkloads(dir: string, rounds: { one: number; batch: number }) {
  const db = new DatabaseSync(`${dir}/raft.sqlite`);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("PRAGMA synchronous=FULL");
  db.exec(
    "CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, type INTEGER NOT NULL, data BLOB NOT NULL)",
  );
  db.exec(
    "CREATE TABLE hard_state (id INTEGER PRIMARY KEY CHECK (id = 1), term INTEGER, vote INTEGER, commit_index INTEGER)",
  );
  db.exec("INSERT INTO hard_state VALUES (1, 0, 0, 0)");
  const insert = db.prepare(
    "INSERT OR REPLACE INTO log (idx, term, type, data) VALUES (?, ?, ?, ?)",
  );
  const setHard = db.prepare(
    "UPDATE hard_state SET term = ?, vote = ?, commit_index = ? WHERE id = 1",
  );
  const value = new Uint8Array(ENTRY_BYTES).fill(120);
  let next = 1;
  const save = (count: number) => {
    db.exec("BEGIN");
    for (let i = 0; i < count; i++) insert.run(next + i, 1, 0, value);
    next += count;
    setHard.run(1, 1, next - 1);
    db.exec("COMMIT");
  };
  for (let i = 0; i < 20; i++) save(i % 2 === 0 ? 1 : BATCH_ENTRIES); // warm up
  return {
    db,
    // The calls are synchronous: yield between them so the probe can see each one's blocking.
    one: () => measure(rounds.one, 15_000, () => save(1), true),
    batch: () => measure(rounds.batch, 15_000, () => save(BATCH_ENTRIES), true),
  };
}

function summarize(
  run: { samples: number[]; seconds: number; lag: LagSummary },
  entriesPerOp: number,
) {
  return {
    ...latencySummary(run.samples),
    entries_per_s: Math.round((run.samples.length * entriesPerOp) / run.seconds),
    event_loop_lag: run.lag,
  };
}

/**
 * Measure the disk's fdatasync, WalStorage and node:sqlite on the same directory.
 *
 * @param options where and how long
 * @returns JSON-able figures, the targets and whether they are met
 */
export async function walBench(options: WalBenchOptions = {}): Promise<Record<string, unknown>> {
  const dir = await Deno.makeTempDir({ dir: options.dir, prefix: "pgraft-wal-bench-" });
  const rounds = options.quick ? { one: 300, batch: 60 } : { one: 2000, batch: 300 };
  try {
    progress("wal: idle loop and fdatasync floor");
    const idle = await measure(1, 1000, () => new Promise((r) => setTimeout(r, 500)), false);
    const floor = await fdatasyncFloor(dir, rounds.one);
    progress("wal: WalStorage");
    const wal = await walWorkloads(dir, rounds);
    progress("wal: node:sqlite");
    const sqlite = sqliteWorkloads(dir, rounds);
    let sqliteOne, sqliteBatch;
    try {
      sqliteOne = await sqlite.one();
      sqliteBatch = await sqlite.batch();
    } finally {
      sqlite.db.close();
    }
    const floorP50 = (floor as { p50_ms: number }).p50_ms;
    const walOne = summarize(wal.one, 1);
    const walBatch = summarize(wal.batch, BATCH_ENTRIES);
    const sqlOne = summarize(sqliteOne, 1);
    const sqlBatch = summarize(sqliteBatch, BATCH_ENTRIES);
    return {
      dir,
      filesystem: await filesystemOf(dir),
      entry_bytes: ENTRY_BYTES,
      idle_event_loop_lag: idle.lag,
      fdatasync_100_bytes: floor,
      wal_storage: {
        append_1_entry: { ...walOne, p50_vs_fdatasync: round(walOne.p50_ms / floorP50) },
        batch_512_entries: walBatch,
      },
      node_sqlite: {
        settings: "journal_mode=WAL, synchronous=FULL, one transaction per save",
        append_1_entry: { ...sqlOne, p50_vs_fdatasync: round(sqlOne.p50_ms / floorP50) },
        batch_512_entries: sqlBatch,
      },
      targets: {
        append_p50_le_2x_fdatasync: walOne.p50_ms <= 2 * floorP50,
        batch_ge_200000_entries_per_s: walBatch.entries_per_s >= 200_000,
      },
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { quick: { type: "boolean", default: false }, dir: { type: "string" } },
    strict: true,
  });
  console.log(JSON.stringify(await walBench({ quick: values.quick, dir: values.dir }), null, 2));
}
