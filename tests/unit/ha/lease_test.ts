/**
 * The lease arithmetic and the lease tracker (lib/ha/lease.ts), with the
 * worst case of the drift argument worked through numerically.
 */

import assert from "node:assert/strict";
import {
  fencingBudgetMs,
  LEASE_CONTEXT_PREFIX,
  LEASE_ROUNDS_PENDING_MAX,
  leaseDurationMs,
  leaseRemainingMs,
  LeaseTracker,
  leaseUntil,
  voteWithholdMs,
} from "../../../lib/ha/mod.ts";

Deno.test("a voter withholds its vote for (electionTicks − 1) ticks after hearing from the leader", () => {
  assert.equal(voteWithholdMs(100, 10), 990);
  assert.equal(voteWithholdMs(2, 10), 10);
  assert.throws(() => voteWithholdMs(1, 10));
  assert.throws(() => voteWithholdMs(100, 0));
});

Deno.test("§6.4: without drift the lease is the whole withholding time", () => {
  assert.equal(leaseDurationMs(990, 0), 990);
  assert.equal(leaseUntil(1_000, 990, 0), 1_990);
  assert.equal(leaseRemainingMs(1_990, 1_500), 490);
  assert.equal(leaseRemainingMs(1_990, 2_000), -10);
});

Deno.test("§6.4 with drift: the lease ends (real time) no later than any voter may vote, in the worst case", () => {
  // The leader's clock runs slow (1 − d), a voter's fast (1 + d); the voter
  // heard the round the instant it started. Real time of the lease's end vs
  // the first real instant that voter may vote.
  for (const d of [0.001, 0.01, 0.05, 0.1, 0.3]) {
    for (const w of [10, 990, 4_990]) {
      const leaseRealEnd = leaseDurationMs(w, d) / (1 - d);
      const firstVote = w / (1 + d);
      assert.ok(leaseRealEnd <= firstVote + 1e-9, `d=${d} w=${w}`);
      // The one-sided margin W × (1 − d) is not enough with per-clock drift.
      const oneSidedEnd = (w * (1 - d)) / (1 - d);
      assert.ok(oneSidedEnd > firstVote, `one-sided margin at d=${d} w=${w}`);
    }
  }
  assert.throws(() => leaseDurationMs(990, 1));
  assert.throws(() => leaseDurationMs(990, -0.1));
});

Deno.test("the fencing budget is one decision interval plus the longest stop plus a margin", () => {
  assert.equal(fencingBudgetMs(), 50 + 250 + 50);
  assert.equal(fencingBudgetMs({ decisionIntervalMs: 100, stopMsMax: 1_000, marginMs: 0 }), 1_100);
  // The default leaves room in a steady lease: 1 s election timeout, 10 ms ticks,
  // 1% drift, a round every 100 ms.
  const steadyLeft = leaseDurationMs(voteWithholdMs(100, 10), 0.01) - 100;
  assert.ok(steadyLeft > 2 * fencingBudgetMs(), `steady lease ${steadyLeft} ms`);
});

Deno.test("tracker: a confirmed round gives a lease from its start; nothing before, nothing off the leader", () => {
  const lease = new LeaseTracker({ withholdMs: 990, maxClockDrift: 0 });
  assert.equal(lease.remainingMs(0), null);
  lease.becameLeader(4, 0);
  assert.equal(lease.remainingMs(10), -Infinity);
  const first = lease.startRound(100);
  assert.ok(first.startsWith(`${LEASE_CONTEXT_PREFIX}4:`));
  const second = lease.startRound(200);
  lease.confirmed(second);
  assert.equal(lease.remainingMs(300), 200 + 990 - 300);
  // The older round is settled by the newer one's answer: confirming it later changes nothing.
  lease.confirmed(first);
  assert.equal(lease.remainingMs(300), 890);
  lease.confirmed("someone else's read");
  assert.equal(lease.remainingMs(300), 890);
  lease.lost();
  assert.equal(lease.remainingMs(300), null);
});

Deno.test("tracker: a lease never shrinks when an older round is confirmed after a newer one", () => {
  const lease = new LeaseTracker({ withholdMs: 990, maxClockDrift: 0.01 });
  lease.becameLeader(2, 0);
  const a = lease.startRound(0);
  const b = lease.startRound(100);
  lease.confirmed(b);
  const afterB = lease.remainingMs(150)!;
  lease.confirmed(a);
  assert.equal(lease.remainingMs(150), afterB);
});

Deno.test("tracker: a new term starts without a lease", () => {
  const lease = new LeaseTracker({ withholdMs: 990 });
  lease.becameLeader(3, 0);
  lease.confirmed(lease.startRound(0));
  assert.ok(lease.remainingMs(10)! > 0);
  lease.becameLeader(5, 20);
  assert.equal(lease.remainingMs(30), -Infinity);
});

Deno.test("tracker: a transfer gives the lease up at once; rounds count again W after it ended", () => {
  const lease = new LeaseTracker({ withholdMs: 990, maxClockDrift: 0 });
  lease.becameLeader(3, 0);
  lease.confirmed(lease.startRound(0));
  lease.transferStarted(50);
  assert.equal(lease.remainingMs(60), -Infinity);
  // A round started during the transfer gives nothing, even once confirmed.
  lease.confirmed(lease.startRound(100));
  assert.equal(lease.remainingMs(110), -Infinity);
  lease.transferEnded(1_000);
  const early = lease.startRound(1_500);
  lease.confirmed(early);
  assert.equal(lease.remainingMs(1_600), -Infinity, "a round started within W of the end");
  const late = lease.startRound(2_000);
  lease.confirmed(late);
  assert.equal(lease.remainingMs(2_100), 2_000 + 990 - 2_100);
});

Deno.test(`tracker: at most ${LEASE_ROUNDS_PENDING_MAX} rounds are remembered`, () => {
  const lease = new LeaseTracker({ withholdMs: 990, maxClockDrift: 0 });
  lease.becameLeader(1, 0);
  const first = lease.startRound(0);
  for (let k = 1; k <= LEASE_ROUNDS_PENDING_MAX; k++) lease.startRound(k);
  lease.confirmed(first); // forgotten: no lease from it
  assert.equal(lease.remainingMs(100), -Infinity);
  assert.throws(() => new LeaseTracker({ withholdMs: 990 }).startRound(0), /not leader/);
});
