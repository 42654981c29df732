/**
 * Fault schedules: each seed picks a profile (a family of faults aimed at one
 * kind of bug) and draws its parameters. Probabilities are per tick.
 *
 * @module
 */

import type { Rng } from "./rng.ts";

/**
 * The profiles:
 * - `mixed`: a bit of everything (partitions, crashes, membership, transfers…).
 * - `leader_churn`: Figure 8 of the paper — leaders crash soon after winning,
 *   entries replicate one at a time, so old-term entries sit on some nodes.
 * - `vote_crash`: concurrent elections; voters crash around persisting their vote.
 * - `lagging`: one node is cut off while the others commit, then rejoins as
 *   the leader goes away.
 * - `leader_crash`: the failover figure. Timing like the agent's (a heartbeat
 *   of several ticks, messages faster than a tick, an election timeout of
 *   10–12 heartbeats); only the leader of a steady cluster crashes, and
 *   connections to it are refused while it is down (and, rarely, when not).
 *   Drawn only when refusals are modelled (or asked for by name).
 */
export type ProfileName = "mixed" | "leader_churn" | "vote_crash" | "lagging" | "leader_crash";

/** Every profile. */
export const PROFILES: readonly ProfileName[] = [
  "mixed",
  "leader_churn",
  "vote_crash",
  "lagging",
  "leader_crash",
];

/** How often seeds get `leader_crash` when refusals are modelled. */
const LEADER_CRASH_SHARE = 0.1;

/** Where in the handling of a Ready an armed crash strikes. */
export type CrashPoint =
  /** messagesBeforePersist went out; nothing became durable */
  | "before_persist"
  /**
   * the Ready's record is written but not synced: it is kept whole or cut
   * off whole (`pUnsyncedKept`); the Ready's messages are not sent
   */
  | "before_sync"
  /** durable, but the Ready's messages are lost */
  | "after_persist"
  /** durable and sent, but the committed entries are not applied */
  | "before_apply";

/**
 * Which Ready an armed crash waits for:
 * - `any`: the next one that has something to lose;
 * - `vote`: one that grants a vote (makes a vote durable);
 * - `commit`: a leader's Ready applying committed entries of earlier terms;
 * - `elected`: the first Ready of a new leader.
 */
export type CrashTrigger = "any" | "vote" | "commit" | "elected";

/** How often seeds get each profile (Figure 8 needs the most tries). */
const PROFILE_DRAW: readonly ProfileName[] = [
  "mixed",
  "mixed",
  "mixed",
  "leader_churn",
  "leader_churn",
  "leader_churn",
  "vote_crash",
  "vote_crash",
  "lagging",
  "lagging",
];

/** Everything a seed's run is made of. */
export interface Scenario {
  profile: ProfileName;
  nodes: number;
  heartbeatTicks: number;
  electionTicks: number;
  electionJitterTicks: number;
  appendBatchSize: number;
  maxInflight: number;
  snapshotThreshold: number;
  /** ticks of faults before everything heals */
  faultTicks: number;
  lossRate: number;
  duplicateRate: number;
  /** smallest message delay in ticks (0: later in the same tick) */
  delayMinTicks: number;
  delayMaxTicks: number;
  /** per node: logical ticks per simulated tick (0.5–1.5) */
  tickRates: number[];
  pPropose: number;
  pCrash: number;
  pCrashLeader: number;
  /**
   * probability per tick the leader crashes when the cluster is steady: every
   * node up, no failover under way, the leader in office an election timeout
   */
  pCrashSteadyLeader: number;
  /** probability of arming a crash at a point in the next Ready of a node */
  pArmCrash: number;
  /** which Readies an armed crash waits for (one is drawn per arming) */
  armTriggers: CrashTrigger[];
  /** the crash points an arming draws from */
  armPoints: CrashPoint[];
  /** probability a new leader crashes in its first Ready (before persisting) */
  pCrashOnElected: number;
  /** probability a leader crashes in a Ready that commits entries of earlier terms */
  pCrashOnCommit: number;
  downTicksMax: number;
  pPartition: number;
  pHeal: number;
  pAddNode: number;
  pRemoveNode: number;
  pTransfer: number;
  pFailoverPause: number;
  pReadIndex: number;
  pRetune: number;
  /** how long one node stays cut off in the `lagging` profile */
  lagTicks: number;
  /**
   * the disk faults below are on (and `before_sync` is among `armPoints`);
   * off, a seed runs exactly as before the disk was modelled
   */
  diskFaults: boolean;
  /** probability a save written but not synced when its node crashes is kept whole */
  pUnsyncedKept: number;
  /**
   * probability a crash also flips a bit in a record before the tail of the
   * node's disk (at most one node per run): it refuses to start, for good
   */
  pBitFlip: number;
  /** probability per tick an operator acts to replace a node that refused to start */
  pReplaceFailed: number;
  /**
   * refused connections are modelled (a crashed or restarting node's agent
   * refuses them, followers probe a leader whose heartbeats they missed and
   * report refusals to the core); off, a seed runs exactly as before they were
   */
  refusals: boolean;
  /** probability a connection to a listening node is refused anyway (a lie) */
  refuseRate: number;
  /** a restarted node's agent listens only after 0 to this many ticks */
  restartDeafTicksMax: number;
}

/** Generators of fault families drawn apart from the rest; a family is off without its own. */
export interface FaultStreams {
  /** torn saves and bit flips */
  disk?: Rng;
  /** refused connections, true and lying, and the `leader_crash` profile among random ones */
  refusals?: Rng;
}

/** Options that override what the seed would choose. */
export interface ScenarioOverrides {
  nodes?: number;
  profile?: ProfileName;
  faultTicks?: number;
}

/**
 * Draw the scenario of a seed.
 *
 * @param rng the seed's generator
 * @param overrides what the caller fixes instead of the seed
 * @param faults generators of the fault families to turn on (each of its
 *   own, so turning one off leaves every other draw as it was)
 * @returns the scenario
 * @example
 * ```ts
 * const s = chooseScenario(new Rng(1), { nodes: 3 }, { disk: new Rng(2) });
 * console.assert(s.nodes === 3 && s.armPoints.includes("before_sync") && !s.refusals);
 * ```
 */
export function chooseScenario(
  rng: Rng,
  overrides: ScenarioOverrides = {},
  faults: FaultStreams = {},
): Scenario {
  const refusalRng = faults.refusals;
  const profile = overrides.profile ??
    (refusalRng?.chance(LEADER_CRASH_SHARE) ? "leader_crash" : rng.pick(PROFILE_DRAW));
  const nodes = overrides.nodes ?? (rng.chance(0.5) ? 3 : 5);
  const base: Scenario = {
    profile,
    nodes,
    heartbeatTicks: rng.range(1, 3),
    electionTicks: 10,
    electionJitterTicks: rng.range(3, 10),
    appendBatchSize: rng.pick([1, 2, 4, 16, 64]),
    maxInflight: rng.pick([1, 2, 4, 16]),
    snapshotThreshold: rng.pick([20, 30, 50, 100000]),
    faultTicks: overrides.faultTicks ?? rng.range(400, 800),
    lossRate: rng.pick([0, 0.01, 0.05, 0.15]),
    duplicateRate: rng.pick([0, 0.02, 0.1]),
    delayMinTicks: 1,
    delayMaxTicks: rng.range(1, 5),
    tickRates: [],
    pPropose: rng.pick([0.1, 0.3, 0.6]),
    pCrash: 0.004,
    pCrashLeader: 0.004,
    pCrashSteadyLeader: 0,
    pArmCrash: 0.01,
    armTriggers: ["any"],
    armPoints: ["before_persist", "after_persist", "before_apply"],
    pCrashOnElected: 0,
    pCrashOnCommit: 0,
    downTicksMax: 40,
    pPartition: 0.008,
    pHeal: 0.02,
    pAddNode: 0.004,
    pRemoveNode: 0.004,
    pTransfer: 0.004,
    pFailoverPause: 0.002,
    pReadIndex: 0.02,
    pRetune: 0.001,
    lagTicks: 0,
    diskFaults: false,
    pUnsyncedKept: 0,
    pBitFlip: 0,
    pReplaceFailed: 0,
    refusals: false,
    refuseRate: 0,
    restartDeafTicksMax: 0,
  };
  switch (profile) {
    case "mixed":
      break;
    case "leader_churn":
      Object.assign(base, {
        // Figure 8 needs three nodes more than five.
        nodes: overrides.nodes ?? (rng.chance(0.8) ? 3 : 5),
        faultTicks: overrides.faultTicks ?? rng.range(1000, 1500),
        appendBatchSize: rng.pick([1, 1, 2]),
        maxInflight: rng.pick([1, 2]),
        lossRate: rng.pick([0.1, 0.2, 0.3]),
        pCrash: 0.004,
        pCrashLeader: rng.pick([0.1, 0.15, 0.2]),
        downTicksMax: 25,
        pPartition: 0.004,
        pArmCrash: 0.01,
        pCrashOnElected: rng.pick([0.1, 0.2, 0.3]),
        pCrashOnCommit: rng.pick([0.3, 0.5, 0.7]),
        pAddNode: 0,
        pRemoveNode: 0,
        pFailoverPause: 0,
        pTransfer: 0.01,
      });
      break;
    case "vote_crash":
      Object.assign(base, {
        heartbeatTicks: rng.range(1, 2),
        electionJitterTicks: rng.range(1, 3),
        delayMaxTicks: rng.range(2, 6),
        pCrashLeader: rng.pick([0.02, 0.04]),
        pArmCrash: 0.1,
        armTriggers: ["vote"],
        armPoints: ["before_persist", "before_persist", "after_persist"],
        downTicksMax: 3,
        pPartition: 0.004,
        pAddNode: 0,
        pRemoveNode: 0,
        pFailoverPause: 0,
      });
      break;
    case "lagging":
      Object.assign(base, {
        lagTicks: rng.range(30, 120),
        pCrash: 0.002,
        pCrashLeader: 0,
        pPartition: 0,
        pPropose: rng.pick([0.3, 0.6, 0.9]),
        pAddNode: 0.001,
        pRemoveNode: 0.001,
        pFailoverPause: 0,
        pTransfer: 0.002,
      });
      break;
    case "leader_crash":
      Object.assign(base, chooseLeaderCrash(rng, overrides));
      break;
  }
  for (let i = 0; i < base.nodes + 4; i++) {
    // leader_crash: clocks as steady as real ones, phases drifting a little.
    base.tickRates.push(
      rng.chance(0.5)
        ? 1
        : profile === "leader_crash"
        ? 0.95 + 0.1 * rng.float()
        : 0.5 + rng.float(),
    );
  }
  if (faults.disk !== undefined) Object.assign(base, chooseDiskFaults(faults.disk, base));
  if (refusalRng !== undefined) Object.assign(base, chooseRefusals(refusalRng, base));
  return base;
}

/**
 * `leader_crash`: the agent's proportions (heartbeat 75 ms at a 10 ms tick is
 * 8 ticks, election timeout 900 ms is 12 heartbeats; loopback messages take
 * well under a tick). Nothing crashes but a steady cluster's leader, which
 * stays down long enough to be missed or comes back at once.
 */
function chooseLeaderCrash(rng: Rng, overrides: ScenarioOverrides): Partial<Scenario> {
  const heartbeatTicks = rng.range(4, 8);
  const electionTicks = heartbeatTicks * rng.pick([10, 12]);
  return {
    heartbeatTicks,
    electionTicks,
    electionJitterTicks: Math.round(electionTicks / 4),
    faultTicks: overrides.faultTicks ?? rng.range(1200, 2000),
    lossRate: rng.pick([0, 0, 0.01]),
    duplicateRate: rng.pick([0, 0.02]),
    delayMinTicks: 0,
    delayMaxTicks: 1,
    pCrash: 0,
    pCrashLeader: 0,
    pCrashSteadyLeader: 1 / (2 * electionTicks),
    downTicksMax: 3 * electionTicks,
    pArmCrash: 0,
    pPartition: 0,
    pAddNode: 0,
    pRemoveNode: 0,
    pTransfer: 0,
    pFailoverPause: 0,
  };
}

/**
 * Refused connections: a restarted agent listens after a few ticks (its
 * refusals then are lies of a node that is only restarting), and a listening
 * node's connection is refused now and then (`leader_crash` lies more, to
 * show that lies depose no leader that a quorum hears).
 */
function chooseRefusals(rng: Rng, s: Scenario): Partial<Scenario> {
  const leaderCrash = s.profile === "leader_crash";
  return {
    refusals: true,
    refuseRate: leaderCrash ? rng.pick([0.005, 0.01, 0.02]) : rng.pick([0, 0.001, 0.01]),
    restartDeafTicksMax: leaderCrash ? 2 * s.heartbeatTicks : rng.pick([0, 2, 5]),
  };
}

/**
 * The disk's faults for a scenario. Bit flips stay rare, and off in
 * `leader_churn` (Figure 8 wants all three nodes of its small clusters) and
 * `leader_crash` (a node lost for good is no failover to measure).
 */
function chooseDiskFaults(rng: Rng, s: Scenario): Partial<Scenario> {
  const pBitFlip = s.profile === "leader_churn" || s.profile === "leader_crash"
    ? 0
    : s.profile === "vote_crash"
    ? rng.pick([0, 0.002])
    : rng.pick([0, 0.01, 0.03]);
  return {
    diskFaults: true,
    armPoints: [...s.armPoints, "before_sync"],
    pUnsyncedKept: rng.pick([0.2, 0.5, 0.8]),
    pBitFlip,
    pReplaceFailed: pBitFlip > 0 ? rng.pick([0, 0.01, 0.05]) : 0,
  };
}
