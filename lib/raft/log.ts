/**
 * The in-memory Raft log of one node: the latest snapshot, the entries after
 * it, and the membership each conf_change entry in it establishes. Indexes
 * are 1-based; index 0 is the empty prefix with term 0.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { applyConfChange, cloneMembership, decodeConfChange, isMember } from "./conf_change.ts";
import type { Entry, Membership, NodeId, RejectHint, Snapshot } from "./types.ts";

interface ConfPoint {
  index: number;
  membership: Membership;
}

/** The log, with the membership history of its conf_change entries. */
export class RaftLog {
  #snapshot: Snapshot | null;
  #snapshotIndex: number;
  #snapshotTerm: number;
  #snapshotMembership: Membership;
  #entries: Entry[] = [];
  #confs: ConfPoint[] = [];
  /** context of the latest conf change naming each node (the agent's address book) */
  readonly contexts = new Map<NodeId, string>();

  constructor(snapshot: Snapshot | null, entries: readonly Entry[]) {
    this.#snapshot = snapshot;
    this.#snapshotIndex = snapshot?.meta.index ?? 0;
    this.#snapshotTerm = snapshot?.meta.term ?? 0;
    this.#snapshotMembership = cloneMembership(
      snapshot?.meta.membership ?? { voters: [], learners: [] },
    );
    if (entries.length > 0) this.append(entries);
  }

  get snapshot(): Snapshot | null {
    return this.#snapshot;
  }

  get snapshotIndex(): number {
    return this.#snapshotIndex;
  }

  firstIndex(): number {
    return this.#snapshotIndex + 1;
  }

  lastIndex(): number {
    return this.#snapshotIndex + this.#entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex())!;
  }

  /** Term of the entry at `index`, or null when compacted away or beyond the end. */
  term(index: number): number | null {
    if (index === this.#snapshotIndex) return this.#snapshotTerm;
    if (index < this.#snapshotIndex || index > this.lastIndex()) return null;
    return this.#entries[index - this.#snapshotIndex - 1]!.term;
  }

  /** Whether the entry at `index` has term `term`. */
  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  entry(index: number): Entry {
    assert(index > this.#snapshotIndex && index <= this.lastIndex(), `no entry ${index} in log`);
    return this.#entries[index - this.#snapshotIndex - 1]!;
  }

  /** Entries lo..hi inclusive (all present), at most `maxCount`. */
  slice(lo: number, hi: number, maxCount = Infinity): Entry[] {
    if (hi < lo) return [];
    assert(lo > this.#snapshotIndex && hi <= this.lastIndex(), `slice ${lo}..${hi} out of range`);
    const start = lo - this.#snapshotIndex - 1;
    const end = Math.min(hi - lo + 1, maxCount) + start;
    return this.#entries.slice(start, end);
  }

  /**
   * Is a log ending at (lastIndex, lastTerm) at least as up to date as this
   * one (§5.4.1)?
   */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /**
   * An append (§5.3) with the entries at or below `commitIndex` left out: the
   * committed prefix matches every leader's log (Leader Completeness, §5.4).
   *
   * @returns the previous entry and the entries left, or null when the
   *   committed prefix covers every entry of the append
   */
  skipCommitted(
    append: { prevLogIndex: number; prevLogTerm: number; entries: Entry[] },
    commitIndex: number,
  ): { prevIndex: number; prevTerm: number; entries: Entry[] } | null {
    const { prevLogIndex, entries } = append;
    if (prevLogIndex >= commitIndex) {
      return { prevIndex: prevLogIndex, prevTerm: append.prevLogTerm, entries };
    }
    const skip = Math.min(entries.length, commitIndex - prevLogIndex);
    if (skip === entries.length) return null;
    const prevIndex = entries[skip]!.index - 1;
    const prevTerm = this.term(prevIndex);
    assert(prevTerm !== null, `no term for committed index ${prevIndex}`);
    return { prevIndex, prevTerm, entries: entries.slice(skip) };
  }

  /**
   * The index of the first of `entries` that this log does not hold (absent or
   * with another term), or 0 when it holds them all.
   */
  findConflict(entries: readonly Entry[]): number {
    for (const e of entries) {
      if (e.index <= this.#snapshotIndex) continue; // covered by the snapshot: committed, so matching
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /** First index of the run of entries with term `term` that contains `index` (for reject hints). */
  firstIndexOfTermAt(index: number): number {
    const term = this.term(index);
    assert(term !== null, `no term at ${index}`);
    let i = index;
    while (i - 1 > this.#snapshotIndex && this.term(i - 1) === term) i--;
    return i;
  }

  /**
   * The hint a follower sends when it rejects an append whose previous entry
   * at `rejectedIndex` it does not hold (fast backtracking, §5.3): its last
   * index, and the term it holds there with the first index of that term.
   */
  rejectHint(rejectedIndex: number): RejectHint {
    const lastIndex = this.lastIndex();
    if (rejectedIndex > lastIndex) {
      return { rejectedIndex, lastIndex, conflictTerm: 0, conflictIndex: lastIndex + 1 };
    }
    const conflictTerm = this.term(rejectedIndex);
    assert(conflictTerm !== null, `no term at ${rejectedIndex} (snapshot ${this.#snapshotIndex})`);
    return {
      rejectedIndex,
      lastIndex,
      conflictTerm,
      conflictIndex: this.firstIndexOfTermAt(rejectedIndex),
    };
  }

  /** The last index <= `from` whose term is <= `term` (the snapshot's index when none is after it). */
  lastIndexWithTermAtMost(from: number, term: number): { index: number; term: number } {
    let i = Math.min(from, this.lastIndex());
    while (i > this.#snapshotIndex) {
      const t = this.term(i)!;
      if (t <= term) return { index: i, term: t };
      i--;
    }
    return { index: this.#snapshotIndex, term: this.#snapshotTerm };
  }

  /**
   * Append `entries` (contiguous, starting at or before lastIndex+1): every
   * entry from entries[0].index on is replaced. Returns the index the log was
   * truncated at, or 0 when it only grew.
   */
  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return 0;
    const first = entries[0]!.index;
    assert(first > this.#snapshotIndex, `append at ${first} is inside the snapshot`);
    assert(
      first <= this.lastIndex() + 1,
      `append at ${first} leaves a gap after ${this.lastIndex()}`,
    );
    let truncatedAt = 0;
    if (first <= this.lastIndex()) {
      truncatedAt = first;
      this.#entries.length = first - this.#snapshotIndex - 1;
      while (this.#confs.length > 0 && this.#confs[this.#confs.length - 1]!.index >= first) {
        this.#confs.pop();
      }
    }
    let prevTerm = this.lastTerm();
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k]!;
      assert(e.index === first + k, `entries not contiguous at ${e.index}`);
      assert(e.term >= prevTerm && e.term >= 1, `entry ${e.index} term ${e.term} < ${prevTerm}`);
      prevTerm = e.term;
      this.#entries.push(e);
      if (e.type === "conf_change") {
        const change = decodeConfChange(e.data);
        this.contexts.set(change.nodeId, change.context || this.contexts.get(change.nodeId) || "");
        this.#confs.push({
          index: e.index,
          membership: applyConfChange(this.membership(), change),
        });
      }
    }
    return truncatedAt;
  }

  /** The membership in force: that of the last conf_change entry in the log, else the snapshot's. */
  membership(): Membership {
    const last = this.#confs[this.#confs.length - 1];
    return last ? last.membership : this.#snapshotMembership;
  }

  /** Index of the last conf_change entry after the snapshot (0 when none). */
  lastConfIndex(): number {
    const last = this.#confs[this.#confs.length - 1];
    return last ? last.index : 0;
  }

  /**
   * Whether node `id` may stand for election with this log, entries up to
   * `commitIndex` being committed (thesis §4.2.2): it is a voter of the latest
   * configuration, or it was a voter just before the latest conf_change entry
   * (the one that removed it) and that entry is not yet committed.
   *
   * The thesis: "a server that is not part of its own latest configuration
   * should still start new elections, as it might still be needed until the
   * Cnew entry is committed (as in Figure 4.6). It does not count its own
   * vote in elections unless it is part of its latest configuration." In
   * Figure 4.6 the leader S1 removes itself from {S1, S2}; S2 lacks Cnew, so it
   * needs S1's vote, which S1 refuses (S2's log is behind): S1 must campaign.
   * A node that never was a voter (a new learner) never may, nor one whose
   * removal is committed: from then on Cnew elects a leader without it.
   *
   * Election safety does not depend on who campaigns. Every candidate counts
   * votes in its latest configuration, its own only when it is a voter there
   * (`voteResult` ignores the others), and wins only with a majority of it;
   * each server votes once per term. Which configurations logs hold is the
   * leaders' doing: one server added or removed at a time, a change appended
   * only once the previous one and an entry of the leader's term are
   * committed (the latter, Ongaro's 2015 correction to single-server changes,
   * covers changes made on diverging branches of the log). Any majority of a
   * configuration overlaps any majority of the next one (thesis §4.1, Figure
   * 4.3); that overlap, "the voter" of the safety argument, is there whether
   * or not the candidate belongs to its latest configuration: two leaders in
   * one term would need it to vote twice.
   */
  mayCampaign(id: NodeId, commitIndex: number): boolean {
    if (this.membership().voters.includes(id)) return true;
    const confIndex = this.lastConfIndex();
    return confIndex > commitIndex && this.membershipAt(confIndex - 1).voters.includes(id);
  }

  /**
   * Whether node `id` is removed, given entries up to `commitIndex` are
   * committed: the conf entry that took it out is committed. A node that
   * never was a member (a new learner before it hears of itself) is not.
   */
  removalCommitted(id: NodeId, commitIndex: number): boolean {
    if (isMember(this.membership(), id)) return false;
    const confIndex = this.lastConfIndex();
    if (confIndex === 0 || confIndex > commitIndex) return false;
    // Was it a member just before that entry?
    return isMember(this.membershipAt(confIndex - 1), id);
  }

  /** The membership in force once entries up to `index` are in the log. */
  membershipAt(index: number): Membership {
    for (let k = this.#confs.length - 1; k >= 0; k--) {
      const c = this.#confs[k]!;
      if (c.index <= index) return c.membership;
    }
    return this.#snapshotMembership;
  }

  /** Drop every entry <= snapshot.meta.index (which must be in the log) and keep the snapshot. */
  compact(snapshot: Snapshot): void {
    const index = snapshot.meta.index;
    assert(index > this.#snapshotIndex && index <= this.lastIndex(), `cannot compact to ${index}`);
    assert(this.term(index) === snapshot.meta.term, `snapshot term mismatch at ${index}`);
    this.#snapshotMembership = cloneMembership(snapshot.meta.membership);
    this.#entries = this.#entries.slice(index - this.#snapshotIndex);
    this.#confs = this.#confs.filter((c) => c.index > index);
    this.#snapshot = snapshot;
    this.#snapshotIndex = index;
    this.#snapshotTerm = snapshot.meta.term;
  }

  /**
   * Snapshot the state machine at `index` (held in the log, after the current
   * snapshot) with the membership in force there, and compact the log to it.
   */
  compactTo(index: number, data: Uint8Array): Snapshot {
    assert(index > this.#snapshotIndex, `snapshot at ${index} not after ${this.#snapshotIndex}`);
    const term = this.term(index);
    assert(term !== null, `no term for snapshot index ${index}`);
    const m = this.membershipAt(index);
    const snapshot: Snapshot = {
      meta: { index, term, membership: { voters: [...m.voters], learners: [...m.learners] } },
      data,
    };
    this.compact(snapshot);
    return snapshot;
  }

  /** Replace the whole log with `snapshot` (InstallSnapshot for a follower far behind). */
  restore(snapshot: Snapshot): void {
    this.#entries = [];
    this.#confs = [];
    this.#snapshot = snapshot;
    this.#snapshotIndex = snapshot.meta.index;
    this.#snapshotTerm = snapshot.meta.term;
    this.#snapshotMembership = cloneMembership(snapshot.meta.membership);
  }
}
