import assert from "node:assert/strict";
import { missedHeartbeats } from "../../../lib/raft/failure_detection.ts";
import { electionTimeoutTicks, type TimerKind } from "../../../lib/raft/timing.ts";
import { seeded } from "./harness.ts";

const T = {
  heartbeatTicks: 4,
  electionTicks: 40,
  electionJitterTicks: 10,
  appendBatchSize: 1,
  snapshotThreshold: 1,
  maxInflight: 1,
};

/** The smallest and largest timeout drawn over many draws. */
function range(kind: TimerKind): [number, number] {
  const random = seeded(7);
  let lo = Infinity;
  let hi = -Infinity;
  for (let k = 0; k < 2000; k++) {
    const v = electionTimeoutTicks(T, random, kind);
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return [lo, hi];
}

Deno.test("§5.2 randomized timeouts: a follower draws [election, election + jitter), a failed candidate retries from half of it", () => {
  assert.deepEqual(range({ campaigning: false, leaderGone: false }), [40, 49]);
  assert.deepEqual(range({ campaigning: true, leaderGone: false }), [20, 29]);
});

Deno.test("thesis §9.6 with evidence: a follower whose leader is gone pre-votes within a heartbeat interval; its first round gives up after a heartbeat interval and the jitter", () => {
  assert.deepEqual(range({ campaigning: false, leaderGone: true }), [0, 4]);
  assert.deepEqual(range({ campaigning: true, leaderGone: true }), [5, 14]);
});

Deno.test("a follower has missed its leader's heartbeats after two heartbeat intervals unheard", () => {
  assert.equal(missedHeartbeats(T, 7), false);
  assert.equal(missedHeartbeats(T, 8), true);
});
