/**
 * Quorum arithmetic: the one place the majority rule lives. A quorum is any
 * strict majority of the voters (§5.2); learners never count. Every decision
 * that needs "enough voters" — winning an election, committing an entry,
 * confirming leadership for a read, staying leader under check-quorum —
 * asks this module.
 *
 * @module
 */

import type { NodeId } from "./types.ts";

/**
 * How many voters make a quorum among `voterCount`: a strict majority (§5.2).
 * Any two majorities of the same voters share at least one voter, which is
 * what election safety and leader completeness rest on (§5.4).
 *
 * @param voterCount the number of voters (>= 0)
 * @returns floor(voterCount / 2) + 1 (1 when there are no voters: no set of them is a quorum)
 * @example
 * ```ts
 * import { quorumSize } from "./quorum.ts";
 * console.assert(quorumSize(3) === 2 && quorumSize(4) === 3 && quorumSize(5) === 3);
 * ```
 */
export function quorumSize(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * Whether the voters for which `active` answers true form a quorum.
 *
 * @param voters the voters of the configuration (no duplicates)
 * @param active whether a voter counts (it answered, it is alive, it acknowledged)
 * @returns true when a majority of `voters` is active; false when there are no voters
 * @example
 * ```ts
 * import { hasQuorum } from "./quorum.ts";
 * const alive = new Set([1, 3]);
 * console.assert(hasQuorum([1, 2, 3], (id) => alive.has(id)));
 * console.assert(!hasQuorum([1, 2, 3, 4], (id) => alive.has(id)));
 * ```
 */
export function hasQuorum(voters: readonly NodeId[], active: (id: NodeId) => boolean): boolean {
  let count = 0;
  for (const v of voters) if (active(v)) count++;
  return count >= quorumSize(voters.length);
}

/**
 * The largest index a quorum of voters holds, given each voter's match index
 * (the leader's own entry is its durable last index): sort the indexes in
 * descending order and take the one at position quorumSize − 1. Every index
 * at or below it is held by a majority. Whether it may be committed is a
 * separate rule: only an entry of the leader's current term is committed by
 * counting replicas (§5.4.2).
 *
 * @param matchIndexes one match index per voter (not modified)
 * @returns the quorum's index; 0 when there are no voters
 * @example
 * ```ts
 * import { committedIndex } from "./quorum.ts";
 * console.assert(committedIndex([5, 9, 7]) === 7);
 * console.assert(committedIndex([5, 9, 7, 8]) === 7);
 * ```
 */
export function committedIndex(matchIndexes: readonly number[]): number {
  const sorted = matchIndexes.slice().sort((a, b) => b - a);
  return sorted[quorumSize(sorted.length) - 1] ?? 0;
}

/** The outcome of an election so far. */
export type VoteResult = "won" | "lost" | "pending";

/**
 * Tally the votes of an election (§5.2) or a pre-vote (thesis §9.6).
 * Votes from nodes that are not voters are ignored.
 *
 * @param voters the voters of the configuration (no duplicates)
 * @param votes each answer received so far: true granted, false rejected
 * @returns "won" once a quorum granted; "lost" once so many rejected that a
 *   quorum can no longer grant (always so without voters); else "pending"
 * @example
 * ```ts
 * import { voteResult } from "./quorum.ts";
 * console.assert(voteResult([1, 2, 3], new Map([[1, true], [2, true]])) === "won");
 * console.assert(voteResult([1, 2, 3], new Map([[2, false], [3, false]])) === "lost");
 * console.assert(voteResult([1, 2, 3], new Map([[1, true], [2, false]])) === "pending");
 * ```
 */
export function voteResult(
  voters: readonly NodeId[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const v of voters) {
    const vote = votes.get(v);
    if (vote === true) granted++;
    else if (vote === false) rejected++;
  }
  const q = quorumSize(voters.length);
  if (granted >= q) return "won";
  if (rejected > voters.length - q) return "lost";
  return "pending";
}
