import assert from "node:assert/strict";
import { RaftLog } from "../../../lib/raft/log.ts";
import { encodeConfChange, type Entry } from "../../../lib/raft/mod.ts";

const e = (index: number, term: number): Entry => ({
  index,
  term,
  type: "normal",
  data: new Uint8Array(),
});
const conf = (
  index: number,
  term: number,
  kind: "add_voter" | "add_learner" | "remove_node",
  id: number,
): Entry => ({
  index,
  term,
  type: "conf_change",
  data: encodeConfChange({ kind, nodeId: id, context: `ctx${id}` }),
});

Deno.test("appending over a conflict truncates the log and rolls back its membership", () => {
  const log = new RaftLog(null, [
    conf(1, 1, "add_voter", 1),
    e(2, 1),
    conf(3, 2, "add_learner", 2),
  ]);
  assert.deepEqual(log.membership(), { voters: [1], learners: [2] });
  assert.equal(log.append([e(3, 3), e(4, 3)]), 3);
  assert.deepEqual(log.membership(), { voters: [1], learners: [] });
  assert.equal(log.lastIndex(), 4);
  assert.equal(log.lastTerm(), 3);
  assert.equal(log.contexts.get(2), "ctx2");
});

Deno.test("findConflict, up-to-date comparison and term lookups follow the paper", () => {
  const log = new RaftLog(null, [e(1, 1), e(2, 2), e(3, 2), e(4, 3)]);
  assert.equal(log.findConflict([e(2, 2), e(3, 2)]), 0);
  assert.equal(log.findConflict([e(3, 2), e(4, 4)]), 4);
  assert.equal(log.findConflict([e(5, 3)]), 5);
  assert.ok(log.isUpToDate(4, 3));
  assert.ok(log.isUpToDate(1, 4));
  assert.ok(!log.isUpToDate(9, 2));
  assert.equal(log.firstIndexOfTermAt(3), 2);
  assert.deepEqual(log.lastIndexWithTermAtMost(4, 2), { index: 3, term: 2 });
  assert.equal(log.term(0), 0);
  assert.equal(log.term(5), null);
});

Deno.test("compaction keeps the snapshot's membership and later entries", () => {
  const log = new RaftLog(null, [
    conf(1, 1, "add_voter", 1),
    conf(2, 1, "add_voter", 2),
    e(3, 1),
    e(4, 2),
  ]);
  log.compact({
    meta: { index: 3, term: 1, membership: log.membershipAt(3) },
    data: new Uint8Array(),
  });
  assert.equal(log.firstIndex(), 4);
  assert.equal(log.term(3), 1);
  assert.equal(log.term(2), null);
  assert.deepEqual(log.membership(), { voters: [1, 2], learners: [] });
  assert.deepEqual(log.slice(4, 4).map((x) => x.index), [4]);
});

Deno.test("thesis §4.2.2: a node may campaign while its removal is uncommitted, never as a learner or once removed", () => {
  // Reference: thesis §4.2.2, "a server that is not part of its own latest
  // configuration should still start new elections, as it might still be
  // needed until the Cnew entry is committed".
  const log = new RaftLog(null, [
    conf(1, 1, "add_voter", 1),
    conf(2, 1, "add_voter", 2),
    conf(3, 1, "add_voter", 3),
    conf(4, 2, "add_learner", 4),
    conf(5, 2, "remove_node", 3),
  ]);
  assert.deepEqual(log.membership(), { voters: [1, 2], learners: [4] });
  // Entry 5 (removing 3) uncommitted: 3 may still campaign; learner 4 never may.
  assert.equal(log.mayCampaign(1, 4), true);
  assert.equal(log.mayCampaign(3, 4), true);
  assert.equal(log.mayCampaign(4, 4), false);
  assert.equal(log.mayCampaign(9, 4), false);
  // Entry 5 committed: 3 is out for good.
  assert.equal(log.mayCampaign(3, 5), false);
  assert.equal(log.mayCampaign(2, 5), true);
  // A new learner whose addition is uncommitted was no voter before it either.
  const joining = new RaftLog(null, [conf(1, 1, "add_voter", 1), conf(2, 1, "add_learner", 2)]);
  assert.equal(joining.mayCampaign(2, 1), false);
  // The removal truncated away (another leader's entry at 5): 3 is a voter again.
  assert.equal(log.append([e(5, 3)]), 5);
  assert.deepEqual(log.membership().voters, [1, 2, 3]);
  assert.equal(log.mayCampaign(3, 4), true);
});
