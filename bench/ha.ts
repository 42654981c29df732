/**
 * High availability under load (`pgraft.manage_postgres = on`): a 3-node
 * cluster laid out as `pgraft dev --ha` lays it out (heartbeat 100 ms,
 * election timeout 1 s, synchronous replication), a writer through the
 * multi-host rule and a prober checking every 100 ms that at most one server
 * accepts writes. Rounds, one after another on the same cluster:
 *
 * - switchover: `pgraft_transfer_leadership(N)` on the primary, to the next
 *   node in turn, until the old primary streams from the new one;
 * - failover: kill -9 of the primary's agent and postmaster together (its
 *   machine dies), until the restarted node streams from the new primary
 *   (rewound).
 *
 * Each round reports the write gap (the longest time without an
 * acknowledged write), when writes were acknowledged again after the fault,
 * acknowledged commits missing on the new primary, and the most servers
 * writable at one probe. Skipped when the PostgreSQL installation lacks the
 * programs HA needs (the embedded package ships none).
 *
 * @module
 */

import { missingSupervisorPrograms } from "../lib/postgres/programs.ts";
import {
  type FaultOutcome,
  faultRound,
  type HaCluster,
  withHaCluster,
} from "../tests/helpers/ha_cluster.ts";
import { ensurePgBinaries } from "../tests/helpers/pg.ts";
import { median, progress } from "./stats.ts";

/** What `pgraft dev --ha` and this benchmark configure (lib/cli/dev_ha.ts). */
export const HA_ELECTION_MS = 1_000;

type Round = Omit<FaultOutcome, "violations"> & { round: number; from: number };

function summary(rounds: Round[]): Record<string, unknown> {
  const gaps = rounds.map((r) => r.longestGapMs);
  const again = rounds.map((r) => r.writesAgainMs);
  const orNull = (x: number) => Number.isFinite(x) ? x : null;
  return {
    rounds: rounds.length,
    gap_median_ms: orNull(median(gaps)),
    gap_max_ms: orNull(Math.max(...gaps)),
    writes_again_median_ms: orNull(median(again)),
    writes_again_max_ms: orNull(Math.max(...again)),
    lost_acknowledged: rounds.reduce((n, r) => n + r.lost.length, 0),
    most_writable_at_one_probe: Math.max(0, ...rounds.map((r) => r.mostWritable)),
    runs: rounds,
  };
}

async function round(
  cluster: HaCluster,
  name: string,
  index: number,
  primary: number,
  fault: () => Promise<void>,
  heal: (newPrimary: number) => Promise<void>,
): Promise<Round> {
  const survivors = cluster.nodes.map((n) => n.id).filter((id) => id !== primary);
  const { violations: _, ...outcome } = await faultRound(cluster, {
    table: `bench_${name}_${index}`,
    primary,
    fault,
    survivors,
    heal,
  });
  progress(`ha.${name} round ${index}: gap ${outcome.longestGapMs} ms, node ${outcome.newPrimary}`);
  return { round: index, from: primary, ...outcome };
}

/** Run the HA rounds; `quick`: one of each. */
export async function haBench(options: { quick: boolean }): Promise<Record<string, unknown>> {
  const missing = await missingSupervisorPrograms(await ensurePgBinaries());
  if (missing !== null) return { skipped: missing };
  const rounds = options.quick ? 1 : 3;
  return await withHaCluster({ nodes: 3 }, async (cluster) => {
    const bootstrapStarted = performance.now();
    await cluster.bootstrap();
    const bootstrapMs = Math.round(performance.now() - bootstrapStarted);
    let primary = 1;
    const next = (id: number) => (id % cluster.nodes.length) + 1;

    const switchovers: Round[] = [];
    for (let i = 1; i <= rounds; i++) {
      const target = next(primary);
      const from = primary;
      const r = await round(cluster, "switchover", i, from, async () => {
        await cluster.sql(from, `select pgraft_transfer_leadership(${target})`);
      }, async (newPrimary) => {
        for (const n of cluster.nodes) {
          if (n.id !== newPrimary) await cluster.waitStreaming(n.id, newPrimary, 60_000);
        }
      });
      switchovers.push(r);
      primary = r.newPrimary;
    }

    const failovers: Round[] = [];
    for (let i = 1; i <= rounds; i++) {
      const from = primary;
      const r = await round(cluster, "failover", i, from, async () => {
        await cluster.stopAgent(from, "SIGKILL");
        await cluster.killServer(from);
      }, async (newPrimary) => {
        cluster.startAgent(from);
        for (const n of cluster.nodes) {
          if (n.id !== newPrimary) await cluster.waitStreaming(n.id, newPrimary, 60_000);
        }
      });
      failovers.push(r);
      primary = r.newPrimary;
    }
    return {
      nodes: cluster.nodes.length,
      heartbeat_ms: 100,
      election_timeout_ms: HA_ELECTION_MS,
      synchronous_replication: true,
      bootstrap_ms: bootstrapMs,
      switchover: summary(switchovers),
      failover_machine_dies: summary(failovers),
    };
  });
}
