/**
 * Time in the core, counted in ticks: the timing knobs' rules and the draws
 * of the election timer. Pure: the randomness comes from the node's injected
 * generator.
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { RaftConfig, Timing } from "./types.ts";

/** Assert that timing knobs are valid. */
export function checkTiming(t: Timing): void {
  assert(Number.isInteger(t.heartbeatTicks) && t.heartbeatTicks >= 1, "heartbeatTicks >= 1");
  assert(t.electionTicks > t.heartbeatTicks, "electionTicks > heartbeatTicks");
  assert(t.electionJitterTicks >= 0, "electionJitterTicks >= 0");
  assert(
    t.appendBatchSize >= 1 && t.maxInflight >= 1 && t.snapshotThreshold >= 1,
    "bad batching",
  );
}

/**
 * The timing knobs of a configuration, defaults filled in and checked
 * ({@link checkTiming}).
 *
 * @param config the node's configuration
 * @returns a fresh object (the node changes it in place on `setTiming`)
 */
export function timingOf(config: Readonly<RaftConfig>): Timing {
  const t: Timing = {
    heartbeatTicks: config.heartbeatTicks,
    electionTicks: config.electionTicks,
    electionJitterTicks: config.electionJitterTicks ?? config.electionTicks,
    appendBatchSize: config.appendBatchSize,
    snapshotThreshold: config.snapshotThreshold,
    maxInflight: config.maxInflight,
  };
  checkTiming(t);
  return t;
}

/** Which election timer a node draws (see {@link electionTimeoutTicks}). */
export interface TimerKind {
  /** a candidate or pre-candidate, whose election may fail (a split vote) */
  campaigning: boolean;
  /**
   * it took evidence that its leader is gone (`RaftNode.reportLeaderGone`,
   * failure_detection.ts) and has heard no leader nor a later term since
   */
  leaderGone: boolean;
}

/**
 * Draw the next election timeout, in ticks after the last reset of the
 * election timer:
 * - a follower: [electionTicks, electionTicks + jitter);
 * - a (pre-)candidate whose election failed (a split vote) retries sooner, at
 *   [base, base + jitter) with base = max(heartbeatTicks + 1, electionTicks / 2):
 *   the leader is already known to be gone, and failover stays within two
 *   election timeouts even when the first round splits;
 * - a follower whose leader is gone: [0, heartbeatTicks] (0: at once). The
 *   followers of a dead leader learn it at nearly the same moment; two that
 *   pre-vote within a message delay of each other grant each other's pre-vote
 *   and split the vote as candidates. The spread over a heartbeat interval
 *   makes that rare (see failure_detection.ts for the simulator's figures);
 * - the (pre-)candidate of the first round after that gives up at base
 *   heartbeatTicks + 1: its leader's agent is gone, every voter that took the
 *   evidence grants pre-votes, and a split is all there is to wait out. Only
 *   that round: a retry draws the usual timer (RaftNode clears `leaderGone`),
 *   so on a network slower than a heartbeat interval the quick timer costs
 *   one abandoned round, not a livelock.
 * Safety does not depend on timeouts (§5.6); pre-vote keeps a candidate that
 * cannot win from raising terms while it retries.
 *
 * @param t the node's timing knobs
 * @param randomInt the node's seeded generator: an integer in [0, n)
 * @param kind which timer
 * @returns the timeout in ticks
 * @example
 * ```ts
 * const t = { heartbeatTicks: 2, electionTicks: 10, electionJitterTicks: 5,
 *   appendBatchSize: 1, snapshotThreshold: 1, maxInflight: 1 };
 * const last = (n: number) => n - 1;
 * console.assert(electionTimeoutTicks(t, last, { campaigning: false, leaderGone: false }) === 14);
 * console.assert(electionTimeoutTicks(t, last, { campaigning: true, leaderGone: false }) === 9);
 * console.assert(electionTimeoutTicks(t, last, { campaigning: false, leaderGone: true }) === 2);
 * console.assert(electionTimeoutTicks(t, last, { campaigning: true, leaderGone: true }) === 7);
 * ```
 */
export function electionTimeoutTicks(
  t: Readonly<Timing>,
  randomInt: (n: number) => number,
  kind: TimerKind,
): number {
  if (!kind.campaigning && kind.leaderGone) return randomInt(t.heartbeatTicks + 1);
  const jitter = Math.max(1, t.electionJitterTicks);
  const base = !kind.campaigning
    ? t.electionTicks
    : kind.leaderGone
    ? t.heartbeatTicks + 1
    : Math.max(t.heartbeatTicks + 1, Math.floor(t.electionTicks / 2));
  return base + randomInt(jitter);
}
