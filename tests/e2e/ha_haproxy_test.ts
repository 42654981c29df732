/**
 * HAProxy (Debian's package) in front of an HA cluster, configured as it is
 * for Patroni: `option httpchk GET /primary` against each agent's port. A
 * client that only knows HAProxy's address keeps writing across a failover,
 * and the replicas' listener reaches only standbys. Skipped (with a message)
 * where haproxy is not installed.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import postgres from "postgres";
import { openPostgres } from "../../lib/postgres/connection.ts";
import { deadline, poll } from "../../lib/async.ts";
import { waitForPidGone } from "../../lib/postgres/server.ts";
import { type HaCluster, HOST, withHaCluster } from "../helpers/ha_cluster.ts";
import { freePort } from "../helpers/pg.ts";

async function haproxyPath(): Promise<string | null> {
  for (const path of ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"]) {
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch { /* next */ }
  }
  return null;
}

/** The configuration the README shows, with the test's ports and quicker checks. */
function haproxyConfig(cluster: HaCluster, primaryPort: number, replicasPort: number): string {
  const servers = cluster.nodes.map((n) =>
    `    server node${n.id} ${HOST}:${n.pgPort} maxconn 100 check port ${n.agentPort}`
  ).join("\n");
  return `global
    maxconn 200

defaults
    mode tcp
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s

listen primary
    bind ${HOST}:${primaryPort}
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions
${servers}

listen replicas
    bind ${HOST}:${replicasPort}
    option httpchk GET /replica?lag=16MB
    http-check expect status 200
    default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions
${servers}
`;
}

/** How long one statement through HAProxy may take before it is given up. */
const STATEMENT_MAX_MS = 5_000;

const haproxy = await haproxyPath();

Deno.test({
  name: "HAProxy configured as for Patroni sends writes to the primary, across a failover, and " +
    "reads to the standbys",
  ignore: haproxy === null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withHaCluster({ nodes: 3 }, async (cluster) => {
      await cluster.bootstrap();
      const primaryPort = freePort();
      const replicasPort = freePort();
      const configFile = join(cluster.root, "haproxy.cfg");
      await Deno.writeTextFile(configFile, haproxyConfig(cluster, primaryPort, replicasPort));
      const child = new Deno.Command(haproxy!, {
        args: ["-db", "-f", configFile],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const viaProxy = (port: number) =>
        openPostgres({
          host: HOST,
          port,
          user: "postgres",
          database: "postgres",
          max: 1,
          connect_timeout: 1,
          idle_timeout: 1,
        });
      /**
       * One statement through HAProxy on a fresh session (a failover ends
       * sessions), given up after STATEMENT_MAX_MS (a commit can wait for a
       * synchronous standby for good).
       */
      const through = async <T extends postgres.MaybeRow[]>(port: number, text: string) => {
        const sql = viaProxy(port);
        try {
          return await deadline(sql.unsafe(text), STATEMENT_MAX_MS, text) as unknown as T;
        } finally {
          await sql.end({ timeout: 0 }).catch(() => {});
        }
      };
      try {
        // HAProxy starts with every server up until its checks say otherwise: wait
        // until six sessions in a row (round robin over three servers) reach the primary.
        await poll(async () => {
          for (let i = 0; i < 6; i++) {
            const [row] = await through<{ recovery: boolean }[]>(
              primaryPort,
              "select pg_is_in_recovery() as recovery",
            );
            if (row?.recovery !== false) return false;
          }
          return true;
        }, { timeoutMs: 10_000, intervalMs: 100, ignoreErrors: true, what: "HAProxy's primary" });
        await through(primaryPort, "create table via_proxy (id int primary key)");
        const acknowledged: number[] = [];
        for (let id = 1; id <= 50; id++) {
          await through(primaryPort, `insert into via_proxy values (${id})`);
          acknowledged.push(id);
        }
        // Reads through the replicas' listener land on standbys only (once the checks marked
        // the primary down there), then stay there.
        const standbysOnly = async () => {
          for (let i = 0; i < 6; i++) {
            const [row] = await through<{ recovery: boolean }[]>(
              replicasPort,
              "select pg_is_in_recovery() as recovery",
            );
            if (row?.recovery !== true) return false;
          }
          return true;
        };
        await poll(standbysOnly, {
          timeoutMs: 10_000,
          intervalMs: 100,
          ignoreErrors: true,
          what: "HAProxy's replicas",
        });
        assert.equal(await standbysOnly(), true, "the replicas' listener reached the primary");
        // The primary's agent and server die; HAProxy follows the health checks to the new one.
        const killedAt = performance.now();
        await cluster.stopAgent(1, "SIGKILL");
        await cluster.killServer(1);
        // An id is tried once: a write given up on may have committed.
        let next = 51;
        await poll(async () => {
          const id = next++;
          await through(primaryPort, `insert into via_proxy values (${id})`);
          acknowledged.push(id);
          return true;
        }, { timeoutMs: 15_000, intervalMs: 50, ignoreErrors: true, what: "a write via HAProxy" });
        const againMs = performance.now() - killedAt;
        const [count] = await through<{ n: number }[]>(
          primaryPort,
          `select count(*)::int as n from via_proxy where id in (${acknowledged.join(",")})`,
        );
        assert.equal(count!.n, acknowledged.length, "an acknowledged write is missing");
        console.log(
          JSON.stringify({ haproxy: "writes again after failover", ms: Math.round(againMs) }),
        );
      } finally {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        await child.stderr.cancel().catch(() => {});
        await child.status;
        await waitForPidGone(child.pid, 5_000);
      }
    });
  },
});
