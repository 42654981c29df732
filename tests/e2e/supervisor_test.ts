/**
 * The supervisor (lib/postgres/supervisor.ts) against three real PostgreSQL
 * servers on loopback, configured the Debian way (postgresql.conf and
 * pg_hba.conf outside the data directories): bootstrap and clones, streaming
 * with `ANY 1`, freeze, fence, promote, re-point, rejoin by pg_rewind after a
 * clean stop and after kill -9, a switchover by demote + promote with the
 * write gap measured, and the refusals (a non-empty directory, a foreign
 * data directory, never wiped). Every server is stopped by PID at the end;
 * every wait is bounded. The measured times are printed as one JSON line.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import postgres from "postgres";
import { openPostgres } from "../../lib/postgres/connection.ts";
import { poll, sleep } from "../../lib/async.ts";
import { initDataDirectory, removeStandbySignal } from "../../lib/postgres/data_directory.ts";
import { chownToServerUser } from "../../lib/postgres/programs.ts";
import { compareLsn, type PrimaryTarget } from "../../lib/postgres/replication.ts";
import { type PgBinaries } from "../../lib/postgres/server.ts";
import {
  type Observation,
  RefusedError,
  RewindError,
  Supervisor,
  SupervisorError,
} from "../../lib/postgres/supervisor.ts";
import { ensurePgBinaries, freePort } from "../helpers/pg.ts";

const HOST = "127.0.0.1";

/** One node's files: Debian layout, the configuration beside (not inside) the data directory. */
interface Node {
  name: string;
  port: number;
  dataDir: string;
  configFile: string;
  supervisor: Supervisor;
}

async function makeNode(
  root: string,
  name: string,
  bins: PgBinaries,
  systemIdentifier: string | null,
  settings: Record<string, string> = {},
): Promise<Node> {
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
      "max_connections = 40",
      "shared_buffers = 16MB",
      "logging_collector = off",
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
    settings,
    timeouts: { startMs: 30_000, stopMs: 20_000, followMs: 15_000, rewindMs: 60_000 },
  });
  return { name, port, dataDir, configFile, supervisor };
}

/** The node as a primary its standbys follow (their application_name is their own name). */
function target(primary: Node, standby: Node): PrimaryTarget {
  return { host: HOST, port: primary.port, user: "postgres", applicationName: standby.name };
}

function connect(node: Node): postgres.Sql {
  return openPostgres({
    host: HOST,
    port: node.port,
    user: "postgres",
    database: "postgres",
    max: 2,
    connect_timeout: 2,
    idle_timeout: 5,
  });
}

/** One statement on a fresh session (servers restart under us; a pool would keep dead sessions). */
async function sql<T extends postgres.MaybeRow[] = postgres.Row[]>(
  node: Node,
  text: string,
): Promise<T> {
  const client = connect(node);
  try {
    return await client.unsafe(text) as unknown as T;
  } finally {
    await client.end({ timeout: 1 });
  }
}

async function rowCount(node: Node, where = "true"): Promise<number> {
  const [row] = await sql<{ n: number }[]>(node, `select count(*)::int as n from t where ${where}`);
  return row!.n;
}

/** Wait until `node` streams from `primary` and has replayed `rows` rows. */
async function waitCaughtUp(node: Node, primary: Node, rows: number): Promise<Observation> {
  return await poll(async () => {
    const seen = await node.supervisor.observe();
    if (!seen.streaming || seen.sender?.port !== primary.port) return null;
    return (await rowCount(node)) === rows ? seen : null;
  }, {
    timeoutMs: 20_000,
    intervalMs: 50,
    ignoreErrors: true,
    what: `${node.name} to stream from ${primary.name} with ${rows} rows`,
  });
}

/** The node with the furthest WAL among frozen standbys (ties: the first). */
function mostAdvanced<T extends { lsn: string | null }>(candidates: [Node, T][]): [Node, T] {
  let best = candidates[0]!;
  for (const candidate of candidates.slice(1)) {
    if (compareLsn(candidate[1].lsn!, best[1].lsn!) > 0) best = candidate;
  }
  return best;
}

const round = (ms: number) => Math.round(ms);

Deno.test({
  name:
    "supervisor: clone, stream, freeze, fence, promote, re-point, rewind (clean and kill -9), switchover, refusals",
  fn: async (t) => {
    const bins = await ensurePgBinaries();
    const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "pgraft-supervisor-" });
    await Deno.chmod(root, 0o755);
    const nodes: Node[] = [];
    const times: Record<string, number | string> = {};
    try {
      const n1 = await makeNode(root, "n1", bins, null);
      const foreignNode = await makeNode(root, "foreign", bins, null);
      nodes.push(n1, foreignNode);
      await Promise.all([
        initDataDirectory(bins, n1.dataDir),
        initDataDirectory(bins, foreignNode.dataDir),
      ]);
      // The Debian layout: the configuration lives in etc/, not in the data directory.
      for (const node of [n1, foreignNode]) {
        for (const name of ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"]) {
          await Deno.remove(join(node.dataDir, name));
        }
      }
      let ok = true;
      let n2!: Node;
      let n3!: Node;

      if (!ok) return;
      ok = await t.step("bootstrap the primary and clone two standbys", async () => {
        const first = await n1.supervisor.observe();
        assert.equal(first.role, "stopped");
        assert.equal(first.dataDirectory.kind, "unrecorded");
        const id = (first.dataDirectory as { systemIdentifier: string }).systemIdentifier;
        n1.supervisor.systemIdentifier = id;
        assert.deepEqual(await n1.supervisor.bootstrapSettings(), { restartRequired: [] });
        const hba = await n1.supervisor.allowReplication({ user: "postgres", method: "trust" });
        assert.equal(hba.hbaFile, join(root, "n1", "etc", "pg_hba.conf"));
        await n1.supervisor.start();
        const primary = await n1.supervisor.observe();
        assert.equal(primary.role, "primary");
        assert.equal(primary.timeline, 1);
        assert.equal(primary.dataDirectory.kind, "ours");
        assert.equal((await n1.supervisor.bootstrapSettings()).restartRequired.length, 0);

        n2 = await makeNode(root, "n2", bins, id);
        n3 = await makeNode(root, "n3", bins, id);
        nodes.push(n2, n3);
        assert.equal((await n2.supervisor.observe()).dataDirectory.kind, "empty");
        for (const node of [n2, n3]) {
          // Debian layout: each node has its own pg_hba.conf (a clone copies none), and each may
          // become the primary.
          await node.supervisor.allowReplication({ user: "postgres", method: "trust" });
          const clone = await node.supervisor.clone(target(n1, node));
          assert.equal(clone.systemIdentifier, id);
          times[`clone_${node.name}_ms`] = round(clone.cloneMs);
          times[`clone_${node.name}_start_ms`] = round(clone.start!.ms);
          // The node's own configuration stays outside; the copy brought none inside.
          assert.equal(
            await Deno.stat(join(node.dataDir, "postgresql.conf")).catch(() => null),
            null,
          );
          assert.ok(await node.supervisor.standbySignal());
        }
        await n1.supervisor.setSynchronousStandbys("ANY 1 (n2, n3)");
        const replication = await poll(async () => {
          const rows = await sql<{ application_name: string; state: string; sync_state: string }[]>(
            n1,
            "select application_name, state, sync_state from pg_stat_replication " +
              "order by application_name",
          );
          // Each WAL sender takes the reloaded synchronous_standby_names in its own time.
          const ready = rows.every((r) => r.state === "streaming" && r.sync_state === "quorum");
          return rows.length === 2 && ready && rows;
        }, { timeoutMs: 15_000, intervalMs: 50, what: "both standbys streaming" });
        assert.deepEqual(replication.map((r) => [r.application_name, r.sync_state]), [
          ["n2", "quorum"],
          ["n3", "quorum"],
        ]);
        await sql(n1, "create table t (id int primary key, phase text not null)");
        await sql(n1, "insert into t select g, 'initial' from generate_series(1, 100) g");
        for (const node of [n2, n3]) await waitCaughtUp(node, n1, 100);
        const standby = await n2.supervisor.observe();
        assert.equal(standby.role, "standby");
        assert.equal(standby.timeline, 1);
        assert.equal(standby.dataDirectory.kind, "ours");
      });

      let newPrimary!: Node;
      let other!: Node;
      if (!ok) return;
      ok = await t.step(
        "freeze, fence, promote the most advanced, re-point the other",
        async () => {
          const frozen = [
            [n2, await n2.supervisor.freeze()],
            [n3, await n3.supervisor.freeze()],
          ] as [Node, Awaited<ReturnType<Supervisor["freeze"]>>][];
          for (const [, f] of frozen) {
            assert.equal(f.timeline, 1);
            assert.ok(f.lsn && f.receiveLsn);
          }
          times.freeze_ms = round(frozen[0]![1].ms);
          assert.equal((await n2.supervisor.observe()).streaming, false);
          // A write no standby will ever receive (committed locally, never acknowledged by a quorum).
          await sql(n1, "set synchronous_commit = local; insert into t values (1000, 'lost')");
          const fence = await n1.supervisor.fence({ restartAsStandby: true });
          times.fence_stop_ms = round(fence.stop.ms);
          times.fence_stop_mode = fence.stop.mode;
          times.fence_restart_as_standby_ms = round(fence.restart!.ms);
          const fenced = await n1.supervisor.observe();
          assert.equal(fenced.role, "standby");
          await assert.rejects(sql(n1, "insert into t values (1001, 'refused')"), /read-only/);

          [newPrimary] = mostAdvanced(frozen);
          other = newPrimary === n2 ? n3 : n2;
          const promoted = await newPrimary.supervisor.promote();
          times.promote_ms = round(promoted.ms);
          assert.equal(promoted.timeline, 2);
          const follow = await other.supervisor.follow(target(newPrimary, other));
          times.repoint_until_streaming_ms = round(follow.ms);
          await newPrimary.supervisor.setSynchronousStandbys(`ANY 1 (${other.name}, n1)`);
          await sql(
            newPrimary,
            "insert into t select g, 'failover' from generate_series(101, 200) g",
          );
          await waitCaughtUp(other, newPrimary, 200);
          assert.equal((await other.supervisor.observe()).timeline, 2);
        },
      );

      if (!ok) return;
      ok = await t.step(
        "the old primary has diverged; pg_rewind after a clean stop rejoins it",
        async () => {
          const seen = await n1.supervisor.observe({ primary: target(newPrimary, n1) });
          assert.equal(seen.role, "diverged", JSON.stringify(seen));
          assert.match(seen.divergence!, /timeline 1/);
          const rewind = await n1.supervisor.rewind(target(newPrimary, n1));
          assert.equal(rewind.stop.mode, "fast");
          assert.equal(rewind.rewound, true, rewind.output);
          assert.equal(rewind.crashRecovery, false);
          times.rewind_clean_pg_rewind_ms = round(rewind.rewindMs);
          times.rewind_clean_total_ms = round(rewind.ms);
          const back = await waitCaughtUp(n1, newPrimary, 200);
          assert.equal(back.timeline, 2);
          assert.equal(await rowCount(n1, "phase = 'lost'"), 0);
        },
      );

      if (!ok) return;
      ok = await t.step(
        "kill -9 of the primary: failover, then pg_rewind after the crash",
        async () => {
          const crashed = newPrimary;
          const standbys = [other, n1];
          const frozen = [] as [Node, Awaited<ReturnType<Supervisor["freeze"]>>][];
          for (const node of standbys) frozen.push([node, await node.supervisor.freeze()]);
          await sql(crashed, "set synchronous_commit = local; insert into t values (2000, 'lost')");
          await crashed.supervisor.kill();
          const stopped = await crashed.supervisor.observe();
          assert.equal(stopped.role, "stopped");
          assert.equal(stopped.cleanShutdown, false);
          const [winner] = mostAdvanced(frozen);
          const third = standbys.find((node) => node !== winner)!;
          const promoted = await winner.supervisor.promote({ timeline: 3 });
          times.promote_after_kill_ms = round(promoted.ms);
          assert.equal(promoted.timeline, 3);
          await third.supervisor.follow(target(winner, third));
          await winner.supervisor.setSynchronousStandbys(`ANY 1 (${third.name}, ${crashed.name})`);
          await sql(
            winner,
            "insert into t select g, 'after-kill' from generate_series(201, 300) g",
          );

          const rewind = await crashed.supervisor.rewind(target(winner, crashed));
          assert.equal(rewind.stop.mode, "none");
          assert.equal(rewind.rewound, true, rewind.output);
          assert.equal(rewind.crashRecovery, true, rewind.output);
          times.rewind_after_kill_pg_rewind_ms = round(rewind.rewindMs);
          times.rewind_after_kill_total_ms = round(rewind.ms);
          const back = await waitCaughtUp(crashed, winner, 300);
          assert.equal(back.timeline, 3);
          assert.equal(await rowCount(crashed, "phase = 'lost'"), 0);
          await waitCaughtUp(third, winner, 300);
          newPrimary = winner;
          other = third;
        },
      );

      if (!ok) return;
      ok = await t.step(
        "switchover by demote + promote, with a writer measuring the gap",
        async () => {
          const old = newPrimary;
          const next = nodes.find((node) =>
            [n1, n2, n3].includes(node) && node !== old && node !== other
          )!;
          const third = other;
          const clients = new Map([n1, n2, n3].map((node) => [node, connect(node)]));
          const acknowledged: number[] = [];
          const unanswered = new Set<number>();
          const stamps: number[] = [];
          let stop = false;
          let id = 10_000;
          const writer = (async () => {
            let current = old;
            while (!stop) {
              const value = id++;
              try {
                await clients.get(current)!`insert into t values (${value}, 'switchover')`;
                acknowledged.push(value);
                stamps.push(performance.now());
              } catch {
                unanswered.add(value);
                current = current === old ? next : old;
                await sleep(2);
              }
            }
          })();
          try {
            await sleep(300);
            // Re-point the third server to the target first (it cascades until the promotion).
            await third.supervisor.follow(target(next, third));
            await next.supervisor.setSynchronousStandbys(`ANY 1 (${third.name}, ${old.name})`);
            const skipTo = (await next.supervisor.observe()).timeline! + 2;
            const gapFrom = performance.now();
            let promoted: Promise<{ ms: number; waitMs: number }> | null = null;
            const demote = await old.supervisor.demote(target(next, old), {
              onStopped: (stopped) => {
                assert.ok(stopped.clean);
                promoted = (async () => {
                  const waitMs = await next.supervisor.waitPast(stopped.finalLsn);
                  // The controller's record may skip a timeline: placeholders make PostgreSQL take it.
                  const report = await next.supervisor.promote({ timeline: skipTo });
                  return { ms: report.ms, waitMs };
                })();
              },
            });
            const promotion = await promoted!;
            times.switchover_demote_stop_ms = round(demote.stop.ms);
            times.switchover_wait_final_lsn_ms = round(promotion.waitMs);
            times.switchover_promote_ms = round(promotion.ms);
            times.switchover_old_primary_restart_ms = round(demote.restart.ms);
            assert.equal(demote.clean, true);
            await poll(() => stamps.some((s) => s > gapFrom + 1), {
              timeoutMs: 10_000,
              intervalMs: 10,
              what: "writes on the new primary",
            });
            await sleep(200);
          } finally {
            stop = true;
            await writer;
          }
          let gap = 0;
          for (let i = 1; i < stamps.length; i++) gap = Math.max(gap, stamps[i]! - stamps[i - 1]!);
          times.switchover_write_gap_ms = round(gap);
          times.switchover_writes = acknowledged.length;
          for (const client of clients.values()) await client.end({ timeout: 1 });
          const rows = await rowCount(next);
          // Every acknowledged write is there; a write whose answer was lost in the shutdown may be too.
          const written = await sql<{ id: number }[]>(
            next,
            "select id from t where phase = 'switchover'",
          );
          const present = new Set(written.map((r) => r.id));
          assert.deepEqual(acknowledged.filter((value) => !present.has(value)), []);
          const extra = [...present].filter((value) => !acknowledged.includes(value));
          assert.deepEqual(extra.filter((value) => !unanswered.has(value)), []);
          await waitCaughtUp(old, next, rows);
          await waitCaughtUp(third, next, rows);
          const primary = await next.supervisor.observe();
          assert.equal(primary.role, "primary");
          assert.equal(primary.synchronousStandbyNames, `ANY 1 (${third.name}, ${old.name})`);
          for (const node of [old, third]) {
            const seen = await node.supervisor.observe();
            assert.equal(
              seen.timeline,
              primary.timeline,
              `${node.name} follows the skipped timeline`,
            );
            assert.deepEqual(seen.upstream, { host: HOST, port: next.port });
          }
          newPrimary = next;
        },
      );

      if (!ok) return;
      ok = await t.step("refusals: a non-empty directory, a foreign data directory", async () => {
        await assert.rejects(n2.supervisor.clone(target(n1, n2)), RefusedError);
        const stray = await makeNode(root, "stray", bins, n1.supervisor.systemIdentifier);
        nodes.push(stray);
        await Deno.mkdir(stray.dataDir, { mode: 0o700 });
        await Deno.writeTextFile(join(stray.dataDir, "notes.txt"), "keep me");
        const seenStray = await stray.supervisor.observe();
        assert.equal(seenStray.dataDirectory.kind, "foreign");
        await assert.rejects(
          stray.supervisor.clone(target(n1, stray)),
          (error: unknown) => error instanceof RefusedError && /notes\.txt/.test(error.message),
        );
        assert.equal(await Deno.readTextFile(join(stray.dataDir, "notes.txt")), "keep me");

        foreignNode.supervisor.systemIdentifier = n1.supervisor.systemIdentifier;
        const seen = await foreignNode.supervisor.observe();
        assert.equal(seen.dataDirectory.kind, "foreign");
        const primary = newPrimary;
        for (
          const attempt of [
            () => foreignNode.supervisor.clone(target(primary, foreignNode)),
            () => foreignNode.supervisor.startStandby(target(primary, foreignNode)),
            () => foreignNode.supervisor.rewind(target(primary, foreignNode)),
            () => foreignNode.supervisor.start(),
          ]
        ) {
          await assert.rejects(attempt(), RefusedError);
        }
        assert.ok((await Deno.stat(join(foreignNode.dataDir, "PG_VERSION"))).isFile);
        assert.ok((await Deno.stat(join(foreignNode.dataDir, "base"))).isDirectory);
        await assert.rejects(newPrimary.supervisor.promote(), SupervisorError);
      });

      if (!ok) return;
      ok = await t.step(
        "a failed pg_rewind quotes its stderr and asks for a re-clone",
        async () => {
          // A member's server once started on its own as a primary, without wal_log_hints (an
          // operator's doing): it has diverged and pg_rewind cannot repair it.
          const id = n1.supervisor.systemIdentifier;
          const noHints = await makeNode(root, "nohints", bins, id, { wal_log_hints: "off" });
          nodes.push(noHints);
          await noHints.supervisor.allowReplication({ user: "postgres", method: "trust" });
          await noHints.supervisor.clone(target(newPrimary, noHints), { start: false });
          await removeStandbySignal(noHints.dataDir);
          await noHints.supervisor.start();
          assert.equal((await noHints.supervisor.observe()).role, "primary");
          assert.equal((await noHints.supervisor.stop()).mode, "fast");
          assert.equal((await noHints.supervisor.controlData()).walLogHints, false);
          await assert.rejects(
            noHints.supervisor.rewind(target(newPrimary, noHints)),
            (error: unknown) =>
              error instanceof RewindError && /wal_log_hints/.test(error.stderr) &&
              /pg_rewind/.test(error.message) && /re-clone/.test(error.message),
          );
          assert.ok(await noHints.supervisor.standbySignal(), "it would still start as a standby");
          const failed = await noHints.supervisor.observe();
          assert.equal(failed.dataDirectory.kind, "ours");
          assert.equal(failed.rewindFailed, true);
          // Never re-cloned on its own; only when the operator allows it.
          await assert.rejects(
            noHints.supervisor.clone(target(newPrimary, noHints)),
            (error: unknown) => error instanceof RefusedError && /operator/.test(error.message),
          );
          const reclone = await noHints.supervisor.clone(target(newPrimary, noHints), {
            reclone: true,
          });
          times.reclone_ms = round(reclone.cloneMs);
          const rows = await rowCount(newPrimary);
          const back = await waitCaughtUp(noHints, newPrimary, rows);
          assert.equal(back.rewindFailed, false);
        },
      );

      if (!ok) return;
      ok = await t.step(
        "an immediate fence, then a restart as a standby with no primary",
        async () => {
          const fence = await newPrimary.supervisor.fence({
            mode: "immediate",
            restartAsStandby: true,
          });
          assert.equal(fence.stop.mode, "immediate");
          times.fence_immediate_stop_ms = round(fence.stop.ms);
          times.fence_immediate_restart_as_standby_ms = round(fence.restart!.ms);
          const seen = await newPrimary.supervisor.observe();
          assert.equal(seen.role, "standby");
          assert.equal(seen.upstream, null);
          assert.equal(seen.primaryConninfo, "");
        },
      );
      if (ok) console.log(JSON.stringify({ supervisor: times }));
    } finally {
      for (const node of nodes) {
        await node.supervisor.stop().catch(() => node.supervisor.kill());
        await node.supervisor.close();
      }
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
