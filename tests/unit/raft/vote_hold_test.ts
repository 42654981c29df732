/**
 * Vote withholding (lib/raft/vote_hold.ts): a voter that heard a leader
 * refuses other candidates for an election timeout (thesis §4.2.3), and a
 * leader's lease rests on it (thesis §6.4.1). A node that starts again from
 * its persisted state has forgotten when it last heard a leader, so it
 * refuses them for an election timeout after its start.
 */

import assert from "node:assert/strict";
import {
  emptyState,
  type Message,
  NONE,
  type RaftConfig,
  RaftNode,
  type VoteRequest,
} from "../../../lib/raft/mod.ts";
import { BOOTSTRAP_TERM } from "../../../lib/raft/bootstrap.ts";
import { holdsVoteAtStart } from "../../../lib/raft/vote_hold.ts";
import { config, Net, seeded } from "./harness.ts";

/** electionTicks in the harness's config */
const ELECTION = 10;
/** the longest election timer: a restarted node does not campaign on its own during a test */
const PATIENT: Partial<RaftConfig> = { randomInt: (n) => n - 1 };

/** Three nodes led by node 1, settled; then node 3 crashes and starts again from its disk. */
function restartedThree(extra: Partial<RaftConfig> = {}): { net: Net; term: number } {
  const net = new Net(3, extra);
  net.elect(1);
  net.tick(1);
  assert.deepEqual(net.leaders(), [1]);
  const term = net.get(1).node.status().term;
  net.crash(3);
  net.restart(3, { ...extra, ...PATIENT });
  net.flush();
  net.queue = [];
  return { net, term };
}

/** A (pre-)vote request from node 2 to node 3 for `term`, with node 3's own log. */
function request(net: Net, term: number, kind: "pre_vote" | "vote" | "transfer"): VoteRequest {
  const st = net.get(3).node.status();
  return {
    type: "vote_request",
    term,
    from: 2,
    to: 3,
    preVote: kind === "pre_vote",
    transfer: kind === "transfer",
    lastLogIndex: st.lastIndex,
    lastLogTerm: st.lastTerm,
  };
}

/** Step `m` into node 3 and return its answer (null: dropped). */
function answer(net: Net, m: VoteRequest): boolean | null {
  net.get(3).node.step(m);
  net.flush();
  const replies = net.queue.filter((r: Message) => r.type === "vote_response" && r.from === 3);
  net.queue = [];
  if (replies.length === 0) return null;
  const reply = replies[0]!;
  assert.ok(reply.type === "vote_response");
  return reply.granted;
}

Deno.test("thesis §4.2.3, §6.4.1: a restarted voter refuses pre-votes and votes for an election timeout after its start, then grants them", () => {
  const { net, term } = restartedThree();
  const n3 = net.get(3).node;
  assert.equal(n3.status().leaderId, NONE, "it forgot its leader");
  for (let k = 0; k < ELECTION; k++) {
    assert.equal(answer(net, request(net, term + 1, "pre_vote")), null, `pre-vote at tick ${k}`);
    assert.equal(answer(net, request(net, term + 1, "vote")), null, `vote at tick ${k}`);
    assert.equal(n3.status().term, term, "a dropped request leaves the term alone");
    n3.tick();
    net.flush();
  }
  assert.equal(n3.status().role, "follower", "it did not campaign meanwhile");
  assert.equal(answer(net, request(net, term + 1, "pre_vote")), true);
  assert.equal(answer(net, request(net, term + 1, "vote")), true);
  assert.equal(n3.status().term, term + 1);
  assert.equal(n3.status().vote, 2);
});

Deno.test("thesis §3.10: a restarted voter grants a leadership transfer's vote at once", () => {
  const { net, term } = restartedThree();
  assert.equal(answer(net, request(net, term + 1, "transfer")), true);
  assert.equal(net.get(3).node.status().vote, 2);
});

Deno.test("thesis §3.10: leadership goes at once to a restarted node, through a restarted voter", () => {
  const { net } = restartedThree();
  net.crash(2);
  net.restart(2, PATIENT);
  net.deliverAll();
  net.get(1).node.transferLeadership(3);
  net.deliverAll();
  net.tick(1, [1]); // the leader's next heartbeat finds node 3 caught up
  assert.deepEqual(net.leaders(), [3]);
});

Deno.test("a restarted voter that took evidence its new leader is gone still holds until an election timeout after its start", () => {
  const { net, term } = restartedThree({ heartbeatTicks: 1 });
  const n3 = net.get(3).node;
  const commit = n3.status().commitIndex;
  n3.step({ type: "heartbeat_request", term, from: 1, to: 3, commit, readContext: "" });
  net.flush();
  net.queue = [];
  assert.equal(n3.status().leaderId, 1);
  n3.tick();
  n3.tick();
  assert.equal(n3.leaderToProbe(), 1);
  assert.equal(n3.reportLeaderGone(1), true);
  net.flush();
  net.queue = [];
  assert.equal(answer(net, request(net, term + 1, "pre_vote")), null);
});

Deno.test("no hold where nothing was promised: a founder before the first election, a brand-new node, check-quorum off; the planted bug", () => {
  assert.equal(holdsVoteAtStart(BOOTSTRAP_TERM), false, "a founder");
  assert.equal(holdsVoteAtStart(0), false, "a brand-new node");
  assert.equal(holdsVoteAtStart(BOOTSTRAP_TERM + 1), true);

  const founders = new Net(3);
  assert.equal(answer(founders, request(founders, 2, "pre_vote")), true, "founders elect at once");

  const fresh = new RaftNode(config(3, PATIENT), emptyState());
  fresh.step({ ...request(founders, 2, "pre_vote"), lastLogIndex: 0, lastLogTerm: 0 });
  assert.ok(fresh.ready().messages.some((m) => m.type === "vote_response" && m.granted));

  for (const extra of [{ checkQuorum: false }, { plantedBugs: { noVoteHoldAfterRestart: true } }]) {
    const { net, term } = restartedThree(extra);
    assert.equal(answer(net, request(net, term + 1, "pre_vote")), true, JSON.stringify(extra));
  }
});

Deno.test("(f) pgraft_init's one-voter cluster elects itself at once, before and after a restart (its own campaign is never held)", () => {
  const net = new Net(1);
  assert.equal(net.get(1).durable.hardState.term, BOOTSTRAP_TERM);
  net.elect(1);
  assert.deepEqual(net.leaders(), [1]);
  net.crash(1);
  net.restart(1, PATIENT);
  assert.ok(net.get(1).durable.hardState.term > BOOTSTRAP_TERM, "it holds after this start");
  net.elect(1);
  assert.deepEqual(net.leaders(), [1]);
});

Deno.test("(a) a whole cluster restarting one node at a time elects a leader within 2 election timeouts of a quorum's start", () => {
  // The agent's timing: a heartbeat of a tenth, a jitter of a quarter of the election timeout.
  const timing = { heartbeatTicks: 10, electionTicks: 100, electionJitterTicks: 25 };
  for (let seed = 1; seed <= 100; seed++) {
    const net = new Net(3, { ...timing, randomInt: seeded(seed) });
    net.elect(1);
    net.tick(1);
    for (const id of [1, 2, 3]) net.crash(id);
    const gap = seeded(seed * 31);
    let ticks = 0; // since a quorum (the second node) started
    for (const id of [1, 2, 3]) {
      net.restart(id, { ...timing, randomInt: seeded(seed * 7 + id) });
      if (id === 3) break;
      for (let k = gap(timing.electionTicks); k > 0; k--) {
        net.tick();
        if (id === 2) ticks++;
      }
    }
    assert.deepEqual(net.leaders(), [], `seed ${seed}: no leader while a quorum held its votes`);
    while (net.leaders().length === 0 && ticks < 4 * timing.electionTicks) {
      net.tick();
      ticks++;
    }
    assert.equal(net.leaders().length, 1, `seed ${seed}`);
    assert.ok(ticks >= timing.electionTicks - 1, `seed ${seed}: a leader after ${ticks} ticks`);
    assert.ok(ticks <= 2 * timing.electionTicks, `seed ${seed}: ${ticks} ticks`);
  }
});
