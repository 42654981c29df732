/**
 * The leader's linearizable reads without going through the log (ReadIndex,
 * thesis §6.4; etcd's `read_only.go`):
 *
 * 1. A new leader answers no read until it has committed an entry of its own
 *    term: before that its commit index may lag behind entries earlier
 *    leaders committed (§5.4.2, §8). Reads asked meanwhile wait here.
 * 2. A read records the commit index as its read index, and a heartbeat round
 *    carrying its context asks the voters to confirm the leader is still
 *    leader.
 * 3. Once a quorum of voters has answered for it, the read is released as a
 *    {@link ReadState}: the application serves it once it has applied the
 *    read index.
 *
 * Reads are released in the order they were asked: an answer for a later
 * read confirms leadership for every earlier one too (the heartbeat for the
 * later read went out after theirs).
 *
 * @module
 */

import { hasQuorum } from "./quorum.ts";
import type { NodeId, ReadState } from "./types.ts";

/** A read whose leadership confirmation is under way. */
interface PendingRead {
  context: string;
  /** the leader's commit index when the read was asked */
  index: number;
  /** voters that confirmed the leader's leadership for this read */
  acks: Set<NodeId>;
}

/** The leader's reads that are waiting for a commit or for a quorum's answer. */
export class ReadOnly {
  /** reads waiting for a quorum's confirmation, oldest first */
  #pending: PendingRead[] = [];
  /** contexts of reads asked before the leader committed an entry of its term */
  #awaitingCommit: string[] = [];

  /** Reads waiting for a quorum's confirmation. */
  get pendingCount(): number {
    return this.#pending.length;
  }

  /** Reads waiting for the leader's first commit in its term. */
  get awaitingCommitCount(): number {
    return this.#awaitingCommit.length;
  }

  /** Hold a read until the leader has committed an entry of its term (step 1). */
  awaitCommit(context: string): void {
    this.#awaitingCommit.push(context);
  }

  /** The leader committed an entry of its term: take the reads that waited for it, in order. */
  takeAwaitingCommit(): string[] {
    const waiting = this.#awaitingCommit;
    this.#awaitingCommit = [];
    return waiting;
  }

  /**
   * Start confirming a read at read index `index` (step 2); the caller sends
   * the heartbeats carrying `context`.
   *
   * @param ackFrom the leader itself when it is a voter (it confirms its own
   *   leadership), else null
   */
  add(context: string, index: number, ackFrom: NodeId | null): void {
    const read: PendingRead = { context, index, acks: new Set() };
    if (ackFrom !== null) read.acks.add(ackFrom);
    this.#pending.push(read);
  }

  /**
   * Voter `from` answered the heartbeat for `context` (step 3): it confirms
   * that read and every earlier one.
   *
   * @param voters the voters now; answers from anyone else do not count
   * @returns the reads released by this answer, oldest first (often none)
   */
  ack(from: NodeId, context: string, voters: readonly NodeId[]): ReadState[] {
    if (!voters.includes(from)) return [];
    const acked = this.#pending.findIndex((r) => r.context === context);
    if (acked < 0) return [];
    for (let k = 0; k <= acked; k++) this.#pending[k]!.acks.add(from);
    let release = -1;
    for (let k = 0; k < this.#pending.length; k++) {
      const acks = this.#pending[k]!.acks;
      if (hasQuorum(voters, (v) => acks.has(v))) release = k;
    }
    if (release < 0) return [];
    return this.#pending.splice(0, release + 1).map((r) => ({
      context: r.context,
      index: r.index,
    }));
  }

  /** Forget every read (the node is no longer leader, or became leader anew). */
  reset(): void {
    this.#pending = [];
    this.#awaitingCommit = [];
  }
}
