/**
 * The boundary between the core and the application (etcd's `unstable` log
 * and RawNode's accept-Ready bookkeeping): what the core has to hand over in
 * the next {@link Ready} — messages, entries and a snapshot to persist,
 * committed entries to apply, read states — and what the application has
 * acknowledged by calling `advance()`.
 *
 * Index bookkeeping, as the application sees it:
 *
 *     persistedIndex  <  handOutFrom          (log positions)
 *     applyAccepted  <=  applyHandedOut  <=  commitIndex
 *
 * - entries from `handOutFrom` on have not been handed out for persisting
 *   yet; entries up to `persistedIndex` are durable (reported by `advance()`);
 * - committed entries up to `applyHandedOut` have been handed out for
 *   applying, those up to `applyAccepted` in a Ready the application has
 *   advanced past. The application may still be applying them: it applies
 *   beside its Ready loop, and its own durable applied index trails.
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { RaftLog } from "./log.ts";
import type {
  Entry,
  HardState,
  Message,
  NodeId,
  ReadState,
  Ready,
  Snapshot,
  SoftState,
} from "./types.ts";

/** Upper bound on entries handed out for applying in one Ready. */
export const COMMITTED_PER_READY_MAX = 4096;

/** What `accept()` records once the application is done with the Ready handed out. */
interface AwaitingAdvance {
  /** the last entry handed out for persisting (null when none) */
  lastEntry: { index: number; term: number } | null;
  hardState: HardState | null;
  /** index of the snapshot handed out for persisting (0 when none) */
  snapshotIndex: number;
  /** committed entries handed out for applying up to here */
  applyHandedOut: number;
}

/** What has been handed to the application, and what it has acknowledged. */
export class Handoff {
  /** messages that go out only once the Ready's state is durable */
  #msgsAfterPersist: Message[] = [];
  /** messages that may go out before the Ready's entries are durable */
  #msgsBeforePersist: Message[] = [];
  /** vote responses sent before the vote is durable (planted bug `answerVoteBeforePersist` only) */
  #voteResponsesBeforePersist: Message[] = [];
  #readStates: ReadState[] = [];
  /** a snapshot received from the leader, to hand out for persisting and installing */
  #snapshotToPersist: Snapshot | null = null;
  /** entries from this index on go into the next Ready for persisting */
  #handOutFrom: number;
  /** the last log index the application reported durable (lowered when entries beyond it are replaced) */
  #persistedIndex: number;
  /** term and vote of the last hard state the application reported durable */
  #durableTermVote: { term: number; vote: NodeId };
  /** committed entries handed out for applying (in any Ready, including one not yet advanced) up to here */
  #applyHandedOut: number;
  /** committed entries handed out for applying in Readies the application advanced past, up to here */
  #applyAccepted: number;
  /** the Ready handed out and not yet advanced past */
  #awaitingAdvance: AwaitingAdvance | null = null;

  /**
   * After a restart: the log and hard state are durable as loaded, and the
   * state machine has applied up to `applied`.
   */
  constructor(log: RaftLog, hardState: HardState, applied: number) {
    this.#handOutFrom = log.lastIndex() + 1;
    this.#persistedIndex = log.lastIndex();
    this.#durableTermVote = { term: hardState.term, vote: hardState.vote };
    this.#applyHandedOut = applied;
    this.#applyAccepted = applied;
  }

  /** The last log index the application reported durable. */
  get persistedIndex(): number {
    return this.#persistedIndex;
  }

  /**
   * Committed entries were handed out for applying, in Readies the
   * application advanced past, up to this index. The application may still
   * be applying them.
   */
  get applyAccepted(): number {
    return this.#applyAccepted;
  }

  /** A Ready was handed out and `accept()` has not been called for it yet. */
  get awaitingAdvance(): boolean {
    return this.#awaitingAdvance !== null;
  }

  /** Queue a message that goes out once the Ready's state is durable. */
  sendAfterPersist(m: Message): void {
    this.#msgsAfterPersist.push(m);
  }

  /** Queue a message that may go out before the Ready's entries are durable (thesis §10.2.1). */
  sendBeforePersist(m: Message): void {
    this.#msgsBeforePersist.push(m);
  }

  /** Planted bug `answerVoteBeforePersist`: a vote response that goes out before the vote is durable. */
  sendVoteResponseBeforePersist(m: Message): void {
    this.#voteResponsesBeforePersist.push(m);
  }

  /** Queue a read that is ready to be served (thesis §6.4). */
  addReadState(readState: ReadState): void {
    this.#readStates.push(readState);
  }

  /**
   * Entries from `first` on were written to the log; `truncatedAt` is where
   * it was cut (0 when it only grew). They go out for persisting, and what
   * the cut replaced is no longer durable.
   */
  entriesAppended(first: number, truncatedAt: number): void {
    this.#handOutFrom = Math.min(this.#handOutFrom, first);
    if (truncatedAt !== 0) this.#persistedIndex = Math.min(this.#persistedIndex, truncatedAt - 1);
  }

  /**
   * The log was replaced by `snapshot` (InstallSnapshot, §7): hand it out for
   * persisting; it stands for every committed entry up to its index.
   */
  snapshotReceived(snapshot: Snapshot): void {
    const index = snapshot.meta.index;
    this.#snapshotToPersist = snapshot;
    this.#handOutFrom = index + 1;
    this.#persistedIndex = Math.min(this.#persistedIndex, index);
    this.#applyHandedOut = index;
  }

  /**
   * Whether there is anything to hand out besides a changed hard or soft
   * state (the caller compares those).
   */
  hasWork(log: RaftLog, commitIndex: number): boolean {
    return this.#snapshotToPersist !== null ||
      this.#handOutFrom <= log.lastIndex() ||
      this.#msgsAfterPersist.length > 0 || this.#msgsBeforePersist.length > 0 ||
      this.#voteResponsesBeforePersist.length > 0 ||
      this.#readStates.length > 0 ||
      this.#applyHandedOut < commitIndex;
  }

  /**
   * Hand out the next Ready. `hardState` and `softState` are those that
   * changed since the last Ready (null when unchanged).
   */
  take(
    log: RaftLog,
    commitIndex: number,
    hardState: HardState | null,
    softState: SoftState | null,
  ): Ready {
    assert(this.#awaitingAdvance === null, "ready() called again before advance()");
    const snapshot = this.#snapshotToPersist;
    this.#snapshotToPersist = null;
    const last = log.lastIndex();
    const entries = this.#handOutFrom <= last ? log.slice(this.#handOutFrom, last) : [];
    this.#handOutFrom = last + 1;

    // A snapshot replaces the state machine: committed entries resume after it, next time.
    let committedEntries: Entry[] = [];
    if (snapshot === null && this.#applyHandedOut < commitIndex) {
      committedEntries = log.slice(this.#applyHandedOut + 1, commitIndex, COMMITTED_PER_READY_MAX);
    }

    // The leader's appends may go out before its own write (thesis §10.2.1),
    // but only once its term and vote are durable (§5.1, Figure 2).
    let before = this.#msgsBeforePersist;
    let after = this.#msgsAfterPersist;
    if (
      hardState &&
      (hardState.term !== this.#durableTermVote.term ||
        hardState.vote !== this.#durableTermVote.vote)
    ) {
      after = before.concat(after);
      before = [];
    }
    before = before.concat(this.#voteResponsesBeforePersist);
    this.#msgsAfterPersist = [];
    this.#msgsBeforePersist = [];
    this.#voteResponsesBeforePersist = [];
    const readStates = this.#readStates;
    this.#readStates = [];

    const lastEntry = entries.length > 0 ? entries[entries.length - 1]! : null;
    const applyHandedOut = snapshot
      ? snapshot.meta.index
      : committedEntries.length > 0
      ? committedEntries[committedEntries.length - 1]!.index
      : this.#applyHandedOut;
    this.#applyHandedOut = applyHandedOut;
    this.#awaitingAdvance = {
      lastEntry: lastEntry ? { index: lastEntry.index, term: lastEntry.term } : null,
      hardState,
      snapshotIndex: snapshot?.meta.index ?? 0,
      applyHandedOut,
    };
    return {
      softState,
      hardState,
      snapshot,
      entries,
      messagesBeforePersist: before,
      messages: after,
      committedEntries,
      readStates,
    };
  }

  /**
   * The application is done with the Ready handed out: its snapshot, entries
   * and hard state are durable, its messages are with the transport, and its
   * committed entries are taken for applying (they may still be being
   * applied).
   */
  accept(log: RaftLog): void {
    const o = this.#awaitingAdvance;
    assert(o !== null, "advance() without ready()");
    this.#awaitingAdvance = null;
    if (o.snapshotIndex > 0) {
      this.#persistedIndex = Math.max(this.#persistedIndex, o.snapshotIndex);
    }
    // Entries replaced since ready() (another leader's) are not what was made durable.
    if (o.lastEntry && log.matchTerm(o.lastEntry.index, o.lastEntry.term)) {
      this.#persistedIndex = Math.max(this.#persistedIndex, o.lastEntry.index);
    }
    // A truncation after ready() invalidates what it persisted beyond the cut.
    this.#persistedIndex = Math.min(this.#persistedIndex, this.#handOutFrom - 1);
    if (o.hardState) {
      this.#durableTermVote = { term: o.hardState.term, vote: o.hardState.vote };
    }
    assert(o.applyHandedOut >= this.#applyAccepted, "applied index went backwards");
    this.#applyAccepted = o.applyHandedOut;
  }
}
