/**
 * Micro-benchmark of the state machine; prints one JSON line of medians over
 * a few rounds (after a warm-up round, so the JIT has compiled the hot paths).
 *
 *     deno run --v8-flags=--expose-gc --allow-env=BENCH_CLOCK \
 *       bench/state.ts [keys] [rounds]
 *
 * @module
 */

import process from "node:process";
import type { Entry } from "../lib/raft/types.ts";
import { encodeCommand, StateMachine } from "../lib/state/mod.ts";

const KEYS = Number(Deno.args[0] ?? 100_000);
const ROUNDS = Number(Deno.args[1] ?? 5);
const VALUE_BYTES = 100;
const CPU_CLOCK = Deno.env.get("BENCH_CLOCK") === "cpu";

/** Keys spread over the key space, so inserts land all over the sorted index. */
const keyOf = (i: number) => `users/${((i * 7919) % KEYS).toString().padStart(7, "0")}/profile`;

function putEntries(first: number, count: number): Entry[] {
  const value = new Uint8Array(VALUE_BYTES).fill(7);
  const entries: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const data = encodeCommand({ op: "kv_put", key: keyOf(i), value });
    entries.push({ index: first + i, term: 1, type: "normal", data });
  }
  return entries;
}

/**
 * Milliseconds `fn` took: CPU time of the process (user + system, all
 * threads) when `BENCH_CLOCK=cpu`, which a loaded machine disturbs less than
 * the default wall-clock time.
 */
function ms(fn: () => void): number {
  if (CPU_CLOCK) {
    const start = process.cpuUsage();
    fn();
    const used = process.cpuUsage(start);
    return (used.user + used.system) / 1000;
  }
  const start = performance.now();
  fn();
  return performance.now() - start;
}

function heap(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const m = Deno.memoryUsage();
  return m.heapUsed + m.external;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

interface Round {
  insertUs: number;
  overwriteUs: number;
  snapshotMs: number;
  restoreMs: number;
  listUs: number;
  getUs: number;
  bytesPerKey: number;
  imageBytes: number;
}

function round(): Round {
  const inserts = putEntries(1, KEYS);
  const overwrites = putEntries(KEYS + 1, KEYS);
  const before = heap();
  const sm = new StateMachine({ kvQuotaBytes: 1 << 30 });
  const insertMs = ms(() => {
    for (const e of inserts) sm.apply(e);
  });
  const bytesPerKey = (heap() - before) / KEYS;
  const overwriteMs = ms(() => {
    for (const e of overwrites) sm.apply(e);
  });
  let image: Uint8Array = new Uint8Array();
  const snapshotMs = ms(() => image = sm.snapshot());
  let restored: StateMachine | null = null;
  const restoreMs = ms(() => restored = StateMachine.restore(image));
  if (restored!.kvCount !== KEYS) throw new Error("restore lost keys");
  const lists = 1000;
  const listMs = ms(() => {
    for (let i = 0; i < lists; i++) sm.kvList(`users/${String(i * 97).padStart(5, "0")}`, 100);
  });
  const getMs = ms(() => {
    for (let i = 0; i < KEYS; i++) sm.kvGet(keyOf(i));
  });
  return {
    insertUs: insertMs * 1000 / KEYS,
    overwriteUs: overwriteMs * 1000 / KEYS,
    snapshotMs,
    restoreMs,
    listUs: listMs * 1000 / lists,
    getUs: getMs * 1000 / KEYS,
    bytesPerKey,
    imageBytes: image.length,
  };
}

if (import.meta.main) {
  round(); // warm-up
  const rounds = Array.from({ length: ROUNDS }, round);
  const m = (f: (r: Round) => number, digits = 2) => +median(rounds.map(f)).toFixed(digits);
  const insertUs = m((r) => r.insertUs);
  const overwriteUs = m((r) => r.overwriteUs);
  console.log(JSON.stringify({
    clock: CPU_CLOCK ? "cpu" : "wall",
    keys: KEYS,
    valueBytes: VALUE_BYTES,
    insertApplyUs: insertUs,
    insertApplyPerSec: Math.round(1e6 / insertUs),
    overwriteApplyUs: overwriteUs,
    overwriteApplyPerSec: Math.round(1e6 / overwriteUs),
    snapshotMs: m((r) => r.snapshotMs, 1),
    snapshotBytes: rounds[0]!.imageBytes,
    restoreMs: m((r) => r.restoreMs, 1),
    kvList100Us: m((r) => r.listUs, 1),
    kvGetUs: m((r) => r.getUs),
    memoryBytesPerKey: m((r) => r.bytesPerKey, 0),
  }));
}
