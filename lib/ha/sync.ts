/**
 * Synchronous replication: which standbys a commit waits for.
 *
 * With `synchronous_replication = on` the primary runs with
 * `synchronous_standby_names = 'ANY k (…)'` listing every other voter, and k
 * chosen so that the primary plus k standbys form a majority of the voters
 * (k = quorum − 1). A commit is acknowledged to its client only once k of
 * them flushed it (`synchronous_commit = on`), so every acknowledged commit is
 * on a majority of the voters. Every majority meets every other, and a
 * failover compares a majority: one of the compared servers holds every
 * acknowledged commit (controller.ts "Which server may be promoted").
 *
 * Off: '' (asynchronous). A commit is then acknowledged once on the primary's
 * disk; whatever the standbys had not received when the primary was lost is
 * lost with it, and a primary cut off from the others (or whose agent is
 * paused) keeps acknowledging commits that are all lost at the failover.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { type NodeId, quorumSize } from "../raft/mod.ts";

/**
 * The `application_name` a member's standby streams under (its
 * `primary_conninfo`), the name `synchronous_standby_names` lists.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(applicationName(3), "pgraft_node_3");
 * ```
 */
export function applicationName(nodeId: NodeId): string {
  assert(Number.isInteger(nodeId) && nodeId >= 1, `bad node id ${nodeId}`);
  return `pgraft_node_${nodeId}`;
}

/**
 * How many standbys a commit waits for: k with primary + k = a majority of
 * the voters (0 with one voter).
 *
 * @param voterCount the number of voters
 */
export function synchronousCount(voterCount: number): number {
  assert(Number.isInteger(voterCount) && voterCount >= 1, `bad voter count ${voterCount}`);
  return quorumSize(voterCount) - 1;
}

/**
 * The `synchronous_standby_names` the primary runs with.
 *
 * @param voters the voters (the primary's node among them, or not: a primary
 *   is normally a voter)
 * @param primary the primary's node
 * @param synchronous cluster setting synchronous_replication
 * @returns `ANY k (pgraft_node_a, …)` over the other voters in id order, or
 *   '' when off or when k = 0. k = quorum − 1, or quorum when the primary is
 *   not a voter.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(synchronousStandbyNames([3, 1, 2], 1, true), "ANY 1 (pgraft_node_2, pgraft_node_3)");
 * assert.equal(synchronousStandbyNames([1, 2, 3, 4, 5], 4, true),
 *   "ANY 2 (pgraft_node_1, pgraft_node_2, pgraft_node_3, pgraft_node_5)");
 * assert.equal(synchronousStandbyNames([1, 2, 3], 1, false), "");
 * ```
 */
export function synchronousStandbyNames(
  voters: readonly NodeId[],
  primary: NodeId,
  synchronous: boolean,
): string {
  assert(new Set(voters).size === voters.length, "duplicate voters");
  if (!synchronous || voters.length === 0) return "";
  // A primary outside the voters (its node being removed) does not count
  // towards the majority: then k standbys alone must be one.
  const k = synchronousCount(voters.length) + (voters.includes(primary) ? 0 : 1);
  const standbys = voters.filter((v) => v !== primary).sort((a, b) => a - b);
  if (k === 0 || standbys.length === 0) return "";
  assert(standbys.length >= k, () => `ANY ${k} of ${standbys.length} standbys can never commit`);
  return `ANY ${k} (${standbys.map(applicationName).join(", ")})`;
}

/**
 * Parse a value this module wrote (`ANY k (names)` or ''), for the simulator
 * and for status; null for anything else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseSynchronousStandbyNames("ANY 1 (pgraft_node_2, pgraft_node_3)"),
 *   { count: 1, nodes: [2, 3] });
 * ```
 */
export function parseSynchronousStandbyNames(
  value: string,
): { count: number; nodes: NodeId[] } | null {
  if (value === "") return { count: 0, nodes: [] };
  const match = /^ANY (\d+) \(([^)]*)\)$/.exec(value);
  if (!match) return null;
  const nodes: NodeId[] = [];
  for (const name of match[2]!.split(", ")) {
    const id = /^pgraft_node_(\d+)$/.exec(name);
    if (!id) return null;
    nodes.push(Number(id[1]));
  }
  return { count: Number(match[1]), nodes };
}
