import assert from "node:assert/strict";
import { ReadOnly } from "../../../lib/raft/read_only.ts";

const VOTERS = [1, 2, 3];

Deno.test("thesis §6.4: a read is released once a quorum (the leader and one follower of three) confirms", () => {
  const ro = new ReadOnly();
  ro.add("r1", 7, 1);
  assert.equal(ro.pendingCount, 1);
  assert.deepEqual(ro.ack(2, "r1", VOTERS), [{ context: "r1", index: 7 }]);
  assert.equal(ro.pendingCount, 0);
  assert.deepEqual(ro.ack(3, "r1", VOTERS), [], "a late answer releases nothing twice");
});

Deno.test("thesis §6.4: with five voters a read needs three confirmations", () => {
  const ro = new ReadOnly();
  const voters = [1, 2, 3, 4, 5];
  ro.add("r", 4, 1);
  assert.deepEqual(ro.ack(2, "r", voters), []);
  assert.deepEqual(ro.ack(2, "r", voters), [], "the same voter twice counts once");
  assert.deepEqual(ro.ack(5, "r", voters), [{ context: "r", index: 4 }]);
});

Deno.test("answers from non-voters and for unknown reads do not confirm anything", () => {
  const ro = new ReadOnly();
  ro.add("r", 4, 1);
  assert.deepEqual(ro.ack(9, "r", VOTERS), [], "node 9 is a learner");
  assert.deepEqual(ro.ack(2, "other", VOTERS), []);
  assert.equal(ro.pendingCount, 1);
});

Deno.test("a leader that is not a voter needs a majority of the voters without itself", () => {
  const ro = new ReadOnly();
  ro.add("r", 4, null);
  assert.deepEqual(ro.ack(2, "r", VOTERS), []);
  assert.deepEqual(ro.ack(3, "r", VOTERS), [{ context: "r", index: 4 }]);
});

Deno.test("an answer for a later read confirms every earlier one: reads are released in order", () => {
  const ro = new ReadOnly();
  ro.add("a", 5, 1);
  ro.add("b", 6, 1);
  ro.add("c", 8, 1);
  assert.deepEqual(ro.ack(3, "b", VOTERS), [{ context: "a", index: 5 }, {
    context: "b",
    index: 6,
  }]);
  assert.equal(ro.pendingCount, 1, "c is still waiting");
  assert.deepEqual(ro.ack(2, "c", VOTERS), [{ context: "c", index: 8 }]);
});

Deno.test("an answer for a later read counts for earlier reads too, which may reach a quorum first", () => {
  const ro = new ReadOnly();
  const voters = [1, 2, 3, 4, 5];
  ro.add("a", 5, 1);
  assert.deepEqual(ro.ack(2, "a", voters), []);
  ro.add("b", 6, 1);
  assert.deepEqual(ro.ack(3, "b", voters), [{ context: "a", index: 5 }], "a has 1, 2 and 3");
  assert.equal(ro.pendingCount, 1, "b has only 1 and 3");
});

Deno.test("an answer for an earlier read does not confirm a later one", () => {
  const ro = new ReadOnly();
  ro.add("a", 5, 1);
  ro.add("b", 6, 1);
  assert.deepEqual(ro.ack(2, "a", VOTERS), [{ context: "a", index: 5 }]);
  assert.equal(ro.pendingCount, 1);
  assert.deepEqual(ro.ack(3, "b", VOTERS), [{ context: "b", index: 6 }]);
});

Deno.test("§5.4.2/§8: reads asked before the leader's first commit in its term wait for it, in order", () => {
  const ro = new ReadOnly();
  ro.awaitCommit("x");
  ro.awaitCommit("y");
  assert.equal(ro.awaitingCommitCount, 2);
  assert.equal(ro.pendingCount, 0, "no confirmation round starts yet");
  assert.deepEqual(ro.takeAwaitingCommit(), ["x", "y"]);
  assert.deepEqual(ro.takeAwaitingCommit(), [], "taken once");
});

Deno.test("losing leadership forgets every read, waiting or pending", () => {
  const ro = new ReadOnly();
  ro.awaitCommit("x");
  ro.add("r", 4, 1);
  ro.reset();
  assert.equal(ro.awaitingCommitCount, 0);
  assert.equal(ro.pendingCount, 0);
  assert.deepEqual(ro.ack(2, "r", VOTERS), []);
});
