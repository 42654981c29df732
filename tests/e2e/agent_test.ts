/**
 * The agent under the operations the issue lists: automatic failover after
 * kill -9, failover paused while the leader is stopped, SIGTERM handoff,
 * rolling maintenance of each node's PostgreSQL, removal (and a removed
 * node's agent restarted), terminated sessions, freshness of the status,
 * privileges, and bad arguments to every command function. Three real
 * PostgreSQL servers and three real agents each time.
 */

import assert from "node:assert/strict";
import type postgres from "postgres";
import { main } from "../../lib/cli/mod.ts";
import { eventually, type TestCluster, withCluster } from "../helpers/cluster.ts";

/** Faster timing than the defaults so the tests stay short; same ratios as production. */
const HEARTBEAT_MS = 50;
const ELECTION_MS = 500;
const FAST =
  `pgraft.heartbeat_interval = '${HEARTBEAT_MS}ms'\npgraft.election_timeout = '${ELECTION_MS}ms'\n`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function term(cluster: TestCluster, id: number): Promise<number> {
  const [row] = await cluster.sql(id)`select pgraft_get_term() as t`;
  return Number(row!.t);
}

/** The leader as seen by every node in `ids` once they agree, or null. */
async function agreedLeader(cluster: TestCluster, ids: number[]): Promise<number | null> {
  const seen = await Promise.all(ids.map((id) => cluster.leaderSeenBy(id).catch(() => null)));
  return seen[0] && seen.every((l) => l === seen[0]) ? seen[0] : null;
}

/** Wait until every node is a voter (learners are promoted once caught up). */
async function allVoters(cluster: TestCluster, count = 3): Promise<void> {
  const leader = await cluster.waitForLeader();
  await eventually(`${count} voters`, 5_000, async () => {
    const [row] = await cluster.sql(leader)`
      select count(*)::int as n from pgraft_get_nodes() where is_voter`;
    return row?.n === count;
  });
}

/** PUT a key over HTTP through node `via`'s agent, following a redirect to the leader. */
async function kvPut(
  cluster: TestCluster,
  via: number,
  key: string,
  value: string,
): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${cluster.node(via).agentPort}/v1/kv/${key}`, {
    method: "PUT",
    body: value,
  });
  return { status: res.status, text: await res.text() };
}

async function sqlError(q: Promise<unknown>, what = "the call"): Promise<postgres.PostgresError> {
  try {
    await q;
  } catch (error) {
    return error as postgres.PostgresError;
  }
  throw new Error(`${what}: expected an error`);
}

Deno.test({
  name:
    "kill -9 of the leader's agent: a new leader within 2 election timeouts; it rejoins as follower",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      await allVoters(cluster);
      const leader = await cluster.waitForLeader();
      const others = [1, 2, 3].filter((id) => id !== leader);
      const before = await term(cluster, others[0]!);
      const killedAt = performance.now();
      await cluster.stopAgent(leader, "SIGKILL");
      const next = await eventually("a new leader", 4 * ELECTION_MS, async () => {
        const l = await agreedLeader(cluster, others);
        return l && l !== leader ? l : null;
      });
      const failoverMs = performance.now() - killedAt;
      assert.ok(failoverMs <= 2 * ELECTION_MS + 250, `failover took ${failoverMs.toFixed(0)} ms`);
      assert.ok(await term(cluster, next) > before);
      await cluster.startAgent(leader);
      await eventually("the old leader follows the new one", 5_000, async () => {
        return (await cluster.leaderSeenBy(leader)) === next;
      });
      await eventually("all three members healthy again", 5_000, async () => {
        const [row] = await cluster.sql(next)`
          select count(*)::int as n from pgraft_get_nodes() where state in ('leader', 'follower')`;
        return row!.n === 3;
      });
    });
  },
});

Deno.test({
  name:
    "failover paused: a stopped leader keeps its followers waiting and resumes in the same term",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      await allVoters(cluster);
      const leader = await cluster.waitForLeader();
      const follower = [1, 2, 3].find((id) => id !== leader)!;
      assert.equal(
        (await cluster.psql(follower, "SELECT pgraft_set_config('failover_enabled', 'false');"))
          .code,
        0,
      );
      await eventually("every node applied failover_enabled = off", 3_000, async () => {
        for (const id of [1, 2, 3]) {
          const [r] = await cluster.sql(id)`
            select failover_enabled from pgraft_get_cluster_status()`;
          if (r?.failover_enabled !== false) return false;
        }
        return true;
      });
      const t0 = await term(cluster, follower);
      cluster.signalAgent(leader, "SIGSTOP");
      try {
        await sleep(4 * ELECTION_MS);
        for (const id of [1, 2, 3].filter((i) => i !== leader)) {
          assert.equal(await term(cluster, id), t0, `node ${id} started no election`);
        }
      } finally {
        cluster.signalAgent(leader, "SIGCONT");
      }
      await eventually("the leader leads again", 3_000, async () => {
        return (await agreedLeader(cluster, [1, 2, 3])) === leader;
      });
      for (const id of [1, 2, 3]) assert.equal(await term(cluster, id), t0, "same term");
      const events = await cluster.sql(follower)`
        select event_type from pgraft_get_events() where event_type = 'failover_paused'`;
      assert.ok(events.length >= 1, "failover_paused recorded");
      assert.equal(
        (await cluster.psql(follower, "SELECT pgraft_set_config('failover_enabled', 'true');"))
          .code,
        0,
      );
    });
  },
});

Deno.test({
  name:
    "SIGTERM of the leader's agent hands leadership over before it exits, faster than an election",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      await allVoters(cluster);
      const leader = await cluster.waitForLeader();
      const others = [1, 2, 3].filter((id) => id !== leader);
      const stoppedAt = performance.now();
      await cluster.stopAgent(leader, "SIGTERM");
      const next = await eventually("a new leader", 4 * ELECTION_MS, async () => {
        const l = await agreedLeader(cluster, others);
        return l && l !== leader ? l : null;
      });
      const handoffMs = performance.now() - stoppedAt;
      assert.ok(handoffMs < ELECTION_MS, `handoff took ${handoffMs.toFixed(0)} ms`);
      await eventually("leadership_transferred recorded by the new leader", 2_000, async () => {
        const events = await cluster.sql(next)`
          select event_type from pgraft_get_events() where event_type = 'leadership_transferred'`;
        return events.length >= 1;
      });
    });
  },
});

Deno.test({
  name:
    "rolling maintenance: each PostgreSQL stopped and started in turn; consensus never notices and the copy catches up",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      await allVoters(cluster);
      const leader = await cluster.waitForLeader(5_000);
      const before = await term(cluster, leader);
      for (const id of [1, 2, 3]) {
        const server = cluster.node(id).server;
        await cluster.closeSql(id);
        await server.stop();
        // The Raft log is on the agent's own disk: writes go on, through any node, with no election.
        for (const via of [1, 2, 3]) {
          const put = await kvPut(cluster, via, "maintenance", `node ${id} down, via ${via}`);
          assert.equal(put.status, 200, put.text);
        }
        await server.start();
        await eventually(`node ${id}'s published copy shows the last write`, 10_000, async () => {
          const [r] = await cluster.sql(id)`select value from pgraft.kv where key = 'maintenance'`;
          return r && new TextDecoder().decode(r.value as Uint8Array) === `node ${id} down, via 3`;
        });
      }
      assert.equal(await cluster.waitForLeader(5_000), leader, "the leader stayed");
      assert.equal(await term(cluster, leader), before, "no election happened");
    });
  },
});

Deno.test({
  name: "terminated agent sessions (mid-transaction) are survived: the cluster keeps committing",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      await allVoters(cluster);
      const leader = await cluster.waitForLeader();
      for (let round = 0; round < 5; round++) {
        const writes = Array.from(
          { length: 20 },
          (_, k) => cluster.psql(leader, `SELECT pgraft_kv_put('t${round}-${k}', 'v');`),
        );
        for (const id of [1, 2, 3]) {
          await cluster.sql(id)`
            select pg_terminate_backend(pid) from pg_stat_activity
             where application_name like 'pgraft agent%' and pid <> pg_backend_pid()`;
        }
        const results = await Promise.all(writes);
        for (const r of results) assert.equal(r.code, 0, r.stderr);
      }
      for (const id of [1, 2, 3]) {
        assert.ok(cluster.node(id).agent, `agent ${id} still running`);
        await eventually(`node ${id} applied every write`, 10_000, async () => {
          const [r] = await cluster.sql(
            id,
          )`select count(*)::int as n from pgraft.kv where key like 't%'`;
          return r?.n === 100;
        });
      }
    });
  },
});

Deno.test({
  name: "a removed node's agent stops taking part; restarting it does not disturb the cluster",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      await allVoters(cluster);
      const leader = await cluster.waitForLeader();
      const victim = [1, 2, 3].find((id) => id !== leader)!;
      const res = await cluster.psql(leader, `SELECT pgraft_remove_node(${victim});`);
      assert.equal(res.code, 0, res.stderr);
      const others = [1, 2, 3].filter((id) => id !== victim);
      const t0 = await term(cluster, leader);
      await eventually("the removed node knows it", 3_000, async () => {
        const [r] = await cluster.sql(victim)`
          select count(*)::int as n from pgraft_get_events() where event_type = 'node_removed'`;
        return (r?.n ?? 0) >= 1;
      });
      await cluster.stopAgent(victim, "SIGKILL");
      await cluster.startAgent(victim);
      await sleep(4 * ELECTION_MS);
      assert.equal(await agreedLeader(cluster, others), leader, "same leader");
      assert.equal(await term(cluster, leader), t0, "no election");
      const [n] = await cluster.sql(leader)`select count(*)::int as n from pgraft_get_nodes()`;
      assert.equal(n!.n, 2);
    });
  },
});

Deno.test({
  name:
    "status freshness: a leader change shows on every node within 250 ms; a stopped agent shows nothing stale",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      const leader = await cluster.waitForLeader();
      const target = [1, 2, 3].find((id) => id !== leader)!;
      const res = await cluster.psql(leader, `SELECT pgraft_transfer_leadership(${target});`);
      assert.equal(res.code, 0, res.stderr);
      const changedAt = performance.now();
      await eventually("every node shows the new leader", 2_000, async () => {
        for (const id of [1, 2, 3]) {
          const rows = await cluster.sql(id)`
            select node_id from pgraft_get_nodes() where state = 'leader'`;
          if (rows.length !== 1 || rows[0]!.node_id !== target) return false;
        }
        return true;
      });
      const visibleMs = performance.now() - changedAt;
      assert.ok(visibleMs <= 250, `visible after ${visibleMs.toFixed(0)} ms`);

      // pgraft status --config shows the same from the command line.
      let out = "";
      const code = await main(["status", "--config", cluster.node(1).configFile, "--json"], {
        out: (t) => (out += t),
        err: () => {},
      });
      assert.equal(code, 0);
      const status = JSON.parse(out) as { cluster: { leader_id: number }; nodes: unknown[] };
      assert.equal(status.cluster.leader_id, target);
      assert.equal(status.nodes.length, 3);

      await cluster.stopAgent(target, "SIGKILL");
      await sleep(1_000);
      const [s] = await cluster.sql(target)`
        select pgraft_is_leader() as l, pgraft_quorum_met() as q,
               (select state from pgraft_get_cluster_status()) as state`;
      assert.equal(s!.l, false, "a stopped agent is not presented as leader");
      assert.equal(s!.q, false);
      assert.equal(s!.state, "unknown");
      const err = await sqlError(cluster.sql(target)`select pgraft_add_node(9, '127.0.0.1', 9)`);
      assert.match(err.message, /agent/i);
      assert.ok(err.hint, "a hint says what to check");
    });
  },
});

Deno.test({
  name: "command functions refuse bad arguments with SQLSTATE and HINT and change nothing",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      const leader = await cluster.waitForLeader();
      const sql = cluster.sql(leader);
      const other = [1, 2, 3].find((id) => id !== leader)!;
      const otherPort = cluster.node(other).agentPort;
      const cases: [string, Promise<unknown>, RegExp][] = [
        ["init twice", sql`select pgraft_init()`, /already/],
        ["duplicate id", sql`select pgraft_add_node(${other}, '127.0.0.1', 1)`, /already a member/],
        [
          "duplicate address",
          sql`select pgraft_add_node(9, '127.0.0.1', ${otherPort})`,
          /already used/,
        ],
        ["port out of range", sql`select pgraft_add_node(9, '127.0.0.1', 70000)`, /port/],
        ["bad node id", sql`select pgraft_add_node(0, '127.0.0.1', 7000)`, /node_id/],
        ["empty address", sql`select pgraft_add_node(9, '', 7000)`, /address/],
        ["unknown node removed", sql`select pgraft_remove_node(42)`, /not a member/],
        ["unknown transfer target", sql`select pgraft_transfer_leadership(42)`, /not a member/],
        [
          "unknown setting",
          sql`select pgraft_set_config('heartbeat_intervl', '1s')`,
          /heartbeat_interval/,
        ],
        ["node-scoped setting", sql`select pgraft_set_config('node_id', '5')`, /node/],
        [
          "bad value",
          sql`select pgraft_set_config('election_timeout', 'soon')`,
          /election_timeout/,
        ],
        ["ratio", sql`select pgraft_set_config('election_timeout', '60ms')`, /heartbeat/],
      ];
      for (const [what, q, pattern] of cases) {
        const err = await sqlError(q, what);
        const said = `${err.message} ${err.hint ?? ""}`;
        assert.match(said, pattern, `${what}: ${said}`);
        assert.ok(/^[0-9A-Z]{5}$/.test(err.code ?? ""), `${what}: SQLSTATE ${err.code}`);
        assert.ok(err.hint, `${what}: no HINT`);
      }
      const [n] = await sql`select count(*)::int as n from pgraft_get_nodes()`;
      assert.equal(n!.n, 3, "nothing changed");
      const [cfg] =
        await sql`select setting from pgraft_get_config() where name = 'election_timeout'`;
      assert.equal(cfg!.setting, `${ELECTION_MS}ms`);
    });
  },
});

Deno.test({
  name: "privileges: pgraft_monitor may read, only pgraft_admin (or a superuser) may command",
  fn: async () => {
    await withCluster({ nodes: 1, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      await cluster.waitForLeader();
      const sql = cluster.sql(1);
      await sql.unsafe(`
        create role watcher login in role pgraft_monitor;
        create role operator login in role pgraft_admin;
        create role nobody login;`);
      const as = async (role: string, stmt: string) =>
        await cluster.psql(1, `SET ROLE ${role}; ${stmt}`, ["-v", "ON_ERROR_STOP=1"]);
      assert.equal((await as("watcher", "SELECT * FROM pgraft_get_nodes();")).code, 0);
      const denied = await as("watcher", "SELECT pgraft_set_config('cluster_name', 'x');");
      assert.notEqual(denied.code, 0);
      assert.match(denied.stderr, /permission denied/);
      const ok = await as("operator", "SELECT pgraft_set_config('cluster_name', 'ops');");
      assert.equal(ok.code, 0, ok.stderr);
      const none = await as("nobody", "SELECT pgraft_is_leader();");
      assert.match(none.stderr, /permission denied/);
    });
  },
});
