/**
 * Failure detection by evidence (lib/raft/failure_detection.ts): a follower
 * that missed its leader's heartbeats and is told the leader's agent refused
 * a connection forgets the leader and pre-votes within a heartbeat interval
 * (thesis §9.6), while leader stickiness (thesis §4.2.3) keeps a lie from
 * deposing a live leader.
 */

import assert from "node:assert/strict";
import { MISSED_HEARTBEATS } from "../../../lib/raft/failure_detection.ts";
import { NONE, type RaftConfig } from "../../../lib/raft/mod.ts";
import { Net, seeded } from "./harness.ts";

/** A heartbeat of 2 ticks, an election timeout of 20 (+ up to 5). */
const TIMING = { heartbeatTicks: 2, electionTicks: 20, electionJitterTicks: 5 };
const HB = TIMING.heartbeatTicks;

/** Three nodes led by node 1, settled. */
function ledByOne(extra: Partial<RaftConfig> = {}): Net {
  const net = new Net(3, { ...TIMING, ...extra });
  net.elect(1);
  net.tick(1);
  assert.deepEqual(net.leaders(), [1]);
  return net;
}

/** Tick `ids` until some node leads; returns the ticks taken. */
function ticksToLeader(net: Net, ids: number[], limit: number): number {
  for (let k = 1; k <= limit; k++) {
    net.tick(1, ids);
    if (net.leaders().length > 0) return k;
  }
  assert.fail(`no leader within ${limit} ticks`);
}

/**
 * Leader 1's agent dies; followers 2 and 3 tick until they have missed its
 * heartbeats, then each one's probe is refused (when `refused`).
 *
 * @returns ticks from the crash until the followers missed the heartbeats,
 *   then until a new leader, and the terms it raised
 */
function failover(seed: number, refused: boolean) {
  const net = ledByOne({ randomInt: seeded(seed) });
  const term = net.get(1).node.status().term;
  net.crash(1);
  let missed = 0;
  while (net.get(2).node.leaderToProbe() === NONE && missed < TIMING.electionTicks) {
    net.tick(1, [2, 3]);
    missed++;
  }
  for (const id of [2, 3]) assert.equal(net.get(id).node.leaderToProbe(), 1);
  if (refused) {
    for (const id of [2, 3]) assert.equal(net.get(id).node.reportLeaderGone(1), true);
    net.deliverAll();
  }
  const ticks = net.leaders().length > 0 ? 0 : ticksToLeader(net, [2, 3], 4 * TIMING.electionTicks);
  const [leader] = net.leaders();
  assert.ok(leader === 2 || leader === 3);
  return { missed, ticks, terms: net.get(leader!).node.status().term - term };
}

Deno.test("thesis §9.6: when both followers take the leader's refusal after missed heartbeats, one of them leads within a heartbeat interval, or one quick retry after a split", () => {
  let clean = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const { missed, ticks, terms } = failover(seed, true);
    // The last heartbeat came at most a heartbeat interval before the crash.
    const bound = MISSED_HEARTBEATS * HB;
    assert.ok(missed > bound - HB && missed <= bound, `seed ${seed}: missed after ${missed}`);
    if (ticks <= HB && terms === 1) {
      clean++; // each waited 0..HB ticks (drawn), and they drew apart
      continue;
    }
    // Both drew the same delay, pre-voted together and split the vote in the
    // next term; the first retry comes after HB + 1 + jitter ticks, not half
    // an election timeout.
    assert.equal(terms, 2, `seed ${seed}`);
    assert.ok(ticks <= 2 * HB + TIMING.electionJitterTicks, `seed ${seed}: ${ticks} ticks`);
    assert.ok(missed + ticks < TIMING.electionTicks / 2, `seed ${seed}: ${missed + ticks} ticks`);
  }
  assert.ok(clean >= 10, `only ${clean} of 20 without a split`);
});

Deno.test("thesis §9.6: without the refusal the same failover waits out an election timeout", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const { missed, ticks } = failover(seed, false);
    // The timer started at the last heartbeat, at most a heartbeat interval before the crash.
    assert.ok(missed + ticks > TIMING.electionTicks - HB, `seed ${seed}: ${missed + ticks} ticks`);
  }
});

Deno.test("thesis §4.2.3 stickiness: a follower alone taking a refusal cannot win while the other follower still hears the leader", () => {
  // Setup: node 2 no longer hears leader 1 (cut one way); node 3 does.
  const net = ledByOne();
  const term = net.get(1).node.status().term;
  net.cut.add("1->2");
  net.tick(MISSED_HEARTBEATS * HB);
  assert.equal(net.get(2).node.leaderToProbe(), 1);
  // Action: node 2 is told node 1 refused (a lie: node 1 is alive).
  assert.equal(net.get(2).node.reportLeaderGone(1), true);
  assert.equal(net.get(2).node.status().leaderId, NONE, "it forgot its leader");
  net.tick(3 * TIMING.electionTicks);
  // Check: node 3 and node 1 dropped its pre-votes; nobody was elected and no
  // term was raised (pre-vote).
  assert.deepEqual(net.leaders(), [1]);
  for (const id of [1, 2, 3]) assert.equal(net.get(id).node.status().term, term);
  assert.equal(net.get(2).node.status().electionsStarted, 0);
  // Once it hears the leader again it follows it.
  net.heal();
  net.tick(HB);
  assert.equal(net.get(2).node.status().leaderId, 1);
  assert.equal(net.get(2).node.status().role, "follower");
});

Deno.test("thesis §4.2.3: a follower that took a refusal and then hears its leader keeps a full election timeout", () => {
  const net = ledByOne();
  net.cut.add("1->2");
  net.tick(MISSED_HEARTBEATS * HB);
  assert.equal(net.get(2).node.reportLeaderGone(1), true);
  // The leader is heard again before node 2 campaigned, then falls silent.
  net.heal();
  net.tick(1);
  assert.equal(net.get(2).node.status().leaderId, 1);
  net.cut.add("1->2");
  net.tick(TIMING.electionTicks - 1);
  assert.equal(net.get(2).node.status().role, "follower", "no leftover short timer");
});

Deno.test("a refusal from a leader the follower still hears is a lie and is ignored", () => {
  const net = ledByOne();
  // Node 2 heard node 1 within the last heartbeat interval.
  assert.equal(net.get(2).node.leaderToProbe(), NONE);
  assert.equal(net.get(2).node.reportLeaderGone(1), false);
  assert.equal(net.get(2).node.status().leaderId, 1);
  net.tick(TIMING.electionTicks);
  assert.deepEqual(net.leaders(), [1]);
});

Deno.test("a refusal of another node than the follower's leader is ignored", () => {
  const net = ledByOne();
  net.cut.add("1->2");
  net.tick(MISSED_HEARTBEATS * HB);
  assert.equal(net.get(2).node.reportLeaderGone(3), false);
  assert.equal(net.get(2).node.reportLeaderGone(NONE), false);
  assert.equal(net.get(2).node.status().leaderId, 1);
});

Deno.test("failover_enabled off: a refusal is ignored and the followers wait for their leader", () => {
  const net = ledByOne({ failoverEnabled: false });
  const term = net.get(1).node.status().term;
  net.crash(1);
  net.tick(MISSED_HEARTBEATS * HB, [2, 3]);
  for (const id of [2, 3]) {
    assert.equal(net.get(id).node.leaderToProbe(), NONE);
    assert.equal(net.get(id).node.reportLeaderGone(1), false);
    assert.equal(net.get(id).node.status().leaderId, 1);
  }
  net.tick(3 * TIMING.electionTicks, [2, 3]);
  assert.deepEqual(net.leaders(), []);
  assert.equal(net.get(2).node.status().term, term);
});

Deno.test("a leader ignores a refusal, of itself or of a follower", () => {
  const net = ledByOne();
  const leader = net.get(1).node;
  assert.equal(leader.leaderToProbe(), NONE);
  assert.equal(leader.reportLeaderGone(1), false);
  assert.equal(leader.reportLeaderGone(2), false);
  assert.equal(leader.status().role, "leader");
});

Deno.test("thesis §4.2.2: a learner never acts on a refusal (it may not campaign)", () => {
  const net = ledByOne({ autoPromoteLearners: false });
  net.add(4, {
    hardState: { term: 0, vote: 0, commit: 0 },
    snapshot: null,
    entries: [],
    applied: 0,
  }, TIMING);
  net.get(1).node.proposeConfChange({ kind: "add_learner", nodeId: 4, context: "" });
  net.tick(HB);
  assert.deepEqual(net.get(4).node.status().membership.learners, [4]);
  assert.equal(net.get(4).node.status().leaderId, 1);
  net.crash(1);
  net.tick(MISSED_HEARTBEATS * HB, [4]);
  assert.equal(net.get(4).node.leaderToProbe(), NONE);
  assert.equal(net.get(4).node.reportLeaderGone(1), false);
  assert.equal(net.get(4).node.status().leaderId, 1);
});

Deno.test("thesis §9.6 with evidence: one quick round, then the usual retries (no livelock on a slow network)", () => {
  // Setup: node 2 stops hearing leader 1 and is told it refused (a lie): its
  // pre-votes are dropped by node 3 (which hears node 1) and node 1 (leader).
  const net = ledByOne();
  net.cut.add("1->2");
  net.tick(MISSED_HEARTBEATS * HB);
  net.sent = [];
  assert.equal(net.get(2).node.reportLeaderGone(1), true);
  net.deliverAll();
  // Action: tick for five election timeouts, noting when node 2 pre-votes.
  const rounds: number[] = [];
  for (let t = 0; t <= 5 * TIMING.electionTicks; t++) {
    if (t > 0) net.tick(1);
    if (net.sent.some((m) => m.type === "vote_request" && m.from === 2)) rounds.push(t);
    net.sent = [];
  }
  // Check: the first round within a heartbeat interval, the second after the
  // quick timer, every later one after the usual retry timer.
  const gaps = rounds.slice(1).map((t, k) => t - rounds[k]!);
  assert.ok(rounds[0]! <= HB, `first round at ${rounds[0]}`);
  const quick = [HB + 1, HB + TIMING.electionJitterTicks];
  assert.ok(gaps[0]! >= quick[0]! && gaps[0]! <= quick[1]!, `gaps ${gaps}`);
  const usual = TIMING.electionTicks / 2;
  for (const gap of gaps.slice(1)) {
    assert.ok(gap >= usual && gap < usual + TIMING.electionJitterTicks, `gaps ${gaps}`);
  }
  assert.ok(gaps.length >= 4, `gaps ${gaps}`);
  assert.deepEqual(net.leaders(), [1]);
});
