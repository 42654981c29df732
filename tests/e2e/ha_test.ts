/**
 * High availability end to end (`pgraft.manage_postgres = on`): three agents
 * run three real PostgreSQL servers on loopback. Bootstrap (node 1 initialized
 * by the operator, `pgraft_init()`), the other members cloned from it and
 * streaming; then failures (kill -9, SIGSTOP, a partition of the agents, a
 * switchover), each checked for lost acknowledged commits and for two
 * writable servers at once.
 */

import assert from "node:assert/strict";
import { poll } from "../../lib/async.ts";
import {
  type FaultOutcome,
  faultRound,
  type HaCluster,
  HOST,
  waitPrimary,
  withHaCluster,
} from "../helpers/ha_cluster.ts";
import { Partitioner } from "../helpers/tcp_proxy.ts";

/** Where the partition test's proxies listen (the agents listen on HOST). */
const PROXY_HOST = "127.0.0.2";

Deno.test({
  name: "HA bootstrap: node 1 runs the primary, the added members are cloned and stream from it",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withHaCluster({ nodes: 3 }, async (cluster) => {
      await cluster.bootstrap();
      assert.equal(await cluster.writable(1), true);
      assert.equal(await cluster.writable(2), false);
      assert.equal(await cluster.writable(3), false);
      await cluster.sql(1, "create table t (id int primary key)");
      await cluster.sql(1, "insert into t select generate_series(1, 100)");
      for (const id of [2, 3]) {
        await poll(async () => {
          const [row] = await cluster.sql<{ n: number }[]>(id, "select count(*)::int as n from t");
          return row!.n === 100;
        }, { timeoutMs: 10_000, intervalMs: 50, ignoreErrors: true, what: `node ${id} to replay` });
      }
      // Load balancers' health checks, as Patroni answers them.
      await poll(async () => (await cluster.agentGet(1, "/primary"))?.status === 200, {
        timeoutMs: 5_000,
        intervalMs: 50,
        what: "node 1 to answer 200 on /primary",
      });
      for (const id of [2, 3]) {
        assert.equal((await cluster.agentGet(id, "/primary"))?.status, 503);
        await poll(async () => (await cluster.agentGet(id, "/replica?lag=16MB"))?.status === 200, {
          timeoutMs: 5_000,
          intervalMs: 50,
          what: `node ${id} to answer 200 on /replica?lag=16MB`,
        });
        assert.equal((await cluster.agentGet(id, "/read-only"))?.status, 200);
      }
      assert.equal((await cluster.agentGet(1, "/replica"))?.status, 503);
      const head = await fetch(`http://127.0.0.1:${cluster.node(1).agentPort}/primary`, {
        method: "HEAD",
      });
      assert.equal(head.status, 200);
      assert.equal(await head.text(), "");
      // Every monitoring function answers on a standby, for the node it runs on.
      await poll(async () => {
        const rows = await cluster.sql<{ node_id: number; pg_role: string }[]>(
          2,
          "select node_id, pg_role from pgraft_get_nodes() order by node_id",
        );
        return rows.map((r) => `${r.node_id}:${r.pg_role}`).join(",") ===
          "1:primary,2:standby,3:standby";
      }, { timeoutMs: 10_000, intervalMs: 100, what: "node 2 to show every member's pg_role" });
      const [me] = await cluster.sql<{ node_id: number; leader: boolean; primary_id: number }[]>(
        2,
        `select s.node_id, pgraft_is_leader() as leader, s.primary_id
           from pgraft_get_cluster_status() s`,
      );
      assert.deepEqual(me, { node_id: 2, leader: false, primary_id: 1 });
      await assert.rejects(
        cluster.sql(2, "select pgraft_set_config('failover_enabled', 'off')"),
        (e: Error & { code?: string; hint?: string }) =>
          e.code === "25006" && /node 1 at 127\.0\.0\.1:\d+/.test(e.hint ?? ""),
      );
      // The standbys' own events reach pgraft_get_events() through the primary's agent.
      await poll(async () => {
        const rows = await cluster.sql<{ node_id: number }[]>(
          1,
          "select node_id from pgraft_get_events() where event_type = 'postgres_cloned'",
        );
        return new Set(rows.map((r) => r.node_id)).size === 2;
      }, { timeoutMs: 10_000, intervalMs: 100, what: "the standbys' postgres_cloned events" });
      const [sync] = await cluster.sql<{ names: string }[]>(
        1,
        "select current_setting('synchronous_standby_names') as names",
      );
      assert.match(sync!.names, /^ANY 1 \(pgraft_node_2, pgraft_node_3\)$/);
    });
  },
});

/**
 * One fault under a writer and a prober (helpers' faultRound, node 1 the
 * primary before it): no acknowledged commit may be missing on the new
 * primary, no probe may see two writable servers, and the write gap stays
 * within `gapMaxMs`.
 */
async function scenario(
  cluster: HaCluster,
  options: {
    name: string;
    fault: () => Promise<void>;
    survivors: number[];
    heal?: (primary: number) => Promise<void>;
    /** bound on the write gap, ms */
    gapMaxMs: number;
  },
): Promise<FaultOutcome> {
  const outcome = await faultRound(cluster, { ...options, table: "writes", primary: 1 });
  const { lost, violations, ...figures } = outcome;
  console.log(JSON.stringify({ scenario: options.name, ...figures }));
  assert.deepEqual(lost, [], "acknowledged commits missing on the new primary");
  assert.equal(outcome.mostWritable, 1, `two writable servers: ${JSON.stringify(violations)}`);
  assert.ok(
    outcome.longestGapMs <= options.gapMaxMs,
    `longest write gap ${outcome.longestGapMs} ms > ${options.gapMaxMs} ms`,
  );
  return outcome;
}

/** election_timeout + 2 s: DESIGN.md "Targets" for a failover through the multi-host string. */
const FAILOVER_GAP_MAX_MS = 1_000 + 2_000;

Deno.test({
  name: "HA failover: the primary's agent and server die together; a standby holding every " +
    "acknowledged commit is promoted, never two writable servers, and the old primary rejoins",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withHaCluster({ nodes: 3 }, async (cluster) => {
      await cluster.bootstrap();
      await scenario(cluster, {
        name: "agent and postmaster kill -9",
        fault: async () => {
          await cluster.stopAgent(1, "SIGKILL");
          await cluster.killServer(1);
        },
        survivors: [2, 3],
        heal: async (primary) => {
          // The old primary comes back as a standby of the new one (rewound: it had diverged).
          cluster.startAgent(1);
          await cluster.waitStreaming(1, primary, 60_000);
        },
        gapMaxMs: FAILOVER_GAP_MAX_MS,
      });
    });
  },
});

Deno.test({
  name: "HA failover: the primary's agent alone dies; its watchdog stops the server at once, " +
    "never two writable servers",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withHaCluster({ nodes: 3 }, async (cluster) => {
      await cluster.bootstrap();
      await scenario(cluster, {
        name: "agent kill -9 (postmaster left running)",
        fault: async () => {
          await cluster.stopAgent(1, "SIGKILL");
          // The watchdog saw the agent's end of its pipe close: the server stops.
          await poll(async () => (await cluster.postmasterPid(1)) === null, {
            timeoutMs: 2_000,
            intervalMs: 10,
            what: "node 1's postmaster to be stopped by its watchdog",
          });
        },
        survivors: [2, 3],
        heal: async (primary) => {
          cluster.startAgent(1);
          await cluster.waitStreaming(1, primary, 60_000);
        },
        gapMaxMs: FAILOVER_GAP_MAX_MS,
      });
    });
  },
});

Deno.test({
  name: "HA failover: the primary's agent is paused (SIGSTOP); the watchdog stops its server " +
    "before the lease ends, a standby takes over, and the resumed node rejoins",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withHaCluster({ nodes: 3 }, async (cluster) => {
      await cluster.bootstrap();
      await scenario(cluster, {
        name: "agent SIGSTOP",
        fault: () => {
          cluster.signalAgent(1, "SIGSTOP");
          return Promise.resolve();
        },
        survivors: [2, 3],
        heal: async (primary) => {
          assert.equal(await cluster.postmasterPid(1), null, "the paused primary's server runs");
          cluster.signalAgent(1, "SIGCONT");
          await cluster.waitStreaming(1, primary, 60_000);
        },
        gapMaxMs: FAILOVER_GAP_MAX_MS,
      });
    });
  },
});

Deno.test({
  name: "HA fencing: with both standbys' agents paused the primary loses its lease and stops " +
    "accepting writes within election_timeout + 1 s; resumed, the cluster writes again",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withHaCluster({ nodes: 3 }, async (cluster) => {
      await cluster.bootstrap();
      assert.equal(await cluster.writable(1), true);
      const pausedAt = performance.now();
      cluster.signalAgent(2, "SIGSTOP");
      cluster.signalAgent(3, "SIGSTOP");
      await poll(async () => !(await cluster.writable(1)), {
        timeoutMs: 1_000 + 1_000,
        intervalMs: 10,
        what: "node 1's server to stop accepting writes",
      });
      const fencedMs = performance.now() - pausedAt;
      cluster.signalAgent(2, "SIGCONT");
      cluster.signalAgent(3, "SIGCONT");
      const primary = await waitPrimary(cluster, [1, 2, 3], 15_000);
      await cluster.sql(primary, "create table after_fence (id int)");
      await cluster.sql(primary, "insert into after_fence values (1)");
      console.log(
        JSON.stringify({
          scenario: "standbys paused",
          fenced_after_ms: Math.round(fencedMs),
          primary,
        }),
      );
    });
  },
});

Deno.test({
  name: "HA switchover: pgraft_transfer_leadership(N) on the primary makes N's server the " +
    "primary, nothing acknowledged is lost, the old primary follows it",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withHaCluster({ nodes: 3 }, async (cluster) => {
      await cluster.bootstrap();
      const outcome = await scenario(cluster, {
        name: "switchover to node 2",
        fault: async () => {
          await cluster.sql(1, "select pgraft_transfer_leadership(2)");
        },
        survivors: [2],
        heal: async () => {
          await cluster.waitStreaming(1, 2, 30_000);
          await cluster.waitStreaming(3, 2, 30_000);
        },
        gapMaxMs: 1_500,
      });
      assert.equal(outcome.newPrimary, 2);
    });
  },
});

Deno.test({
  name: "HA partition: the primary's agent is cut off from the others; its server stops " +
    "accepting writes before another is promoted, and once healed it rejoins as a standby",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // The agents reach each other through proxies on 127.0.0.2 that can cut
    // their links; PostgreSQL's streaming replication stays connected, so the
    // old primary's standbys would go on confirming its commits until they
    // learn of the new term: only the lease and the freeze keep it to one
    // writable server.
    await withHaCluster({ nodes: 3, peerHost: PROXY_HOST }, async (cluster) => {
      const partitioner = new Partitioner(cluster.nodes.map((n) => ({
        nodeId: n.id,
        listen: { hostname: PROXY_HOST, port: n.agentPort },
        target: { hostname: HOST, port: n.agentPort },
      })));
      try {
        await cluster.bootstrap();
        await scenario(cluster, {
          name: "primary's agent partitioned",
          fault: () => {
            partitioner.isolate(1);
            return Promise.resolve();
          },
          survivors: [2, 3],
          heal: async (primary) => {
            assert.equal(await cluster.writable(1), false, "the cut-off primary still writable");
            partitioner.heal();
            await cluster.waitStreaming(1, primary, 60_000);
          },
          gapMaxMs: FAILOVER_GAP_MAX_MS,
        });
      } finally {
        await partitioner.close();
      }
    });
  },
});
