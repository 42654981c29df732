/**
 * `pgraft dev` as a person uses it: started in a terminal's process group, it
 * prints psql and curl lines that work as printed, `pgraft status` shows the
 * members from any node, and Ctrl+C (SIGINT to the whole group) stops every
 * agent and server it started within a few seconds, the agents first so the
 * leader hands over while PostgreSQL is still up.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { openPostgres } from "../../lib/postgres/connection.ts";
import { main } from "../../lib/cli/mod.ts";
import type { StatusReport } from "../../lib/cli/status_command.ts";
import { alive, childPids, DevProcess } from "../helpers/dev_process.ts";

/** How long Ctrl+C may take, measured from the signal to dev's exit. */
const STOP_MS_MAX = 5_000;

function collect() {
  let out = "";
  let err = "";
  return {
    out: (t: string) => (out += t),
    err: (t: string) => (err += t),
    stdout: () => out,
    stderr: () => err,
  };
}

Deno.test({
  name:
    "pgraft dev: printed curl and psql lines work, status lists every member from any node, Ctrl+C stops everything in seconds",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pgraft-dev-test-" });
    if (Deno.uid?.() === 0) await Deno.chmod(dir, 0o755);
    const dev = DevProcess.start(["--dir", join(dir, "cluster")]);
    try {
      await dev.waitFor(/cluster is up/, 120_000);
      await dev.waitFor(/Press Ctrl\+C/, 5_000);
      const nodes = dev.nodes();
      assert.equal(nodes.length, 3, dev.stderr);

      // The psql lines name the servers' real ports.
      for (const node of nodes) {
        assert.match(
          dev.stdout,
          new RegExp(`node ${node.id}: psql -h 127\\.0\\.0\\.1 -p ${node.pgPort} `),
        );
      }
      // The curl lines, as printed, write and read through the agents.
      const put =
        /curl -L -X PUT --data-binary 'on' (http:\/\/127\.0\.0\.1:(\d+)\/v1\/kv\/feature\/x)/
          .exec(dev.stdout);
      assert.ok(put, dev.stdout);
      assert.ok(nodes.some((n) => n.agentPort === Number(put[2])), "a printed agent port");
      const written = await fetch(put[1]!, { method: "PUT", body: "on" });
      assert.equal(written.status, 200, await written.text());
      const read = /curl (http:\/\/127\.0\.0\.1:\d+\/v1\/kv\/feature\/x)\n/.exec(dev.stdout);
      assert.ok(read, dev.stdout);
      const got = await fetch(read[1]!);
      assert.equal(await got.text(), "on");

      // pgraft status from a node that is not node 1: one line per member, one leader.
      const config = join(dir, "cluster", "node2", "postgresql.conf");
      const table = collect();
      assert.equal(await main(["status", "--config", config], table), 0, table.stderr());
      assert.match(table.stdout(), /^cluster pgraft \([0-9a-f-]{36}\) · leader: node \d/);
      assert.match(table.stdout(), /member \| host:port\s+\| role\s+\| state\s+\| term \| lag/);
      for (const node of nodes) {
        assert.match(
          table.stdout(),
          new RegExp(
            `\\n${node.id}\\s+\\| 127\\.0\\.0\\.1:${node.agentPort} \\| (leader|follower)`,
          ),
        );
      }
      assert.equal(table.stdout().match(/\| leader /g)?.length, 1, table.stdout());
      const json = collect();
      assert.equal(await main(["status", "--config", config, "--json"], json), 0);
      const report = JSON.parse(json.stdout()) as StatusReport;
      assert.equal(report.members.length, 3);
      assert.equal(report.members.filter((m) => m.role === "leader").length, 1);
      assert.ok(report.members.every((m) => m.state === "running" && m.term !== null));

      // The servers' own processes, to check they are gone too.
      const backends = (await Promise.all(nodes.map((n) => childPids(n.pgPid)))).flat();
      assert.ok(backends.length > 0, "each postmaster has workers");

      // Ctrl+C: SIGINT to dev's whole process group, as a terminal sends it.
      const signalled = performance.now();
      dev.signalGroup("SIGINT");
      const status = await dev.exit(STOP_MS_MAX);
      const stopMs = performance.now() - signalled;
      assert.ok(status, `pgraft dev still running ${STOP_MS_MAX} ms after Ctrl+C:\n${dev.stderr}`);
      assert.equal(status.code, 0, dev.stderr);
      console.log(`Ctrl+C stopped the dev cluster in ${stopMs.toFixed(0)} ms`);
      for (const pid of [...nodes.flatMap((n) => [n.agentPid, n.pgPid]), ...backends]) {
        assert.equal(await alive(pid), false, `process ${pid} outlived pgraft dev`);
      }
      for (const node of nodes) {
        const log = await Deno.readTextFile(join(dir, "cluster", `node${node.id}`, "agent.log"));
        assert.doesNotMatch(log, /leadership handover failed/, `node ${node.id}'s agent.log`);
        assert.doesNotMatch(log, /PostgreSQL is unavailable/, `node ${node.id}'s agent.log`);
      }
      assert.match(dev.stderr, /stopping the dev cluster: the agents first/);
    } finally {
      await dev.kill();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "pgraft dev again on its directory reuses it: same ports, the cluster rejoins, node 1 leads",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pgraft-dev-test-" });
    if (Deno.uid?.() === 0) await Deno.chmod(dir, 0o755);
    const cluster = join(dir, "cluster");
    let dev = DevProcess.start(["--dir", cluster, "--nodes", "3"]);
    try {
      await dev.waitFor(/Press Ctrl\+C/, 120_000);
      const first = dev.nodes();
      // Leadership moves away from node 1 before the restart.
      const sql = openPostgres({
        host: "127.0.0.1",
        port: first[0]!.pgPort,
        user: "postgres",
        database: "postgres",
        max: 1,
      });
      try {
        await sql`select pgraft_transfer_leadership(2)`;
      } finally {
        await sql.end();
      }
      dev.signalGroup("SIGINT");
      assert.equal((await dev.exit(STOP_MS_MAX))?.code, 0, dev.stderr);
      await dev.kill();

      dev = DevProcess.start(["--dir", cluster, "--nodes", "3"]);
      await dev.waitFor(/Press Ctrl\+C/, 120_000);
      assert.match(dev.stderr, /already initialized; rejoining/);
      assert.doesNotMatch(dev.stderr, /bootstrapping/);
      assert.deepEqual(
        dev.nodes().map((n) => [n.pgPort, n.agentPort]),
        first.map((n) => [n.pgPort, n.agentPort]),
      );
      assert.match(dev.stdout, /leader: node 1\b/);
      dev.signalGroup("SIGINT");
      assert.equal((await dev.exit(STOP_MS_MAX))?.code, 0, dev.stderr);
    } finally {
      await dev.kill();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
