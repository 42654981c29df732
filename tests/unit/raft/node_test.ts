import assert from "node:assert/strict";
import {
  bootstrapState,
  ConfChangeError,
  type Entry,
  type Message,
  NotLeaderError,
  ProposalRejectedError,
  RaftNode,
} from "../../../lib/raft/mod.ts";
import { appliedPayloads, config, Net, text } from "./harness.ts";

Deno.test("§5.2/§5.3: a lone founder becomes leader at once and commits only after its own write is durable", () => {
  const net = new Net(1);
  net.elect(1);
  const n = net.get(1);
  assert.equal(n.node.status().role, "leader");
  assert.equal(n.node.status().term, 2);
  const { index } = n.node.propose(text("a"));
  assert.ok(n.node.hasReady());
  const rd = n.node.ready();
  assert.equal(rd.entries.at(-1)!.index, index);
  assert.equal(rd.committedEntries.some((e) => e.index === index), false, "not before durable");
  n.node.advance(rd);
  net.flush();
  assert.deepEqual(appliedPayloads(n), ["a"]);
});

Deno.test("§5.2: three nodes elect one leader, which appends a no-op (§8) and replicates proposals in order (§5.3)", () => {
  const net = new Net(3);
  const leader = net.waitLeader();
  assert.equal(net.leaders().length, 1);
  const l = net.get(leader);
  const st = l.node.status();
  assert.equal(l.durable.entries.at(-1)!.term, st.term, "no-op of the new term");
  assert.equal(l.durable.entries.at(-1)!.data.length, 0);
  for (const p of ["x", "y", "z"]) l.node.propose(text(p));
  net.deliverAll();
  for (const id of [1, 2, 3]) assert.deepEqual(appliedPayloads(net.get(id)), ["x", "y", "z"]);
});

Deno.test("§5.1: a follower rejects proposals naming the leader it knows", () => {
  const net = new Net(3);
  const leader = net.waitLeader();
  const follower = [1, 2, 3].find((id) => id !== leader)!;
  assert.throws(
    () => net.get(follower).node.propose(text("x")),
    (e: unknown) => e instanceof NotLeaderError && e.leaderId === leader,
  );
});

Deno.test("thesis §9.6 pre-vote: an isolated follower does not inflate its term or disrupt the leader when it returns", () => {
  const net = new Net(3);
  const leader = net.waitLeader();
  const term = net.get(leader).node.status().term;
  const f = [1, 2, 3].find((id) => id !== leader)!;
  net.isolate(f);
  net.tick(100);
  assert.equal(net.get(f).node.status().term, term, "pre-vote kept the term");
  net.heal();
  net.tick(30);
  assert.deepEqual(net.leaders(), [leader]);
  assert.equal(net.get(leader).node.status().term, term);
});

Deno.test("thesis §6.2 check-quorum: an isolated leader steps down within an election timeout and the rest elect a new one", () => {
  const net = new Net(3);
  const leader = net.waitLeader();
  net.isolate(leader);
  net.tick(12);
  assert.notEqual(net.get(leader).node.status().role, "leader");
  const others = [1, 2, 3].filter((id) => id !== leader);
  net.tick(40);
  const now = net.leaders();
  assert.equal(now.length, 1);
  assert.ok(others.includes(now[0]!));
});

Deno.test("§5.4.2: a leader counts replicas only of current-term entries to commit (Figure 8)", () => {
  const net = new Net(3, { preVote: false, checkQuorum: false, appendBatchSize: 1 });
  net.elect(1);
  net.deliverAll();
  const t1 = net.get(1).node.status().term;
  // Node 1 appends an entry of its term that reaches only itself.
  net.isolate(1);
  const old = net.get(1).node.propose(text("old"));
  net.flush();
  net.queue = [];
  // Node 2 wins a later term with node 3's vote and crashes before replicating anything.
  net.filter = (m) => !(m.type === "append_request" && m.from === 2);
  net.elect(2);
  assert.deepEqual(net.leaders().filter((id) => id !== 1), [2]);
  net.crash(2);
  net.crash(1);
  net.restart(1, { preVote: false, checkQuorum: false, appendBatchSize: 1 });
  net.heal();
  // Node 1 wins again and replicates the old-term entry to node 3, but its
  // current-term no-op is held back: a majority holds "old", yet it must not commit.
  const has3 = () => net.get(3).durable.entries.some((e) => e.index === old.index && e.term === t1);
  net.filter = (m) =>
    !(m.type === "append_request" && m.to === 3 && has3() && m.entries.some((e) => e.term > t1));
  for (let k = 0; k < 3 && net.get(1).node.status().role !== "leader"; k++) net.elect(1);
  assert.equal(net.get(1).node.status().role, "leader");
  net.tick(3, [1, 3]);
  assert.ok(net.get(3).durable.entries.some((e) => e.index === old.index && e.term === t1));
  assert.ok(net.get(1).node.status().commitIndex < old.index);
  assert.deepEqual(appliedPayloads(net.get(1)), []);
  net.filter = null;
  net.tick(3, [1, 3]);
  assert.deepEqual(appliedPayloads(net.get(1)), ["old"]);
  assert.deepEqual(appliedPayloads(net.get(3)), ["old"]);
});

Deno.test("§5.3 batching: appends carry at most append_batch_size entries and at most max_inflight are in flight", () => {
  const net = new Net(3, { appendBatchSize: 5, maxInflight: 2 });
  const leader = net.waitLeader();
  net.deliverAll();
  const l = net.get(leader);
  // Hold every message: nothing is acknowledged.
  net.filter = () => false;
  for (let k = 0; k < 40; k++) l.node.propose(text(`p${k}`));
  net.sent = [];
  net.flush();
  const appends = net.sent.filter((m) => m.type === "append_request");
  for (const a of appends) if (a.type === "append_request") assert.ok(a.entries.length <= 5);
  for (const to of [1, 2, 3].filter((id) => id !== leader)) {
    const n = appends.filter((a) =>
      a.to === to && a.type === "append_request" && a.entries.length > 0
    ).length;
    assert.ok(n <= 2, `node ${to}: ${n} appends in flight`);
  }
  net.filter = null;
  net.queue = [];
  net.tick(5);
  for (const id of [1, 2, 3]) assert.equal(appliedPayloads(net.get(id)).length, 40);
});

Deno.test("§5.3 fast backtracking: a long divergent follower log is repaired in a few round trips", () => {
  const net = new Net(3, { appendBatchSize: 1000 });
  net.elect(1);
  net.deliverAll();
  // Node 1 writes 200 entries that only it keeps.
  net.isolate(1);
  for (let k = 0; k < 200; k++) net.get(1).node.propose(text(`lost${k}`));
  net.flush();
  net.queue = [];
  net.heal();
  net.isolate(1);
  net.tick(40, [2, 3]);
  const leader = net.leaders().find((id) => id !== 1)!;
  for (let k = 0; k < 10; k++) net.get(leader).node.propose(text(`kept${k}`));
  net.deliverAll();
  net.heal();
  net.sent = [];
  net.tick(3);
  const rejects = net.sent.filter((m) =>
    m.type === "append_response" && !m.success && m.from === 1
  );
  assert.ok(rejects.length <= 3, `${rejects.length} rejections`);
  assert.deepEqual(appliedPayloads(net.get(1)), appliedPayloads(net.get(leader)));
  assert.equal(appliedPayloads(net.get(1)).length, 10);
});

Deno.test("thesis §3.10: leadership transfer catches the target up, sends TimeoutNow and refuses proposals meanwhile", () => {
  const net = new Net(3);
  net.elect(1);
  net.deliverAll();
  net.cut.add("1->3");
  for (let k = 0; k < 5; k++) net.get(1).node.propose(text(`p${k}`));
  net.deliverAll();
  net.get(1).node.transferLeadership(3);
  assert.throws(() => net.get(1).node.propose(text("no")), ProposalRejectedError);
  net.heal();
  net.tick(2);
  assert.deepEqual(net.leaders(), [3]);
  assert.equal(appliedPayloads(net.get(3)).length, 5);
  assert.ok(net.sent.some((m) => m.type === "timeout_now" && m.to === 3));
});

Deno.test("thesis §3.10: a transfer to an unreachable node is abandoned after an election timeout", () => {
  const net = new Net(3);
  net.elect(1);
  net.deliverAll();
  net.isolate(3);
  net.get(1).node.transferLeadership(3);
  assert.equal(net.get(1).node.status().transferTarget, 3);
  net.tick(11, [1, 2]);
  assert.equal(net.get(1).node.status().transferTarget, 0);
  assert.equal(net.get(1).node.status().role, "leader");
  net.get(1).node.propose(text("ok"));
});

Deno.test("§6 / thesis §4.2.1: a new node joins as a learner and is promoted to voter once caught up", () => {
  const net = new Net(3);
  net.elect(1);
  for (let k = 0; k < 20; k++) net.get(1).node.propose(text(`p${k}`));
  net.deliverAll();
  const fresh = net.add(4, {
    hardState: { term: 0, vote: 0, commit: 0 },
    snapshot: null,
    entries: [],
    applied: 0,
  });
  assert.equal(fresh.node.status().membership.voters.length, 0);
  net.get(1).node.proposeConfChange({ kind: "add_learner", nodeId: 4, context: '{"port":1}' });
  net.tick(5);
  const st = net.get(1).node.status();
  assert.deepEqual(st.membership.voters, [1, 2, 3, 4]);
  assert.deepEqual(st.membership.learners, []);
  assert.equal(appliedPayloads(net.get(4)).length, 20);
  assert.equal(net.get(1).node.memberContext(4), '{"port":1}');
});

Deno.test("§6 / thesis §4.1: membership changes go one at a time and invalid ones are refused with a reason", () => {
  const net = new Net(3);
  net.elect(1);
  net.deliverAll();
  const l = net.get(1).node;
  assert.throws(
    () => l.proposeConfChange({ kind: "add_learner", nodeId: 2, context: "" }),
    /already a member/,
  );
  assert.throws(
    () => l.proposeConfChange({ kind: "add_voter", nodeId: 9, context: "" }),
    /learner/,
  );
  assert.throws(
    () => l.proposeConfChange({ kind: "remove_node", nodeId: 9, context: "" }),
    /not a member/,
  );
  net.filter = () => false;
  l.proposeConfChange({ kind: "add_learner", nodeId: 4, context: "" });
  assert.throws(
    () => l.proposeConfChange({ kind: "add_learner", nodeId: 5, context: "" }),
    (e: unknown) => e instanceof ConfChangeError && /not yet committed/.test(e.message),
  );
});

Deno.test("§6 / thesis §4.2.2: after removing a follower the rest keep committing and the removed node stops taking part", () => {
  const net = new Net(3);
  net.elect(1);
  net.deliverAll();
  net.get(1).node.proposeConfChange({ kind: "remove_node", nodeId: 3, context: "" });
  net.tick(3);
  assert.deepEqual(net.get(1).node.status().membership.voters, [1, 2]);
  assert.equal(net.get(3).node.status().removed, true);
  const term = net.get(1).node.status().term;
  net.tick(100);
  assert.equal(net.get(3).node.status().term, term, "a removed node never campaigns");
  net.get(1).node.propose(text("after"));
  net.deliverAll();
  assert.deepEqual(appliedPayloads(net.get(2)), ["after"]);
});

Deno.test("§6 / thesis §4.2.2: a removed leader steps down once the change commits and a remaining voter leads", () => {
  const net = new Net(3);
  net.elect(1);
  net.deliverAll();
  net.get(1).node.proposeConfChange({ kind: "remove_node", nodeId: 1, context: "" });
  net.deliverAll();
  assert.equal(net.get(1).node.status().role, "follower");
  assert.equal(net.get(1).node.status().removed, true);
  net.tick(30);
  const leaders = net.leaders();
  assert.equal(leaders.length, 1);
  assert.ok([2, 3].includes(leaders[0]!));
});

for (const preVote of [true, false]) {
  Deno.test(`thesis §4.2.2 (Figure 4.6): a leader whose own removal is uncommitted campaigns again when the other needs it (pre-vote ${preVote ? "on" : "off"})`, () => {
    // Reference: thesis §4.2.2, "a server that is not part of its own latest
    // configuration should still start new elections, as it might still be
    // needed until the Cnew entry is committed (as in Figure 4.6). It does not
    // count its own vote in elections unless it is part of its latest configuration."
    // Setup: S1 leads {S1, S2} and appends its own removal, which S2 never gets.
    const net = new Net(2, { preVote });
    net.elect(1);
    net.deliverAll();
    net.isolate(1);
    net.get(1).node.proposeConfChange({ kind: "remove_node", nodeId: 1, context: "" });
    net.tick(30); // S1 steps down (check-quorum); S2 cannot win without S1's vote
    const s1 = net.get(1).node.status();
    assert.notEqual(s1.role, "leader");
    assert.deepEqual(s1.membership.voters, [2], "S1's latest configuration leaves it out");
    assert.ok(s1.commitIndex < s1.lastIndex && !s1.removed, "its removal is not committed");
    assert.deepEqual(net.leaders(), []);
    // Action: the partition heals. S1 refuses S2 its vote (S2's log is behind),
    // so only S1 can win: with S2's vote alone, a majority of Cnew = {S2}.
    net.heal();
    net.sent = [];
    net.tick(60);
    assert.ok(
      net.sent.some((m) => m.type === "vote_response" && m.from === 1 && m.to === 2 && !m.granted),
      "S1 refused S2",
    );
    // Check: S1 campaigned and won, committed Cnew, stepped down and handed over to S2.
    const after = net.get(1).node.status();
    assert.ok(after.electionsStarted > s1.electionsStarted, "S1 campaigned");
    assert.equal(after.removed, true);
    assert.deepEqual(net.leaders(), [2]);
    const s2 = net.get(2).node.status();
    assert.deepEqual(s2.membership.voters, [2]);
    assert.equal(s2.commitIndex, s2.lastIndex);
    net.get(2).node.propose(text("after"));
    net.deliverAll();
    assert.deepEqual(appliedPayloads(net.get(2)), ["after"]);
  });
}

Deno.test("thesis §4.2.2: a new learner never campaigns, not even while its addition is uncommitted and no leader is heard", () => {
  // Reference: thesis §4.2.2; only a server that was a voter may still be needed.
  // Setup: leader 1 adds learner 4, which gets the entry; voters 2 and 3 do not.
  const net = new Net(3);
  net.elect(1);
  net.deliverAll();
  net.add(4, {
    hardState: { term: 0, vote: 0, commit: 0 },
    snapshot: null,
    entries: [],
    applied: 0,
  });
  for (const id of [2, 3]) net.cut.add(`1->${id}`).add(`${id}->1`);
  net.get(1).node.proposeConfChange({ kind: "add_learner", nodeId: 4, context: "" });
  net.tick(3, [1]);
  const s4 = net.get(4).node.status();
  assert.deepEqual(s4.membership.learners, [4]);
  assert.ok(s4.commitIndex < s4.lastIndex, "its addition is not committed");
  // Action: learner 4 hears nobody for ten election timeouts, and is told to campaign.
  net.isolate(4);
  net.tick(100, [4]);
  net.get(4).node.campaign();
  net.deliverAll();
  // Check: it never campaigned.
  assert.equal(net.get(4).node.status().electionsStarted, 0);
  assert.equal(net.get(4).node.status().role, "follower");
});

Deno.test("§7: after snapshot_threshold applied entries a snapshot compacts the log; a lagging follower gets InstallSnapshot", () => {
  const net = new Net(3, { snapshotThreshold: 10 });
  net.elect(1);
  net.deliverAll();
  net.crash(3);
  const l = net.get(1);
  for (let k = 0; k < 30; k++) l.node.propose(text(`p${k}`));
  net.deliverAll();
  assert.ok(l.node.snapshotDue());
  const applied = l.node.status().appliedIndex;
  const snap = l.node.createSnapshot(applied, text(JSON.stringify(appliedPayloads(l))));
  assert.equal(l.node.status().firstIndex, applied + 1);
  assert.deepEqual(snap.meta.membership.voters, [1, 2, 3]);
  l.durable.snapshot = snap;
  l.durable.entries = l.durable.entries.filter((e) => e.index > applied);
  net.restart(3);
  net.sent = [];
  net.tick(3);
  assert.ok(net.sent.some((m) => m.type === "snapshot_request" && m.to === 3));
  net.get(1).node.reportSnapshot(3, true);
  l.node.propose(text("after"));
  net.tick(3);
  const s3 = net.get(3).node.status();
  assert.equal(s3.snapshotIndex, applied);
  assert.equal(s3.commitIndex, l.node.status().commitIndex);
  assert.equal(net.get(3).durable.snapshot?.meta.index, applied);
  assert.deepEqual(appliedPayloads(net.get(3)).at(-1), "after");
});

Deno.test("failover_enabled off: followers wait for a silent leader, which resumes in the same term", () => {
  const net = new Net(3, { failoverEnabled: false });
  net.elect(1);
  net.deliverAll();
  const term = net.get(1).node.status().term;
  net.get(1).up = false; // paused: no ticks, no messages
  net.tick(200);
  assert.deepEqual(net.leaders(), []);
  assert.equal(net.get(2).node.status().term, term);
  net.get(1).up = true;
  net.tick(3);
  assert.deepEqual(net.leaders(), [1]);
  assert.equal(net.get(1).node.status().term, term);
});

Deno.test("failover_enabled off: after the whole cluster restarts a leader exists within 2 election timeouts", () => {
  const net = new Net(3, { failoverEnabled: false });
  net.elect(1);
  net.deliverAll();
  for (const id of [1, 2, 3]) net.crash(id);
  for (const id of [1, 2, 3]) net.restart(id, { failoverEnabled: false });
  let ticks = 0;
  while (net.leaders().length === 0 && ticks < 100) {
    net.tick();
    ticks++;
  }
  assert.equal(net.leaders().length, 1);
  assert.ok(ticks <= 2 * 10 + 2, `${ticks} ticks`); // electionTicks 10, jitter < 10
});

Deno.test("failover_enabled off: the old leader coming back after a crash is leader again within 2 election timeouts", () => {
  const net = new Net(3, { failoverEnabled: false });
  net.elect(1);
  net.deliverAll();
  net.crash(1);
  net.tick(100);
  assert.deepEqual(net.leaders(), []);
  net.restart(1, { failoverEnabled: false });
  let ticks = 0;
  while (net.leaders().length === 0 && ticks < 100) {
    net.tick();
    ticks++;
  }
  assert.ok(ticks <= 2 * 10 + 2, `${ticks} ticks`);
});

Deno.test("thesis §6.4 ReadIndex: leadership is confirmed by a quorum before answering; an isolated leader cannot", () => {
  const net = new Net(3);
  net.elect(1);
  net.deliverAll();
  net.get(1).node.propose(text("w"));
  net.deliverAll();
  net.get(1).node.readIndex("r1");
  net.deliverAll();
  assert.deepEqual(net.get(1).readStates, [{
    context: "r1",
    index: net.get(1).node.status().commitIndex,
  }]);
  net.isolate(1);
  net.get(1).node.readIndex("r2");
  net.deliverAll();
  assert.equal(net.get(1).readStates.length, 1);
  assert.throws(() => net.get(2).node.readIndex("r3"), NotLeaderError);
});

Deno.test("§5.1/Figure 2: vote responses are sent only after the vote is durable", () => {
  const voters = [{ id: 1, context: "" }, { id: 2, context: "" }];
  const a = new RaftNode(config(1, { preVote: false }), bootstrapState(voters));
  const b = new RaftNode(config(2, { preVote: false }), bootstrapState(voters));
  a.campaign();
  const ra = a.ready();
  a.advance(ra);
  const req = [...ra.messages, ...ra.messagesBeforePersist].find((m) => m.to === 2)!;
  b.step(req);
  const rb = b.ready();
  const early = rb.messagesBeforePersist.filter((m: Message) => m.type === "vote_response");
  assert.equal(early.length, 0);
  assert.ok(rb.messages.some((m) => m.type === "vote_response"));
  assert.ok(rb.hardState !== null);
});

Deno.test("§5.3: a restarted node re-applies committed entries it had not applied, exactly once", () => {
  const net = new Net(3);
  net.elect(1);
  for (let k = 0; k < 5; k++) net.get(1).node.propose(text(`p${k}`));
  net.deliverAll();
  const t = net.get(2);
  t.durable.applied = 2; // pretend applying stopped early
  net.crash(2);
  net.restart(2);
  net.flush();
  const idx = net.get(2).applied.map((e: Entry) => e.index);
  assert.equal(new Set(idx).size, idx.length);
  assert.equal(appliedPayloads(net.get(2)).length, 5);
});

Deno.test("§5.4.1 election restriction: a node with a shorter log cannot win against up-to-date voters", () => {
  const net = new Net(3, { preVote: false, checkQuorum: false });
  net.elect(1);
  net.deliverAll();
  net.crash(3);
  net.get(1).node.propose(text("only on 1 and 2"));
  net.deliverAll();
  net.crash(1);
  net.restart(3, { preVote: false, checkQuorum: false });
  // Node 3 lacks the committed entry: node 2 must refuse its vote.
  net.get(3).node.campaign();
  net.deliverAll();
  assert.notEqual(net.get(3).node.status().role, "leader");
  assert.ok(
    net.sent.some((m) => m.type === "vote_response" && m.from === 2 && m.to === 3 && !m.granted),
  );
  // Node 2 has it and wins with node 3's vote.
  net.get(2).node.campaign();
  net.deliverAll();
  assert.equal(net.get(2).node.status().role, "leader");
});

Deno.test("§5.3 log matching: a follower rejects an append whose previous entry it does not hold", () => {
  const voters = [{ id: 1, context: "" }, { id: 2, context: "" }];
  const b = new RaftNode(config(2), bootstrapState(voters));
  b.step({
    type: "append_request",
    term: 5,
    from: 1,
    to: 2,
    prevLogIndex: 7,
    prevLogTerm: 4,
    entries: [],
    commit: 0,
  });
  const rd = b.ready();
  const reply = rd.messages.find((m) => m.type === "append_response");
  assert.ok(reply && reply.type === "append_response");
  assert.equal(reply.success, false);
  assert.deepEqual(reply.hint, {
    rejectedIndex: 7,
    lastIndex: 2,
    conflictTerm: 0,
    conflictIndex: 3,
  });
  assert.equal(b.status().lastIndex, 2, "nothing appended");
});

Deno.test("§5.2 split votes: a candidate that did not win retries after half an election timeout", () => {
  const net = new Net(3, { preVote: false, electionJitterTicks: 1 });
  net.crash(1);
  net.isolate(2); // node 2 cannot gather votes: its election fails
  net.get(2).node.campaign();
  net.deliverAll();
  assert.equal(net.get(2).node.status().role, "candidate");
  const started = net.get(2).node.status().electionsStarted;
  let ticks = 0;
  while (net.get(2).node.status().electionsStarted === started && ticks < 50) {
    net.tick(1, [2]);
    ticks++;
  }
  assert.ok(ticks <= 6, `retried after ${ticks} ticks (election timeout 10)`);
  // A follower still waits a whole election timeout before its first campaign.
  net.heal();
  const t3 = net.get(3).node;
  let followerTicks = 0;
  const before = t3.status().electionsStarted + (t3.status().role === "follower" ? 0 : 1);
  while (t3.status().electionsStarted < before + 1 && followerTicks < 50) {
    net.tick(1, [3]);
    followerTicks++;
  }
  assert.ok(followerTicks >= 10, `a follower campaigned after ${followerTicks} ticks`);
});

Deno.test("thesis §4.2.2: a removed follower that loses the first messages saying its removal committed still learns it", () => {
  const net = new Net(3);
  net.elect(1);
  net.deliverAll();
  const { index: confIndex } = net.get(1).node.proposeConfChange({
    kind: "remove_node",
    nodeId: 3,
    context: "",
  });
  // Lose what tells node 3 the removal committed, for a while (not for good).
  let dropped = 0;
  net.filter = (m) => {
    const tells = m.to === 3 && (m.type === "heartbeat_request" || m.type === "append_request") &&
      m.commit >= confIndex;
    if (tells && dropped < 3) {
      dropped++;
      return false;
    }
    return true;
  };
  net.tick(40);
  assert.ok(dropped >= 1, "the first messages were lost");
  assert.equal(net.get(3).node.status().removed, true, "later heartbeats told it");
});
