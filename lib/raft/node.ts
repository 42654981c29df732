/**
 * The Raft state machine of one node, in the style of etcd's raft: the
 * application calls {@link RaftNode.tick} on a fixed interval and
 * {@link RaftNode.step} for each message, then collects a {@link Ready},
 * persists and sends what it says (see {@link Ready} for the order), takes its
 * committed entries for applying and calls {@link RaftNode.advance}. No I/O,
 * no clock, no randomness of its own.
 *
 * This file holds the roles and their transitions, elections, the follower's
 * side of replication and the Ready cycle; the leader's side is in
 * `leader.ts`, what was handed to the application in `handoff.ts`, the
 * timers in `timing.ts`, failure detection's rule in `failure_detection.ts`,
 * when a vote is withheld in `vote_hold.ts`.
 *
 * References: the Raft paper (§n), Ongaro's thesis (thesis §n).
 *
 * @module
 */

import { assert, unreachable } from "../assert.ts";
import { confChangeProblem, encodeConfChange } from "./conf_change.ts";
import { ConfChangeError, NotLeaderError, ProposalRejectedError } from "./errors.ts";
import { missedHeartbeats } from "./failure_detection.ts";
import { Handoff } from "./handoff.ts";
import { Leader, type LeaderHost } from "./leader.ts";
import { RaftLog } from "./log.ts";
import { voteResult } from "./quorum.ts";
import { checkTiming, electionTimeoutTicks, timingOf } from "./timing.ts";
import { VoteHold } from "./vote_hold.ts";
import {
  type AppendRequest,
  type ConfChange,
  type Entry,
  type EntryType,
  type HardState,
  type HeartbeatRequest,
  type Message,
  type NodeId,
  NONE,
  type PersistentState,
  type RaftConfig,
  type Ready,
  type RejectHint,
  type Role,
  type Snapshot,
  type SnapshotRequest,
  type SoftState,
  type Status,
  type Timing,
  type VoteRequest,
  type VoteResponse,
} from "./types.ts";

export type { Timing } from "./types.ts";

/** One Raft node. */
export class RaftNode {
  readonly id: NodeId;
  /** changed in place by setTiming(); the leader reads it too */
  readonly #timing: Timing;
  readonly #preVote: boolean;
  readonly #checkQuorum: boolean;
  readonly #autoPromoteLearners: boolean;
  #failoverEnabled: boolean;
  readonly #randomInt: (n: number) => number;
  readonly #plantedBugs: NonNullable<RaftConfig["plantedBugs"]>;

  // Persistent state (§5.1, Figure 2), the log, and the role.
  #term: number;
  #vote: NodeId;
  #commitIndex: number;
  readonly #log: RaftLog;
  #role: Role = "follower";
  #leaderId: NodeId = NONE;
  /** this node's own removal has committed: it takes no further part */
  #removed = false;

  #electionElapsed = 0;
  /** leader stickiness and the hold after a start (vote_hold.ts) */
  readonly #voteHold: VoteHold;
  #randomizedElectionTimeout = 0;
  /** acted on evidence its leader is gone and has heard no leader since (failure_detection.ts) */
  #leaderGone = false;
  /** answers received in the current (pre-)election: true granted, false rejected */
  #votes = new Map<NodeId, boolean>();
  /** the leader's state; non-null exactly while the role is leader (once becomeLeader has run) */
  #leader: Leader | null = null;
  readonly #leaderHost: LeaderHost;
  #electionsStarted = 0;

  /** what was handed to the application and what it acknowledged */
  readonly #handoff: Handoff;
  /** the hard state in the last Ready that carried one (initially the one restarted from) */
  #reportedHardState: HardState;
  /** the soft state in the last Ready that carried one */
  #reportedSoftState: SoftState = { role: "follower", leaderId: NONE };

  /**
   * A node from what its storage made durable. One that may have answered a
   * leader before withholds its vote for an election timeout (vote_hold.ts).
   */
  constructor(config: RaftConfig, state: PersistentState) {
    assert(Number.isInteger(config.id) && config.id >= 1, `bad node id ${config.id}`);
    this.id = config.id;
    this.#preVote = config.preVote ?? true;
    this.#checkQuorum = config.checkQuorum ?? true;
    this.#autoPromoteLearners = config.autoPromoteLearners ?? true;
    this.#failoverEnabled = config.failoverEnabled ?? true;
    this.#randomInt = config.randomInt;
    this.#plantedBugs = config.plantedBugs ?? {};
    this.#timing = timingOf(config);

    this.#log = new RaftLog(state.snapshot, state.entries);
    const hs = state.hardState;
    this.#term = hs.term;
    this.#vote = hs.vote;
    const snapIndex = this.#log.snapshotIndex;
    assert(state.applied >= snapIndex, `applied ${state.applied} < snapshot ${snapIndex}`);
    assert(state.applied <= this.#log.lastIndex(), `applied ${state.applied} beyond the log`);
    // Invariant: applied <= commitIndex.
    this.#commitIndex = Math.max(hs.commit, state.applied, snapIndex);
    assert(
      this.#commitIndex <= this.#log.lastIndex(),
      `commit ${this.#commitIndex} beyond the log`,
    );
    this.#handoff = new Handoff(this.#log, hs, state.applied);
    this.#reportedHardState = this.#currentHardState();
    this.#removed = this.#computeRemoved();
    this.#voteHold = new VoteHold(this.#timing, config, hs.term);
    this.#leaderHost = this.#makeLeaderHost();
    this.#resetRandomizedElectionTimeout();
  }

  // ---- inputs ---------------------------------------------------------------

  /** One tick of the logical clock. */
  tick(): void {
    if (this.#removed) return;
    this.#voteHold.tick();
    if (this.#role === "leader") this.#leading().tick();
    else this.#tickElection();
  }

  /** Start an election now (pre-vote first when enabled), if it may (RaftLog.mayCampaign). */
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
    const leader = this.#checkCanPropose();
    const problem = leader.confChangeBlocker() ??
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
    this.#leading().transferLeadership(target);
  }

  /**
   * Linearizable read (thesis §6.4): once the leader has committed an entry
   * of its term and a quorum has confirmed it is still leader, a ReadState
   * {context, index} is emitted; the read may be served once the state
   * machine has applied `index`.
   * @throws NotLeaderError
   */
  readIndex(context: string): void {
    if (this.#role !== "leader") throw new NotLeaderError(this.#leaderId);
    this.#leading().readIndex(context);
  }

  /** A message from a peer. */
  step(m: Message): void {
    assert(m.to === this.id, `message for ${m.to} stepped into node ${this.id}`);
    if (this.#removed) return;
    if (m.term > this.#term) {
      // thesis §4.2.3: a node that hears a live leader, or just started, ignores disruptions
      const held = this.#voteHold.withholds(this.#leaderId, this.#electionElapsed);
      if (m.type === "vote_request" && !m.transfer && held) return;
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
        this.#handoff.sendAfterPersist({
          type: "append_response",
          term: this.#term,
          from: this.id,
          to: m.from,
          success: false,
          matchIndex: 0,
          hint: null,
        });
      } else if (m.type === "vote_request" && m.preVote) {
        this.#handoff.sendAfterPersist({
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
        if (this.#role === "leader") this.#leading().handleAppendResponse(m);
        return;
      case "heartbeat_response":
        if (this.#role === "leader") this.#leading().handleHeartbeatResponse(m);
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
    if (this.#role === "leader") this.#leading().reportUnreachable(peer);
  }

  /**
   * The leader whose heartbeats this follower has missed, and of whose end it
   * would take evidence ({@link reportLeaderGone}), or NONE. The agent probes
   * it every heartbeat interval while this names it.
   */
  leaderToProbe(): NodeId {
    const suspect = this.#role === "follower" && this.#leaderId !== NONE &&
      this.#failoverEnabled && missedHeartbeats(this.#timing, this.#electionElapsed) &&
      this.#promotable();
    return suspect ? this.#leaderId : NONE;
  }

  /**
   * Evidence that `leader`'s agent no longer leads: it refused a connection
   * (nothing listens: the process is gone or restarting), or answered a probe
   * that it does not lead this node's term (it restarted). A follower that
   * {@link leaderToProbe} names `leader` for forgets it and its lease (so it
   * grants others' pre-votes, once any hold after its start is over:
   * vote_hold.ts) and pre-votes (thesis §9.6) within a heartbeat interval;
   * otherwise ignored (a leader or (pre-)candidate, another node reported,
   * the leader still heard — a lie —, failover_enabled off, may not campaign).
   * Followers that still hear a live leader keep refusing pre-votes (thesis
   * §4.2.3): a lie cannot depose a leader a quorum hears. Rule and argument:
   * failure_detection.ts. With PostgreSQL HA the agent must not call this: a
   * follower dropping its lease early shortens the leader's lease.
   *
   * @returns whether the node acted on it (it no longer follows `leader`)
   */
  reportLeaderGone(leader: NodeId): boolean {
    if (leader === NONE || this.leaderToProbe() !== leader) return false;
    this.#leaderId = NONE;
    this.#leaderGone = true;
    this.#electionElapsed = 0;
    this.#resetRandomizedElectionTimeout(); // within a heartbeat interval
    if (this.#randomizedElectionTimeout === 0) this.campaign();
    return true;
  }

  /** The snapshot sent to `peer` arrived (ok) or failed. */
  reportSnapshot(peer: NodeId, ok: boolean): void {
    if (this.#role === "leader") this.#leading().reportSnapshot(peer, ok);
  }

  /** Change the timing and batching knobs (pgraft_set_config); a new election timeout is drawn. */
  setTiming(timing: Timing): void {
    checkTiming(timing);
    const t = this.#timing;
    t.heartbeatTicks = timing.heartbeatTicks;
    t.electionTicks = timing.electionTicks;
    t.electionJitterTicks = timing.electionJitterTicks;
    t.appendBatchSize = timing.appendBatchSize;
    t.snapshotThreshold = timing.snapshotThreshold;
    t.maxInflight = timing.maxInflight;
    this.#leader?.timingChanged();
    this.#resetRandomizedElectionTimeout();
  }

  /** failover_enabled (see DESIGN.md). */
  setFailoverEnabled(enabled: boolean): void {
    this.#failoverEnabled = enabled;
  }

  // ---- snapshots -----------------------------------------------------------

  /**
   * Whether `snapshotThreshold` entries have been handed out for applying
   * (in Readies advanced past, see `Status.appliedIndex`) since the last
   * snapshot, so a new one may be taken.
   */
  snapshotDue(): boolean {
    return this.#handoff.applyAccepted - this.#log.snapshotIndex >= this.#timing.snapshotThreshold;
  }

  /**
   * Record a snapshot of the state machine at `index` and drop the log up to
   * it (§7). `index` must be at most `Status.appliedIndex` (entries handed out
   * for applying in Readies advanced past) and is normally the index the
   * state machine has actually applied. The caller makes the snapshot durable.
   */
  createSnapshot(index: number, data: Uint8Array): Snapshot {
    const accepted = this.#handoff.applyAccepted;
    assert(index <= accepted, `snapshot at ${index} beyond applied ${accepted}`);
    return this.#log.compactTo(index, data);
  }

  // ---- Ready ---------------------------------------------------------------

  /**
   * Whether there is anything to persist, send, apply or report. Always false
   * while a Ready is handed out and {@link advance} has not been called.
   */
  hasReady(): boolean {
    this.#leader?.sendDueAppends();
    if (this.#handoff.awaitingAdvance) return false;
    return this.#handoff.hasWork(this.#log, this.#commitIndex) ||
      this.#hardStateChanged() ||
      this.#softStateChanged();
  }

  /**
   * Collect what the application must do (see {@link Ready}); call
   * {@link advance} once done, before the next `ready()`.
   */
  ready(): Ready {
    this.#leader?.sendDueAppends();
    assert(!this.#handoff.awaitingAdvance, "ready() called again before advance()");
    const hardState = this.#hardStateChanged() ? this.#currentHardState() : null;
    if (hardState) this.#reportedHardState = hardState;
    const softState = this.#softStateChanged()
      ? { role: this.#role, leaderId: this.#leaderId }
      : null;
    if (softState) this.#reportedSoftState = softState;
    return this.#handoff.take(this.#log, this.#commitIndex, hardState, softState);
  }

  /**
   * The application is done with the Ready the last {@link ready} returned:
   * its snapshot, entries, term and vote are durable (a change of commit alone
   * need not be synced), its messages are handed to the transport, and its
   * committed entries are taken for applying — they may still be being
   * applied. A leader may commit now: its own entries count towards a quorum
   * only once durable.
   */
  advance(_ready: Ready): void {
    this.#handoff.accept(this.#log);
    if (this.#role === "leader") this.#leading().maybeCommit();
  }

  // ---- status ----------------------------------------------------------------

  /** A copy of the node's state for status displays. */
  status(): Status {
    const m = this.#log.membership();
    const applied = this.#handoff.applyAccepted;
    return {
      id: this.id,
      role: this.#role,
      term: this.#term,
      vote: this.#vote,
      leaderId: this.#leaderId,
      commitIndex: this.#commitIndex,
      appliedIndex: applied,
      lastIndex: this.#log.lastIndex(),
      lastTerm: this.#log.lastTerm(),
      firstIndex: this.#log.firstIndex(),
      snapshotIndex: this.#log.snapshotIndex,
      membership: { voters: [...m.voters], learners: [...m.learners] },
      progress: this.#role === "leader" ? this.#leading().progressView() : [],
      transferTarget: this.#role === "leader" ? this.#leading().transferTarget : NONE,
      pendingConfChange: this.#log.lastConfIndex() > applied,
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
    // A leader heard, a later term, an election lost: the evidence is spent.
    this.#leaderGone = false;
    this.#resetRoleState();
  }

  /** Pre-vote (thesis §9.6): ask whether we could win before raising the term. */
  #becomePreCandidate(): void {
    this.#role = "pre_candidate";
    this.#leaderId = NONE;
    this.#resetRoleState();
    this.#votes.set(this.id, true);
    if (this.#tallyVotes() === "won") {
      this.#becomeCandidate(false);
      return;
    }
    this.#requestVotes(true, false);
  }

  /**
   * §5.2: a new term, a vote for ourselves (counted only if we are a voter of
   * our latest configuration, thesis §4.2.2), and a request to every other voter.
   */
  #becomeCandidate(transfer: boolean): void {
    this.#term += 1;
    this.#vote = this.id;
    this.#role = "candidate";
    this.#leaderId = NONE;
    this.#electionsStarted++;
    this.#resetRoleState();
    this.#votes.set(this.id, true);
    if (this.#tallyVotes() === "won") {
      this.#becomeLeader();
      return;
    }
    this.#requestVotes(false, transfer);
  }

  #becomeLeader(): void {
    assert(this.#role === "candidate", `become leader from ${this.#role}`);
    this.#role = "leader";
    this.#leaderId = this.id;
    this.#leaderGone = false;
    this.#resetRoleState();
    this.#leader = new Leader(this.#leaderHost);
    // A no-op in the new term lets the leader commit (and learn) everything before it
    // (§5.4.2, §8).
    this.#appendOwn("normal", new Uint8Array(0));
  }

  /** Forget everything that belonged to the previous role. */
  #resetRoleState(): void {
    this.#electionElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    this.#votes.clear();
    this.#leader = null;
  }

  /** Draw the next election timeout (see `electionTimeoutTicks`). */
  #resetRandomizedElectionTimeout(): void {
    const campaigning = this.#role === "candidate" || this.#role === "pre_candidate";
    this.#randomizedElectionTimeout = electionTimeoutTicks(this.#timing, this.#randomInt, {
      campaigning,
      leaderGone: this.#leaderGone,
    });
  }

  /**
   * May this node campaign? A voter of its latest configuration, or one whose
   * removal is not yet committed (thesis §4.2.2, see RaftLog.mayCampaign).
   */
  #promotable(): boolean {
    return !this.#removed && this.#log.mayCampaign(this.id, this.#commitIndex);
  }

  /** A leader's message in our term: follow it. False when it must be ignored. */
  #acceptLeader(from: NodeId): boolean {
    if (this.#role === "leader") return false; // never two leaders in a term; a stray message
    // A follower waiting to campaign on evidence its leader is gone waits no more.
    if (this.#role !== "follower" || this.#leaderGone) this.#becomeFollower(this.#term, from);
    this.#leaderId = from;
    this.#electionElapsed = 0;
    return true;
  }

  /** The leader's state; only while the role is leader. */
  #leading(): Leader {
    assert(this.#leader !== null, `no leader state in role ${this.#role}`);
    return this.#leader;
  }

  /** What the leader may see and do of this node. */
  #makeLeaderHost(): LeaderHost {
    return {
      id: this.id,
      log: this.#log,
      handoff: this.#handoff,
      timing: this.#timing,
      checkQuorum: this.#checkQuorum,
      autoPromoteLearners: this.#autoPromoteLearners,
      commitOldTermEntries: this.#plantedBugs.commitOldTermEntries === true,
      term: () => this.#term,
      commitIndex: () => this.#commitIndex,
      failoverEnabled: () => this.#failoverEnabled,
      isLeader: () => this.#role === "leader",
      leaderCommitTo: (index) => {
        assert(index > this.#commitIndex, `commit ${index} not after ${this.#commitIndex}`);
        this.#commitIndex = index;
        this.#removed = this.#computeRemoved();
        return this.#removed;
      },
      appendOwn: (type, data) => {
        this.#appendOwn(type, data);
      },
      stepDown: () => this.#becomeFollower(this.#term, NONE),
    };
  }

  // ---- elections ---------------------------------------------------------------

  #tickElection(): void {
    this.#electionElapsed++;
    if (this.#electionElapsed < this.#randomizedElectionTimeout) return;
    this.#electionElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    if (!this.#promotable()) return;
    // failover_enabled = off: a follower that knows its leader waits for it.
    if (!this.#failoverEnabled && this.#role === "follower" && this.#leaderId !== NONE) return;
    // A retry: evidence of the leader's end buys one quick round (timing.ts), no more.
    if (this.#role !== "follower") this.#leaderGone = false;
    this.campaign();
  }

  #requestVotes(preVote: boolean, transfer: boolean): void {
    const term = preVote ? this.#term + 1 : this.#term;
    for (const v of this.#log.membership().voters) {
      if (v === this.id) continue;
      this.#handoff.sendAfterPersist({
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

  /**
   * Grant a vote (§5.2) at most once per term, only to a candidate whose log
   * is at least as up to date as ours (§5.4.1). A pre-vote is granted to a
   * candidate for a later term even when we voted in ours (thesis §9.6).
   */
  #handleVoteRequest(m: VoteRequest): void {
    const canVote = this.#vote === m.from ||
      (this.#vote === NONE && this.#leaderId === NONE) ||
      (m.preVote && m.term > this.#term);
    const logOk = this.#plantedBugs.voteWithoutLogCheck ||
      this.#log.isUpToDate(m.lastLogIndex, m.lastLogTerm);
    const granted = canVote && logOk;
    const response: VoteResponse = {
      type: "vote_response",
      term: granted ? m.term : this.#term,
      from: this.id,
      to: m.from,
      preVote: m.preVote,
      granted,
    };
    if (granted && !m.preVote) {
      this.#electionElapsed = 0;
      this.#vote = m.from;
      if (this.#plantedBugs.answerVoteBeforePersist) {
        this.#handoff.sendVoteResponseBeforePersist(response);
        return;
      }
    }
    this.#handoff.sendAfterPersist(response);
  }

  #handleVoteResponse(m: VoteResponse): void {
    const expecting = (this.#role === "pre_candidate" && m.preVote) ||
      (this.#role === "candidate" && !m.preVote);
    if (!expecting) return;
    if (m.preVote && m.granted && m.term !== this.#term + 1) return;
    if (!this.#log.membership().voters.includes(m.from)) return;
    this.#votes.set(m.from, m.granted);
    const result = this.#tallyVotes();
    if (result === "won") {
      if (this.#role === "pre_candidate") this.#becomeCandidate(false);
      else this.#becomeLeader();
    } else if (result === "lost") {
      this.#becomeFollower(this.#term, NONE);
    }
  }

  #tallyVotes(): "won" | "lost" | "pending" {
    return voteResult(this.#log.membership().voters, this.#votes);
  }

  // ---- replication: follower side ----------------------------------------------

  /** AppendEntries (§5.3): check the previous entry, drop conflicting entries, append, commit. */
  #handleAppend(m: AppendRequest): void {
    const rest = this.#log.skipCommitted(m, this.#commitIndex);
    if (rest === null) {
      this.#respondAppend(m.from, true, this.#commitIndex, null);
      return;
    }
    const { prevIndex, prevTerm, entries } = rest;
    if (!this.#log.matchTerm(prevIndex, prevTerm)) {
      this.#respondAppend(m.from, false, 0, this.#log.rejectHint(prevIndex));
      return;
    }
    const conflict = this.#log.findConflict(entries);
    if (conflict !== 0) {
      assert(
        conflict > this.#commitIndex,
        `conflict at ${conflict} <= commit ${this.#commitIndex}`,
      );
      const fresh = entries.slice(conflict - entries[0]!.index);
      this.#appendToLog(fresh);
    }
    const lastNew = prevIndex + entries.length;
    this.#commitTo(Math.min(m.commit, lastNew));
    this.#respondAppend(m.from, true, lastNew, null);
  }

  #respondAppend(to: NodeId, success: boolean, matchIndex: number, hint: RejectHint | null): void {
    this.#handoff.sendAfterPersist({
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
    this.#handoff.sendAfterPersist({
      type: "heartbeat_response",
      term: this.#term,
      from: this.id,
      to: m.from,
      readContext: m.readContext,
    });
  }

  /** InstallSnapshot (§7). */
  #handleSnapshot(m: SnapshotRequest): void {
    const s = m.snapshot;
    const index = s.meta.index;
    if (index <= this.#commitIndex) {
      this.#respondAppend(m.from, true, this.#commitIndex, null);
      return;
    }
    if (this.#log.matchTerm(index, s.meta.term)) {
      // We hold the entry the snapshot ends with: just learn that it is committed.
      this.#commitTo(index);
      this.#respondAppend(m.from, true, index, null);
      return;
    }
    this.#log.restore(s);
    this.#commitIndex = index;
    this.#handoff.snapshotReceived(s);
    this.#removed = this.#computeRemoved();
    this.#respondAppend(m.from, true, index, null);
  }

  /** Follower: the leader says entries up to `index` are committed. Invariant: it never decreases. */
  #commitTo(index: number): void {
    if (index <= this.#commitIndex) return;
    assert(index <= this.#log.lastIndex(), `commit ${index} beyond last ${this.#log.lastIndex()}`);
    this.#commitIndex = index;
    this.#removed = this.#computeRemoved();
  }

  #appendToLog(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const truncatedAt = this.#log.append(entries);
    this.#handoff.entriesAppended(entries[0]!.index, truncatedAt);
    if (entries.some((e) => e.type === "conf_change") || truncatedAt !== 0) {
      this.#membershipChanged();
    }
  }

  /** Once removed, always removed (see RaftLog.removalCommitted). */
  #computeRemoved(): boolean {
    return this.#removed || this.#log.removalCommitted(this.id, this.#commitIndex);
  }

  /**
   * The membership in the log changed (a conf entry appended or truncated
   * away): it takes effect at once, committed or not (thesis §4.1).
   */
  #membershipChanged(): void {
    this.#removed = this.#computeRemoved();
    if (this.#role === "leader") this.#leader?.membershipChanged();
  }

  // ---- proposals -----------------------------------------------------------------

  /** The leader, if it may take proposals now. */
  #checkCanPropose(): Leader {
    if (this.#role !== "leader") throw new NotLeaderError(this.#leaderId);
    const leader = this.#leading();
    if (leader.transferTarget !== NONE) {
      throw new ProposalRejectedError(
        `leadership is being transferred to node ${leader.transferTarget}; retry on the new leader`,
      );
    }
    return leader;
  }

  /**
   * Leader: append an entry of its term. Appends to the followers go out
   * before the next Ready; the leader counts its own copy only once durable
   * (see advance()), so even a lone voter commits only then.
   */
  #appendOwn(type: EntryType, data: Uint8Array): { index: number; term: number } {
    const index = this.#log.lastIndex() + 1;
    this.#appendToLog([{ index, term: this.#term, type, data }]);
    this.#leading().markAppendsDue();
    return { index, term: this.#term };
  }

  // ---- helpers -------------------------------------------------------------------

  #currentHardState(): HardState {
    return { term: this.#term, vote: this.#vote, commit: this.#commitIndex };
  }

  #hardStateChanged(): boolean {
    const h = this.#reportedHardState;
    return h.term !== this.#term || h.vote !== this.#vote || h.commit !== this.#commitIndex;
  }

  #softStateChanged(): boolean {
    const s = this.#reportedSoftState;
    return s.role !== this.#role || s.leaderId !== this.#leaderId;
  }
}
