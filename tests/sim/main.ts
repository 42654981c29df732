/**
 * `deno task sim`: run the deterministic Raft simulator over many seeds, or
 * replay one seed verbosely.
 *
 *   deno task sim --seeds 1000 --seed-start 1
 *   deno task sim --seed 42          (or SEED=42 deno task sim)
 *   deno task sim --seeds 500 --profile leader_crash --no-refusals
 *
 * Many seeds end with one JSON line of figures; a violation prints the seed,
 * the property, the last events and how to replay it, and exits 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type RunOptions, type RunResult, runSeed } from "./cluster.ts";
import { type FailoverFigures, failoverFigures, type FailoverSample } from "./failover.ts";
import { type ProfileName, PROFILES } from "./scenario.ts";

/**
 * Totals over many seeds (the final JSON line). The failover figures cover
 * every failover timed (a steady cluster's leader crashed, nothing else
 * happened until the next election), whatever the seed's timing: compare
 * them across runs of one profile (`--profile leader_crash`).
 */
export interface SimSummary extends FailoverFigures {
  seeds: number;
  violations: number;
  elections: number;
  committed: number;
  ticks: number;
  crashes: number;
  /** crashes that found a save written but unsynced, and kept it whole */
  tornSavesKept: number;
  /** crashes that found a save written but unsynced, and cut it off */
  tornSavesLost: number;
  /** records corrupted by a bit flip */
  bitFlips: number;
  /** restarts refused because of a corrupt record (those nodes stay down) */
  refusedStarts: number;
  /** nodes that refused to start, replaced by a new node */
  replacedNodes: number;
  delivered: number;
  /** probes of a leader whose heartbeats a follower missed */
  probes: number;
  /** refused connections reported to a follower's core */
  refusals: number;
  /** refusals the core acted on */
  refusalsActed: number;
  /** of those, lies (the refusing node was up and listening) */
  liesActed: number;
  /** probes answered "not leader of your term" (a restarted leader) that a core acted on */
  answersActed: number;
  /** elections won with a grant from a voter a lie made forget a live leader it heard */
  electionsByLie: number;
  /** elections won with a grant from a voter that still followed a live leader: must be 0 */
  electionsDespiteStickiness: number;
  /**
   * elections won with a grant from a voter that heard a live leader within
   * an election timeout before its restart: must be 0 (lib/raft/vote_hold.ts)
   */
  electionsDespiteRestartHold: number;
  seconds: number;
  seedsPerSecond: number;
  failedSeed?: number;
  property?: string;
}

/** Format a violation report for people. */
export function violationReport(result: RunResult): string {
  const v = result.violation;
  if (v === null) return "";
  const s = result.stats;
  return [
    `VIOLATION in seed ${s.seed} (profile ${s.profile}, ${s.nodes} nodes) at t=${s.ticks}`,
    `  ${v.message}`,
    `last ${result.trace.length} events:`,
    ...result.trace.map((line) => `  ${line}`),
    `replay with: SEED=${s.seed} deno task sim   (or: deno task sim --seed ${s.seed})`,
  ].join("\n");
}

/**
 * Run `count` seeds from `start`, stopping at the first violation.
 *
 * @returns the totals and the failing result, if any
 */
export function runSeeds(
  start: number,
  count: number,
  options: RunOptions = {},
): { summary: SimSummary; failure: RunResult | null } {
  const began = performance.now();
  const summary: SimSummary = {
    seeds: 0,
    violations: 0,
    elections: 0,
    committed: 0,
    ticks: 0,
    crashes: 0,
    tornSavesKept: 0,
    tornSavesLost: 0,
    bitFlips: 0,
    refusedStarts: 0,
    replacedNodes: 0,
    delivered: 0,
    probes: 0,
    refusals: 0,
    refusalsActed: 0,
    liesActed: 0,
    answersActed: 0,
    electionsByLie: 0,
    electionsDespiteStickiness: 0,
    electionsDespiteRestartHold: 0,
    ...failoverFigures([]),
    seconds: 0,
    seedsPerSecond: 0,
  };
  const failovers: FailoverSample[] = [];
  let failure: RunResult | null = null;
  for (let seed = start; seed < start + count; seed++) {
    const result = runSeed(seed, options);
    summary.seeds++;
    summary.elections += result.stats.elections;
    summary.committed += result.stats.committed;
    summary.ticks += result.stats.ticks;
    summary.crashes += result.stats.crashes;
    summary.tornSavesKept += result.stats.tornSavesKept;
    summary.tornSavesLost += result.stats.tornSavesLost;
    summary.bitFlips += result.stats.bitFlips;
    summary.refusedStarts += result.stats.refusedStarts;
    summary.replacedNodes += result.stats.replacedNodes;
    summary.delivered += result.stats.delivered;
    summary.probes += result.stats.probes;
    summary.refusals += result.stats.refusals;
    summary.refusalsActed += result.stats.refusalsActed;
    summary.liesActed += result.stats.liesActed;
    summary.answersActed += result.stats.answersActed;
    summary.electionsByLie += result.stats.electionsByLie;
    summary.electionsDespiteStickiness += result.stats.electionsDespiteStickiness;
    summary.electionsDespiteRestartHold += result.stats.electionsDespiteRestartHold;
    failovers.push(...result.stats.failovers);
    if (result.violation !== null) {
      summary.violations++;
      summary.failedSeed = seed;
      summary.property = result.violation.property;
      failure = result;
      break;
    }
  }
  Object.assign(summary, failoverFigures(failovers));
  summary.seconds = Math.round((performance.now() - began) / 10) / 100;
  summary.seedsPerSecond = Math.round(summary.seeds / Math.max(summary.seconds, 0.01) * 10) / 10;
  return { summary, failure };
}

function envSeed(): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: "SEED" }).state !== "granted") {
      return undefined;
    }
    return Deno.env.get("SEED");
  } catch {
    return undefined;
  }
}

function parseCount(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`--${name} must be a non-negative integer, got "${text}"`);
  }
  return n;
}

/** The CLI; returns the exit code. */
export function main(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: {
      seeds: { type: "string" },
      "seed-start": { type: "string" },
      seed: { type: "string" },
      nodes: { type: "string" },
      profile: { type: "string" },
      "no-refusals": { type: "boolean" },
      quiet: { type: "boolean" },
    },
    strict: true,
  });
  const options: RunOptions = {};
  if (values["no-refusals"]) options.refusals = false;
  if (values.nodes !== undefined) {
    const nodes = parseCount("nodes", values.nodes, 3);
    if (nodes !== 3 && nodes !== 5) throw new RangeError(`--nodes must be 3 or 5, got ${nodes}`);
    options.nodes = nodes;
  }
  if (values.profile !== undefined) {
    if (!PROFILES.includes(values.profile as ProfileName)) {
      throw new RangeError(`--profile must be one of ${PROFILES.join(", ")}`);
    }
    options.profile = values.profile as ProfileName;
  }
  const single = values.seed ?? (values.seeds === undefined ? envSeed() : undefined);
  if (single !== undefined) {
    const seed = parseCount("seed", single, 0);
    const result = runSeed(seed, {
      ...options,
      print: values.quiet ? undefined : (line) => console.log(line),
    });
    if (result.violation !== null) {
      console.error(violationReport(result));
      return 1;
    }
    console.log(JSON.stringify({ ...result.stats, violations: 0 }));
    return 0;
  }
  const count = parseCount("seeds", values.seeds, 100);
  const start = parseCount("seed-start", values["seed-start"], 1);
  const { summary, failure } = runSeeds(start, count, options);
  if (failure !== null) console.error(violationReport(failure));
  console.log(JSON.stringify(summary));
  return failure === null ? 0 : 1;
}

if (import.meta.main) {
  try {
    Deno.exit(main(Deno.args));
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    Deno.exit(2);
  }
}
