/**
 * The first state of a brand-new cluster.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { encodeConfChange, isNodeId } from "./conf_change.ts";
import type { Entry, NodeId, PersistentState } from "./types.ts";

/**
 * The term a new cluster's founders start in. No leader is ever elected in
 * it: a node campaigns only as a voter of a configuration, the first one is
 * written here, and campaigning raises the term (vote_hold.ts relies on it).
 */
export const BOOTSTRAP_TERM = 1;

/**
 * The persistent state every founding member starts from: entries 1..n add
 * each voter (term {@link BOOTSTRAP_TERM}), all committed. The members then
 * elect a leader (a lone founder wins at once when it campaigns).
 */
export function bootstrapState(
  voters: readonly { id: NodeId; context: string }[],
): PersistentState {
  assert(voters.length > 0, "a cluster needs at least one voter");
  const ids = new Set(voters.map((v) => v.id));
  assert(ids.size === voters.length, "duplicate voter ids");
  const entries: Entry[] = voters.map((v, k) => {
    assert(isNodeId(v.id), `bad node id ${v.id}`);
    return {
      index: k + 1,
      term: BOOTSTRAP_TERM,
      type: "conf_change",
      data: encodeConfChange({ kind: "add_voter", nodeId: v.id, context: v.context }),
    };
  });
  return {
    hardState: { term: BOOTSTRAP_TERM, vote: 0, commit: entries.length },
    snapshot: null,
    entries,
    applied: 0,
  };
}
