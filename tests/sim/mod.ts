/**
 * The deterministic Raft simulator: {@link runSeed} runs one seed of a fake
 * cluster (network, disks, clocks, crashes) against lib/raft and checks the
 * Raft safety properties after every step; `main.ts` is `deno task sim`.
 *
 * @module
 */

export { type RunOptions, type RunResult, runSeed, type RunStats, Simulation } from "./cluster.ts";
export {
  chainHash,
  entryKey,
  type LogView,
  type Property,
  SafetyChecker,
  Violation,
} from "./checker.ts";
export { type Envelope, type LinkConditions, Network, type SendOutcome } from "./network.ts";
export { deriveSeed, Rng } from "./rng.ts";
export {
  chooseScenario,
  type CrashPoint,
  type CrashTrigger,
  type ProfileName,
  PROFILES,
  type Scenario,
} from "./scenario.ts";
export { runSeeds, type SimSummary, violationReport } from "./main.ts";
