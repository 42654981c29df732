/**
 * The Raft state machine of one node, in the style of etcd's raft: the
 * application calls {@link RaftNode.tick} on a fixed interval and
 * {@link RaftNode.step} for each message, collects a {@link Ready}, makes it
 * durable, sends its messages, applies its committed entries and calls
 * {@link RaftNode.advance}. No I/O, no clock, no randomness of its own.
 *
 * References: the Raft paper (§n), Ongaro's thesis (thesis §n).
 *
 * @module
 */

import { assert, unreachable } from "../assert.ts";
import { confChangeProblem, encodeConfChange, isMember } from "./conf_change.ts";
import { ConfChangeError, NotLeaderError, ProposalRejectedError } from "./errors.ts";
import { RaftLog } from "./log.ts";
import {
  type AppendRequest,
  type AppendResponse,
  type ConfChange,
  type Entry,
  type HardState,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type Message,
  type NodeId,
  NONE,
  type PersistentState,
  type Progress,
  type RaftConfig,
  type ReadState,
  type Ready,
  type RejectHint,
  type Role,
  type Snapshot,
  type SnapshotRequest,
  type SoftState,
  type Status,
  type VoteRequest,
  type VoteResponse,
} from "./types.ts";

/** Timing and batching knobs that may change at run time (pgraft_set_config). */
export interface Timing {
  heartbeatTicks: number;
  electionTicks: number;
  electionJitterTicks: number;
  appendBatchSize: number;
  snapshotThreshold: number;
  maxInflight: number;
}

interface Tracker {
  id: NodeId;
  match: number;
  next: number;
  state: "probe" | "replicate" | "snapshot";
  /** last index carried by each append in flight (replicate state) */
  inflight: number[];
  /** probe state: an append is out, wait for its answer or a heartbeat answer */
  probeSent: boolean;
  pendingSnapshot: number;
  recentActive: boolean;
  lastHeardTicks: number;
}

interface PendingRead {
  context: string;
  index: number;
  seq: number;
  acks: Set<NodeId>;
}

interface Outstanding {
  lastEntry: { index: number; term: number } | null;
  hardState: HardState | null;
  snapshotIndex: number;
  committedLast: number;
}

/** Upper bound on entries handed out for applying in one Ready. */
const COMMITTED_PER_READY_MAX = 4096;

/** One Raft node. */
export class RaftNode {
  readonly id: NodeId;
  #heartbeatTicks: number;
  #electionTicks: number;
  #electionJitterTicks: number;
  #appendBatchSize: number;
  #snapshotThreshold: number;
  #maxInflight: number;
  readonly #preVote: boolean;
  readonly #checkQuorum: boolean;
  readonly #autoPromote: boolean;
  #failoverEnabled: boolean;
  readonly #randomInt: (n: number) => number;
  readonly #bugs: NonNullable<RaftConfig["plantedBugs"]>;

  #term: number;
  #vote: NodeId;
  #commit: number;
  readonly #log: RaftLog;
  #role: Role = "follower";
  #leaderId: NodeId = NONE;
  #removed = false;

  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTimeout = 0;
  #votes = new Map<NodeId, boolean>();
  #trackers = new Map<NodeId, Tracker>();
  /** nodes removed by a conf entry not yet committed: the leader keeps them informed until it is */
  #leaving = new Map<NodeId, number>();
  #transferTarget: NodeId = NONE;
  #transferElapsed = 0;
  #reads: PendingRead[] = [];
  #readsAwaitingCommit: string[] = [];
  #readSeq = 0;
  #electionsStarted = 0;

  // What has been handed to the application and what it reported done.
  #msgs: Message[] = [];
  #msgsBeforePersist: Message[] = [];
  #msgsUnsafe: Message[] = [];
  #readStates: ReadState[] = [];
  #pendingSnapshot: Snapshot | null = null;
  #broadcastPending = false;
  #unstableIndex: number;
  #persistedIndex: number;
  #persistedHard: HardState;
  #handedHard: HardState;
  #handedSoft: SoftState = { role: "follower", leaderId: NONE };
  #applying: number;
  #applied: number;
  #outstanding: Outstanding | null = null;

  constructor(config: RaftConfig, state: PersistentState) {
    assert(Number.isInteger(config.id) && config.id >= 1, `bad node id ${config.id}`);
    this.id = config.id;
    this.#heartbeatTicks = 0;
    this.#electionTicks = 0;
    this.#electionJitterTicks = 0;
    this.#appendBatchSize = 0;
    this.#snapshotThreshold = 0;
    this.#maxInflight = 0;
    this.#preVote = config.preVote ?? true;
    this.#checkQuorum = config.checkQuorum ?? true;
    this.#autoPromote = config.autoPromoteLearners ?? true;
    this.#failoverEnabled = config.failoverEnabled ?? true;
    this.#randomInt = config.randomInt;
    this.#bugs = config.plantedBugs ?? {};
    this.#applyTiming({
      heartbeatTicks: config.heartbeatTicks,
      electionTicks: config.electionTicks,
      electionJitterTicks: config.electionJitterTicks ?? config.electionTicks,
      appendBatchSize: config.appendBatchSize,
      snapshotThreshold: config.snapshotThreshold,
      maxInflight: config.maxInflight,
    });

    this.#log = new RaftLog(state.snapshot, state.entries);
    const hs = state.hardState;
    this.#term = hs.term;
    this.#vote = hs.vote;
    const snapIndex = this.#log.snapshotIndex;
    assert(state.applied >= snapIndex, `applied ${state.applied} < snapshot ${snapIndex}`);
    assert(state.applied <= this.#log.lastIndex(), `applied ${state.applied} beyond the log`);
    this.#commit = Math.max(hs.commit, state.applied, snapIndex);
    assert(this.#commit <= this.#log.lastIndex(), `commit ${this.#commit} beyond the log`);
    this.#applied = state.applied;
    this.#applying = state.applied;
    this.#unstableIndex = this.#log.lastIndex() + 1;
    this.#persistedIndex = this.#log.lastIndex();
    this.#persistedHard = { ...hs };
    this.#handedHard = { term: this.#term, vote: this.#vote, commit: this.#commit };
    this.#removed = this.#computeRemoved();
    this.#resetRandomizedElectionTimeout();
  }

  // ---- inputs ---------------------------------------------------------------

  /** One tick of the logical clock. */
  tick(): void {
    if (this.#removed) return;
    if (this.#role === "leader") this.#tickLeader();
    else this.#tickElection();
  }

  /** Start an election now (pre-vote first when enabled). Ignored by a non-voter. */
  campaign(): void {
    if (this.#role === "leader" || !this.#promotable()) return;
    if (this.#preVote) this.#becomePreCandidate();
    else this.#becomeCandidate(false);
  }

  /**
   * Propose application data (leader only).
   * @throws NotLeaderError, ProposalRejectedError (a leadership transfer is under way)
   */
  propose(data: Uint8Array): { index: number; term: number } {
    this.#checkCanPropose();
    return this.#appendOwn("normal", data);
  }

  /**
   * Propose a membership change (leader only, one at a time).
   * @throws NotLeaderError, ProposalRejectedError, ConfChangeError
   */
  proposeConfChange(change: ConfChange): { index: number; term: number } {
    this.#checkCanPropose();
    const problem = this.#confChangeBlocker() ??
      confChangeProblem(this.#log.membership(), change, "proposal");
    if (problem !== null) throw new ConfChangeError(problem);
    return this.#appendOwn("conf_change", encodeConfChange(change));
  }

  /**
   * Hand leadership to `target` (thesis §3.10): bring it up to date, then
   * tell it to campaign at once. Proposals are refused meanwhile; the transfer
   * is abandoned after an election timeout.
   * @throws NotLeaderError, ProposalRejectedError (target is not a voter)
   */
  transferLeadership(target: NodeId): void {
    if (this.#role !== "leader") throw new NotLeaderError(this.#leaderId);
    if (target === this.id) return;
    if (!this.#log.membership().voters.includes(target)) {
      throw new ProposalRejectedError(
        `node ${target} is not a voter; leadership can only go to a voter`,
      );
    }
    if (this.#transferTarget === target) return;
    this.#transferTarget = target;
    this.#transferElapsed = 0;
    const tr = this.#trackers.get(target);
    assert(tr !== undefined, `no tracker for voter ${target}`);
    if (tr.match === this.#log.lastIndex()) {
      this.#send({ type: "timeout_now", term: this.#term, from: this.id, to: target });
    } else this.#sendAppend(tr, true);
  }

  /**
   * Linearizable read (thesis §6.4): once a quorum has confirmed this node is
   * still leader, a ReadState {context, index} is emitted; the read may be
   * served once the state machine has applied `index`.
   * @throws NotLeaderError
   */
  readIndex(context: string): void {
    if (this.#role !== "leader") throw new NotLeaderError(this.#leaderId);
    if (!this.#committedInTerm()) {
      this.#readsAwaitingCommit.push(context);
      return;
    }
    this.#startRead(context);
  }

  /** A message from a peer. */
  step(m: Message): void {
    assert(m.to === this.id, `message for ${m.to} stepped into node ${this.id}`);
    if (this.#removed) return;
    if (m.term > this.#term) {
      if (m.type === "vote_request") {
        const inLease = this.#checkQuorum && this.#leaderId !== NONE &&
          this.#electionElapsed < this.#electionTicks;
        if (inLease && !m.transfer) return; // thesis §4.2.3: a node with a live leader ignores disruptions
      }
      if (m.type === "vote_request" && m.preVote) {
        // a pre-vote never changes our term
      } else if (m.type === "vote_response" && m.preVote && m.granted) {
        // granted pre-votes carry the term we would campaign in
      } else {
        const fromLeader = m.type === "append_request" || m.type === "heartbeat_request" ||
          m.type === "snapshot_request";
        this.#becomeFollower(m.term, fromLeader ? m.from : NONE);
      }
    } else if (m.term < this.#term) {
      if (
        (m.type === "append_request" || m.type === "heartbeat_request") &&
        (this.#checkQuorum || this.#preVote)
      ) {
        // Tell a stale leader about the newer term so it steps down.
        this.#send({
          type: "append_response",
          term: this.#term,
          from: this.id,
          to: m.from,
          success: false,
          matchIndex: 0,
          hint: null,
        });
      } else if (m.type === "vote_request" && m.preVote) {
        this.#send({
          type: "vote_response",
          term: this.#term,
          from: this.id,
          to: m.from,
          preVote: true,
          granted: false,
        });
      }
      return;
    }

    switch (m.type) {
      case "vote_request":
        this.#handleVoteRequest(m);
        return;
      case "vote_response":
        this.#handleVoteResponse(m);
        return;
      case "append_request":
        if (this.#acceptLeader(m.from)) this.#handleAppend(m);
        return;
      case "heartbeat_request":
        if (this.#acceptLeader(m.from)) this.#handleHeartbeat(m);
        return;
      case "snapshot_request":
        if (this.#acceptLeader(m.from)) this.#handleSnapshot(m);
        return;
      case "append_response":
        if (this.#role === "leader") this.#handleAppendResponse(m);
        return;
      case "heartbeat_response":
        if (this.#role === "leader") this.#handleHeartbeatResponse(m);
        return;
      case "timeout_now":
        if (this.#role !== "leader" && this.#promotable()) this.#becomeCandidate(true);
        return;
      default:
        unreachable(m);
    }
  }

  /** The transport could not reach `peer`: stop pipelining to it. */
  reportUnreachable(peer: NodeId): void {
    const tr = this.#role === "leader" ? this.#trackers.get(peer) : undefined;
    if (tr && tr.state === "replicate") this.#becomeProbe(tr);
  }

  /** The snapshot sent to `peer` arrived (ok) or failed. */
  reportSnapshot(peer: NodeId, ok: boolean): void {
    const tr = this.#role === "leader" ? this.#trackers.get(peer) : undefined;
    if (!tr || tr.state !== "snapshot") return;
    const sent = tr.pendingSnapshot;
    this.#becomeProbe(tr);
    if (ok) {
      tr.next = Math.max(tr.match + 1, sent + 1);
      tr.probeSent = true; // wait for the follower's answer or the next heartbeat
    }
  }

  setTiming(timing: Timing): void {
    this.#applyTiming(timing);
    this.#resetRandomizedElectionTimeout();
  }

  /** failover_enabled (see DESIGN.md). */
  setFailoverEnabled(enabled: boolean): void {
    this.#failoverEnabled = enabled;
  }

  // ---- snapshots -----------------------------------------------------------

  /** Enough entries applied since the last snapshot to take a new one. */
  snapshotDue(): boolean {
    return this.#applied - this.#log.snapshotIndex >= this.#snapshotThreshold;
  }

  /**
   * Record a snapshot of the state machine at `index` (<= applied) and drop
   * the log up to it. The caller makes it durable.
   */
  createSnapshot(index: number, data: Uint8Array): Snapshot {
    assert(index <= this.#applied, `snapshot at ${index} beyond applied ${this.#applied}`);
    assert(
      index > this.#log.snapshotIndex,
      `snapshot at ${index} not after ${this.#log.snapshotIndex}`,
    );
    const term = this.#log.term(index);
    assert(term !== null, `no term for snapshot index ${index}`);
    const m = this.#log.membershipAt(index);
    const snapshot: Snapshot = {
      meta: { index, term, membership: { voters: [...m.voters], learners: [...m.learners] } },
      data,
    };
    this.#log.compact(snapshot);
    return snapshot;
  }

  // ---- Ready ---------------------------------------------------------------

  /** Whether there is anything to persist, send, apply or report. */
  hasReady(): boolean {
    this.#flushBroadcast();
    if (this.#outstanding) return false;
    return this.#pendingSnapshot !== null ||
      this.#unstableIndex <= this.#log.lastIndex() ||
      this.#msgs.length > 0 || this.#msgsBeforePersist.length > 0 || this.#msgsUnsafe.length > 0 ||
      this.#readStates.length > 0 ||
      this.#applying < this.#commit ||
      this.#hardChanged() ||
      this.#softChanged();
  }

  /** Collect what the application must do; call {@link advance} once done. */
  ready(): Ready {
    this.#flushBroadcast();
    assert(this.#outstanding === null, "ready() called again before advance()");
    const snapshot = this.#pendingSnapshot;
    this.#pendingSnapshot = null;
    const last = this.#log.lastIndex();
    const entries = this.#unstableIndex <= last ? this.#log.slice(this.#unstableIndex, last) : [];
    this.#unstableIndex = last + 1;

    let committedEntries: Entry[] = [];
    if (snapshot === null && this.#applying < this.#commit) {
      committedEntries = this.#log.slice(
        this.#applying + 1,
        this.#commit,
        COMMITTED_PER_READY_MAX,
      );
    }
    const hardState = this.#hardChanged() ? this.#hardState() : null;
    if (hardState) this.#handedHard = hardState;
    const softState = this.#softChanged() ? { role: this.#role, leaderId: this.#leaderId } : null;
    if (softState) this.#handedSoft = softState;

    // The leader's appends may go out before its own write (thesis §10.2.1),
    // but only once its term and vote are durable.
    let before = this.#msgsBeforePersist;
    let after = this.#msgs;
    if (
      hardState &&
      (hardState.term !== this.#persistedHard.term || hardState.vote !== this.#persistedHard.vote)
    ) {
      after = before.concat(after);
      before = [];
    }
    before = before.concat(this.#msgsUnsafe);
    this.#msgs = [];
    this.#msgsBeforePersist = [];
    this.#msgsUnsafe = [];
    const readStates = this.#readStates;
    this.#readStates = [];

    const lastEntry = entries.length > 0 ? entries[entries.length - 1]! : null;
    const committedLast = snapshot
      ? snapshot.meta.index
      : committedEntries.length > 0
      ? committedEntries[committedEntries.length - 1]!.index
      : this.#applying;
    this.#applying = committedLast;
    this.#outstanding = {
      lastEntry: lastEntry ? { index: lastEntry.index, term: lastEntry.term } : null,
      hardState,
      snapshotIndex: snapshot?.meta.index ?? 0,
      committedLast,
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

  /** The Ready returned by the last {@link ready} has been persisted, sent and applied. */
  advance(_ready: Ready): void {
    const o = this.#outstanding;
    assert(o !== null, "advance() without ready()");
    this.#outstanding = null;
    if (o.snapshotIndex > 0) {
      this.#persistedIndex = Math.max(this.#persistedIndex, o.snapshotIndex);
    }
    if (o.lastEntry && this.#log.matchTerm(o.lastEntry.index, o.lastEntry.term)) {
      this.#persistedIndex = Math.max(this.#persistedIndex, o.lastEntry.index);
    }
    // A truncation after ready() invalidates what it persisted beyond the cut.
    this.#persistedIndex = Math.min(this.#persistedIndex, this.#unstableIndex - 1);
    if (o.hardState) this.#persistedHard = o.hardState;
    assert(o.committedLast >= this.#applied, "applied index went backwards");
    this.#applied = o.committedLast;
    if (this.#role === "leader") this.#maybeCommit();
  }

  // ---- status ----------------------------------------------------------------

  status(): Status {
    const progress: Progress[] = [];
    if (this.#role === "leader") {
      const m = this.#log.membership();
      for (const tr of this.#trackers.values()) {
        progress.push({
          id: tr.id,
          isLearner: !m.voters.includes(tr.id),
          matchIndex: tr.match,
          nextIndex: tr.next,
          state: tr.state,
          inflight: tr.inflight.length,
          recentActive: tr.recentActive,
          lastHeardTicks: tr.lastHeardTicks,
        });
      }
      progress.sort((a, b) => a.id - b.id);
    }
    const m = this.#log.membership();
    return {
      id: this.id,
      role: this.#role,
      term: this.#term,
      vote: this.#vote,
      leaderId: this.#leaderId,
      commitIndex: this.#commit,
      appliedIndex: this.#applied,
      lastIndex: this.#log.lastIndex(),
      lastTerm: this.#log.lastTerm(),
      firstIndex: this.#log.firstIndex(),
      snapshotIndex: this.#log.snapshotIndex,
      membership: { voters: [...m.voters], learners: [...m.learners] },
      progress,
      transferTarget: this.#transferTarget,
      pendingConfChange: this.#log.lastConfIndex() > this.#applied,
      failoverEnabled: this.#failoverEnabled,
      removed: this.#removed,
      electionsStarted: this.#electionsStarted,
    };
  }

  /** Context recorded with the latest conf change naming `id` ("" when unknown). */
  memberContext(id: NodeId): string {
    return this.#log.contexts.get(id) ?? "";
  }

  // ---- roles -------------------------------------------------------------------

  #becomeFollower(term: number, leaderId: NodeId): void {
    if (term !== this.#term) {
      assert(term > this.#term, `term going backwards: ${this.#term} -> ${term}`);
      this.#term = term;
      this.#vote = NONE;
    }
    this.#role = "follower";
    this.#leaderId = leaderId;
    this.#resetRoleState();
  }

  #becomePreCandidate(): void {
    this.#role = "pre_candidate";
    this.#leaderId = NONE;
    this.#resetRoleState();
    this.#votes.set(this.id, true);
    if (this.#poll() === "won") {
      this.#becomeCandidate(false);
      return;
    }
    this.#requestVotes(true, false);
  }

  #becomeCandidate(transfer: boolean): void {
    this.#term += 1;
    this.#vote = this.id;
    this.#role = "candidate";
    this.#leaderId = NONE;
    this.#electionsStarted++;
    this.#resetRoleState();
    this.#votes.set(this.id, true);
    if (this.#poll() === "won") {
      this.#becomeLeader();
      return;
    }
    this.#requestVotes(false, transfer);
  }

  #becomeLeader(): void {
    assert(this.#role === "candidate", `become leader from ${this.#role}`);
    this.#role = "leader";
    this.#leaderId = this.id;
    this.#resetRoleState();
    this.#syncTrackers();
    for (const tr of this.#trackers.values()) tr.recentActive = true; // lastHeardTicks starts at 0
    // A no-op in the new term lets the leader commit (and learn) everything before it (§5.4.2).
    this.#appendOwn("normal", new Uint8Array(0));
  }

  #resetRoleState(): void {
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    this.#votes.clear();
    this.#trackers.clear();
    this.#leaving.clear();
    this.#transferTarget = NONE;
    this.#transferElapsed = 0;
    this.#reads = [];
    this.#readsAwaitingCommit = [];
    this.#broadcastPending = false;
  }

  /**
   * Draw the next election timeout: [electionTicks, electionTicks + jitter).
   * A (pre-)candidate whose election fails (a split vote) retries sooner, after
   * [electionTicks / 2, electionTicks / 2 + jitter): the leader is already known
   * to be gone, and failover stays within two election timeouts even when the
   * first round splits. Safety does not depend on timeouts; pre-vote keeps a
   * candidate that cannot win from raising terms while it retries.
   */
  #resetRandomizedElectionTimeout(): void {
    const jitter = Math.max(1, this.#electionJitterTicks);
    const campaigning = this.#role === "candidate" || this.#role === "pre_candidate";
    const base = campaigning
      ? Math.max(this.#heartbeatTicks + 1, Math.floor(this.#electionTicks / 2))
      : this.#electionTicks;
    this.#randomizedElectionTimeout = base + this.#randomInt(jitter);
  }

  #applyTiming(t: Timing): void {
    assert(Number.isInteger(t.heartbeatTicks) && t.heartbeatTicks >= 1, "heartbeatTicks >= 1");
    assert(t.electionTicks > t.heartbeatTicks, "electionTicks > heartbeatTicks");
    assert(t.electionJitterTicks >= 0, "electionJitterTicks >= 0");
    assert(
      t.appendBatchSize >= 1 && t.maxInflight >= 1 && t.snapshotThreshold >= 1,
      "bad batching",
    );
    this.#heartbeatTicks = t.heartbeatTicks;
    this.#electionTicks = t.electionTicks;
    this.#electionJitterTicks = t.electionJitterTicks;
    this.#appendBatchSize = t.appendBatchSize;
    this.#snapshotThreshold = t.snapshotThreshold;
    this.#maxInflight = t.maxInflight;
  }

  #promotable(): boolean {
    return !this.#removed && this.#log.membership().voters.includes(this.id);
  }

  /** A leader's message in our term: follow it. False when it must be ignored. */
  #acceptLeader(from: NodeId): boolean {
    if (this.#role === "leader") return false; // never two leaders in a term; a stray message
    if (this.#role !== "follower") this.#becomeFollower(this.#term, from);
    this.#leaderId = from;
    this.#electionElapsed = 0;
    return true;
  }

  // ---- ticking ---------------------------------------------------------------

  #tickElection(): void {
    this.#electionElapsed++;
    if (this.#electionElapsed < this.#randomizedElectionTimeout) return;
    this.#electionElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    if (!this.#promotable()) return;
    // failover_enabled = off: a follower that knows its leader waits for it.
    if (!this.#failoverEnabled && this.#role === "follower" && this.#leaderId !== NONE) return;
    this.campaign();
  }

  #tickLeader(): void {
    this.#heartbeatElapsed++;
    for (const tr of this.#trackers.values()) {
      tr.lastHeardTicks++;
      tr.recentActive = tr.lastHeardTicks < this.#electionTicks;
    }
    if (this.#leaving.size > 0) this.#retireLeaving();
    if (this.#transferTarget !== NONE && ++this.#transferElapsed >= this.#electionTicks) {
      this.#transferTarget = NONE; // abandon the transfer (thesis §3.10)
    }
    // Check-quorum (thesis §6.2): step down once a quorum has been silent for an election timeout.
    if (this.#checkQuorum && this.#failoverEnabled && !this.#quorumActive()) {
      this.#becomeFollower(this.#term, NONE);
      return;
    }
    if (this.#heartbeatElapsed >= this.#heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat("");
    }
  }

  #quorumActive(): boolean {
    const voters = this.#log.membership().voters;
    let active = 0;
    for (const v of voters) {
      if (v === this.id || this.#trackers.get(v)?.recentActive) active++;
    }
    return active >= quorum(voters.length);
  }

  // ---- elections ---------------------------------------------------------------

  #requestVotes(preVote: boolean, transfer: boolean): void {
    const term = preVote ? this.#term + 1 : this.#term;
    for (const v of this.#log.membership().voters) {
      if (v === this.id) continue;
      this.#send({
        type: "vote_request",
        term,
        from: this.id,
        to: v,
        preVote,
        transfer,
        lastLogIndex: this.#log.lastIndex(),
        lastLogTerm: this.#log.lastTerm(),
      });
    }
  }

  #handleVoteRequest(m: VoteRequest): void {
    const canVote = this.#vote === m.from ||
      (this.#vote === NONE && this.#leaderId === NONE) ||
      (m.preVote && m.term > this.#term);
    const logOk = this.#bugs.voteWithoutLogCheck ||
      this.#log.isUpToDate(m.lastLogIndex, m.lastLogTerm);
    if (canVote && logOk) {
      const response: VoteResponse = {
        type: "vote_response",
        term: m.term,
        from: this.id,
        to: m.from,
        preVote: m.preVote,
        granted: true,
      };
      if (!m.preVote) {
        this.#electionElapsed = 0;
        this.#vote = m.from;
      }
      if (this.#bugs.answerVoteBeforePersist && !m.preVote) this.#msgsUnsafe.push(response);
      else this.#msgs.push(response);
    } else {
      this.#msgs.push({
        type: "vote_response",
        term: this.#term,
        from: this.id,
        to: m.from,
        preVote: m.preVote,
        granted: false,
      });
    }
  }

  #handleVoteResponse(m: VoteResponse): void {
    const expecting = (this.#role === "pre_candidate" && m.preVote) ||
      (this.#role === "candidate" && !m.preVote);
    if (!expecting) return;
    if (m.preVote && m.granted && m.term !== this.#term + 1) return;
    if (!this.#log.membership().voters.includes(m.from)) return;
    this.#votes.set(m.from, m.granted);
    const result = this.#poll();
    if (result === "won") {
      if (this.#role === "pre_candidate") this.#becomeCandidate(false);
      else this.#becomeLeader();
    } else if (result === "lost") {
      this.#becomeFollower(this.#term, NONE);
    }
  }

  #poll(): "won" | "lost" | "pending" {
    const voters = this.#log.membership().voters;
    let granted = 0;
    let rejected = 0;
    for (const v of voters) {
      const vote = this.#votes.get(v);
      if (vote === true) granted++;
      else if (vote === false) rejected++;
    }
    const q = quorum(voters.length);
    if (granted >= q) return "won";
    if (rejected > voters.length - q) return "lost";
    return "pending";
  }

  // ---- replication: follower side ----------------------------------------------

  #handleAppend(m: AppendRequest): void {
    let prevIndex = m.prevLogIndex;
    let prevTerm = m.prevLogTerm;
    let entries = m.entries;
    if (prevIndex < this.#commit) {
      // Our committed prefix matches every leader's log: skip what it covers.
      const skip = Math.min(entries.length, this.#commit - prevIndex);
      if (skip === entries.length) {
        this.#respondAppend(m.from, true, Math.max(this.#commit, 0), null);
        return;
      }
      entries = entries.slice(skip);
      prevIndex = entries[0]!.index - 1;
      prevTerm = this.#log.term(prevIndex) ?? -1;
      assert(prevTerm !== -1, `no term for committed index ${prevIndex}`);
    }
    if (!this.#log.matchTerm(prevIndex, prevTerm)) {
      this.#respondAppend(m.from, false, 0, this.#rejectHint(prevIndex));
      return;
    }
    const conflict = this.#log.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.#commit, `conflict at ${conflict} <= commit ${this.#commit}`);
      const fresh = entries.slice(conflict - entries[0]!.index);
      this.#appendToLog(fresh);
    }
    const lastNew = prevIndex + entries.length;
    this.#commitTo(Math.min(m.commit, lastNew));
    this.#respondAppend(m.from, true, lastNew, null);
  }

  #rejectHint(rejectedIndex: number): RejectHint {
    const lastIndex = this.#log.lastIndex();
    if (rejectedIndex > lastIndex) {
      return { rejectedIndex, lastIndex, conflictTerm: 0, conflictIndex: lastIndex + 1 };
    }
    const conflictTerm = this.#log.term(rejectedIndex);
    assert(conflictTerm !== null, `no term at ${rejectedIndex} (commit ${this.#commit})`);
    return {
      rejectedIndex,
      lastIndex,
      conflictTerm,
      conflictIndex: this.#log.firstIndexOfTermAt(rejectedIndex),
    };
  }

  #respondAppend(to: NodeId, success: boolean, matchIndex: number, hint: RejectHint | null): void {
    this.#msgs.push({
      type: "append_response",
      term: this.#term,
      from: this.id,
      to,
      success,
      matchIndex,
      hint,
    });
  }

  #handleHeartbeat(m: HeartbeatRequest): void {
    this.#commitTo(Math.min(m.commit, this.#log.lastIndex()));
    this.#msgs.push({
      type: "heartbeat_response",
      term: this.#term,
      from: this.id,
      to: m.from,
      readContext: m.readContext,
    });
  }

  #handleSnapshot(m: SnapshotRequest): void {
    const s = m.snapshot;
    const index = s.meta.index;
    if (index <= this.#commit) {
      this.#respondAppend(m.from, true, this.#commit, null);
      return;
    }
    if (this.#log.matchTerm(index, s.meta.term)) {
      // We hold the entry the snapshot ends with: just learn that it is committed.
      this.#commitTo(index);
      this.#respondAppend(m.from, true, index, null);
      return;
    }
    this.#log.restore(s);
    this.#commit = index;
    this.#pendingSnapshot = s;
    this.#unstableIndex = index + 1;
    this.#persistedIndex = Math.min(this.#persistedIndex, index);
    this.#applying = index;
    this.#removed = this.#computeRemoved();
    this.#respondAppend(m.from, true, index, null);
  }

  #commitTo(index: number): void {
    if (index <= this.#commit) return;
    assert(index <= this.#log.lastIndex(), `commit ${index} beyond last ${this.#log.lastIndex()}`);
    this.#commit = index;
    this.#removed = this.#computeRemoved();
  }

  #appendToLog(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const truncatedAt = this.#log.append(entries);
    const first = entries[0]!.index;
    this.#unstableIndex = Math.min(this.#unstableIndex, first);
    if (truncatedAt !== 0) this.#persistedIndex = Math.min(this.#persistedIndex, truncatedAt - 1);
    if (entries.some((e) => e.type === "conf_change") || truncatedAt !== 0) {
      this.#membershipChanged();
    }
  }

  /**
   * A node is removed once the conf entry that took it out is committed. A node
   * that never was a member (a new learner before it hears of itself) is not.
   */
  #computeRemoved(): boolean {
    if (this.#removed) return true;
    const membership = this.#log.membership();
    if (isMember(membership, this.id)) return false;
    const confIndex = this.#log.lastConfIndex();
    if (confIndex === 0 || confIndex > this.#commit) return false;
    // Was it a member just before that entry?
    return isMember(this.#log.membershipAt(confIndex - 1), this.id);
  }

  // ---- replication: leader side ----------------------------------------------

  #checkCanPropose(): void {
    if (this.#role !== "leader") throw new NotLeaderError(this.#leaderId);
    if (this.#transferTarget !== NONE) {
      throw new ProposalRejectedError(
        `leadership is being transferred to node ${this.#transferTarget}; retry on the new leader`,
      );
    }
  }

  #confChangeBlocker(): string | null {
    if (!this.#committedInTerm()) {
      return "the leader has not yet committed an entry in its term; retry shortly";
    }
    const pending = this.#log.lastConfIndex();
    if (pending > this.#commit) {
      return `another membership change (log entry ${pending}) is not yet committed; retry shortly`;
    }
    return null;
  }

  #committedInTerm(): boolean {
    return this.#log.term(this.#commit) === this.#term;
  }

  #appendOwn(type: Entry["type"], data: Uint8Array): { index: number; term: number } {
    const index = this.#log.lastIndex() + 1;
    this.#appendToLog([{ index, term: this.#term, type, data }]);
    this.#broadcastPending = true;
    // A lone voter commits as soon as its own write is durable (see advance()).
    return { index, term: this.#term };
  }

  #flushBroadcast(): void {
    if (!this.#broadcastPending) return;
    this.#broadcastPending = false;
    if (this.#role !== "leader") return;
    for (const tr of this.#trackers.values()) this.#sendAppend(tr, false);
  }

  /** Leader: membership in the log changed; follow it with the trackers. */
  #membershipChanged(): void {
    this.#removed = this.#computeRemoved();
    if (this.#role !== "leader") return;
    this.#syncTrackers();
    if (!this.#log.membership().voters.includes(this.#transferTarget)) this.#transferTarget = NONE;
  }

  #syncTrackers(): void {
    const m = this.#log.membership();
    const members = new Set([...m.voters, ...m.learners]);
    for (const id of members) {
      if (id === this.id || this.#trackers.has(id)) continue;
      this.#trackers.set(id, {
        id,
        match: 0,
        next: this.#log.lastIndex() + 1,
        state: "probe",
        inflight: [],
        probeSent: false,
        pendingSnapshot: 0,
        recentActive: false,
        lastHeardTicks: 0,
      });
    }
    for (const id of [...this.#trackers.keys()]) {
      if (members.has(id)) {
        this.#leaving.delete(id);
        continue;
      }
      // Keep informing a removed node until its removal commits (thesis §4.2.2).
      if (!this.#leaving.has(id)) this.#leaving.set(id, this.#log.lastConfIndex());
    }
  }

  #maybeCommit(): void {
    const voters = this.#log.membership().voters;
    const matches = voters.map((v) =>
      v === this.id ? this.#persistedIndex : (this.#trackers.get(v)?.match ?? 0)
    );
    matches.sort((a, b) => b - a);
    const q = quorum(voters.length);
    const candidate = matches[q - 1] ?? 0;
    if (candidate <= this.#commit) return;
    if (!this.#bugs.commitOldTermEntries && this.#log.term(candidate) !== this.#term) return;
    const wasCommittedInTerm = this.#committedInTerm();
    this.#commit = candidate;
    this.#afterLeaderCommit(wasCommittedInTerm);
  }

  #afterLeaderCommit(wasCommittedInTerm: boolean): void {
    this.#retireLeaving();
    this.#removed = this.#computeRemoved();
    if (this.#removed) {
      // Our own removal (or demotion) committed: hand over to the most up-to-date voter, step down.
      let best: Tracker | null = null;
      for (const v of this.#log.membership().voters) {
        const tr = this.#trackers.get(v);
        if (tr && (!best || tr.match > best.match)) best = tr;
      }
      // Send the commit first so the successor knows the change is committed.
      for (const tr of this.#trackers.values()) this.#sendAppend(tr, true);
      if (best && best.match === this.#log.lastIndex()) {
        this.#send({ type: "timeout_now", term: this.#term, from: this.id, to: best.id });
      }
      this.#becomeFollower(this.#term, NONE);
      return;
    }
    if (!wasCommittedInTerm && this.#committedInTerm()) {
      const waiting = this.#readsAwaitingCommit;
      this.#readsAwaitingCommit = [];
      for (const context of waiting) this.#startRead(context);
    }
    for (const tr of this.#trackers.values()) this.#sendAppend(tr, true);
    this.#maybePromoteLearner();
  }

  /**
   * Forget removed nodes once they know their removal committed (their match
   * covers it: the heartbeat sent here carries the commit), or once they have
   * been silent for an election timeout.
   */
  #retireLeaving(): void {
    for (const [id, confIndex] of this.#leaving) {
      if (confIndex > this.#commit) continue;
      const tr = this.#trackers.get(id);
      if (tr && tr.match < confIndex && tr.lastHeardTicks < this.#electionTicks) continue;
      if (tr) this.#sendHeartbeat(tr, "");
      this.#leaving.delete(id);
      this.#trackers.delete(id);
    }
  }

  #maybePromoteLearner(): void {
    if (!this.#autoPromote || this.#role !== "leader" || this.#transferTarget !== NONE) return;
    if (this.#confChangeBlocker() !== null) return;
    for (const id of this.#log.membership().learners) {
      const tr = this.#trackers.get(id);
      if (!tr || tr.state !== "replicate" || tr.match < this.#commit) continue;
      this.#appendOwn(
        "conf_change",
        encodeConfChange({
          kind: "add_voter",
          nodeId: id,
          context: this.#log.contexts.get(id) ?? "",
        }),
      );
      return;
    }
  }

  #sendAppend(tr: Tracker, sendIfEmpty: boolean): void {
    if (tr.state === "snapshot") return;
    if (tr.state === "probe" && tr.probeSent) return;
    if (tr.state === "replicate" && tr.inflight.length >= this.#maxInflight) return;
    const prevIndex = tr.next - 1;
    const prevTerm = this.#log.term(prevIndex);
    if (prevTerm === null) {
      this.#sendSnapshot(tr);
      return;
    }
    const last = this.#log.lastIndex();
    const entries = tr.next <= last ? this.#log.slice(tr.next, last, this.#appendBatchSize) : [];
    if (entries.length === 0 && !sendIfEmpty) return;
    const message: AppendRequest = {
      type: "append_request",
      term: this.#term,
      from: this.id,
      to: tr.id,
      prevLogIndex: prevIndex,
      prevLogTerm: prevTerm,
      entries,
      commit: this.#commit,
    };
    if (tr.state === "replicate") {
      if (entries.length > 0) {
        const lastSent = entries[entries.length - 1]!.index;
        tr.next = lastSent + 1;
        tr.inflight.push(lastSent);
      }
    } else {
      tr.probeSent = true;
    }
    this.#msgsBeforePersist.push(message);
  }

  #sendSnapshot(tr: Tracker): void {
    const snapshot = this.#log.snapshot;
    assert(snapshot !== null, "the log is compacted but there is no snapshot");
    tr.state = "snapshot";
    tr.pendingSnapshot = snapshot.meta.index;
    tr.inflight = [];
    tr.probeSent = false;
    this.#msgsBeforePersist.push({
      type: "snapshot_request",
      term: this.#term,
      from: this.id,
      to: tr.id,
      snapshot,
    });
  }

  #becomeProbe(tr: Tracker): void {
    tr.state = "probe";
    tr.next = tr.match + 1;
    tr.inflight = [];
    tr.probeSent = false;
    tr.pendingSnapshot = 0;
  }

  #becomeReplicate(tr: Tracker): void {
    tr.state = "replicate";
    tr.next = tr.match + 1;
    tr.inflight = [];
    tr.probeSent = false;
    tr.pendingSnapshot = 0;
  }

  #handleAppendResponse(m: AppendResponse): void {
    const tr = this.#trackers.get(m.from);
    if (!tr) return;
    tr.recentActive = true;
    tr.lastHeardTicks = 0;
    if (!m.success) {
      const hint = m.hint;
      if (hint === null) return;
      const rejected = hint.rejectedIndex;
      if (tr.state === "replicate" && rejected <= tr.match) return; // stale
      if (tr.state === "probe" && rejected !== tr.next - 1) return; // stale
      if (tr.state === "snapshot") return;
      let next: number;
      if (hint.conflictTerm > 0) {
        const found = this.#log.lastIndexWithTermAtMost(rejected, hint.conflictTerm);
        next = found.term === hint.conflictTerm ? found.index + 1 : hint.conflictIndex;
      } else {
        next = hint.lastIndex + 1;
      }
      this.#becomeProbe(tr);
      tr.next = Math.max(tr.match + 1, Math.min(next, rejected));
      this.#sendAppend(tr, true);
      return;
    }
    if (m.matchIndex > tr.match) {
      tr.match = m.matchIndex;
      if (tr.state !== "replicate") this.#becomeReplicate(tr);
      else {
        while (tr.inflight.length > 0 && tr.inflight[0]! <= tr.match) tr.inflight.shift();
        if (tr.next <= tr.match) tr.next = tr.match + 1;
      }
      this.#maybeCommit();
      if (this.#role !== "leader") return;
      if (this.#leaving.has(tr.id)) {
        this.#retireLeaving();
        if (!this.#trackers.has(tr.id)) return;
      }
    } else if (tr.state === "probe") {
      tr.probeSent = false;
    }
    while (tr.next <= this.#log.lastIndex()) {
      const before = tr.next;
      const sent = this.#msgsBeforePersist.length;
      this.#sendAppend(tr, false);
      if (this.#msgsBeforePersist.length === sent || tr.next === before) break;
    }
    if (m.from === this.#transferTarget && tr.match === this.#log.lastIndex()) {
      this.#send({ type: "timeout_now", term: this.#term, from: this.id, to: m.from });
    }
    this.#maybePromoteLearner();
  }

  // ---- heartbeats and reads ----------------------------------------------------

  #broadcastHeartbeat(readContext: string): void {
    for (const tr of this.#trackers.values()) this.#sendHeartbeat(tr, readContext);
  }

  #sendHeartbeat(tr: Tracker, readContext: string): void {
    this.#msgsBeforePersist.push({
      type: "heartbeat_request",
      term: this.#term,
      from: this.id,
      to: tr.id,
      commit: Math.min(tr.match, this.#commit),
      readContext,
    });
  }

  #handleHeartbeatResponse(m: HeartbeatResponse): void {
    const tr = this.#trackers.get(m.from);
    if (!tr) return;
    tr.recentActive = true;
    tr.lastHeardTicks = 0;
    if (tr.state === "probe") tr.probeSent = false;
    // A lost append or acknowledgement never frees its slot: a heartbeat answer
    // frees one so a full window cannot stall replication (etcd's FreeFirstOne).
    if (tr.state === "replicate" && tr.inflight.length >= this.#maxInflight) tr.inflight.shift();
    // An empty append too: it reveals a follower that lost entries (a restart) to the leader.
    if (tr.match < this.#log.lastIndex()) this.#sendAppend(tr, true);
    if (m.readContext !== "") this.#ackRead(m.from, m.readContext);
  }

  #startRead(context: string): void {
    const voters = this.#log.membership().voters;
    if (voters.length === 1 && voters[0] === this.id) {
      this.#readStates.push({ context, index: this.#commit });
      return;
    }
    const read: PendingRead = {
      context,
      index: this.#commit,
      seq: ++this.#readSeq,
      acks: new Set(),
    };
    if (voters.includes(this.id)) read.acks.add(this.id);
    this.#reads.push(read);
    this.#broadcastHeartbeat(context);
  }

  #ackRead(from: NodeId, context: string): void {
    const voters = this.#log.membership().voters;
    if (!voters.includes(from)) return;
    const acked = this.#reads.find((r) => r.context === context);
    if (!acked) return;
    // An ack for a later read also confirms leadership for every earlier one.
    for (const r of this.#reads) {
      if (r.seq > acked.seq) break;
      r.acks.add(from);
    }
    const q = quorum(voters.length);
    let release = -1;
    for (let k = 0; k < this.#reads.length; k++) {
      if (countIn(this.#reads[k]!.acks, voters) >= q) release = k;
    }
    if (release < 0) return;
    for (const r of this.#reads.splice(0, release + 1)) {
      this.#readStates.push({ context: r.context, index: r.index });
    }
  }

  // ---- helpers -------------------------------------------------------------------

  #send(m: Message): void {
    if (this.#role === "leader" && m.type === "timeout_now") this.#msgsBeforePersist.push(m);
    else this.#msgs.push(m);
  }

  #hardState(): HardState {
    return { term: this.#term, vote: this.#vote, commit: this.#commit };
  }

  #hardChanged(): boolean {
    const h = this.#handedHard;
    return h.term !== this.#term || h.vote !== this.#vote || h.commit !== this.#commit;
  }

  #softChanged(): boolean {
    const s = this.#handedSoft;
    return s.role !== this.#role || s.leaderId !== this.#leaderId;
  }
}

/** Votes needed among `n` voters. */
function quorum(n: number): number {
  return Math.floor(n / 2) + 1;
}

function countIn(acks: Set<NodeId>, voters: readonly NodeId[]): number {
  let n = 0;
  for (const v of voters) if (acks.has(v)) n++;
  return n;
}
