/**
 * The SQL functions on a streaming standby (manage_postgres), against real
 * PostgreSQL servers on loopback in the Debian layout: a primary with the
 * migrations and what a leader's agent publishes (status with the HA columns,
 * members with their PostgreSQL addresses, events, configuration, keys), and a
 * standby cloned from it. On the standby every monitoring function answers for
 * its own node (pgraft.node_id of its postgresql.conf), every command function
 * raises 25006 naming the primary and changes nothing; on the primary they
 * answer as before, and a command never waits for synchronous standbys. Once
 * the published status goes stale (the primary's agent is gone), both say so.
 * Every wait is bounded; every server is stopped by PID at the end.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import postgres from "postgres";
import { openPostgres } from "../../lib/postgres/connection.ts";
import { deadline, poll, sleep } from "../../lib/async.ts";
import { initDataDirectory } from "../../lib/postgres/data_directory.ts";
import { migrate } from "../../lib/postgres/migrations.ts";
import { chownToServerUser } from "../../lib/postgres/programs.ts";
import type { PrimaryTarget } from "../../lib/postgres/replication.ts";
import type { PgBinaries } from "../../lib/postgres/server.ts";
import { statusRows, type StatusSnapshot } from "../../lib/postgres/status_rows.ts";
import { Supervisor } from "../../lib/postgres/supervisor.ts";
import { ensurePgBinaries, freePort } from "../helpers/pg.ts";

const HOST = "127.0.0.1";
const TERM = 7;
const CLUSTER_ID = "5b1c4f0e-8a55-4c52-9d7e-1b2f5f6a7c01";

interface Node {
  id: number;
  name: string;
  port: number;
  dataDir: string;
  supervisor: Supervisor;
}

/** A node's files, the Debian way; its postgresql.conf (the agent's configuration) names its node id. */
async function makeNode(
  root: string,
  id: number,
  bins: PgBinaries,
  systemIdentifier: string | null,
): Promise<Node> {
  const name = `n${id}`;
  const port = freePort();
  const dir = join(root, name);
  const etc = join(dir, "etc");
  const run = join(dir, "run");
  const dataDir = join(dir, "data");
  for (const path of [dir, etc, run]) await Deno.mkdir(path, { recursive: true, mode: 0o755 });
  await chownToServerUser(run);
  const configFile = join(etc, "postgresql.conf");
  await Deno.writeTextFile(
    configFile,
    [
      `data_directory = '${dataDir}'`,
      `hba_file = '${join(etc, "pg_hba.conf")}'`,
      `ident_file = '${join(etc, "pg_ident.conf")}'`,
      `port = ${port}`,
      `listen_addresses = '${HOST}'`,
      `unix_socket_directories = '${run}'`,
      "max_connections = 30",
      "shared_buffers = 16MB",
      "logging_collector = off",
      `pgraft.node_id = ${id}`,
      "",
    ].join("\n"),
    { mode: 0o644 },
  );
  await Deno.writeTextFile(
    join(etc, "pg_hba.conf"),
    "local all all trust\nhost all all 127.0.0.1/32 trust\n",
    { mode: 0o644 },
  );
  await Deno.writeTextFile(join(etc, "pg_ident.conf"), "", { mode: 0o644 });
  const supervisor = await Supervisor.create({
    dataDir,
    configFile,
    connection: { host: HOST, port, user: "postgres", database: "postgres" },
    systemIdentifier,
    bins,
    timeouts: { startMs: 30_000, stopMs: 20_000, followMs: 15_000 },
  });
  return { id, name, port, dataDir, supervisor };
}

function target(primary: Node, standby: Node): PrimaryTarget {
  return { host: HOST, port: primary.port, user: "postgres", applicationName: standby.name };
}

/** A pool on the node; its notices (the functions' warnings) are collected. */
function connect(node: Node, notices: string[] = []): postgres.Sql {
  return openPostgres({
    host: HOST,
    port: node.port,
    user: "postgres",
    database: "postgres",
    max: 2,
    connect_timeout: 5,
    idle_timeout: 10,
    onnotice: (notice) => notices.push(String(notice.message)),
  });
}

/** What node 1's agent publishes as the leader of members 1, 2, 3. */
function snapshot(primaryLsn: string, staleAfterMs: number): StatusSnapshot {
  const now = Date.now();
  const member = (id: number) => ({ nodeId: id, address: HOST, port: 7000 + id, isVoter: true });
  return {
    node: {
      nodeId: 1,
      address: HOST,
      port: 7001,
      role: "leader",
      term: TERM,
      leaderId: 1,
      commitIndex: 120,
      lastApplied: 120,
      firstIndex: 1,
      lastIndex: 121,
      snapshotIndex: 100,
      quorumMet: true,
      electionsTriggered: 3,
      failoverEnabled: true,
      clusterId: CLUSTER_ID,
      clusterName: "standby-test",
      storageOk: true,
      heartbeatIntervalMs: 100,
      electionTimeoutMs: 1000,
      noLeaderSince: null,
      leaderSince: new Date(now - 60_000),
      agentPid: 4242,
      agentStartedAt: new Date(now - 120_000),
      agentVersion: "test",
      staleAfterMs: staleAfterMs,
      primaryId: 1,
      timeline: 1,
    },
    members: [
      {
        ...member(1),
        state: "leader",
        matchIndex: 121,
        nextIndex: 122,
        commitIndex: 120,
        lastContactAt: new Date(now),
        lagEntries: 0,
        lagBytes: 0,
        pgRole: "primary",
        pgLsn: primaryLsn,
        walLagBytes: 0,
      },
      {
        ...member(2),
        state: "follower",
        matchIndex: 120,
        nextIndex: 122,
        commitIndex: 120,
        lastContactAt: new Date(now - 40),
        lagEntries: 1,
        lagBytes: 96,
        pgRole: "standby",
        pgLsn: "0/3000060",
        walLagBytes: 1234,
      },
      {
        ...member(3),
        state: "unreachable",
        matchIndex: 90,
        nextIndex: 91,
        commitIndex: 90,
        lastContactAt: new Date(now - 30_000),
        lagEntries: 31,
        lagBytes: 4096,
        pgRole: "stopped",
        pgLsn: null,
        walLagBytes: null,
      },
    ],
    stats: {
      entriesAppended: 121,
      entriesApplied: 120,
      proposals: 40,
      snapshotsTaken: 1,
      snapshotsInstalled: 0,
      lastSnapshotIndex: 100,
      lastSnapshotAt: new Date(now - 10_000),
      snapshotThreshold: 10_000,
      rpcSent: 500,
      rpcReceived: 480,
      rpcErrors: 2,
      rpcRejected: 0,
      appendBatches: 60,
      avgAppendBatch: 2.5,
      persistP50Ms: 0.4,
      persistP99Ms: 2.1,
    },
  };
}

/** Publish the status as the agent does (pgraft.publish_status), returning its stamp. */
async function publishStatus(sql: postgres.Sql, status: StatusSnapshot): Promise<string> {
  await sql`select pgraft.publish_status(${sql.json(statusRows(status))})`;
  const [row] = await sql<{ at: string }[]>`select updated_at::text as at from pgraft.node_status`;
  return row!.at;
}

/** Wait until the standby has replayed the status stamped `stamp` (and everything before it). */
async function replayed(standby: postgres.Sql, stamp: string): Promise<void> {
  await poll(async () => {
    const [row] = await standby<{ at: string | null }[]>`
      select (select updated_at::text from pgraft.node_status) as at`;
    return row?.at === stamp;
  }, { timeoutMs: 20_000, intervalMs: 20, ignoreErrors: true, what: "the standby to replay" });
}

/** The members as the agent publishes them, with their PostgreSQL addresses. */
function memberRows(n1: Node, n2: Node, withPrimaryAddress = true) {
  return [
    {
      node_id: 1,
      address: HOST,
      port: 7001,
      is_voter: true,
      pg_host: withPrimaryAddress ? HOST : null,
      pg_port: withPrimaryAddress ? n1.port : null,
    },
    { node_id: 2, address: HOST, port: 7002, is_voter: true, pg_host: HOST, pg_port: n2.port },
    { node_id: 3, address: HOST, port: 7003, is_voter: true, pg_host: null, pg_port: null },
  ];
}

const COMMANDS: [string, string][] = [
  ["pgraft_init()", "select pgraft_init()"],
  ["pgraft_add_node()", "select pgraft_add_node(4, '127.0.0.1', 7004)"],
  ["pgraft_remove_node()", "select pgraft_remove_node(3)"],
  ["pgraft_transfer_leadership()", "select pgraft_transfer_leadership(2)"],
  ["pgraft_set_config()", "select pgraft_set_config('failover_enabled', 'false')"],
  ["pgraft_kv_put()", "select pgraft_kv_put('app/new', 'x')"],
  ["pgraft_kv_delete()", "select pgraft_kv_delete('app/color')"],
];

/** Every command function raises 25006 with the hint naming the primary. */
async function assertCommandsRefused(
  sql: postgres.Sql,
  hint: RegExp,
  detail: RegExp,
): Promise<void> {
  for (const [name, statement] of COMMANDS) {
    const started = performance.now();
    await assert.rejects(sql.unsafe(statement), (error: unknown) => {
      const e = error as postgres.PostgresError;
      assert.equal(e.code, "25006", `${name}: ${e.message}`);
      assert.equal(e.message, `cannot run ${name}: this server is a read-only standby`);
      assert.match(e.hint ?? "", hint, name);
      assert.match(e.detail ?? "", detail, name);
      return true;
    });
    // Refused at once: no waiting for the agent or a leader first.
    assert.ok(performance.now() - started < 1_500, `${name} answered at once`);
  }
}

/** Everything the standby holds that a command could change. */
async function fingerprint(sql: postgres.Sql): Promise<string> {
  const [row] = await sql<{ f: string }[]>`
    select concat_ws('|',
      (select count(*) from pgraft.commands),
      (select string_agg(key || '=' || encode(value, 'escape'), ',' order by key) from pgraft.kv),
      (select string_agg(node_id::text, ',' order by node_id) from pgraft.members),
      (select string_agg(name || '=' || setting, ',' order by name) from pgraft.effective_config)
    ) as f`;
  return row!.f;
}

Deno.test({
  name: "SQL on a streaming standby: monitoring answers for this node, commands raise 25006",
  fn: async (t) => {
    const bins = await ensurePgBinaries();
    const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "pgraft-standby-sql-" });
    await Deno.chmod(root, 0o755);
    const nodes: Node[] = [];
    const pools: postgres.Sql[] = [];
    try {
      const n1 = await makeNode(root, 1, bins, null);
      nodes.push(n1);
      await initDataDirectory(bins, n1.dataDir);
      for (const name of ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"]) {
        await Deno.remove(join(n1.dataDir, name));
      }
      const first = await n1.supervisor.observe();
      const systemId = (first.dataDirectory as { systemIdentifier: string }).systemIdentifier;
      n1.supervisor.systemIdentifier = systemId;
      await n1.supervisor.bootstrapSettings();
      await n1.supervisor.allowReplication({ user: "postgres", method: "trust" });
      await n1.supervisor.start();
      const n2 = await makeNode(root, 2, bins, systemId);
      nodes.push(n2);

      const primaryNotices: string[] = [];
      const primary = connect(n1, primaryNotices);
      pools.push(primary);
      await migrate(primary);
      const [lsnRow] = await primary<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`;
      const primaryLsn = lsnRow!.lsn;

      // What node 1's agent publishes as leader: configuration and rules, the
      // state copy (members with their PostgreSQL addresses, keys), events, status.
      await primary`select pgraft.publish_config(${
        primary.json([
          {
            name: "failover_enabled",
            setting: "on",
            unit: null,
            scope: "cluster",
            source: "default",
            sourcefile: null,
            sourceline: null,
            value_type: "boolean",
            min_value: null,
            max_value: null,
            description: "automatic failover",
          },
          {
            name: "node_id",
            setting: "1",
            unit: null,
            scope: "node",
            source: "configuration file",
            sourcefile: "/etc/postgresql/15/main/postgresql.conf",
            sourceline: 10,
            value_type: "integer",
            min_value: 1,
            max_value: 2147483647,
            description: "this node's id",
          },
        ])
      }, ${
        primary.json({
          kv_key_bytes_max: "1024",
          kv_value_bytes_max: "1048576",
          member_address_chars_max: "253",
          member_port_max: "65535",
          member_address_pattern: "^[A-Za-z0-9.:_-]+$",
          election_heartbeat_ratio_min: "2",
        })
      })`;
      const puts = [
        { k: "app/color", v: Array.from(new TextEncoder().encode("blue"), hex).join(""), r: 5 },
        { k: "app/size", v: Array.from(new TextEncoder().encode("large"), hex).join(""), r: 6 },
      ];
      await primary`select pgraft.publish_state(0, 120, ${CLUSTER_ID}::uuid, false,
                                                ${primary.json(puts)}, null,
                                                ${primary.json(memberRows(n1, n2))})`;
      await primary`select pgraft.insert_events(${
        primary.json([
          {
            event_timestamp: new Date().toISOString(),
            event_type: "leader_elected",
            term: TERM,
            node_id: 1,
            detail: "node 1 won term 7",
          },
          {
            event_timestamp: new Date().toISOString(),
            event_type: "postgres_promoted",
            term: TERM,
            node_id: 1,
            detail: "timeline 1",
          },
        ])
      }, 10000)`;
      let stamp = await publishStatus(primary, snapshot(primaryLsn, 60_000));

      await n2.supervisor.allowReplication({ user: "postgres", method: "trust" });
      await n2.supervisor.clone(target(n1, n2));
      const standbyNotices: string[] = [];
      const standby = connect(n2, standbyNotices);
      pools.push(standby);
      await poll(async () => {
        const [row] = await standby<{ r: boolean }[]>`select pg_is_in_recovery() as r`;
        return row?.r === true;
      }, { timeoutMs: 20_000, intervalMs: 50, ignoreErrors: true, what: "the standby" });
      // A fresh status after the clone, as the agent refreshes it every heartbeat.
      stamp = await publishStatus(primary, snapshot(primaryLsn, 60_000));
      await replayed(standby, stamp);

      await t.step("the status tables are logged (a standby reads them)", async () => {
        const rows = await primary<{ relname: string; relpersistence: string }[]>`
          select c.relname, c.relpersistence from pg_class c
            join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = 'pgraft' and c.relkind = 'r' order by c.relname`;
        assert.deepEqual(rows.filter((r) => r.relpersistence !== "p").map((r) => r.relname), []);
        for (const table of ["node_status", "member_status", "log_stats"]) {
          const [row] = await standby.unsafe(`select count(*)::int as n from pgraft.${table}`);
          assert.ok(row!.n >= 1, table);
        }
        const [setting] = await standby<
          { id: number | null }[]
        >`select pgraft.this_node_id() as id`;
        assert.equal(setting!.id, 2);
      });

      await t.step("on the standby, every monitoring function answers for node 2", async () => {
        const [flags] = await standby`
          select pgraft_is_leader() as is_leader, pgraft_get_leader() as leader,
                 pgraft_get_term() as term, pgraft_quorum_met() as quorum`;
        assert.deepEqual({ ...flags }, {
          is_leader: false,
          leader: 1,
          term: String(TERM),
          quorum: true,
        });

        const [cluster] = await standby`select * from pgraft_get_cluster_status()`;
        assert.equal(cluster!.node_id, 2);
        assert.equal(cluster!.state, "follower");
        assert.equal(cluster!.leader_id, 1);
        assert.equal(cluster!.current_term, String(TERM));
        assert.equal(cluster!.commit_index, "120");
        assert.equal(cluster!.last_applied, "120");
        assert.equal(cluster!.quorum_met, true);
        assert.equal(cluster!.failover_enabled, true);
        assert.equal(cluster!.cluster_name, "standby-test");
        assert.equal(cluster!.cluster_id, CLUSTER_ID);
        assert.equal(cluster!.num_nodes, 3);
        assert.equal(cluster!.num_voters, 3);
        assert.equal(cluster!.agent_running, true);
        assert.equal(cluster!.primary_id, 1);
        assert.equal(cluster!.timeline, "1");
        // The seeds' columns come first, in their order; the HA columns last.
        assert.deepEqual(Object.keys(cluster!).slice(0, 10), [
          "node_id",
          "state",
          "leader_id",
          "current_term",
          "commit_index",
          "last_applied",
          "quorum_met",
          "elections_triggered",
          "failover_enabled",
          "cluster_name",
        ]);
        assert.deepEqual(Object.keys(cluster!).slice(-2), ["primary_id", "timeline"]);

        const nodes = await standby`select * from pgraft_get_nodes()`;
        assert.deepEqual(Object.keys(nodes[0]!), [
          "node_id",
          "address",
          "port",
          "state",
          "is_voter",
          "match_index",
          "next_index",
          "commit_index",
          "last_heartbeat_ms",
          "replication_lag_bytes",
          "lag_entries",
          "pg_role",
          "pg_lsn",
          "wal_lag_bytes",
        ]);
        assert.deepEqual(
          nodes.map((n) => [n.node_id, n.state, n.pg_role, n.pg_lsn, n.wal_lag_bytes]),
          [
            [1, "leader", "primary", primaryLsn, "0"],
            [2, "follower", "standby", "0/3000060", "1234"],
            [3, "unreachable", "stopped", null, null],
          ],
        );
        assert.deepEqual(nodes.map((n) => n.match_index), ["121", "120", "90"]);
        assert.ok(nodes.every((n) => n.last_heartbeat_ms !== null));
        const [types] = await standby`
          select pg_typeof(pg_lsn)::text as lsn, pg_typeof(wal_lag_bytes)::text as lag
            from pgraft_get_nodes() limit 1`;
        assert.deepEqual({ ...types }, { lsn: "pg_lsn", lag: "bigint" });

        const replication = await standby`select * from pgraft_log_get_replication_status()`;
        assert.deepEqual(replication.map((r) => [r.node_id, r.state, r.lag_entries]), [
          [1, "leader", "0"],
          [2, "follower", "1"],
          [3, "unreachable", "31"],
        ]);
        const [stats] = await standby`select * from pgraft_log_get_stats()`;
        assert.equal(stats!.commit_index, "120");
        assert.equal(stats!.entries_appended, "121");
        assert.equal(stats!.entries_since_snapshot, "20");
        assert.equal(stats!.rpc_sent, "500");
        const events = await standby`select event_type, node_id from pgraft_get_events()`;
        assert.deepEqual(events.map((e) => [e.event_type, e.node_id]), [
          ["leader_elected", 1],
          ["postgres_promoted", 1],
        ]);
        const config = await standby`select name, setting, source from pgraft_get_config()`;
        assert.deepEqual(config.map((c) => c.name), ["failover_enabled", "node_id"]);
        const [kv] = await standby`select pgraft_kv_get('app/color') as v`;
        assert.equal(kv!.v, "blue");
        const listed = await standby`select key, value, revision from pgraft_kv_list('app/')`;
        assert.deepEqual(listed.map((r) => [r.key, r.value, r.revision]), [
          ["app/color", "blue", "5"],
          ["app/size", "large", "6"],
        ]);
        await standby`select pgraft.await_commands()`;
        assert.deepEqual(standbyNotices, []);
      });

      await t.step(
        "without pgraft.node_id, the standby shows the status as published",
        async () => {
          const rows = await standby.begin(async (tx) => {
            await tx`set local pgraft.node_id = ''`;
            return await tx`
            select pgraft_is_leader() as is_leader, s.node_id, s.state
              from pgraft_get_cluster_status() s`;
          });
          assert.deepEqual({ ...rows[0] }, { is_leader: true, node_id: 1, state: "leader" });
        },
      );

      await t.step(
        "on the standby, every command function raises 25006 naming node 1",
        async () => {
          const before = await fingerprint(standby);
          const hint = new RegExp(
            `^Run it on the primary, node 1 at 127\\.0\\.0\\.1:${n1.port}\\.$`,
          );
          await assertCommandsRefused(standby, hint, /commands are run on the primary/);
          assert.equal(await fingerprint(standby), before);
          assert.equal(await fingerprint(primary), before);
        },
      );

      await t.step("on the primary, the functions answer as before", async () => {
        const [flags] = await primary`
          select pgraft_is_leader() as is_leader, pgraft_get_leader() as leader,
                 pgraft_get_term() as term, pgraft_quorum_met() as quorum`;
        assert.deepEqual({ ...flags }, {
          is_leader: true,
          leader: 1,
          term: String(TERM),
          quorum: true,
        });
        const [cluster] = await primary`select * from pgraft_get_cluster_status()`;
        assert.deepEqual(
          [cluster!.node_id, cluster!.state, cluster!.leader_id, cluster!.primary_id],
          [1, "leader", 1, 1],
        );
        assert.equal(cluster!.timeline, "1");
        const nodes = await primary`select node_id, state, pg_role from pgraft_get_nodes()`;
        assert.deepEqual(nodes.map((n) => [n.node_id, n.state, n.pg_role]), [
          [1, "leader", "primary"],
          [2, "follower", "standby"],
          [3, "unreachable", "stopped"],
        ]);
        const [stats] = await primary`select count(*)::int as n from pgraft_log_get_stats()`;
        assert.equal(stats!.n, 1);
        const [kv] = await primary`select pgraft_kv_get('app/size') as v`;
        assert.equal(kv!.v, "large");
      });

      await t.step(
        "a command never waits for synchronous standbys, nor does its outcome",
        async () => {
          // Synchronous replication to a standby that is not there: any ordinary commit hangs.
          await n1.supervisor.setSynchronousStandbys("ANY 1 (nobody)");
          const [setting] = await primary`select current_setting('synchronous_commit') as s`;
          assert.equal(setting!.s, "on");
          // Inside the command function's transaction the setting is lowered to local
          // (checked before committing), and its commit returns at once.
          const seen = await deadline(
            primary.begin(async (tx) => {
              const [ok] = await tx`select pgraft_remove_node(3) as ok`;
              const [s] = await tx`select current_setting('synchronous_commit') as s`;
              return [ok!.ok, s!.s];
            }),
            10_000,
            "pgraft_remove_node(3) to commit",
          );
          assert.deepEqual(seen, [true, "local"]);
          // A transaction that wrote first keeps its own setting (rolled back: it would wait).
          const kept = await primary.begin(async (tx) => {
            await tx`select pg_current_xact_id()`; // as any write does
            await tx`select pgraft.enqueue('kv_delete', '{"key": "none"}')`;
            const [s] = await tx`select current_setting('synchronous_commit') as s`;
            throw new RolledBack(s!.s);
          }).catch((error) => {
            if (error instanceof RolledBack) return error.value;
            throw error;
          });
          assert.equal(kept, "on");
          const [pending] = await primary<{ id: string }[]>`
            select command_id as id from pgraft.commands where status = 'pending'`;
          assert.ok(pending, "the command is queued");

          // The standby waits (bounded) for the primary's commands while its agent publishes,
          // and writes nothing.
          stamp = await publishStatus(primary, snapshot(primaryLsn, 60_000));
          await replayed(standby, stamp);
          const [queued] = await standby`
            select count(*)::int as n from pgraft.commands where status = 'pending'`;
          assert.equal(queued!.n, 1);
          standbyNotices.length = 0;
          await standby`select pgraft.await_commands(200)`;
          assert.ok(standbyNotices.some((n) => /still running/.test(n)), standbyNotices.join());

          // The agent takes and finishes it: neither waits for the absent standby.
          await deadline(
            (async () => {
              await primary`select pgraft.start_command(${pending.id})`;
              await primary`select pgraft.finish_command(${pending.id}, true, '{}', null,
                ${primary.json(statusRows(snapshot(primaryLsn, 60_000)))})`;
            })(),
            10_000,
            "the command's outcome to commit",
          );
          const [done] = await primary`
            select status from pgraft.commands where command_id = ${pending.id}`;
          assert.equal(done!.status, "done");
          await n1.supervisor.setSynchronousStandbys("");
        },
      );

      await t.step("once the status goes stale, both servers say so", async () => {
        // The agent publishes once more (without node 1's PostgreSQL address) and stops.
        await primary`select pgraft.publish_state(120, 121, ${CLUSTER_ID}::uuid, false, null, null,
                                                  ${primary.json(memberRows(n1, n2, false))})`;
        const staleAfterMs = 1_000;
        const published = performance.now();
        stamp = await publishStatus(primary, snapshot(primaryLsn, staleAfterMs));
        await replayed(standby, stamp);
        await sleep(Math.max(0, published + staleAfterMs + 200 - performance.now()));

        for (const [sql, nodeId] of [[standby, 2], [primary, 1]] as const) {
          const [flags] = await sql`
            select pgraft_is_leader() as is_leader, pgraft_get_leader() as leader,
                   pgraft_get_term() as term, pgraft_quorum_met() as quorum`;
          assert.deepEqual({ ...flags }, {
            is_leader: false,
            leader: null,
            term: String(TERM),
            quorum: false,
          });
          const [cluster] = await sql`select * from pgraft_get_cluster_status()`;
          assert.deepEqual(
            [cluster!.node_id, cluster!.state, cluster!.leader_id, cluster!.agent_running],
            [nodeId, "unknown", null, false],
          );
          const nodes = await sql`select node_id, state, pg_role, last_heartbeat_ms
                                    from pgraft_get_nodes()`;
          assert.deepEqual(nodes.map((n) => [n.node_id, n.state, n.pg_role, n.last_heartbeat_ms]), [
            [1, "unknown", "unknown", null],
            [2, "unknown", "unknown", null],
            [3, "unknown", "unknown", null],
          ]);
          const replication = await sql`select state from pgraft_log_get_replication_status()`;
          assert.ok(replication.every((r) => r.state === "unknown"));
        }
        const before = await fingerprint(standby);
        await assertCommandsRefused(
          standby,
          /^Run it on the primary, node 1 \(address not known yet\)\.$/,
          /last refreshed at .*failover may be under way/,
        );
        assert.equal(await fingerprint(standby), before);
      });
    } finally {
      for (const pool of pools) await pool.end({ timeout: 1 });
      for (const node of nodes) {
        await node.supervisor.stop().catch(() => node.supervisor.kill());
        await node.supervisor.close();
      }
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

/** Thrown to roll a transaction back, carrying what was seen inside it. */
class RolledBack extends Error {
  constructor(readonly value: unknown) {
    super("rolled back");
  }
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}
