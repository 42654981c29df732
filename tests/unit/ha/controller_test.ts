/**
 * The HA controller's rules, one scenario each: inputs → the expected action.
 * Each test names the rule of lib/ha/controller.ts it checks.
 */

import assert from "node:assert/strict";
import { decide, desiredUpstream, type HaAction, isEntitled } from "../../../lib/ha/mod.ts";
import { at, follower, frozenAt, leader, local, newLeader, report } from "./helpers.ts";

const SYNC_3_FOR_2 = "ANY 1 (pgraft_node_1, pgraft_node_3)";

function action(inputs: Parameters<typeof decide>[0]): HaAction {
  return decide(inputs).action;
}

// ---- rule 1: never wipe another system's data directory ----------------------------------

Deno.test("rule 1: a foreign data directory is reported and left alone, even with a re-clone allowed", () => {
  const inputs = follower({
    server: local({ state: "refused", detail: "PG_VERSION says 9.6" }),
    recloneAllowed: true,
  });
  const decision = decide(inputs);
  assert.equal(decision.action.type, "problem");
  assert.equal(decision.action.type === "problem" && decision.action.event, "postgres_refused");
  assert.match(decision.reason, /never wipes/);
});

// ---- rule 2: only the entitled leader's server accepts writes ------------------------------

Deno.test("rule 2: a primary on a follower is fenced at once (immediate stop)", () => {
  const inputs = follower({ server: local({ state: "primary", wal: at(3, 700) }) });
  assert.deepEqual(action(inputs), { type: "fence", mode: "immediate" });
});

Deno.test("rule 2: a leader whose lease is below the fencing budget fences before another can be elected", () => {
  const decision = decide(leader({ leaseRemainingMs: 349 }));
  assert.deepEqual(decision.action, { type: "fence", mode: "immediate" });
  assert.match(decision.reason, /349 ms left, budget 350 ms/);
  assert.equal(action(leader({ leaseRemainingMs: 350 })).type, "wait");
});

Deno.test("rule 2: a leader with no lease yet (a new term) does not keep a primary", () => {
  assert.deepEqual(action(leader({ leaseRemainingMs: -Infinity })), {
    type: "fence",
    mode: "immediate",
  });
});

Deno.test("rule 2: a promotion under way is stopped when the lease runs low", () => {
  const inputs = newLeader({
    primary: { nodeId: 2, timeline: 4 },
    leaseRemainingMs: 100,
    inProgress: { op: "promote", sinceMs: 9_900 },
  });
  assert.deepEqual(action(inputs), { type: "fence", mode: "immediate" });
});

Deno.test("rule 2: the primary must be the one the record names, on the record's timeline", () => {
  assert.deepEqual(action(leader({ primary: { nodeId: 3, timeline: 4 } })), {
    type: "fence",
    mode: "immediate",
  });
  const mismatch = decide(leader({ primary: { nodeId: 1, timeline: 4 } }));
  assert.deepEqual(mismatch.action, { type: "fence", mode: "immediate" });
  assert.match(mismatch.reason, /timeline mismatch/);
});

Deno.test("rule 2: a leader that has not applied its own term's entry is not entitled", () => {
  const inputs = leader({
    raft: {
      role: "leader",
      term: 5,
      leaderId: 1,
      voters: [1, 2, 3],
      transferTarget: 0,
      caughtUp: false,
    },
  });
  assert.equal(isEntitled(inputs), false);
  assert.deepEqual(action(inputs), { type: "fence", mode: "immediate" });
  const standby = { ...inputs, server: local(frozenAt(3, 600)) };
  assert.equal(action(standby).type, "wait");
});

Deno.test("rule 2: a leader handing over leadership keeps no primary", () => {
  const inputs = leader({
    raft: {
      role: "leader",
      term: 5,
      leaderId: 1,
      voters: [1, 2, 3],
      transferTarget: 3,
      caughtUp: true,
    },
  });
  assert.equal(isEntitled(inputs), false);
  assert.deepEqual(action(inputs), { type: "fence", mode: "immediate" });
});

// ---- the entitled leader's primary -----------------------------------------------------------

Deno.test("steady primary: synchronous_standby_names is set to ANY k, then nothing to do", () => {
  const wrong = leader({ server: local({ state: "primary", wal: at(3, 600) }) });
  assert.deepEqual(action(wrong), {
    type: "set_synchronous_standby_names",
    value: "ANY 1 (pgraft_node_2, pgraft_node_3)",
  });
  assert.equal(action(leader()).type, "wait");
  assert.deepEqual(action(leader({ synchronous: false })), {
    type: "set_synchronous_standby_names",
    value: "",
  });
});

Deno.test("bootstrap: the leader records its running server as the primary", () => {
  assert.deepEqual(action(leader({ primary: null })), {
    type: "propose_primary",
    nodeId: 1,
    timeline: 3,
  });
  const proposed = leader({ primary: null, proposedPrimary: { nodeId: 1, timeline: 3 } });
  assert.equal(action(proposed).type, "wait");
});

// ---- rule 3: start as a standby first --------------------------------------------------------

Deno.test("rule 3: a stopped server starts as a standby of the recorded primary", () => {
  const stopped = local({ state: "stopped", clean: false, rewindFailed: false, wal: null });
  assert.deepEqual(action(follower({ server: stopped })), { type: "start_standby", upstream: 1 });
  // The recorded primary is not the leader: start frozen.
  const noLeader = follower({
    server: stopped,
    raft: {
      role: "follower",
      term: 6,
      leaderId: 0,
      voters: [1, 2, 3],
      transferTarget: 0,
      caughtUp: true,
    },
  });
  assert.deepEqual(action(noLeader), { type: "start_standby", upstream: null });
  // Even the leader whose record names it: a standby first, promoted later.
  assert.deepEqual(action(leader({ server: stopped })), { type: "start_standby", upstream: null });
});

Deno.test("rule 3: a node in no cluster runs its initialized server as it is", () => {
  const inputs = follower({
    inCluster: false,
    server: local({ state: "stopped", clean: true, rewindFailed: false, wal: at(1, 40) }),
  });
  assert.deepEqual(action(inputs), { type: "start_as_is" });
});

// ---- rule 4: freezing --------------------------------------------------------------------------

Deno.test("rule 4: a standby stops streaming from a primary that is not its Raft leader", () => {
  const inputs = follower({
    raft: {
      role: "follower",
      term: 6,
      leaderId: 3,
      voters: [1, 2, 3],
      transferTarget: 0,
      caughtUp: true,
    },
  });
  assert.equal(desiredUpstream(inputs), null);
  assert.deepEqual(action(inputs), { type: "freeze" });
});

Deno.test("rule 4: a leader's freeze request holds before this node's Raft has heard of its term", () => {
  const inputs = follower({ frozenForTerm: 6 });
  assert.equal(desiredUpstream(inputs), null);
  assert.deepEqual(action(inputs), { type: "freeze" });
});

Deno.test("rule 4: a frozen standby reports its position, with its Raft term", () => {
  const inputs = follower({
    raft: {
      role: "follower",
      term: 6,
      leaderId: 3,
      voters: [1, 2, 3],
      transferTarget: 0,
      caughtUp: true,
    },
    server: local(frozenAt(3, 500)),
    reportRequest: { leader: 3, term: 6, freeze: true },
    frozenForTerm: 6,
  });
  assert.deepEqual(action(inputs), { type: "report_lsn", to: 3, term: 6 });
});

Deno.test("rule 4: no report before this node's Raft reached the asking leader's term", () => {
  const inputs = follower({
    server: local(frozenAt(3, 500)),
    reportRequest: { leader: 3, term: 6, freeze: true },
    frozenForTerm: 6,
  });
  assert.equal(action(inputs).type, "wait");
});

Deno.test("rule 4: a standby re-points at the new primary once the record names it and it leads", () => {
  const inputs = follower({
    raft: {
      role: "follower",
      term: 6,
      leaderId: 3,
      voters: [1, 2, 3],
      transferTarget: 0,
      caughtUp: true,
    },
    primary: { nodeId: 3, timeline: 4 },
    server: local(frozenAt(3, 500)),
  });
  assert.deepEqual(action(inputs), { type: "follow", upstream: 3 });
});

// ---- rule 5: failover ----------------------------------------------------------------------------

Deno.test("rule 5: the new leader freezes its own standby before comparing", () => {
  const inputs = newLeader({ server: local({ state: "standby", upstream: 1, wal: at(3, 500) }) });
  assert.deepEqual(action(inputs), { type: "freeze" });
});

Deno.test("rule 5: the new leader freezes the others and collects their positions", () => {
  assert.deepEqual(action(newLeader()), {
    type: "collect_lsns",
    from: [1, 3],
    term: 6,
    freeze: true,
  });
});

Deno.test("rule 5: reports of an earlier term do not count", () => {
  const inputs = newLeader({ members: [report(3, frozenAt(3, 400), { term: 5 })] });
  assert.equal(action(inputs).type, "collect_lsns");
});

Deno.test("rule 5: the most advanced of a majority (without the old primary) is recorded with timeline + 1", () => {
  const inputs = newLeader({ members: [report(3, frozenAt(3, 480), { term: 6 })] });
  assert.deepEqual(action(inputs), { type: "propose_primary", nodeId: 2, timeline: 4 });
  assert.equal(action({ ...inputs, proposedPrimary: { nodeId: 2, timeline: 4 } }).type, "wait");
});

Deno.test("rule 5: a more advanced voter gets the leadership (not while failover is paused)", () => {
  const inputs = newLeader({ members: [report(3, frozenAt(3, 520), { term: 6 })] });
  assert.deepEqual(action(inputs), { type: "transfer_leadership", to: 3 });
  const paused = decide({ ...inputs, failoverEnabled: false });
  assert.equal(paused.action.type, "wait");
  assert.match(paused.reason, /failover paused/);
  const transferring = {
    ...inputs,
    raft: { ...inputs.raft, transferTarget: 3 },
  };
  assert.equal(action(transferring).type, "wait");
});

Deno.test("rule 5: a later timeline wins over a larger LSN on an earlier one", () => {
  const inputs = newLeader({ members: [report(3, frozenAt(2, 9_000), { term: 6 })] });
  assert.deepEqual(action(inputs), { type: "propose_primary", nodeId: 2, timeline: 4 });
});

Deno.test("rule 5: the old primary's own final position is enough on its own", () => {
  const inputs = newLeader({ members: [report(1, frozenAt(3, 600), { term: 6 })] });
  assert.deepEqual(action(inputs), { type: "transfer_leadership", to: 1 });
});

Deno.test("rule 5: a standby still streaming from the old primary does not count", () => {
  const streaming = { state: "standby", upstream: 1, wal: at(3, 480) } as const;
  const inputs = newLeader({ members: [report(3, streaming, { term: 6, frozen: false })] });
  assert.equal(action(inputs).type, "collect_lsns");
});

Deno.test("rule 5: promote only once the record naming this node is applied, and with a lease", () => {
  const recorded = newLeader({ primary: { nodeId: 2, timeline: 4 } });
  assert.deepEqual(action(recorded), {
    type: "set_synchronous_standby_names",
    value: SYNC_3_FOR_2,
  });
  const ready = newLeader({
    primary: { nodeId: 2, timeline: 4 },
    server: local(frozenAt(3, 500), { synchronousStandbyNames: SYNC_3_FOR_2 }),
  });
  assert.deepEqual(action(ready), { type: "promote", timeline: 4 });
  assert.equal(action({ ...ready, leaseRemainingMs: 100 }).type, "wait");
  // Proposed but not applied: wait (the planted bug promotes here).
  const proposed = newLeader({
    proposedPrimary: { nodeId: 2, timeline: 4 },
    members: [report(3, frozenAt(3, 480), { term: 6 })],
    server: local(frozenAt(3, 500), { synchronousStandbyNames: SYNC_3_FOR_2 }),
  });
  assert.equal(action(proposed).type, "wait");
  assert.deepEqual(
    decide(proposed, { plantedBugs: { promoteBeforeRecordCommitted: true } }).action,
    { type: "promote", timeline: 4 },
  );
});

Deno.test("rule 5: a server on the record's timeline already needs a new record", () => {
  // This node was the primary on timeline 3, was fenced, and leads again.
  const inputs = newLeader({ primary: { nodeId: 2, timeline: 3 } });
  assert.deepEqual(action(inputs), { type: "propose_primary", nodeId: 2, timeline: 4 });
});

Deno.test("rule 5: a leader with an empty data directory hands over to the most advanced", () => {
  const inputs = newLeader({
    server: local({ state: "empty" }),
    members: [report(3, frozenAt(3, 450), { term: 6 })],
  });
  assert.deepEqual(action(inputs), { type: "transfer_leadership", to: 3 });
});

Deno.test("rule 5: a diverged server ahead of every healthy one blocks the failover", () => {
  const diverged = { state: "diverged", upstream: 1, wal: at(4, 100) } as const;
  const waiting = newLeader({ members: [report(3, diverged, { term: 6 })] });
  assert.deepEqual(action(waiting), { type: "collect_lsns", from: [1], term: 6, freeze: true });
  const stuck = newLeader({
    members: [report(3, diverged, { term: 6 }), report(1, { state: "empty" }, { term: 6 })],
  });
  const decision = decide(stuck);
  assert.equal(decision.action.type === "problem" && decision.action.event, "no_safe_candidate");
});

Deno.test("rule 5: reports of non-voters do not count", () => {
  const inputs = newLeader({ members: [report(7, frozenAt(3, 900), { term: 6 })] });
  assert.equal(action(inputs).type, "collect_lsns");
});

Deno.test("rule 5: a new leader waits until it applied its own term's entry (the record may be stale)", () => {
  const inputs = newLeader({
    raft: {
      role: "leader",
      term: 6,
      leaderId: 2,
      voters: [1, 2, 3],
      transferTarget: 0,
      caughtUp: false,
    },
    primary: { nodeId: 2, timeline: 3 },
  });
  assert.equal(action(inputs).type, "wait");
});

Deno.test("rule 5 planted bug: promote without collecting proposes at once", () => {
  const decision = decide(newLeader(), { plantedBugs: { promoteWithoutCollecting: true } });
  assert.deepEqual(decision.action, { type: "propose_primary", nodeId: 2, timeline: 4 });
});

// ---- rule 6: rejoin ---------------------------------------------------------------------------------

Deno.test("rule 6: a diverged standby is rewound from the primary", () => {
  const inputs = follower({ server: local({ state: "diverged", upstream: 1, wal: at(2, 900) }) });
  assert.deepEqual(action(inputs), { type: "rewind", source: 1 });
  const noPrimary = {
    ...inputs,
    raft: { ...inputs.raft, leaderId: 3 },
  };
  assert.equal(action(noPrimary).type, "wait");
});

Deno.test("rule 6: a failed rewind is reported; a re-clone only when the operator allows it", () => {
  const failed = local({ state: "stopped", clean: false, rewindFailed: true, wal: null });
  const decision = decide(follower({ server: failed }));
  assert.equal(decision.action.type === "problem" && decision.action.event, "rewind_failed");
  assert.deepEqual(action(follower({ server: failed, recloneAllowed: true })), {
    type: "clone",
    source: 1,
  });
});

Deno.test("rule 6: an empty data directory is cloned from the primary, once there is one", () => {
  assert.deepEqual(action(follower({ server: local({ state: "empty" }) })), {
    type: "clone",
    source: 1,
  });
  const noPrimary = follower({ server: local({ state: "empty" }), primary: null });
  assert.equal(action(noPrimary).type, "wait");
});

Deno.test("an operation under way is waited for", () => {
  const inputs = follower({ inProgress: { op: "rewind", sinceMs: 9_000 } });
  assert.equal(action(inputs).type, "wait");
});

// ---- rule 7: switchover -----------------------------------------------------------------------------

const switchover = { target: 3, requestedAtMs: 9_500 };
const cleanStop = local(
  { state: "stopped", clean: true, rewindFailed: false, wal: at(3, 650) },
  { sinceMs: 9_800 },
);

Deno.test("rule 7: switchover starts with a clean shutdown of the primary", () => {
  assert.deepEqual(action(leader({ switchover })), { type: "fence", mode: "fast" });
  // A lease running low still means an immediate stop.
  assert.deepEqual(action(leader({ switchover, leaseRemainingMs: 10 })), {
    type: "fence",
    mode: "immediate",
  });
  const stopping = leader({ switchover, inProgress: { op: "stop", sinceMs: 9_600 } });
  assert.equal(action(stopping).type, "wait");
});

Deno.test("rule 7: the target's position is asked for after the stop (it streamed from us: final)", () => {
  assert.deepEqual(action(leader({ switchover, server: cleanStop })), {
    type: "collect_lsns",
    from: [3],
    term: 5,
    freeze: false,
  });
  // A report from before the stop does not show the final LSN.
  const early = report(3, { state: "standby", upstream: 1, wal: at(3, 650) }, {
    receivedAtMs: 9_700,
    frozen: false,
  });
  assert.equal(
    action(leader({ switchover, server: cleanStop, members: [early] })).type,
    "collect_lsns",
  );
});

Deno.test("rule 7: a target holding the final LSN is recorded as primary, then leads — even with failover paused", () => {
  const caughtUp = report(3, { state: "standby", upstream: 1, wal: at(3, 650) }, {
    frozen: false,
    receivedAtMs: 9_900,
  });
  const inputs = leader({
    switchover,
    server: cleanStop,
    members: [caughtUp],
    failoverEnabled: false,
  });
  assert.deepEqual(action(inputs), { type: "propose_primary", nodeId: 3, timeline: 4 });
  const proposed = { ...inputs, proposedPrimary: { nodeId: 3, timeline: 4 } };
  assert.equal(action(proposed).type, "wait");
  const recorded = { ...inputs, primary: { nodeId: 3, timeline: 4 } };
  assert.deepEqual(action(recorded), { type: "transfer_leadership", to: 3 });
  const behind = {
    ...caughtUp,
    server: { state: "standby", upstream: 1, wal: at(3, 640) },
  } as const;
  assert.deepEqual(action({ ...inputs, members: [behind] }), {
    type: "abandon_switchover",
    target: 3,
  });
});

Deno.test("rule 7: the target, once the record names it, stops streaming and promotes when it leads", () => {
  const target = follower({
    self: 3,
    primary: { nodeId: 3, timeline: 4 },
    server: local({ state: "standby", upstream: 1, wal: at(3, 650) }),
  });
  assert.deepEqual(action(target), { type: "freeze" });
  const leading = newLeader({
    self: 3,
    raft: {
      role: "leader",
      term: 6,
      leaderId: 3,
      voters: [1, 2, 3],
      transferTarget: 0,
      caughtUp: true,
    },
    primary: { nodeId: 3, timeline: 4 },
    server: local(frozenAt(3, 650), {
      synchronousStandbyNames: "ANY 1 (pgraft_node_1, pgraft_node_2)",
    }),
  });
  assert.deepEqual(action(leading), { type: "promote", timeline: 4 });
});

Deno.test("rule 7: a switchover is abandoned when it takes too long or targets a non-voter", () => {
  assert.deepEqual(action(leader({ switchover, nowMs: 15_000 })), {
    type: "abandon_switchover",
    target: 3,
  });
  assert.deepEqual(action(leader({ switchover: { target: 9, requestedAtMs: 9_500 } })), {
    type: "abandon_switchover",
    target: 9,
  });
});

Deno.test("rule 7: with no primary running here, leadership goes to the target at once", () => {
  const inputs = newLeader({ switchover: { target: 3, requestedAtMs: 9_500 } });
  assert.deepEqual(action(inputs), { type: "transfer_leadership", to: 3 });
});

// ---- the inputs' contract ----------------------------------------------------------------------------

Deno.test("inputs: a lease exactly when leader, and a leader that knows itself as leader", () => {
  assert.throws(() => decide(follower({ leaseRemainingMs: 500 })), /exactly when not leader/);
  assert.throws(() => decide(leader({ leaseRemainingMs: null })), /exactly when not leader/);
});
