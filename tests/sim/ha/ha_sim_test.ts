/**
 * The HA simulator over many seeds: no property is ever violated by the real
 * controller, and every planted bug is caught within its seed budget. A
 * failure prints the seed and how to replay it (SEED=n deno run
 * --allow-env=SEED tests/sim/ha/main.ts).
 */

import assert from "node:assert/strict";
import { type HaRunOptions, haViolationReport, runHaSeed } from "./run.ts";
import type { PlantedBug } from "./world.ts";

/** Run seeds [start, start + count); fail with the first violation's report. */
function expectClean(start: number, count: number, options: HaRunOptions): void {
  let promotions = 0;
  let acknowledged = 0;
  for (let seed = start; seed < start + count; seed++) {
    const result = runHaSeed(seed, options);
    if (result.violation !== null) assert.fail(haViolationReport(result));
    promotions += result.promotions;
    acknowledged += result.acknowledged;
  }
  // The runs did something: failovers happened and clients committed.
  assert.ok(promotions > count, `only ${promotions} promotions in ${count} seeds`);
  assert.ok(acknowledged > 1_000 * count, `only ${acknowledged} commits in ${count} seeds`);
}

/** The first seed from 1 whose run the planted bug breaks, within `budget` seeds. */
function expectCaught(bug: PlantedBug, budget: number, options: HaRunOptions, property: RegExp) {
  for (let seed = 1; seed <= budget; seed++) {
    const result = runHaSeed(seed, { ...options, bugs: [bug] });
    if (result.violation === null) continue;
    assert.match(result.violation, property, haViolationReport(result, [bug]));
    return seed;
  }
  assert.fail(`planted bug ${bug} was not caught within ${budget} seeds`);
}

Deno.test("HA sim: every fault, 3 and 5 nodes, synchronous and asynchronous: 100 seeds without a violation", () => {
  expectClean(1, 100, {});
});

Deno.test("HA sim: faults aimed at the lease, clocks at ±10%: 50 seeds without a violation", () => {
  expectClean(1, 50, { profile: "lease" });
});

Deno.test("HA sim: a seed replays exactly", () => {
  const a = runHaSeed(7, {});
  const b = runHaSeed(7, {});
  assert.deepEqual(a, b);
});

Deno.test("HA sim catches: promoting without freezing and comparing the standbys", () => {
  expectCaught("promote_without_collecting", 40, { synchronous: true }, /\(d\)/);
});

Deno.test("HA sim catches: fencing too late (no fencing budget)", () => {
  expectCaught("fence_too_late", 20, {}, /\(a2\)/);
});

Deno.test("HA sim catches: a lease without the drift margin", () => {
  expectCaught("lease_without_drift_margin", 30, { profile: "lease" }, /\(b\)/);
});

Deno.test("HA sim catches: promoting before the primary record is committed", () => {
  expectCaught("promote_before_commit", 40, { profile: "lease" }, /\(e\)/);
});

Deno.test("HA sim catches: a drift margin on one side only, W × (1 − d)", () => {
  expectCaught("one_sided_drift_margin", 60, { profile: "lease" }, /\(b\)/);
});

Deno.test("HA sim catches: a Raft core that votes at once after a restart (no hold, lib/raft/vote_hold.ts)", () => {
  expectCaught("no_vote_hold_after_restart", 300, { profile: "lease" }, /\(b\)/);
});
