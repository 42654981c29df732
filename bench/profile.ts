/**
 * Where an agent's time goes under write load: starts the 3-node cluster of
 * the cluster benchmark, restarts every agent under `deno run --cpu-prof`,
 * drives `--clients` closed-loop writers at the leader for `--seconds`, stops
 * the agents (SIGTERM: the profile is written at exit) and prints, per node,
 * the top self-time functions as JSON. Not part of `deno task bench`; run it
 * by hand: `deno run -A bench/profile.ts --clients 64 --seconds 8`.
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { agentCommand } from "../lib/cli/agent_process.ts";
import { waitForAgents } from "../lib/cli/dev_command.ts";
import { type TestCluster, withCluster } from "../tests/helpers/cluster.ts";
import { summarizeCpuProfile } from "./cpuprofile.ts";
import { KvClient, VALUE_100B } from "./kv_client.ts";
import { cpuByGroup, readProcTimes } from "./proc.ts";
import { settled } from "./cluster.ts";
import { eventually, latencySummary, progress, round, sleep } from "./stats.ts";

const IDS = [1, 2, 3];

/** Restart node `id`'s agent under the CPU profiler, writing into `dir`. */
async function restartProfiled(cluster: TestCluster, id: number, dir: string): Promise<void> {
  const node = cluster.node(id);
  await cluster.stopAgent(id, "SIGTERM");
  await Deno.mkdir(dir, { recursive: true });
  const { cmd, args } = agentCommand([
    "run",
    "--config",
    node.configFile,
    "--log-format",
    "text",
  ]);
  if (args[0] !== "run") throw new Error("profiling needs the agent run by deno, not a binary");
  const logFile = join(node.server.dataDir, "agent.log");
  const quoted = [cmd, "run", "--cpu-prof", `--cpu-prof-dir=${dir}`, ...args.slice(1)]
    .map((a) => `'${a.replaceAll("'", `'"'"'`)}'`).join(" ");
  node.agent = new Deno.Command("/bin/sh", {
    args: ["-c", `exec ${quoted} >> '${logFile}' 2>&1`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitForAgents([node]);
}

async function leaderOf(cluster: TestCluster): Promise<number> {
  return await eventually("an agreed leader", 20_000, async () => {
    const seen = await Promise.all(IDS.map((id) => cluster.leaderSeenBy(id).catch(() => null)));
    return seen[0] && seen.every((l) => l === seen[0]) ? seen[0] : null;
  });
}

/** Mean of every histogram in a Prometheus text page: name{labels} → {count, mean_ms}. */
function histogramMeans(text: string): Record<string, { count: number; mean_ms: number }> {
  const sums = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(\w+)_(sum|count)(\{[^}]*\})? ([\d.eE+-]+)$/.exec(line);
    if (!m) continue;
    const key = m[1]! + (m[3] ?? "");
    (m[2] === "sum" ? sums : counts).set(key, Number(m[4]));
  }
  const out: Record<string, { count: number; mean_ms: number }> = {};
  for (const [key, count] of counts) {
    const sum = sums.get(key);
    if (sum === undefined || count === 0) continue;
    out[key] = { count, mean_ms: round((sum / count) * 1000, 3) };
  }
  return out;
}

async function load(
  cluster: TestCluster,
  kv: KvClient,
  port: number,
  clients: number,
  durationMs: number,
): Promise<Record<string, unknown>> {
  const samples: number[] = [];
  let errors = 0;
  const errorKinds: Record<string, number> = {};
  const cpuBefore = await readProcTimes();
  const started = performance.now();
  const deadline = started + durationMs;
  if (clients === 0) await sleep(durationMs);
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    let to = port;
    for (let i = 0; performance.now() < deadline; i++) {
      const t = performance.now();
      const out = await kv.put(to, `prof/${c}/${i % 200}`, VALUE_100B, 5_000);
      if (out.status === 307 && out.location) to = Number(new URL(out.location).port);
      if (out.status === 200) samples.push(performance.now() - t);
      else {
        errors++;
        const kind = out.status ? `http_${out.status}` : String(out.error).slice(0, 80);
        errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
        await sleep(5);
      }
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const agents = new Map(cluster.nodes.map((n) => [n.agent?.pid ?? -1, `agent_node${n.id}`]));
  const servers = new Map(cluster.nodes.map((n) => [n.server.pid ?? -1, `postgres_node${n.id}`]));
  const cpu = cpuByGroup(
    cpuBefore,
    await readProcTimes(),
    seconds,
    (pid, ppid) =>
      pid === Deno.pid
        ? "bench_client"
        : agents.get(pid) ?? servers.get(pid) ?? servers.get(ppid) ??
          null,
  );
  return {
    cpu_pct_of_one_core: cpu,
    clients,
    writes_per_s: Math.round(samples.length / seconds),
    ...latencySummary(samples),
    errors,
    error_kinds: errorKinds,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      clients: { type: "string", default: "64" },
      seconds: { type: "string", default: "8" },
      top: { type: "string", default: "25" },
    },
  });
  const clients = Number(values.clients);
  const seconds = Number(values.seconds);
  const top = Number(values.top);
  const profDir = await Deno.makeTempDir({ prefix: "pgraft-prof-" });
  const report: Record<string, unknown> = { clients, seconds, profile_dir: profDir };
  await withCluster({ nodes: 3, bootstrap: true }, async (cluster) => {
    await leaderOf(cluster);
    for (const id of IDS) {
      progress(`restarting node ${id}'s agent under --cpu-prof`);
      await restartProfiled(cluster, id, join(profDir, `node${id}`));
      await leaderOf(cluster);
    }
    const leader = await settled(cluster, 30_000);
    report["leader"] = leader;
    const kv = new KvClient();
    try {
      progress(`load: ${clients} clients for ${seconds} s on leader ${leader}`);
      const port = cluster.node(leader).agentPort;
      report["idle"] = await load(cluster, kv, port, 0, 3_000);
      const commits = () =>
        Promise.all(IDS.map(async (id) => {
          const [r] = await cluster.sql(id)`
            select xact_commit::float8 as n from pg_stat_database where datname = current_database()`;
          return Number(r!.n);
        }));
      await sleep(1_100); // PostgreSQL 15 flushes its statistics about once a second
      const commitsBefore = await commits();
      report["load"] = await load(cluster, kv, port, clients, seconds * 1000);
      const metrics = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
      report["leader_histograms"] = histogramMeans(metrics);
      await sleep(1_100);
      const commitsAfter = await commits();
      const writes = Number((report["load"] as Record<string, unknown>)["n"]);
      report["pg_transactions_per_write"] = Object.fromEntries(
        IDS.map((id, i) => [
          `node${id}`,
          round((commitsAfter[i]! - commitsBefore[i]!) / Math.max(1, writes), 2),
        ]),
      );
      const [stats] = await cluster.sql(leader)`
        select avg_append_batch, persist_p50_ms, persist_p99_ms, snapshots_taken
          from pgraft_log_get_stats()`;
      report["leader_log_stats"] = stats;
    } finally {
      kv.close();
    }
    // Stop the followers first so the leader's profile is not cut by a handoff.
    for (const id of [...IDS.filter((i) => i !== leader), leader]) {
      await cluster.stopAgent(id, "SIGTERM");
    }
  });
  const nodes: Record<string, unknown> = {};
  for (const id of IDS) {
    const dir = join(profDir, `node${id}`);
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.name.endsWith(".cpuprofile")) continue;
      const profile = JSON.parse(await Deno.readTextFile(join(dir, entry.name)));
      nodes[`node${id}`] = summarizeCpuProfile(profile, top);
    }
  }
  report["nodes"] = nodes;
  report["note"] = `self time in ms over the whole agent lifetime; ${round(seconds)} s of load`;
  console.log(JSON.stringify(report, null, 2));
}
