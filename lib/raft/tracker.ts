/**
 * What a leader knows of each follower (etcd's `tracker/`): how much of its
 * log matches ours, where to send from next, how appends to it are paced
 * (one probe at a time, a pipelined window, or paused for a snapshot), and
 * whether it has been heard from lately (check-quorum, thesis §6.2).
 *
 * Pure bookkeeping: the node decides what to send; these classes remember
 * what was sent and what came back.
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { NodeId, Progress } from "./types.ts";

/**
 * How the leader paces appends to one follower.
 * - `probe`: at most one append is out; the next waits for its answer or a
 *   heartbeat answer (the follower's log position is being found).
 * - `replicate`: appends are pipelined, up to a window of them in flight.
 * - `snapshot`: a snapshot is on its way; no appends until it is reported.
 */
export type ProgressState = Progress["state"];

/**
 * The window of appends in flight to one follower (replicate state): the last
 * index carried by each, in the order sent. Bounded by a capacity
 * (`maxInflight`); a full window stops further appends until answers free it.
 *
 * Invariant: the indexes are strictly increasing (each append starts after the
 * previous one ended).
 */
export class Inflights {
  #capacity: number;
  readonly #lastIndexes: number[] = [];

  /**
   * @param capacity appends that may be in flight at once (>= 1)
   */
  constructor(capacity: number) {
    assert(Number.isInteger(capacity) && capacity >= 1, `inflight capacity ${capacity} < 1`);
    this.#capacity = capacity;
  }

  /** Appends that may be in flight at once. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Appends in flight. */
  get count(): number {
    return this.#lastIndexes.length;
  }

  /**
   * Change the capacity (max_inflight changed at run time). Appends already
   * out stay counted: a window that is now over capacity is full until
   * enough of them are freed.
   */
  resize(capacity: number): void {
    assert(Number.isInteger(capacity) && capacity >= 1, `inflight capacity ${capacity} < 1`);
    this.#capacity = capacity;
  }

  /** Whether no further append may go out. */
  full(): boolean {
    return this.#lastIndexes.length >= this.#capacity;
  }

  /** An append ending at `lastIndex` went out. The window must not be full. */
  add(lastIndex: number): void {
    assert(!this.full(), "an append was sent through a full inflight window");
    const previous = this.#lastIndexes[this.#lastIndexes.length - 1];
    assert(
      previous === undefined || lastIndex > previous,
      `inflight append ending at ${lastIndex} after one ending at ${previous}`,
    );
    this.#lastIndexes.push(lastIndex);
  }

  /** The follower holds everything up to `index`: free every append ending at or before it. */
  freeTo(index: number): void {
    while (this.#lastIndexes.length > 0 && this.#lastIndexes[0]! <= index) {
      this.#lastIndexes.shift();
    }
  }

  /**
   * Free the oldest append. A lost append or acknowledgement never frees its
   * slot; the leader calls this when a heartbeat answer shows the follower is
   * alive, so a full window cannot stall replication for good (etcd's
   * `FreeFirstOne`).
   */
  freeFirstOne(): void {
    this.#lastIndexes.shift();
  }

  /** Forget every append in flight. */
  reset(): void {
    this.#lastIndexes.length = 0;
  }
}

/**
 * The leader's view of one follower or learner (etcd's `tracker.Progress`).
 *
 * Invariant: match < next (§5.3's matchIndex and nextIndex). In replicate
 * state the entries in (match, next) are in flight; in probe state next is
 * only the leader's guess of where the logs stop matching.
 */
export class FollowerProgress {
  /** the follower's id */
  readonly id: NodeId;
  /** appends in flight (counted in replicate state only) */
  readonly inflights: Inflights;
  #match = 0;
  #next: number;
  #state: ProgressState = "probe";
  #probeSent = false;
  #pendingSnapshot = 0;
  #recentActive = false;
  #lastHeardTicks = 0;

  /**
   * A follower the leader knows nothing about yet: probe from `next`
   * (the leader's last index + 1, §5.3), match 0.
   */
  constructor(id: NodeId, next: number, maxInflight: number) {
    assert(next >= 1, `next index ${next} < 1`);
    this.id = id;
    this.#next = next;
    this.inflights = new Inflights(maxInflight);
  }

  /** Highest index known to match the leader's log (§5.3 matchIndex). */
  get match(): number {
    return this.#match;
  }

  /** Index of the next entry to send (§5.3 nextIndex). */
  get next(): number {
    return this.#next;
  }

  /** How appends are paced (see {@link ProgressState}). */
  get state(): ProgressState {
    return this.#state;
  }

  /** Probe state: an append is out; wait for its answer or a heartbeat answer. */
  get probeSent(): boolean {
    return this.#probeSent;
  }

  /** Snapshot state: the index of the snapshot sent (0 otherwise). */
  get pendingSnapshot(): number {
    return this.#pendingSnapshot;
  }

  /** Heard from within the last election timeout (check-quorum, thesis §6.2). */
  get recentActive(): boolean {
    return this.#recentActive;
  }

  /** Leader ticks since it last heard from this follower. */
  get lastHeardTicks(): number {
    return this.#lastHeardTicks;
  }

  /** Go back to probing, one append at a time, from just after `match`. */
  becomeProbe(): void {
    this.#reset("probe");
    this.#next = this.#match + 1;
  }

  /** Start pipelining appends from just after `match` (the follower's position is known). */
  becomeReplicate(): void {
    this.#reset("replicate");
    this.#next = this.#match + 1;
  }

  /**
   * A snapshot ending at `snapshotIndex` was sent (the entries the follower
   * needs are compacted away, §7): no appends until it is reported.
   */
  becomeSnapshot(snapshotIndex: number): void {
    this.#reset("snapshot");
    this.#pendingSnapshot = snapshotIndex;
  }

  /**
   * The snapshot in flight was delivered (`ok`) or failed: probe again. After a
   * delivery, probe from just after the snapshot and wait for the follower's
   * answer (or a heartbeat answer) before sending.
   */
  snapshotFinished(ok: boolean): void {
    assert(this.#state === "snapshot", `snapshot reported in ${this.#state} state`);
    const sent = this.#pendingSnapshot;
    this.becomeProbe();
    if (ok) {
      this.#next = Math.max(this.#match + 1, sent + 1);
      this.#probeSent = true;
    }
  }

  /** Whether appends to this follower must wait (a probe is out, the window is full, a snapshot is on its way). */
  isPaused(): boolean {
    switch (this.#state) {
      case "probe":
        return this.#probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }

  /**
   * An append went out carrying entries up to `lastIndex` (null: no entries).
   * In replicate state the entries join the window and `next` moves past them;
   * in probe state nothing more goes out until an answer arrives.
   */
  appendSent(lastIndex: number | null): void {
    assert(this.#state !== "snapshot", "an append was sent in snapshot state");
    if (this.#state === "replicate") {
      if (lastIndex !== null) {
        assert(lastIndex >= this.#next, `append ending at ${lastIndex} before next ${this.#next}`);
        this.#next = lastIndex + 1;
        this.inflights.add(lastIndex);
      }
    } else {
      this.#probeSent = true;
    }
  }

  /**
   * The follower acknowledged a log matching ours up to `matchIndex`.
   *
   * @returns false (and nothing changes) when that is no news: an old or
   *   duplicated answer; else true, with `match` raised and `next` beyond it
   */
  maybeUpdate(matchIndex: number): boolean {
    if (matchIndex <= this.#match) return false;
    this.#match = matchIndex;
    if (this.#next <= matchIndex) this.#next = matchIndex + 1;
    return true;
  }

  /**
   * Whether the rejection of the append after `rejectedIndex` is stale: it
   * answers an append sent before the follower's position was learned, or
   * arrives while a snapshot is on its way.
   */
  isStaleRejection(rejectedIndex: number): boolean {
    switch (this.#state) {
      case "replicate":
        return rejectedIndex <= this.#match;
      case "probe":
        return rejectedIndex !== this.#next - 1;
      case "snapshot":
        return true;
    }
  }

  /**
   * The follower rejected the append after `rejectedIndex`; its hint says to
   * try `hintNext` (fast backtracking, §5.3). Probe again from there, never at
   * or below `match` and never beyond the rejected index.
   */
  backOff(rejectedIndex: number, hintNext: number): void {
    this.becomeProbe();
    this.#next = Math.max(this.#match + 1, Math.min(hintNext, rejectedIndex));
  }

  /** An answer arrived that does not move `match`: in probe state, the next probe may go. */
  probeAnswered(): void {
    if (this.#state === "probe") this.#probeSent = false;
  }

  /** The follower just answered. */
  heard(): void {
    this.#recentActive = true;
    this.#lastHeardTicks = 0;
  }

  /** Count that it is active as of now (a new leader assumes every member is). */
  markRecentActive(): void {
    this.#recentActive = true;
  }

  /** One leader tick passed: it stays active while heard from within `electionTicks`. */
  tick(electionTicks: number): void {
    this.#lastHeardTicks++;
    this.#recentActive = this.#lastHeardTicks < electionTicks;
  }

  #reset(state: ProgressState): void {
    this.#state = state;
    this.inflights.reset();
    this.#probeSent = false;
    this.#pendingSnapshot = 0;
  }
}

/**
 * The leader's progress for every other member, in the order they were added
 * (the order appends and heartbeats go out in).
 */
export class ProgressTracker {
  readonly #progress = new Map<NodeId, FollowerProgress>();
  #maxInflight = 0;

  /** Members tracked. */
  get size(): number {
    return this.#progress.size;
  }

  /** The in-flight window of every follower, now and later (max_inflight, >= 1). */
  setMaxInflight(maxInflight: number): void {
    assert(Number.isInteger(maxInflight) && maxInflight >= 1, `maxInflight ${maxInflight} < 1`);
    this.#maxInflight = maxInflight;
    for (const pr of this.#progress.values()) pr.inflights.resize(maxInflight);
  }

  /** Start tracking `id`, probing from `next`. */
  add(id: NodeId, next: number): FollowerProgress {
    assert(!this.#progress.has(id), `node ${id} is already tracked`);
    assert(this.#maxInflight >= 1, "setMaxInflight() before tracking followers");
    const pr = new FollowerProgress(id, next, this.#maxInflight);
    this.#progress.set(id, pr);
    return pr;
  }

  get(id: NodeId): FollowerProgress | undefined {
    return this.#progress.get(id);
  }

  has(id: NodeId): boolean {
    return this.#progress.has(id);
  }

  delete(id: NodeId): void {
    this.#progress.delete(id);
  }

  clear(): void {
    this.#progress.clear();
  }

  /** Every tracked member, in the order added. */
  values(): IterableIterator<FollowerProgress> {
    return this.#progress.values();
  }

  /** The ids tracked, as a copy (safe to delete while iterating it). */
  ids(): NodeId[] {
    return [...this.#progress.keys()];
  }

  /** One leader tick passed for every follower (see {@link FollowerProgress.tick}). */
  tick(electionTicks: number): void {
    for (const pr of this.#progress.values()) pr.tick(electionTicks);
  }

  /**
   * The status view of every tracked member, by id.
   *
   * @param voters the voters now; everyone else is reported as a learner
   */
  view(voters: readonly NodeId[]): Progress[] {
    const out: Progress[] = [];
    for (const pr of this.#progress.values()) {
      out.push({
        id: pr.id,
        isLearner: !voters.includes(pr.id),
        matchIndex: pr.match,
        nextIndex: pr.next,
        state: pr.state,
        inflight: pr.inflights.count,
        recentActive: pr.recentActive,
        lastHeardTicks: pr.lastHeardTicks,
      });
    }
    return out.sort((a, b) => a.id - b.id);
  }
}
