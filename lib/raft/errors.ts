/**
 * Errors the core throws at callers who asked for something it cannot do now.
 * They are answers, not bugs: a bug is an `AssertionError` (lib/assert.ts).
 *
 * @module
 */

import { type NodeId, NONE } from "./types.ts";

/** The node is not the leader; `leaderId` is the leader it knows (NONE when none). */
export class NotLeaderError extends Error {
  override name = "NotLeaderError";
  readonly leaderId: NodeId;
  constructor(leaderId: NodeId) {
    super(
      leaderId === NONE
        ? "this node is not the leader and no leader is known"
        : `this node is not the leader; the leader is node ${leaderId}`,
    );
    this.leaderId = leaderId;
  }
}

/** The leader refuses a proposal for now (e.g. a leadership transfer is under way). */
export class ProposalRejectedError extends Error {
  override name = "ProposalRejectedError";
}

/** A membership change cannot be proposed (invalid, or another one is still pending). */
export class ConfChangeError extends Error {
  override name = "ConfChangeError";
}
