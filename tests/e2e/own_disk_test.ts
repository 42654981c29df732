/**
 * Consensus on the agent's own disk (DESIGN.md "Storage", "The replicated
 * state"): the cluster commits with every PostgreSQL down, the published
 * copies catch up when they are back, agents restart from their own log and
 * snapshots (all of them at once, after kill -9), a follower far behind is
 * caught up with a snapshot, a data directory of another node is refused, and
 * the key-value quota refuses a write without changing anything.
 */

import assert from "node:assert/strict";
import { agentCommand } from "../../lib/cli/agent_process.ts";
import { eventually, type TestCluster, withCluster } from "../helpers/cluster.ts";

const FAST = "pgraft.heartbeat_interval = '50ms'\npgraft.election_timeout = '500ms'\n";

function kvUrl(cluster: TestCluster, id: number, key: string, query = ""): string {
  return `http://127.0.0.1:${cluster.node(id).agentPort}/v1/kv/${key}${query}`;
}

/** PUT through node `via` (a follower redirects to the leader). */
async function put(cluster: TestCluster, via: number, key: string, value: string) {
  const res = await fetch(kvUrl(cluster, via, key), { method: "PUT", body: value });
  return { status: res.status, text: await res.text() };
}

/** Node `id`'s own copy of a key (no read barrier), or null. */
async function localGet(cluster: TestCluster, id: number, key: string): Promise<string | null> {
  const res = await fetch(kvUrl(cluster, id, key, "?consistency=local"));
  const text = await res.text();
  return res.status === 200 ? text : null;
}

/** The published copy of `keys` on node `id`'s PostgreSQL, as key → value. */
async function published(cluster: TestCluster, id: number, prefix: string) {
  const rows = await cluster.sql(id)`
    select key, convert_from(value, 'UTF8') as value from pgraft.kv
     where key like ${prefix + "%"} order by key`;
  return new Map(rows.map((r) => [r.key as string, r.value as string]));
}

Deno.test({
  name:
    "with every PostgreSQL stopped: 200 of 200 writes, linearizable reads and a failover; the copies catch up after",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      const first = await cluster.waitForLeader();
      for (const id of [1, 2, 3]) {
        await cluster.closeSql(id);
        await cluster.node(id).server.stop();
      }
      let ok = 0;
      for (let i = 0; i < 200; i++) {
        const res = await put(cluster, 1 + (i % 3), `down/${String(i).padStart(3, "0")}`, `v${i}`);
        if (res.status === 200) ok++;
      }
      assert.equal(ok, 200);
      for (const id of [1, 2, 3]) {
        const res = await fetch(kvUrl(cluster, id, "down/199"));
        assert.deepEqual(
          [res.status, await res.text()],
          [200, "v199"],
          `linearizable read on ${id}`,
        );
      }
      // The leader's agent dies: the others elect a new leader and go on, PostgreSQL still down.
      await cluster.stopAgent(first, "SIGKILL");
      const others = [1, 2, 3].filter((id) => id !== first);
      await eventually("a write through the new leader", 5_000, async () => {
        return (await put(cluster, others[0]!, "down/after-failover", "yes")).status === 200;
      });
      const backAt = performance.now();
      for (const id of [1, 2, 3]) await cluster.node(id).server.start();
      await cluster.startAgent(first);
      const caughtUp: Record<string, number> = {};
      for (const id of [1, 2, 3]) {
        await eventually(
          `node ${id}'s SQL shows the latest value and a fresh status`,
          15_000,
          async () => {
            const copy = await published(cluster, id, "down/");
            if (copy.size !== 201 || copy.get("down/after-failover") !== "yes") return false;
            const [s] = await cluster.sql(id)`
            select agent_running, leader_id from pgraft_get_cluster_status()`;
            return s?.agent_running === true && s.leader_id !== null && s.leader_id !== first;
          },
        );
        caughtUp[`node_${id}_ms`] = Math.round(performance.now() - backAt);
      }
      console.log(JSON.stringify({ postgres_back_to_sql_current: caughtUp }));
    });
  },
});

Deno.test({
  name:
    "every agent killed with -9 at once restarts from its own log and snapshots; nothing acknowledged is lost",
  fn: async () => {
    const config = FAST + "pgraft.snapshot_threshold = 50\n";
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: config }, async (cluster) => {
      await cluster.waitForLeader();
      for (let i = 0; i < 180; i++) {
        const res = await put(cluster, 1, `crash/${i}`, `v${i}`);
        assert.equal(res.status, 200, res.text);
      }
      for (const id of [1, 2, 3]) await cluster.stopAgent(id, "SIGKILL");
      for (const id of [1, 2, 3]) await cluster.startAgent(id);
      await cluster.waitForLeader();
      for (const id of [1, 2, 3]) {
        await eventually(
          `node ${id} serves every key from its restored state`,
          10_000,
          async () => {
            for (const i of [0, 49, 50, 120, 179]) {
              if (await localGet(cluster, id, `crash/${i}`) !== `v${i}`) return false;
            }
            return true;
          },
        );
      }
      const [stats] = await cluster.sql(1)`select snapshots_taken, last_snapshot_index
                                              from pgraft_log_get_stats()`;
      assert.ok(Number(stats!.last_snapshot_index) >= 150, JSON.stringify(stats));
    });
  },
});

Deno.test({
  name: "a follower far behind the leader's snapshot is caught up with it, log and copy alike",
  fn: async () => {
    const config = FAST + "pgraft.snapshot_threshold = 40\n";
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: config }, async (cluster) => {
      const leader = await cluster.waitForLeader();
      const follower = [1, 2, 3].find((id) => id !== leader)!;
      await cluster.stopAgent(follower);
      for (let i = 0; i < 150; i++) {
        const res = await put(cluster, leader, `behind/${String(i).padStart(3, "0")}`, `v${i}`);
        assert.equal(res.status, 200, res.text);
      }
      await cluster.startAgent(follower);
      await eventually("the follower serves the last key", 10_000, async () => {
        return await localGet(cluster, follower, "behind/149") === "v149";
      });
      await eventually("the follower's published copy is complete", 10_000, async () => {
        return (await published(cluster, follower, "behind/")).size === 150;
      });
      const events = await cluster.sql(follower)`
        select count(*)::int as n from pgraft_get_events() where event_type = 'snapshot_installed'`;
      assert.ok(events[0]!.n >= 1, "the follower installed a snapshot");
    });
  },
});

Deno.test({
  name: "an agent pointed at another node's data directory refuses to start, naming both ids",
  fn: async () => {
    await withCluster({ nodes: 2, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      await cluster.waitForLeader();
      await cluster.stopAgent(2);
      const node1 = cluster.node(1);
      const foreign = `${cluster.node(2).server.dataDir}.pgraft`;
      const configFile = `${cluster.dir}/misdirected.conf`;
      await Deno.writeTextFile(
        configFile,
        `include '${node1.configFile}'\npgraft.port = 1\npgraft.data_dir = '${foreign}'\n`,
      );
      const { cmd, args } = agentCommand(["run", "--config", configFile]);
      const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 1, stderr);
      assert.match(stderr, /node 2/);
      assert.match(stderr, /node 1/);
      assert.ok(stderr.includes(foreign), stderr);
      await cluster.startAgent(2);
    });
  },
});

Deno.test({
  name: "a write past the key-value quota is refused (507 / SQL warning) and changes nothing",
  fn: async () => {
    await withCluster({ nodes: 1, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      await cluster.waitForLeader();
      const set = await cluster.psql(1, "SELECT pgraft_set_config('kv_quota', '4kB');");
      assert.equal(set.code, 0, set.stderr);
      const [cfg] = await cluster.sql(
        1,
      )`select setting from pgraft_get_config() where name = 'kv_quota'`;
      assert.equal(cfg!.setting, "4kB");
      assert.equal((await put(cluster, 1, "big/a", "x".repeat(3000))).status, 200);
      const refused = await put(cluster, 1, "big/b", "y".repeat(3000));
      assert.equal(refused.status, 507, refused.text);
      assert.match(refused.text, /quota/);
      assert.equal(await localGet(cluster, 1, "big/b"), null);
      // A write that shrinks the store is allowed even when it is near the quota.
      assert.equal((await put(cluster, 1, "big/a", "small")).status, 200);
      assert.equal(await localGet(cluster, 1, "big/a"), "small");
    });
  },
});
