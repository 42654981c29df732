/**
 * The pure Raft consensus core: no I/O, timers, clock or randomness of its
 * own. See {@link RaftNode}.
 *
 * @module
 */

export * from "./types.ts";
export { RaftNode } from "./node.ts";
export { committedIndex, hasQuorum, quorumSize, type VoteResult, voteResult } from "./quorum.ts";
export { ConfChangeError, NotLeaderError, ProposalRejectedError } from "./errors.ts";
export {
  applyConfChange,
  confChangeProblem,
  decodeConfChange,
  encodeConfChange,
  isMember,
  isNodeId,
} from "./conf_change.ts";
export { bootstrapState } from "./bootstrap.ts";
