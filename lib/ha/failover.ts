/**
 * Which server may be promoted: the comparison a new leader makes after it
 * froze the standbys (pure helpers of controller.ts).
 *
 * ## The argument (synchronous replication on)
 *
 * Let V be the voters (n of them), q = quorumSize(n), and O the old primary.
 * With `synchronous_standby_names = ANY k (the other voters)`, k = q − 1, a
 * commit is acknowledged only once O and k standbys flushed it: its holders
 * H contain at least k voters other than O.
 *
 * The leader collects reports from a set R of voters other than O, each
 * taken after that voter stopped streaming, with |R| ≥ n − q + 1 (a majority
 * of the voters other than O when n is odd: 2 of 2 for n = 3, 3 of 4 for
 * n = 5; one fewer than a majority suffices when n is even). Then:
 *
 * 1. No commit can be acknowledged any more: O's possible acknowledgers are
 *    the voters outside R ∪ {O}, at most (n − 1) − (n − q + 1) = q − 2 < k.
 *    (A voter that reported keeps streaming from no one until its Raft
 *    leader is the node the committed primary record names, and it reported
 *    at a Raft term ≥ the collector's, so O's agent, deposed, is never again
 *    its leader in that term: controller.ts "Freezing".)
 * 2. R meets the holders of every acknowledged commit: |R| + |H \ {O}| ≥
 *    (n − q + 1) + (q − 1) = n > n − 1 = |V \ {O}|.
 * 3. Holders keep what they hold: WAL on a standby only grows while it
 *    streams; a rewind or clone only replaces a diverged or empty one.
 *
 * 4. So the most advanced reported server holds every acknowledged commit,
 *    provided "more advanced" is a total order that respects history:
 *    positions are ordered by timeline first, then LSN (a timeline is
 *    written by one primary only, so on one timeline a larger LSN extends a
 *    smaller one; a later timeline was promoted from a server that held
 *    every commit acknowledged before it, and nothing was acknowledged on
 *    the older one after that promotion, by 1).
 *
 * The old primary's own final position is enough on its own: it holds every
 * commit it acknowledged, and (by induction on 4) every commit acknowledged
 * before it was promoted; and once its server is stopped or a frozen
 * standby, no server can acknowledge anything (standbys stream only from the
 * server the record names). This lets a leader whose own server was the
 * primary (fenced after a lease blip, or restarted) promote it again at once,
 * and a failover go on while another voter's data directory is broken (a
 * failed rewind) as long as the old primary reports.
 *
 * All of this reads the primary record, so the leader must hold the current
 * one: it decides only once it applied an entry of its own term
 * (controller.ts rule 2; the simulator found a new leader acting on the
 * record it had applied before its election).
 *
 * Asynchronous replication (off): a commit is acknowledged once on O's disk.
 * The same comparison picks the server that lost least, but commits O
 * acknowledged and no reported standby had received are lost; so are all
 * commits of an O whose agent is paused or gone while its server still runs
 * (nothing stops it acknowledging) once another server is promoted.
 *
 * @module
 */

import { type NodeId, quorumSize } from "../raft/mod.ts";
import type { MemberReport, ServerObservation, WalState } from "./types.ts";

/**
 * Order two WAL positions: timeline first, then the flushed LSN.
 *
 * @returns negative when `a` is behind `b`, 0 when equal, positive when ahead
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const at = (timeline: number, lsn: number) =>
 *   ({ timeline, receivedLsn: lsn, replayedLsn: lsn, flushedLsn: lsn });
 * assert.ok(compareWal(at(2, 100), at(1, 900)) > 0);
 * assert.ok(compareWal(at(2, 100), at(2, 150)) < 0);
 * ```
 */
export function compareWal(a: WalState, b: WalState): number {
  if (a.timeline !== b.timeline) return a.timeline - b.timeline;
  return a.flushedLsn - b.flushedLsn;
}

/**
 * A server's final position for a failover: known, and nothing more can
 * arrive. `wal` is null for a server that holds nothing (an empty or a
 * foreign data directory). `candidate`: it may be promoted (a healthy
 * standby or a cleanly stopped server).
 */
export interface FinalPosition {
  wal: WalState | null;
  candidate: boolean;
}

/**
 * The final position of a server, or null when it is not known or not final
 * (it still streams from someone other than `leader`, it runs as a primary,
 * it is starting, or it stopped without a clean shutdown).
 *
 * @param server the observation
 * @param leader the collecting leader: streaming from its server is allowed
 *   (its WAL comes from the leader's own server, which is compared too)
 */
export function finalPosition(server: ServerObservation, leader: NodeId): FinalPosition | null {
  switch (server.state) {
    case "empty":
    case "refused":
      return { wal: null, candidate: false };
    case "stopped":
      if (!server.clean || server.rewindFailed || server.wal === null) return null;
      return { wal: server.wal, candidate: true };
    case "standby":
      if (server.upstream !== null && server.upstream !== leader) return null;
      return { wal: server.wal, candidate: true };
    case "diverged":
      return { wal: server.wal, candidate: false };
    case "starting":
    case "primary":
      return null;
  }
}

/** How many voters other than the old primary must report: n − quorumSize(n) + 1. */
export function reportsNeeded(voterCount: number): number {
  return voterCount - quorumSize(voterCount) + 1;
}

/** What the failover needs next. */
export type FailoverPlan =
  /** more reports are needed: ask these members */
  | { kind: "collect"; from: NodeId[]; have: number; need: number }
  /** this node's server is the most advanced: record it as primary on `timeline` */
  | { kind: "self"; timeline: number }
  /** `to` is more advanced: hand it the leadership */
  | { kind: "transfer"; to: NodeId }
  /** no server may be promoted (yet): `from` are the members still to report */
  | { kind: "none"; detail: string; from: NodeId[] };

/** The inputs of {@link planFailover}. */
export interface FailoverFacts {
  self: NodeId;
  term: number;
  voters: readonly NodeId[];
  /** the node the primary record names, 0 when none */
  oldPrimary: NodeId;
  /** the timeline the primary record names, 0 when none */
  recordTimeline: number;
  /** this node's own server (null: not known) */
  own: FinalPosition | null;
  members: readonly MemberReport[];
}

/**
 * Decide what the failover needs: more reports, this node, or another.
 *
 * Reports count when they come from a voter other than this node, were made
 * at a Raft term ≥ `term` (so their sender will not stream from a deposed
 * leader's server again), and give a final position. The old primary's own
 * report never counts towards the number needed (it may be gone), but when
 * it is there its server competes like the others — and when it is final it
 * is enough on its own (see the module's argument).
 */
export function planFailover(facts: FailoverFacts): FailoverPlan {
  const { self, voters, oldPrimary } = facts;
  const finals = new Map<NodeId, FinalPosition>();
  for (const report of facts.members) {
    if (report.nodeId === self || !voters.includes(report.nodeId)) continue;
    if (report.term < facts.term) continue;
    if (report.server.state === "standby" && !report.frozen && report.server.upstream !== self) {
      continue;
    }
    const position = finalPosition(report.server, self);
    if (position !== null) finals.set(report.nodeId, position);
  }
  if (facts.own !== null && voters.includes(self)) finals.set(self, facts.own);

  const need = reportsNeeded(voters.length);
  let have = 0;
  for (const id of finals.keys()) if (id !== oldPrimary) have++;
  const old = finals.get(oldPrimary);
  const oldHoldsAll = old !== undefined && old.candidate && old.wal !== null;
  const from = voters.filter((v) => v !== self && !finals.has(v));
  if (have < need && !oldHoldsAll) return { kind: "collect", from, have, need };

  // The most advanced of all, and the most advanced that may be promoted
  // (ties: this node first, then the lowest id; deterministic).
  let best: { id: NodeId; wal: WalState } | null = null;
  let bestCandidate: { id: NodeId; wal: WalState } | null = null;
  let maxTimeline = facts.recordTimeline;
  const order = [...finals.keys()].sort((a, b) => (a === self ? -1 : b === self ? 1 : a - b));
  for (const id of order) {
    const position = finals.get(id)!;
    if (position.wal === null) continue;
    maxTimeline = Math.max(maxTimeline, position.wal.timeline);
    if (best === null || compareWal(position.wal, best.wal) > 0) best = { id, wal: position.wal };
    if (!position.candidate) continue;
    if (bestCandidate === null || compareWal(position.wal, bestCandidate.wal) > 0) {
      bestCandidate = { id, wal: position.wal };
    }
  }
  if (best === null || bestCandidate === null) {
    return { kind: "none", detail: "no reported server holds data that may be promoted", from };
  }
  if (compareWal(bestCandidate.wal, best.wal) < 0) {
    return {
      kind: "none",
      detail: `the most advanced server (node ${best.id}, timeline ${best.wal.timeline}, ` +
        `lsn ${best.wal.flushedLsn}) has diverged; no healthy server holds everything`,
      from,
    };
  }
  if (bestCandidate.id === self) return { kind: "self", timeline: maxTimeline + 1 };
  return { kind: "transfer", to: bestCandidate.id };
}
