/**
 * What the simulator measures of failure detection: the failover time after
 * a leader crash, and whether an election was won with the grant of a voter
 * that still heard a live leader (leader stickiness, thesis §4.2.3, must
 * prevent it unless evidence, a lie then, made that voter forget the leader;
 * the hold after a start must prevent it when the voter heard the leader
 * before it restarted, lib/raft/vote_hold.ts). With stickiness, a live leader
 * heard by a quorum of voters that were told nothing is never deposed: any
 * winner's quorum shares a voter with it.
 *
 * @module
 */

import type { NodeId } from "../../lib/raft/mod.ts";

/** One failover: ticks from the leader's crash to the next leader's election. */
export interface FailoverSample {
  ticks: number;
  heartbeatTicks: number;
  electionTicks: number;
}

/** Failovers of many runs, summarized. */
export interface FailoverFigures {
  failovers: number;
  failoverTicksMedian: number;
  failoverTicksMax: number;
  /** median of ticks / heartbeatTicks */
  failoverHeartbeatsMedian: number;
  /** max of ticks / electionTicks */
  failoverElectionTimeoutsMax: number;
}

/**
 * Times failovers. A watch starts when the leader of a steady cluster
 * crashes (the caller judges steadiness) and ends at the next election; any
 * other disturbance meanwhile (another crash, a partition, a failover pause,
 * healing) drops it, so a sample measures failure detection and election
 * alone.
 */
export class FailoverMeter {
  readonly samples: FailoverSample[] = [];
  #watch: { at: number; term: number } | null = null;

  /** Whether a failover is being timed. */
  get watching(): boolean {
    return this.#watch !== null;
  }

  /** The leader of `term` crashed at tick `now`, in a steady cluster. */
  leaderCrashed(now: number, term: number): void {
    this.#watch = { at: now, term };
  }

  /** Something else happened: the failover under way, if any, is not measured. */
  disturbed(): void {
    this.#watch = null;
  }

  /**
   * A leader of `term` was elected at tick `now`.
   *
   * @returns the sample it completes, or null
   */
  elected(
    now: number,
    term: number,
    timing: { heartbeatTicks: number; electionTicks: number },
  ): FailoverSample | null {
    const watch = this.#watch;
    if (watch === null || term <= watch.term) return null;
    this.#watch = null;
    const sample = {
      ticks: now - watch.at,
      heartbeatTicks: timing.heartbeatTicks,
      electionTicks: timing.electionTicks,
    };
    this.samples.push(sample);
    return sample;
  }
}

/**
 * Summarize failover samples.
 *
 * @example
 * ```ts
 * const f = failoverFigures([{ ticks: 10, heartbeatTicks: 5, electionTicks: 50 }]);
 * console.assert(f.failoverHeartbeatsMedian === 2 && f.failoverElectionTimeoutsMax === 0.2);
 * ```
 */
export function failoverFigures(samples: readonly FailoverSample[]): FailoverFigures {
  const round = (x: number, places: number) => Math.round(x * 10 ** places) / 10 ** places;
  return {
    failovers: samples.length,
    failoverTicksMedian: median(samples.map((s) => s.ticks)),
    failoverTicksMax: samples.reduce((max, s) => Math.max(max, s.ticks), 0),
    failoverHeartbeatsMedian: round(median(samples.map((s) => s.ticks / s.heartbeatTicks)), 2),
    failoverElectionTimeoutsMax: round(
      samples.reduce((max, s) => Math.max(max, s.ticks / s.electionTicks), 0),
      3,
    ),
  };
}

/** The median (the mean of the middle two for an even count); 0 for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** What the stickiness check sees of a node. */
export interface HearingView {
  readonly id: NodeId;
  readonly up: boolean;
  readonly role: string;
  readonly term: number;
  /** starts of its core so far (1 after the first) */
  readonly incarnation: number;
  /** the leader the core follows (NONE after it took evidence its leader is gone) */
  readonly leaderId: NodeId;
  /** logical ticks the node has counted (all incarnations; none while down) */
  readonly ticks: number;
  /**
   * the last leader message it took: from whom, in which term, at which of
   * its ticks, in which incarnation (kept across a crash: the promise it made
   * outlives the process)
   */
  readonly heard: { leader: NodeId; term: number; at: number; incarnation: number } | null;
}

/**
 * How a voter stands towards a live leader as it answers a vote request:
 * `follows`: it took a message of a leader that is up and still leads its
 * term within the last election timeout of its own ticks, and its core
 * follows it (RaftNode must drop the request then, thesis §4.2.3);
 * `forgot`: the same, but its core forgot that leader (evidence it was gone:
 * a refusal, a lie when the leader is up); `restarted`: it took that message
 * before its core last started (the hold after a start must drop the
 * request, lib/raft/vote_hold.ts); null: it hears no live leader.
 */
export type Hearing = "follows" | "forgot" | "restarted" | null;

/** See {@link Hearing}. */
export function hearing(
  voter: HearingView,
  nodes: ReadonlyMap<NodeId, HearingView>,
  electionTicks: number,
): Hearing {
  const h = voter.heard;
  if (!voter.up || h === null || h.term !== voter.term || voter.ticks - h.at >= electionTicks) {
    return null;
  }
  const leader = nodes.get(h.leader);
  if (leader === undefined || !leader.up || leader.role !== "leader" || leader.term !== h.term) {
    return null;
  }
  if (h.incarnation !== voter.incarnation) return "restarted";
  if (voter.leaderId === h.leader) return "follows";
  return voter.leaderId === 0 ? "forgot" : null;
}

/**
 * Elections that deposed a live leader heard by one of the voters that
 * elected the winner: each grant (pre-vote or vote) is noted with the
 * voter's {@link Hearing}, and an election is judged by the grants its
 * winner got for its term.
 */
export class StickinessWatch {
  /** `${candidate}/${term}` → how the voters that granted stood */
  readonly #grants = new Map<string, { follows: boolean; forgot: boolean; restarted: boolean }>();

  /** `voter`, standing as `how`, granted `candidate` a (pre-)vote for `term`. */
  granted(candidate: NodeId, term: number, how: Hearing): void {
    if (how === null) return;
    const key = `${candidate}/${term}`;
    const g = this.#grants.get(key) ?? { follows: false, forgot: false, restarted: false };
    if (how === "follows") g.follows = true;
    else if (how === "restarted") g.restarted = true;
    else g.forgot = true;
    this.#grants.set(key, g);
  }

  /**
   * `leader` won `term`: how the voters it needed stood. Forgets the grants
   * of that term and earlier ones.
   *
   * @returns `follows` when a voter following a live leader granted (leader
   *   stickiness broken), else `restarted` when one that heard it before its
   *   restart did (the hold after a start broken), else `forgot` when one
   *   that heard it but took evidence it was gone did, else null
   */
  elected(leader: NodeId, term: number): Hearing {
    const g = this.#grants.get(`${leader}/${term}`);
    for (const key of this.#grants.keys()) {
      if (Number(key.slice(key.indexOf("/") + 1)) <= term) this.#grants.delete(key);
    }
    if (g === undefined) return null;
    return g.follows ? "follows" : g.restarted ? "restarted" : g.forgot ? "forgot" : null;
  }
}
