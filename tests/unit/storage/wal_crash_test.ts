/**
 * Crash test: a child process (wal_crash_child.ts) appends in a loop and
 * prints each acknowledged index; it is killed with SIGKILL at a random
 * moment; on reopening, every acknowledged entry is present and intact.
 * Many rounds on the same directory, each resuming where the last left. A
 * SIGKILL leaves the page cache whole, so a torn record can only be one the
 * file ends inside (case (a) of the torn-tail rule, lib/storage/wal/torn.ts).
 */

import assert from "node:assert/strict";
import { WalStorage } from "../../../lib/storage/wal_storage.ts";
import { crashEntry, crashTerm } from "./wal_crash_child.ts";

const CHILD = new URL("./wal_crash_child.ts", import.meta.url).pathname;
const ROUNDS = 20;
/** The kill comes this long (at most) after the child's first acknowledgement. */
const KILL_WITHIN_MS = 500;
/** A child that has not acknowledged anything by then is killed and the test fails. */
const ROUND_TIMEOUT_MS = 20_000;

interface Round {
  acked: number;
  acks: number;
  signal: Deno.Signal | null;
  stderr: string;
}

/** Run the child until it is killed; returns the last index it acknowledged. */
async function runChild(dir: string, seed: number, killAfterMs: number): Promise<Round> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", CHILD, dir, String(seed)],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  };
  const stderrText = new Response(child.stderr).text();
  const safety = setTimeout(kill, ROUND_TIMEOUT_MS);
  let killTimer: ReturnType<typeof setTimeout> | null = null;
  let acked = 0;
  let acks = 0;
  let pending = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    // Ends when the child dies and its stdout closes (bounded by the safety timer).
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      const lines = pending.split("\n");
      pending = lines.pop()!; // a line cut by the kill is not an acknowledgement
      for (const line of lines) {
        const index = Number(line);
        assert.ok(Number.isSafeInteger(index) && index > acked, `bad acknowledgement ${line}`);
        acked = index;
        acks++;
      }
      if (acks > 0 && killTimer === null) killTimer = setTimeout(kill, killAfterMs);
    }
  } finally {
    clearTimeout(safety);
    if (killTimer !== null) clearTimeout(killTimer);
    reader.releaseLock();
  }
  const status = await child.status;
  return { acked, acks, signal: status.signal, stderr: await stderrText };
}

Deno.test("every entry acknowledged before a SIGKILL is present and intact after reopening", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pgraft-wal-crash-" });
  const seed = (Date.now() % 1_000_000) + 1;
  let random = seed;
  const next = (n: number) => {
    random = (random * 48271) % 2147483647;
    return random % n;
  };
  try {
    let acked = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const killAfterMs = next(KILL_WITHIN_MS);
      const result = await runChild(dir, seed + round, killAfterMs);
      const where = `seed ${seed}, round ${round}, killed ${killAfterMs} ms after the first ack`;
      assert.equal(
        result.signal,
        "SIGKILL",
        `${where}: the child ended by itself: ${result.stderr}`,
      );
      assert.ok(result.acks > 0, `${where}: no acknowledgement: ${result.stderr}`);
      assert.ok(result.acked > acked, where);
      acked = result.acked;

      const storage = await WalStorage.open(dir, { nodeId: 1, segmentBytes: 32 * 1024 });
      try {
        const { tornBytes, tornReason } = storage.recovery;
        assert.ok(tornBytes === 0 || /^\(a\) /.test(tornReason ?? ""), `${where}: ${tornReason}`);
        const state = await storage.load();
        const snapIndex = state.snapshot?.meta.index ?? 0;
        const last = snapIndex + state.entries.length;
        assert.ok(last >= acked, `${where}: log ends at ${last}, ${acked} was acknowledged`);
        assert.ok(state.hardState.commit >= acked, where);
        state.entries.forEach((e, i) => assert.deepEqual(e, crashEntry(snapIndex + 1 + i), where));
        if (state.snapshot) {
          assert.equal(state.snapshot.meta.term, crashTerm(snapIndex), where);
          assert.equal(new TextDecoder().decode(state.snapshot.data), `snapshot ${snapIndex}`);
        }
      } finally {
        await storage.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
