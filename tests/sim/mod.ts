/**
 * The deterministic Raft simulator: {@link runSeed} runs one seed of a fake
 * cluster (network, disks with torn saves and bit flips, clocks, crashes)
 * against lib/raft and checks the Raft safety properties after every step;
 * `main.ts` is `deno task sim`.
 *
 * @module
 */

export {
  type DriverBugs,
  type RunOptions,
  type RunResult,
  runSeed,
  type RunStats,
  Simulation,
} from "./cluster.ts";
export {
  CorruptRecordError,
  type CrashOutcome,
  decodeStateMachine,
  Disk,
  encodeStateMachine,
  type StateMachine,
} from "./disk.ts";
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
