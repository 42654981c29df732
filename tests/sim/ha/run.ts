/**
 * Run the HA simulator for one seed or many.
 *
 * @module
 */

import { LIVENESS_BOUND_MS } from "./checker.ts";
import { scheduleFaults } from "./scenario.ts";
import { type PlantedBug, World, type WorldOptions } from "./world.ts";

/** The outcome of one seed. */
export interface HaRunResult {
  seed: number;
  nodes: number;
  synchronous: boolean;
  profile: "mixed" | "lease";
  violation: string | null;
  /** the last events before the end (or the violation) */
  trace: readonly string[];
  acknowledged: number;
  promotions: number;
  lostAsync: number;
  recoveryMs: number;
  switchoverGapsMs: number[];
  machineFailoverMs: number[];
  simulatedMs: number;
}

/** Options of {@link runHaSeed}: the world's, without the seed. */
export type HaRunOptions = Omit<WorldOptions, "seed">;

/** Run one seed to its end, or to its first violation. */
export function runHaSeed(seed: number, options: HaRunOptions = {}): HaRunResult {
  const world = new World({ seed, ...options });
  scheduleFaults(world);
  const end = world.faultMs + LIVENESS_BOUND_MS + 1_000;
  for (let t = 0; t < end; t++) {
    world.step();
    if (world.checker.violation !== null) break;
  }
  const stats = world.checker.stats;
  return {
    seed,
    nodes: world.nodeCount,
    synchronous: world.synchronous,
    profile: world.profile,
    violation: world.checker.violation,
    trace: world.traceLines(),
    acknowledged: stats.acknowledged,
    promotions: stats.promotions,
    lostAsync: stats.lostAsync,
    recoveryMs: stats.recoveryMs,
    switchoverGapsMs: stats.switchoverGapsMs,
    machineFailoverMs: stats.machineFailoverMs,
    simulatedMs: world.now(),
  };
}

/** A distribution's summary. */
export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  max: number;
}

function percentiles(values: number[]): Percentiles {
  const sorted = values.slice().sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { count: sorted.length, p50: at(0.5), p90: at(0.9), max: sorted[sorted.length - 1] ?? 0 };
}

/** Totals over many seeds. */
export interface HaSummary {
  seeds: number;
  violations: number;
  acknowledged: number;
  promotions: number;
  /** asynchronous runs: acknowledged commits lost at failovers */
  lostAsync: number;
  /** the longest time from healing to a writable primary (ms) */
  maxRecoveryMs: number;
  /** write unavailability of switchovers (ms): count, median, 90th percentile, max */
  switchoverGapMs: Percentiles;
  /** the primary's machine crashed → a writable primary again (ms) */
  machineFailoverMs: Percentiles;
  seconds: number;
  failedSeed?: number;
  violation?: string;
}

/**
 * Run `count` seeds from `start`, stopping at the first violation.
 *
 * @param now a clock for the figures (the caller's; the simulation reads none)
 */
export function runHaSeeds(
  start: number,
  count: number,
  options: HaRunOptions,
  now: () => number,
): { summary: HaSummary; failure: HaRunResult | null } {
  const began = now();
  const summary: HaSummary = {
    seeds: 0,
    violations: 0,
    acknowledged: 0,
    promotions: 0,
    lostAsync: 0,
    maxRecoveryMs: 0,
    switchoverGapMs: percentiles([]),
    machineFailoverMs: percentiles([]),
    seconds: 0,
  };
  const switchovers: number[] = [];
  const machines: number[] = [];
  let failure: HaRunResult | null = null;
  for (let seed = start; seed < start + count; seed++) {
    const result = runHaSeed(seed, options);
    summary.seeds++;
    summary.acknowledged += result.acknowledged;
    summary.promotions += result.promotions;
    summary.lostAsync += result.lostAsync;
    summary.maxRecoveryMs = Math.max(summary.maxRecoveryMs, result.recoveryMs);
    switchovers.push(...result.switchoverGapsMs);
    machines.push(...result.machineFailoverMs);
    if (result.violation !== null) {
      summary.violations++;
      summary.failedSeed = seed;
      summary.violation = result.violation;
      failure = result;
      break;
    }
  }
  summary.switchoverGapMs = percentiles(switchovers);
  summary.machineFailoverMs = percentiles(machines);
  summary.seconds = Math.round((now() - began) / 10) / 100;
  return { summary, failure };
}

/** A violation for people: the seed, the property, the last events, how to replay. */
export function haViolationReport(result: HaRunResult, bugs: readonly PlantedBug[] = []): string {
  const planted = (result.profile === "lease" ? " --profile lease" : "") +
    (bugs.length > 0 ? ` --bug ${bugs.join(",")}` : "");
  return [
    `HA VIOLATION in seed ${result.seed} (${result.nodes} nodes, ` +
    `${result.synchronous ? "synchronous" : "asynchronous"} replication)`,
    `  ${result.violation}`,
    `last ${result.trace.length} events:`,
    ...result.trace.map((line) => `  ${line}`),
    `replay with: SEED=${result.seed} deno run --allow-env=SEED tests/sim/ha/main.ts${planted}`,
  ].join("\n");
}
