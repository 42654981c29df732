/**
 * Failure detection by evidence: a leader whose agent process died refuses
 * connections, and a refusal is evidence where a timeout is not. The agent
 * probes the leader of a follower that has missed its heartbeats
 * (`RaftNode.leaderToProbe`), every heartbeat interval, and reports a refused
 * connection, or an answer that the probed node does not lead the follower's
 * term (its agent restarted), with `RaftNode.reportLeaderGone`. The follower
 * then forgets its leader and pre-votes within a heartbeat interval instead
 * of waiting out its election timeout. This file holds the rule and the
 * argument for it; the timers are in timing.ts.
 *
 * ## The rule
 *
 * Evidence that `leader` is gone is acted on only by a follower that
 * - follows `leader` (evidence about another node says nothing of its leader),
 * - has missed its heartbeats: it has not heard from it for
 *   {@link MISSED_HEARTBEATS} heartbeat intervals (`electionElapsed`, which
 *   every message of the leader resets). A refusal from a leader it still
 *   hears is a lie (a restarting listener, a spurious error) and is ignored,
 * - has failover_enabled on (a paused cluster waits for its leader, DESIGN.md),
 * - may campaign (a voter, or one whose removal is uncommitted: thesis §4.2.2).
 * It forgets its leader, and with it its lease: from then on it grants
 * pre-votes and votes to others (thesis §4.2.3 lets a node drop them only
 * while it hears a leader), once the hold after its own start, if any, is
 * over (vote_hold.ts: evidence about this leader releases no promise made
 * before the start). It pre-votes (thesis §9.6) after a delay drawn
 * from [0, heartbeatTicks], and if that first round fails it retries after a
 * heartbeat interval and the jitter rather than half an election timeout
 * (timing.ts). Hearing a leader, a later term or an explicit defeat ends
 * this; so does the first retry, which draws the usual timer.
 *
 * ## Safety
 *
 * Acting on evidence does nothing an election timer firing early does not
 * do: the follower forgets its leader and campaigns through the same code.
 * Raft's safety never depends on timing (§5.6): a vote is still granted at
 * most once per term, made durable before it is sent, and only to a log at
 * least as up to date (§5.4.1). Election safety, log matching, leader
 * completeness and state machine safety are untouched; the simulator checks
 * them with true and lying refusals.
 *
 * ## A lie cannot depose a leader a quorum still hears
 *
 * A voter drops every vote and pre-vote request of a later term (transfers
 * excepted) while it follows a leader it heard from within an election
 * timeout (thesis §4.2.3, `RaftNode.step`), and a leader never grants one.
 * Evidence clears only the leader of the node it is reported to. Let Q be
 * the leader and the followers that still hear it and were told nothing. A
 * candidate needs pre-votes and then votes from a quorum, and every quorum
 * shares a voter with Q when Q is a quorum (with one membership change at a
 * time, quorums of consecutive configurations overlap too, thesis §4.1):
 * that voter drops the request, so nobody is elected while Q holds. A
 * believed lie costs one pre-vote round of the deceived follower, which
 * raises no term (pre-vote), and it follows the leader again at its next
 * heartbeat (with a full election timer). A lie matters only where the
 * deceived followers are needed for a quorum: those same followers cut off
 * from the leader would have let an election happen too, an election timeout
 * later. The simulator counts both: elections won with a grant from a voter
 * that followed a live leader (none; a planted bug that drops the check is
 * caught), and elections won with a grant from a voter a lie made forget a
 * live leader it heard (possible as just said; none seen).
 *
 * ## Liveness
 *
 * Evidence only starts an election sooner. If the first round fails (others
 * still hear the leader or were told nothing; a split vote), the follower
 * retries once on the quick timer and then on the usual ones, the others'
 * election timers run as they do without evidence, and a follower that
 * forgot its leader grants pre-votes sooner, never later: every bound that
 * held before, a leader within two election timeouts among them, still
 * holds. One quick retry per piece of evidence, and evidence is taken only
 * after the leader was heard again and then missed: even on a network
 * slower than a heartbeat interval (the simulator has them) the quick timer
 * cannot livelock elections. With failover_enabled off the input is ignored,
 * so the paused cluster's guarantee (a leader again within 2 ×
 * election_timeout once the old leader is back or the cluster restarts) is
 * argued as before.
 *
 * ## The simulator's figures (tests/sim, profile `leader_crash`)
 *
 * The followers of a dead leader miss its heartbeats at nearly the same
 * moment. Two that pre-vote within a message delay of each other grant each
 * other's pre-vote (neither has a leader any more), become candidates of the
 * same term and split the vote. Over 500 seeds (about 3,100 leader crashes;
 * 3 or 5 nodes, a heartbeat of 4–8 ticks, an election timeout of 10–12
 * heartbeats, messages within a tick, lying refusals), in heartbeat
 * intervals from the crash to the next leader:
 * - pre-voting at once: median 2.4, 80 % within 4, 90th percentile 5.0;
 * - after [0, heartbeatTicks], with the usual retry timer: median 2.5, 89 %
 *   within 4, 90th percentile 8.0 (a split waits half an election timeout);
 * - after [0, heartbeatTicks], with the quick first retry (what the core
 *   does): median 2.5, 90 % within 4, 90th percentile 4.1, every failover
 *   within 2 election timeouts;
 * - without evidence (election timeouts only): median 11.8.
 *
 * ## With PostgreSQL high availability
 *
 * With `manage_postgres` the leader keeps its primary writable until its
 * lease ends (lib/ha/lease.ts), and that lease rests on the voters that
 * answered it withholding their votes for an election timeout. A follower
 * acting on evidence stops withholding at once, while the dead agent's
 * PostgreSQL may still accept writes: another primary could be promoted
 * before the old one's lease ran out. The agent therefore reports no
 * evidence in HA mode (plain Raft timing then); the core needs no knowledge
 * of HA.
 *
 * @module
 */

import type { Timing } from "./types.ts";

/** Heartbeat intervals without a word from the leader after which a follower has missed its heartbeats. */
export const MISSED_HEARTBEATS = 2;

/**
 * Whether a follower that has not heard from its leader for `elapsed` ticks
 * has missed its heartbeats (see the module's rule).
 *
 * @example
 * ```ts
 * const t = { heartbeatTicks: 3, electionTicks: 30, electionJitterTicks: 5,
 *   appendBatchSize: 1, snapshotThreshold: 1, maxInflight: 1 };
 * console.assert(!missedHeartbeats(t, 5) && missedHeartbeats(t, 6));
 * ```
 */
export function missedHeartbeats(t: Readonly<Timing>, elapsed: number): boolean {
  return elapsed >= MISSED_HEARTBEATS * t.heartbeatTicks;
}
