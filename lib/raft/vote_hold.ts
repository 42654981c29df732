/**
 * When a node withholds its vote: leader stickiness, and the hold of a node
 * that starts again. This file holds the rule and the argument for it;
 * `RaftNode.step` drops the requests.
 *
 * ## The rule
 *
 * With check-quorum on, a node drops every vote and pre-vote request of a
 * later term, except a leadership transfer's (thesis §3.10), while
 * - it follows a leader it heard from fewer than `electionTicks` ticks ago
 *   (thesis §4.2.3: a server that hears a current leader neither updates its
 *   term nor grants its vote), or
 * - it has ticked fewer than `electionTicks` times since it started from
 *   persisted state (the constructor), as if it had heard a leader just
 *   before it started — unless its persisted term is at most
 *   {@link BOOTSTRAP_TERM} (a brand-new node, or a founder before the first
 *   election).
 * A request of its own term or an older one is answered as usual: no second
 * leader can be elected in a term that has one (§5.2), and a pre-vote for a
 * term T leads to votes in T. The node's own campaigns are never held back.
 *
 * ## Why a starting node holds (thesis §6.4 leases)
 *
 * A leader's lease (lib/ha/lease.ts) rests on the voters that acknowledged
 * its round at time s, itself included (a leader never votes while it
 * leads): each refuses other candidates for an election timeout after it
 * heard the round, so no one else can be elected before s + W. That promise
 * lives in memory: a voter that crashes and starts again has forgotten its
 * leader, and would grant the first pre-vote and vote it is asked for — a
 * new leader, and a second writable primary, while the old lease is still
 * valid. A starting node does not know when it last heard a leader, but it
 * knows it was before it started: holding for an election timeout from its
 * start keeps every promise it may have made. §4.2.3 gives the rule for a
 * server that hears a leader and §6.4.1 builds leases on it; neither says
 * what a restart does to the promise. Here it survives one.
 *
 * The exception promised nothing. An acknowledgement leaves only once the
 * term it carries is durable (see `Ready`), and leaders are elected only in
 * terms after {@link BOOTSTRAP_TERM} (a node campaigns only as a voter of a
 * configuration, the first one is written by `bootstrapState` in that term,
 * and campaigning raises the term): a node whose persisted term is at most
 * that never answered a leader. The only voter of its configuration holds
 * too: a node whose removal is not yet committed still campaigns and counts
 * votes in the configuration without it (thesis §4.2.2), so that one grant
 * can elect it. Without check-quorum a node promises nothing (§4.2.3's rule
 * comes with it) and holds nothing.
 *
 * ## What it does to the rest
 *
 * - (a) A whole cluster restarting elects a leader about an election
 *   timeout after a quorum of it has started: no sooner (that is the
 *   promise), and within 2 × election_timeout barring split votes, as
 *   before. The hold ends after `electionTicks` ticks of the node's own, and
 *   a follower's first election timer fires no earlier (it is drawn from
 *   [electionTicks, electionTicks + jitter), timing.ts). Let s be when the
 *   last node of a quorum started: by s + electionTicks no node of that
 *   quorum holds, and the node that started at s campaigns in
 *   [s + electionTicks, s + electionTicks + jitter), as it would have
 *   without the hold. Nodes that started earlier and campaigned into holds
 *   lose those rounds, without raising a term (pre-vote), grant others'
 *   pre-votes meanwhile, and retry after half an election timeout; so does a
 *   candidate whose timer fires on the very tick a voter's hold ends (that
 *   voter's tick comes a little later, or its clock runs slower). Those
 *   retries meet the late starters' first timers once the holds end, which
 *   makes a split vote a little likelier. With the agent's timing (jitter
 *   electionTicks / 4), over 2,000 restarts of three nodes started up to an
 *   election timeout apart, the first leader came 1.09 election timeouts
 *   after a quorum had started (median; 1.62 at the 99th percentile, 1.86 at
 *   most); without the hold 0.64 (1.15; 1.19). See vote_hold_test.ts, and
 *   node_test.ts for a whole cluster restarting at once with failover off.
 * - (b) Leadership transfer works at once: TimeoutNow makes its target
 *   campaign with the transfer flag, which every hold lets through (the
 *   leader gives up its lease when it starts a transfer), and the target's
 *   own hold does not delay its campaign.
 * - (c) failover_enabled = false: the hold names no leader, so it never
 *   stops a node from campaigning (only a follower that knows its leader
 *   waits for it); it only delays grants, as in (a). Once the old leader is
 *   back or the whole cluster restarts, a leader exists again within
 *   2 × election_timeout as before.
 * - (d) Evidence that the leader is gone (`RaftNode.reportLeaderGone`,
 *   failure_detection.ts) ends leader stickiness for that leader, not the
 *   hold: the evidence is about the leader heard since the start, the hold
 *   keeps promises made before it, of which the node knows nothing. The
 *   node still pre-votes at once; others that need its grant wait out the
 *   rest of its hold (less than an election timeout). With PostgreSQL HA
 *   the agent reports no evidence anyway.
 * - (e) The Raft simulator's liveness bound (a proposal applied everywhere
 *   within 10 election timeouts of healing, when every crashed node starts)
 *   holds by (a). The simulator also counts the elections won with the
 *   grant of a voter that heard a live leader, before its restart, fewer
 *   than `electionTicks` of its own ticks earlier: none. The planted bug
 *   `noVoteHoldAfterRestart` is caught there, rarely (restarts that matter
 *   are rare in its faults), and by the HA simulator's `lease` profile,
 *   which aims at them.
 * - (f) `pgraft_init()` bootstraps a one-voter cluster in term
 *   {@link BOOTSTRAP_TERM}: nothing is held, and its campaign asks no one. A
 *   one-voter cluster that restarts holds, at no cost: it elects itself.
 *
 * @module
 */

import { BOOTSTRAP_TERM } from "./bootstrap.ts";
import { type NodeId, NONE, type RaftConfig, type Timing } from "./types.ts";

/**
 * Whether a node that starts with persisted term `term` holds its vote after
 * its start (see the module's rule; check-quorum aside): whether it may have
 * answered a leader.
 *
 * @param term the term in its persisted hard state
 * @example
 * ```ts
 * console.assert(holdsVoteAtStart(5));
 * console.assert(!holdsVoteAtStart(1) && !holdsVoteAtStart(0)); // BOOTSTRAP_TERM is 1
 * ```
 */
export function holdsVoteAtStart(term: number): boolean {
  return term > BOOTSTRAP_TERM;
}

/** A node's vote withholding (see the module's rule): the hold after its start, and stickiness. */
export class VoteHold {
  /** the node's timing knobs, changed in place by `setTiming` */
  readonly #timing: Readonly<Timing>;
  readonly #checkQuorum: boolean;
  readonly #stickiness: boolean;
  /** ticks counted since the start while the hold after it lasts; null once over, or never held */
  #startTicks: number | null;

  /**
   * @param timing the node's timing knobs (read at each call: `setTiming` changes them)
   * @param config check-quorum and planted bugs are read from it
   * @param persistedTerm the term in the hard state the node starts from
   *   ({@link holdsVoteAtStart})
   */
  constructor(timing: Readonly<Timing>, config: Readonly<RaftConfig>, persistedTerm: number) {
    this.#timing = timing;
    this.#checkQuorum = config.checkQuorum ?? true;
    const bugs = config.plantedBugs ?? {};
    this.#stickiness = !bugs.noLeaderStickiness;
    const holds = this.#checkQuorum && holdsVoteAtStart(persistedTerm) &&
      !bugs.noVoteHoldAfterRestart;
    this.#startTicks = holds ? 0 : null;
  }

  /** One tick of the node's clock: the hold after its start ends at `electionTicks` ticks. */
  tick(): void {
    if (this.#startTicks === null) return;
    this.#startTicks++;
    if (this.#startTicks >= this.#timing.electionTicks) this.#startTicks = null;
  }

  /**
   * Whether a vote or pre-vote request of a later term, not a transfer's,
   * is dropped now.
   *
   * @param leaderId the leader the node follows, or NONE
   * @param electionElapsed ticks since it last heard from that leader
   */
  withholds(leaderId: NodeId, electionElapsed: number): boolean {
    if (!this.#checkQuorum) return false;
    const inLease = this.#stickiness && leaderId !== NONE &&
      electionElapsed < this.#timing.electionTicks;
    return inLease || this.#startTicks !== null;
  }
}
