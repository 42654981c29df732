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
 */
export type ProfileName = "mixed" | "leader_churn" | "vote_crash" | "lagging";

/** Every profile. */
export const PROFILES: readonly ProfileName[] = ["mixed", "leader_churn", "vote_crash", "lagging"];

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
  delayMaxTicks: number;
  /** per node: logical ticks per simulated tick (0.5–1.5) */
  tickRates: number[];
  pPropose: number;
  pCrash: number;
  pCrashLeader: number;
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
 * @param diskRng draws the disk faults (a generator of its own, so turning
 *   them off leaves every other draw as it was); null: no disk faults
 * @returns the scenario
 * @example
 * ```ts
 * const s = chooseScenario(new Rng(1), { nodes: 3 }, new Rng(2));
 * console.assert(s.nodes === 3 && s.armPoints.includes("before_sync"));
 * ```
 */
export function chooseScenario(
  rng: Rng,
  overrides: ScenarioOverrides = {},
  diskRng: Rng | null = null,
): Scenario {
  const profile = overrides.profile ?? rng.pick(PROFILE_DRAW);
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
    delayMaxTicks: rng.range(1, 5),
    tickRates: [],
    pPropose: rng.pick([0.1, 0.3, 0.6]),
    pCrash: 0.004,
    pCrashLeader: 0.004,
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
  }
  for (let i = 0; i < base.nodes + 4; i++) {
    base.tickRates.push(rng.chance(0.5) ? 1 : 0.5 + rng.float());
  }
  if (diskRng !== null) Object.assign(base, chooseDiskFaults(diskRng, base));
  return base;
}

/**
 * The disk's faults for a scenario. Bit flips stay rare, and off in
 * `leader_churn` (Figure 8 wants all three nodes of its small clusters).
 */
function chooseDiskFaults(rng: Rng, s: Scenario): Partial<Scenario> {
  const pBitFlip = s.profile === "leader_churn"
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
