/**
 * The HA simulator from the command line:
 *
 *   deno run tests/sim/ha/main.ts --seeds 200 [--seed-start 1]
 *   deno run --allow-env=SEED tests/sim/ha/main.ts --seed 42     (or SEED=42 …)
 *   … --nodes 3|5 --async|--sync --profile mixed|lease --bug fence_too_late[,…]
 *
 * Many seeds end with one JSON line of figures; a violation prints the seed,
 * the property, the last events and how to replay it, and exits 1. One seed
 * prints its figures and its last events.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { haViolationReport, runHaSeed, runHaSeeds } from "./run.ts";
import type { PlantedBug, WorldOptions } from "./world.ts";

const BUGS: readonly PlantedBug[] = [
  "promote_without_collecting",
  "fence_too_late",
  "lease_without_drift_margin",
  "promote_before_commit",
  "one_sided_drift_margin",
  "no_vote_hold_after_restart",
];

function seedFromEnv(): string | undefined {
  try {
    return Deno.env.get("SEED");
  } catch {
    return undefined; // no --allow-env: only the flags count
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seeds: { type: "string" },
      "seed-start": { type: "string" },
      seed: { type: "string" },
      nodes: { type: "string" },
      sync: { type: "boolean" },
      async: { type: "boolean" },
      bug: { type: "string" },
      "fault-ms": { type: "string" },
      profile: { type: "string" },
    },
  });
  const bugs = (values.bug ?? "").split(",").filter((b) => b !== "") as PlantedBug[];
  for (const bug of bugs) {
    if (!BUGS.includes(bug)) {
      console.error(`unknown bug ${bug}; one of ${BUGS.join(", ")}`);
      Deno.exit(2);
    }
  }
  const options: Omit<WorldOptions, "seed"> = { bugs };
  if (values.nodes !== undefined) options.nodes = Number(values.nodes);
  if (values.sync) options.synchronous = true;
  if (values.async) options.synchronous = false;
  if (values["fault-ms"] !== undefined) options.faultMs = Number(values["fault-ms"]);
  if (values.profile === "lease" || values.profile === "mixed") options.profile = values.profile;

  const one = values.seed ?? seedFromEnv();
  if (one !== undefined) {
    const result = runHaSeed(Number(one), options);
    if (result.violation !== null) {
      console.log(haViolationReport(result, bugs));
      Deno.exit(1);
    }
    console.log(result.trace.join("\n"));
    const { trace: _trace, ...figures } = result;
    console.log(JSON.stringify(figures));
  } else {
    const count = Number(values.seeds ?? "50");
    const start = Number(values["seed-start"] ?? "1");
    const { summary, failure } = runHaSeeds(start, count, options, () => performance.now());
    if (failure !== null) console.log(haViolationReport(failure, bugs));
    console.log(JSON.stringify(summary));
    if (failure !== null) Deno.exit(1);
  }
}
