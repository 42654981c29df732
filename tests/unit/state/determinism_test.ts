import assert from "node:assert/strict";
import type { Entry } from "../../../lib/raft/types.ts";
import { StateMachine } from "../../../lib/state/mod.ts";
import { Rng } from "../../sim/rng.ts";
import { randomEntries } from "./helpers.ts";

/** Entries whose data buffers are fresh copies, so no machine shares bytes with another. */
function copies(entries: Entry[]): Entry[] {
  return entries.map((e) => ({ ...e, data: e.data.slice() }));
}

Deno.test("two machines fed the same random entries end with byte-identical snapshots", () => {
  const seedStart = 100;
  for (let seed = seedStart; seed < seedStart + 20; seed++) {
    const entries = randomEntries(new Rng(seed), 1, 1500);
    const options = { kvQuotaBytes: 2500 };
    const a = new StateMachine(options);
    const b = new StateMachine(options);
    const resultsA = copies(entries).map((e) => a.apply(e));
    const resultsB = copies(entries).map((e) => b.apply(e));
    assert.deepEqual(resultsB, resultsA, `seed ${seed}`);
    assert.deepEqual(b.snapshot(), a.snapshot(), `seed ${seed}`);
    assert.ok(
      resultsA.some((r) => !r.ok && r.code === "quota_exceeded"),
      `seed ${seed}: quota hit`,
    );
  }
});

Deno.test("a machine restored midway and fed the rest ends identical to one fed everything", () => {
  for (let seed = 200; seed < 210; seed++) {
    const rng = new Rng(seed);
    const entries = randomEntries(rng, 1, 1000);
    const cut = rng.range(0, entries.length);
    const options = { kvQuotaBytes: 2500 };
    const whole = new StateMachine(options);
    for (const e of entries) whole.apply(e);
    const first = new StateMachine(options);
    for (const e of entries.slice(0, cut)) first.apply(e);
    // Two hops through an image: restore, apply a little, snapshot, restore again.
    let resumed = StateMachine.restore(first.snapshot(), options);
    const mid = rng.range(cut, entries.length);
    for (const e of entries.slice(cut, mid)) resumed.apply(e);
    resumed = StateMachine.restore(resumed.snapshot(), options);
    for (const e of entries.slice(mid)) resumed.apply(e);
    assert.deepEqual(resumed.snapshot(), whole.snapshot(), `seed ${seed}, cut ${cut}`);
  }
});
