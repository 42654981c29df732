import assert from "node:assert/strict";
import {
  committedIndex,
  hasQuorum,
  type NodeId,
  quorumSize,
  type VoteResult,
  voteResult,
} from "../../../lib/raft/mod.ts";
import { seeded } from "./harness.ts";

/** The largest index held by more than half of the voters, by counting (no sorting trick). */
function naiveCommittedIndex(matchIndexes: readonly number[]): number {
  let best = 0;
  for (const candidate of matchIndexes) {
    const holders = matchIndexes.filter((m) => m >= candidate).length;
    if (2 * holders > matchIndexes.length && candidate > best) best = candidate;
  }
  return best;
}

/** Won once more than half granted; lost once more than half can no longer grant. */
function naiveVoteResult(
  voters: readonly NodeId[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const granted = voters.filter((v) => votes.get(v) === true).length;
  const couldStillGrant = voters.filter((v) => votes.get(v) !== false).length;
  if (2 * granted > voters.length) return "won";
  if (2 * couldStillGrant <= voters.length) return "lost";
  return "pending";
}

Deno.test("§5.2 quorum size is a strict majority: 1 of 1, 2 of 2, 2 of 3, 3 of 4, 3 of 5", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(quorumSize), [1, 2, 2, 3, 3, 4, 4]);
});

Deno.test("the fast committed index equals a naive count on 20,000 seeded random match sets", () => {
  const random = seeded(20240601);
  for (let round = 0; round < 20_000; round++) {
    const n = random(8); // 0..7 voters
    const matches = Array.from({ length: n }, () => random(4) === 0 ? 0 : random(30));
    const copy = [...matches];
    assert.equal(
      committedIndex(matches),
      naiveCommittedIndex(matches),
      `match indexes ${JSON.stringify(matches)}`,
    );
    assert.deepEqual(matches, copy, "the match indexes are left as given");
  }
});

Deno.test("the committed index for 1, 2, 3 and 5 voters is what a majority holds", () => {
  assert.equal(committedIndex([]), 0, "no voters: nothing is committed");
  assert.equal(committedIndex([7]), 7, "a lone voter commits what it holds");
  assert.equal(committedIndex([7, 3]), 3, "two voters: both must hold it");
  assert.equal(committedIndex([3, 7]), 3);
  assert.equal(committedIndex([9, 2, 5]), 5, "three voters: the middle one");
  assert.equal(committedIndex([9, 9, 0]), 9);
  assert.equal(committedIndex([1, 8, 4, 6, 2]), 4, "five voters: the third highest");
  assert.equal(committedIndex([8, 8, 8, 0, 0]), 8);
  assert.equal(committedIndex([8, 8, 0, 0, 0]), 0);
});

Deno.test("vote tallies for 1, 2, 3 and 5 voters: won, lost or pending", () => {
  const tally = (voters: NodeId[], votes: [NodeId, boolean][]) =>
    voteResult(voters, new Map(votes));
  assert.equal(tally([1], [[1, true]]), "won", "a lone voter elects itself");
  assert.equal(tally([1], []), "pending");
  assert.equal(tally([1, 2], [[1, true]]), "pending", "two voters: both must grant");
  assert.equal(tally([1, 2], [[1, true], [2, true]]), "won");
  assert.equal(tally([1, 2], [[1, true], [2, false]]), "lost", "one rejection of two loses");
  assert.equal(tally([1, 2, 3], [[1, true], [2, true]]), "won");
  assert.equal(tally([1, 2, 3], [[1, true], [2, false]]), "pending", "the third vote decides");
  assert.equal(tally([1, 2, 3], [[2, false], [3, false]]), "lost");
  assert.equal(tally([1, 2, 3, 4, 5], [[1, true], [2, true]]), "pending");
  assert.equal(tally([1, 2, 3, 4, 5], [[1, true], [2, true], [5, true]]), "won");
  assert.equal(tally([1, 2, 3, 4, 5], [[1, true], [2, false], [3, false]]), "pending");
  assert.equal(tally([1, 2, 3, 4, 5], [[1, true], [2, false], [3, false], [4, false]]), "lost");
});

Deno.test("votes from nodes that are not voters (learners, removed nodes) are not counted", () => {
  assert.equal(voteResult([1, 2, 3], new Map([[1, true], [4, true], [5, true]])), "pending");
  assert.equal(voteResult([1, 2, 3], new Map([[1, true], [4, false], [5, false]])), "pending");
  assert.equal(voteResult([], new Map([[1, true]])), "lost", "no voters: no election can be won");
});

Deno.test("vote tallies equal a naive count on 20,000 seeded random elections", () => {
  const random = seeded(77);
  for (let round = 0; round < 20_000; round++) {
    const n = 1 + random(7);
    const voters = Array.from({ length: n }, (_, k) => k + 1);
    const votes = new Map<NodeId, boolean>();
    for (let id = 1; id <= n + 2; id++) { // ids above n are not voters
      const answer = random(3);
      if (answer !== 2) votes.set(id, answer === 0);
    }
    assert.equal(
      voteResult(voters, votes),
      naiveVoteResult(voters, votes),
      `voters ${n}, votes ${JSON.stringify([...votes])}`,
    );
  }
});

Deno.test("a set of active voters is a quorum exactly when it is more than half of them", () => {
  const random = seeded(5);
  for (let round = 0; round < 5_000; round++) {
    const n = random(7);
    const voters = Array.from({ length: n }, (_, k) => 10 + k);
    const active = new Set(voters.filter(() => random(2) === 0));
    if (random(2) === 0) active.add(99); // an active node that is not a voter
    const activeVoters = voters.filter((v) => active.has(v)).length;
    assert.equal(hasQuorum(voters, (id) => active.has(id)), 2 * activeVoters > n);
  }
  assert.equal(hasQuorum([], () => true), false, "no voters: never a quorum");
  assert.equal(hasQuorum([1], (id) => id === 1), true);
  assert.equal(hasQuorum([1, 2], (id) => id === 1), false, "one of two is not a majority");
  assert.equal(hasQuorum([1, 2, 3], (id) => id !== 3), true);
  assert.equal(hasQuorum([1, 2, 3, 4, 5], (id) => id <= 2), false);
  assert.equal(hasQuorum([1, 2, 3, 4, 5], (id) => id <= 3), true);
});
