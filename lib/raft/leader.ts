/**
 * What a node does while it leads: replicate its log to every follower
 * (§5.3), commit by counting replicas of current-term entries (§5.4.2), send
 * heartbeats and step down when a quorum goes silent (check-quorum, thesis
 * §6.2), confirm leadership for reads (thesis §6.4), hand leadership over
 * (thesis §3.10), keep removed nodes informed until their removal commits
 * and promote caught-up learners (thesis §4.2).
 *
 * A {@link Leader} exists only while its node leads: it is created by
 * `becomeLeader` and dropped on any other role change, so none of its state
 * outlives a term of leadership.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { encodeConfChange } from "./conf_change.ts";
import type { Handoff } from "./handoff.ts";
import type { RaftLog } from "./log.ts";
import { committedIndex, hasQuorum } from "./quorum.ts";
import { ReadOnly } from "./read_only.ts";
import { type FollowerProgress, ProgressTracker } from "./tracker.ts";
import {
  type AppendRequest,
  type AppendResponse,
  type EntryType,
  type HeartbeatResponse,
  type NodeId,
  NONE,
  type Progress,
  type Timing,
} from "./types.ts";

/** What a leader needs from its node. */
export interface LeaderHost {
  readonly id: NodeId;
  readonly log: RaftLog;
  readonly handoff: Handoff;
  /** the node's timing knobs, changed in place by `setTiming()` */
  readonly timing: Readonly<Timing>;
  /** check-quorum (thesis §6.2) */
  readonly checkQuorum: boolean;
  /** promote a learner to voter once it has caught up */
  readonly autoPromoteLearners: boolean;
  /** planted bug: commit by counting replicas of older-term entries */
  readonly commitOldTermEntries: boolean;
  /** currentTerm */
  term(): number;
  /** commitIndex */
  commitIndex(): number;
  /** failover_enabled (a leader only steps down under check-quorum when it is on) */
  failoverEnabled(): boolean;
  /** whether the node still leads (it may step down while a message is handled) */
  isLeader(): boolean;
  /**
   * A quorum holds the log up to `index` (> commitIndex): commit it.
   *
   * @returns whether this node is now removed from the cluster (its own
   *   removal was among what just committed)
   */
  leaderCommitTo(index: number): boolean;
  /** Append an entry of the leader's term to its log (appends follow before the next Ready). */
  appendOwn(type: EntryType, data: Uint8Array): void;
  /** Become a follower in the same term with no known leader. */
  stepDown(): void;
}

/** The state and behaviour of a node while it leads. */
export class Leader {
  readonly #host: LeaderHost;
  readonly #progress = new ProgressTracker();
  readonly #readOnly = new ReadOnly();
  /**
   * Nodes taken out of the membership by a conf entry (id → that entry's
   * index): the leader keeps informing them until the entry commits and they
   * hold it, or they fall silent for an election timeout (thesis §4.2.2), so
   * they learn they are removed.
   */
  /**
   * removed nodes still informed: the index of the conf entry that removed
   * them, and the ticks since it committed while they held it
   */
  readonly #leaving = new Map<NodeId, { confIndex: number; informedTicks: number }>();
  #transferTarget: NodeId = NONE;
  #transferElapsed = 0;
  #heartbeatElapsed = 0;
  /** the leader appended entries: send appends to every follower before the next Ready */
  #appendsDue = false;

  /** Take the lead: track every other member, all assumed active (none has had time to answer). */
  constructor(host: LeaderHost) {
    this.#host = host;
    this.#progress.setMaxInflight(host.timing.maxInflight);
    this.#syncProgress();
    for (const pr of this.#progress.values()) pr.markRecentActive(); // lastHeardTicks starts at 0
  }

  /** The node a leadership transfer is under way to, or NONE. */
  get transferTarget(): NodeId {
    return this.#transferTarget;
  }

  /** The status view of every tracked member, by id. */
  progressView(): Progress[] {
    return this.#progress.view(this.#host.log.membership().voters);
  }

  /** `max_inflight` may have changed. */
  timingChanged(): void {
    this.#progress.setMaxInflight(this.#host.timing.maxInflight);
  }

  /** One tick: heartbeats, abandoned transfers, check-quorum. May step down. */
  tick(): void {
    const { electionTicks, heartbeatTicks } = this.#host.timing;
    this.#heartbeatElapsed++;
    this.#progress.tick(electionTicks);
    if (this.#leaving.size > 0) {
      const commit = this.#host.commitIndex();
      for (const [id, leaving] of this.#leaving) {
        const pr = this.#progress.get(id);
        if (leaving.confIndex <= commit && pr && pr.match >= leaving.confIndex) {
          leaving.informedTicks++;
        }
      }
      this.#retireLeaving();
    }
    if (this.#transferTarget !== NONE && ++this.#transferElapsed >= electionTicks) {
      this.#transferTarget = NONE; // abandon the transfer (thesis §3.10)
    }
    // Check-quorum (thesis §6.2): step down once a quorum has been silent for an election timeout.
    if (this.#host.checkQuorum && this.#host.failoverEnabled() && !this.#quorumRecentlyActive()) {
      this.#host.stepDown();
      return;
    }
    if (this.#heartbeatElapsed >= heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat("");
    }
  }

  /**
   * Hand leadership to voter `target` (thesis §3.10): TimeoutNow at once if
   * it is up to date, else bring it up to date first (the answer that shows
   * it caught up triggers the TimeoutNow).
   */
  transferLeadership(target: NodeId): void {
    if (this.#transferTarget === target) return;
    this.#transferTarget = target;
    this.#transferElapsed = 0;
    const pr = this.#progress.get(target);
    assert(pr !== undefined, `no progress for voter ${target}`);
    if (pr.match === this.#host.log.lastIndex()) this.#sendTimeoutNow(target);
    else this.#sendAppend(pr, true);
  }

  /**
   * Start a linearizable read (thesis §6.4). Until the leader has committed
   * an entry of its term its commit index may lag behind what earlier
   * leaders committed, so the read waits for that first.
   */
  readIndex(context: string): void {
    if (!this.#committedInTerm()) {
      this.#readOnly.awaitCommit(context);
      return;
    }
    this.#startRead(context);
  }

  /** Why a membership change cannot be proposed now, or null when it can (thesis §4.1). */
  confChangeBlocker(): string | null {
    if (!this.#committedInTerm()) {
      return "the leader has not yet committed an entry in its term; retry shortly";
    }
    const pending = this.#host.log.lastConfIndex();
    if (pending > this.#host.commitIndex()) {
      return `another membership change (log entry ${pending}) is not yet committed; retry shortly`;
    }
    return null;
  }

  /** The leader appended entries of its own: appends follow before the next Ready. */
  markAppendsDue(): void {
    this.#appendsDue = true;
  }

  /** Send the appends due since the leader appended entries (batched into one message each). */
  sendDueAppends(): void {
    if (!this.#appendsDue) return;
    this.#appendsDue = false;
    for (const pr of this.#progress.values()) this.#sendAppend(pr, false);
  }

  /** The membership in the log changed: track new members, keep informing removed ones. */
  membershipChanged(): void {
    this.#syncProgress();
    const voters = this.#host.log.membership().voters;
    if (!voters.includes(this.#transferTarget)) this.#transferTarget = NONE;
  }

  /** The transport could not reach `peer`: stop pipelining to it. */
  reportUnreachable(peer: NodeId): void {
    const pr = this.#progress.get(peer);
    if (pr && pr.state === "replicate") pr.becomeProbe();
  }

  /** The snapshot sent to `peer` arrived (ok) or failed. */
  reportSnapshot(peer: NodeId, ok: boolean): void {
    const pr = this.#progress.get(peer);
    if (!pr || pr.state !== "snapshot") return;
    pr.snapshotFinished(ok);
  }

  /**
   * Commit what a quorum holds, if it is an entry of the leader's term
   * (§5.4.2: an older-term entry is committed only by a later one). The
   * leader counts its own log up to what it has persisted. May step down
   * (its own removal committed).
   */
  maybeCommit(): void {
    const host = this.#host;
    const voters = host.log.membership().voters;
    const matches = voters.map((v) =>
      v === host.id ? host.handoff.persistedIndex : (this.#progress.get(v)?.match ?? 0)
    );
    const candidate = committedIndex(matches);
    if (candidate <= host.commitIndex()) return;
    if (!host.commitOldTermEntries && host.log.term(candidate) !== host.term()) return;
    const wasCommittedInTerm = this.#committedInTerm();
    const removed = host.leaderCommitTo(candidate);
    this.#afterCommit(wasCommittedInTerm, removed);
  }

  /** A follower answered an append (§5.3). May step down. */
  handleAppendResponse(m: AppendResponse): void {
    const pr = this.#progress.get(m.from);
    if (!pr) return;
    pr.heard();
    if (!m.success) {
      const hint = m.hint;
      if (hint === null) return;
      const rejected = hint.rejectedIndex;
      if (pr.isStaleRejection(rejected)) return;
      // Fast backtracking (§5.3): skip the follower's whole conflicting term at once.
      let next: number;
      if (hint.conflictTerm > 0) {
        const found = this.#host.log.lastIndexWithTermAtMost(rejected, hint.conflictTerm);
        next = found.term === hint.conflictTerm ? found.index + 1 : hint.conflictIndex;
      } else {
        next = hint.lastIndex + 1;
      }
      pr.backOff(rejected, next);
      this.#sendAppend(pr, true);
      return;
    }
    if (pr.maybeUpdate(m.matchIndex)) {
      if (pr.state !== "replicate") pr.becomeReplicate();
      else pr.inflights.freeTo(pr.match);
      this.maybeCommit();
      if (!this.#host.isLeader()) return;
      if (this.#leaving.has(pr.id)) {
        this.#retireLeaving();
        if (!this.#progress.has(pr.id)) return;
      }
    } else {
      pr.probeAnswered();
    }
    const log = this.#host.log;
    while (pr.next <= log.lastIndex()) {
      const before = pr.next;
      if (!this.#sendAppend(pr, false) || pr.next === before) break;
    }
    if (m.from === this.#transferTarget && pr.match === log.lastIndex()) {
      this.#sendTimeoutNow(m.from);
    }
    this.#maybePromoteLearner();
  }

  /** A follower answered a heartbeat. */
  handleHeartbeatResponse(m: HeartbeatResponse): void {
    const pr = this.#progress.get(m.from);
    if (!pr) return;
    pr.heard();
    pr.probeAnswered();
    // A lost append or acknowledgement never frees its slot: a heartbeat answer
    // frees one so a full window cannot stall replication (etcd's FreeFirstOne).
    if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirstOne();
    // An empty append too: it reveals a follower that lost entries (a restart) to the leader.
    if (pr.match < this.#host.log.lastIndex()) this.#sendAppend(pr, true);
    if (m.readContext !== "") {
      const voters = this.#host.log.membership().voters;
      for (const rs of this.#readOnly.ack(m.from, m.readContext, voters)) {
        this.#host.handoff.addReadState(rs);
      }
    }
  }

  // ---- commit ------------------------------------------------------------------

  #committedInTerm(): boolean {
    return this.#host.log.term(this.#host.commitIndex()) === this.#host.term();
  }

  #afterCommit(wasCommittedInTerm: boolean, removed: boolean): void {
    this.#retireLeaving();
    const log = this.#host.log;
    if (removed) {
      // Our own removal (or demotion) committed: hand over to the most up-to-date voter, step down.
      let best: FollowerProgress | null = null;
      for (const v of log.membership().voters) {
        const pr = this.#progress.get(v);
        if (pr && (!best || pr.match > best.match)) best = pr;
      }
      // Send the commit first so the successor knows the change is committed.
      for (const pr of this.#progress.values()) this.#sendAppend(pr, true);
      if (best && best.match === log.lastIndex()) this.#sendTimeoutNow(best.id);
      this.#host.stepDown();
      return;
    }
    if (!wasCommittedInTerm && this.#committedInTerm()) {
      for (const context of this.#readOnly.takeAwaitingCommit()) this.#startRead(context);
    }
    for (const pr of this.#progress.values()) this.#sendAppend(pr, true);
    this.#maybePromoteLearner();
  }

  // ---- membership ----------------------------------------------------------------

  #syncProgress(): void {
    const log = this.#host.log;
    const m = log.membership();
    const members = new Set([...m.voters, ...m.learners]);
    for (const id of members) {
      if (id === this.#host.id || this.#progress.has(id)) continue;
      this.#progress.add(id, log.lastIndex() + 1);
    }
    for (const id of this.#progress.ids()) {
      if (members.has(id)) {
        this.#leaving.delete(id);
        continue;
      }
      // Keep informing a removed node until its removal commits (thesis §4.2.2).
      if (!this.#leaving.has(id)) {
        this.#leaving.set(id, { confIndex: log.lastConfIndex(), informedTicks: 0 });
      }
    }
  }

  /**
   * Stop tracking a removed node once its removal has committed and either
   * it holds the entry that removed it and has been told so by heartbeats for
   * an election timeout (they carry a commit index covering the entry: one
   * lost message must not leave it believing it is still a member), or it has
   * been silent for an election timeout.
   */
  #retireLeaving(): void {
    const commit = this.#host.commitIndex();
    const { electionTicks } = this.#host.timing;
    for (const [id, { confIndex, informedTicks }] of this.#leaving) {
      if (confIndex > commit) continue;
      const pr = this.#progress.get(id);
      const silent = !pr || pr.lastHeardTicks >= electionTicks;
      if (!silent && (pr.match < confIndex || informedTicks < electionTicks)) continue;
      if (pr) this.#sendHeartbeat(pr, "");
      this.#leaving.delete(id);
      this.#progress.delete(id);
    }
  }

  /** Propose promoting the first learner that is replicating and holds everything committed. */
  #maybePromoteLearner(): void {
    const host = this.#host;
    if (!host.autoPromoteLearners || !host.isLeader() || this.#transferTarget !== NONE) return;
    if (this.confChangeBlocker() !== null) return;
    for (const id of host.log.membership().learners) {
      const pr = this.#progress.get(id);
      if (!pr || pr.state !== "replicate" || pr.match < host.commitIndex()) continue;
      host.appendOwn(
        "conf_change",
        encodeConfChange({
          kind: "add_voter",
          nodeId: id,
          context: host.log.contexts.get(id) ?? "",
        }),
      );
      return;
    }
  }

  #quorumRecentlyActive(): boolean {
    const voters = this.#host.log.membership().voters;
    return hasQuorum(
      voters,
      (v) => v === this.#host.id || this.#progress.get(v)?.recentActive === true,
    );
  }

  // ---- sending -------------------------------------------------------------------

  /**
   * Send the follower the entries from its `next` on (at most
   * append_batch_size), or a snapshot when they are compacted away, unless
   * appends to it are paused. With `sendIfEmpty` an append goes out even
   * without entries (it carries the commit index and probes the log).
   *
   * @returns whether a message went out
   */
  #sendAppend(pr: FollowerProgress, sendIfEmpty: boolean): boolean {
    if (pr.isPaused()) return false;
    const host = this.#host;
    const prevIndex = pr.next - 1;
    const prevTerm = host.log.term(prevIndex);
    if (prevTerm === null) {
      this.#sendSnapshot(pr);
      return true;
    }
    const last = host.log.lastIndex();
    const entries = pr.next <= last
      ? host.log.slice(pr.next, last, host.timing.appendBatchSize)
      : [];
    if (entries.length === 0 && !sendIfEmpty) return false;
    const message: AppendRequest = {
      type: "append_request",
      term: host.term(),
      from: host.id,
      to: pr.id,
      prevLogIndex: prevIndex,
      prevLogTerm: prevTerm,
      entries,
      commit: host.commitIndex(),
    };
    pr.appendSent(entries.length > 0 ? entries[entries.length - 1]!.index : null);
    host.handoff.sendBeforePersist(message);
    return true;
  }

  /** InstallSnapshot (§7): the entries the follower needs are compacted away. */
  #sendSnapshot(pr: FollowerProgress): void {
    const host = this.#host;
    const snapshot = host.log.snapshot;
    assert(snapshot !== null, "the log is compacted but there is no snapshot");
    pr.becomeSnapshot(snapshot.meta.index);
    host.handoff.sendBeforePersist({
      type: "snapshot_request",
      term: host.term(),
      from: host.id,
      to: pr.id,
      snapshot,
    });
  }

  #sendTimeoutNow(to: NodeId): void {
    this.#host.handoff.sendBeforePersist({
      type: "timeout_now",
      term: this.#host.term(),
      from: this.#host.id,
      to,
    });
  }

  #broadcastHeartbeat(readContext: string): void {
    for (const pr of this.#progress.values()) this.#sendHeartbeat(pr, readContext);
  }

  /** A heartbeat carries the commit index only up to what the follower holds (§5.3). */
  #sendHeartbeat(pr: FollowerProgress, readContext: string): void {
    const host = this.#host;
    host.handoff.sendBeforePersist({
      type: "heartbeat_request",
      term: host.term(),
      from: host.id,
      to: pr.id,
      commit: Math.min(pr.match, host.commitIndex()),
      readContext,
    });
  }

  /** ReadIndex (thesis §6.4): record the commit index and ask the voters to confirm leadership. */
  #startRead(context: string): void {
    const host = this.#host;
    const voters = host.log.membership().voters;
    if (voters.length === 1 && voters[0] === host.id) {
      host.handoff.addReadState({ context, index: host.commitIndex() });
      return;
    }
    this.#readOnly.add(context, host.commitIndex(), voters.includes(host.id) ? host.id : null);
    this.#broadcastHeartbeat(context);
  }
}
