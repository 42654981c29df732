/**
 * The user's two documents, run statement by statement, verbatim, through the
 * real psql against three real PostgreSQL servers and three real agents. The
 * only change: the example addresses 10.0.0.12:7002 and 10.0.0.13:7003 become
 * the loopback agents of nodes 2 and 3 (tests never send traffic off this host).
 */

import assert from "node:assert/strict";
import { type TestCluster, withCluster } from "../helpers/cluster.ts";
import { type SeedStatement, seedStatements } from "../helpers/seeds.ts";

function localize(cluster: TestCluster, sql: string): string {
  return sql
    .replace("'10.0.0.12', 7002", `'127.0.0.1', ${cluster.node(2).agentPort}`)
    .replace("'10.0.0.13', 7003", `'127.0.0.1', ${cluster.node(3).agentPort}`);
}

/** Run one statement through psql (unaligned, tuples only) and return its rows as arrays of fields. */
async function run(cluster: TestCluster, nodeId: number, s: SeedStatement): Promise<string[][]> {
  const sql = localize(cluster, s.sql);
  const result = await cluster.psql(nodeId, sql, ["-A", "-t", "-F", "|"]);
  assert.equal(
    result.code,
    0,
    `${s.file}:${s.line} on node ${nodeId} failed:\n${sql}\n${result.stderr}`,
  );
  assert.ok(!/WARNING/.test(result.stderr), `${s.file}:${s.line} warned:\n${result.stderr}`);
  return result.stdout.split("\n").filter((l) => l.length > 0).map((l) => l.split("|"));
}

function find(statements: SeedStatement[], file: string, line: number): SeedStatement {
  const s = statements.find((x) => x.file === file && x.line === line);
  assert.ok(s, `no statement at ${file}:${line}`);
  return s;
}

Deno.test({
  name: "every statement of both user documents runs verbatim and answers as the documents read",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const all = await seedStatements();
    assert.equal(all.length, 28, "both documents hold 28 statements");
    const cm = (line: number) => find(all, "cluster-management.txt", line);
    const rp = (line: number) => find(all, "raft-protocol.txt", line);
    await withCluster({ nodes: 3, bootstrap: false }, async (cluster) => {
      // Bootstrap a New Cluster — on node 1.
      assert.deepEqual(await run(cluster, 1, cm(12)), [["t"]]);
      assert.deepEqual(await run(cluster, 1, cm(15)), [["t"]]);
      const [[isLeader, term, quorum]] = await run(cluster, 1, cm(18)) as [
        [string, string, string],
      ];
      assert.equal(isLeader, "t", "pgraft_init() then at once pgraft_is_leader() answers t");
      assert.ok(Number(term) >= 1);
      assert.equal(quorum, "t");
      const nodes = await run(cluster, 1, cm(25));
      assert.equal(nodes.length, 1, "only the local node after init");
      assert.equal(nodes[0]![0], "1");
      assert.equal(nodes[0]![3], "leader");
      const [status] = await run(cluster, 1, cm(28));
      assert.equal(status![0], "1");
      assert.equal(status![1], "leader");
      assert.ok(status!.includes("production-cluster"), "cluster_name set through the log");

      // Add follower nodes.
      assert.deepEqual(await run(cluster, 1, cm(37)), [["t"]]);
      assert.deepEqual(await run(cluster, 1, cm(38)), [["t"]]);
      // Monitor replication catch-up: both become voters with the leader's commit index.
      const deadline = Date.now() + 10_000;
      let rows: string[][] = [];
      for (;;) {
        rows = await run(cluster, 1, cm(41));
        const caughtUp = rows.length === 3 &&
          rows.every((r) => r[1] === "leader" || r[1] === "follower") &&
          rows.every((r) => r[2] === rows[0]![2]);
        if (caughtUp) break;
        assert.ok(Date.now() < deadline, `nodes did not catch up: ${JSON.stringify(rows)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await cluster.waitForLeader();

      // Remove a node gracefully.
      assert.deepEqual(await run(cluster, 1, cm(50)), [["t"]]);
      const removal = await run(cluster, 1, cm(53));
      assert.equal(removal.length, 2, "two members left");
      assert.ok(removal.every((r) => r[0] === "t"), "quorum_ok on every row");
      assert.ok(removal.every((r) => !r[1]!.startsWith("(3,")), "node 3 is gone");

      // Operational monitoring.
      assert.equal((await run(cluster, 1, cm(63))).length, 1);
      const health = await run(cluster, 1, cm(66));
      assert.deepEqual(health.map((r) => r[0]), ["1", "2"]);
      assert.equal((await run(cluster, 1, cm(75))).length, 1);
      const events = await run(cluster, 1, cm(78));
      assert.equal(events.length, 5);

      // Failover & leadership control.
      assert.deepEqual(await run(cluster, 1, cm(90)), [["t"]]);
      assert.deepEqual(
        await run(cluster, 1, { ...cm(106) }),
        [["f", "2"]],
        "after the transfer, node 1 at once sees node 2 leading",
      );
      assert.deepEqual(await run(cluster, 1, cm(93)), [["t"]], "works on a follower (forwarded)");
      assert.deepEqual(await run(cluster, 1, cm(95)), [["t"]]);

      // Failover drill checklist (on node 1, now a follower).
      assert.deepEqual(await run(cluster, 1, cm(100)), [["t"]]);
      assert.deepEqual(await run(cluster, 1, cm(103)), [["t"]]);
      assert.deepEqual(await run(cluster, 1, cm(106)), [["f", "2"]]);
      assert.deepEqual(await run(cluster, 1, cm(109)), [["t"]]);
      assert.deepEqual(await run(cluster, 2, cm(106)), [["t", "2"]]);

      // The Raft protocol document.
      assert.deepEqual(await run(cluster, 2, rp(29)), [["t"]]);
      assert.deepEqual(await run(cluster, 1, rp(37)), [], "no node id equals a backend pid");
      const [[currentTerm, elections]] = await run(cluster, 1, rp(48)) as [[string, string]];
      assert.ok(Number(currentTerm) >= 2, "the transfer started a new term");
      assert.ok(Number(elections) >= 0);
      assert.deepEqual(await run(cluster, 1, rp(84)), [["t"]]);
      assert.deepEqual(await run(cluster, 1, rp(85)), [["2"]]);
      const vitals = await run(cluster, 2, rp(93));
      assert.deepEqual(vitals.map((r) => r[0]).sort(), ["1", "2"]);
      const config = await run(cluster, 1, rp(144));
      assert.deepEqual(
        config.map((r) => r[0]).sort(),
        ["append_batch_size", "election_timeout", "heartbeat_interval", "snapshot_threshold"],
      );
      assert.ok(config.some((r) => r[0] === "heartbeat_interval" && r[1] === "100ms"));
    });
  },
});
