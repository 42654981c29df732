/**
 * Cluster benchmark: 3 real PostgreSQL servers and 3 real agents (election
 * timeout 1000 ms, heartbeat 100 ms, the dev defaults) started by the e2e
 * harness. Commit latency with one client, throughput at 1/16/64 closed-loop
 * clients, agent RSS after the load, SQL status function latency, leadership
 * transfer, SIGTERM handoff under a writing client, and failover after kill -9
 * of the leader's agent.
 *
 * @module
 */

import { type TestCluster, withCluster } from "../tests/helpers/cluster.ts";
import { KvClient, VALUE_100B } from "./kv_client.ts";
import { cpuByGroup, type Grouper, readProcTimes } from "./proc.ts";
import {
  eventually,
  latencySummary,
  median,
  progress,
  round,
  rssMb,
  sleep,
  timedLoop,
} from "./stats.ts";

export const HEARTBEAT_MS = 100;
export const ELECTION_MS = 1_000;

/** Sizes of a run. */
export interface ClusterBenchOptions {
  quick: boolean;
}

const IDS = [1, 2, 3];

/** The leader every node in `ids` agrees on (through SQL), or null. */
async function agreedLeader(cluster: TestCluster, ids: number[]): Promise<number | null> {
  const seen = await Promise.all(ids.map((id) => cluster.leaderSeenBy(id).catch(() => null)));
  return seen[0] && seen.every((l) => l === seen[0]) ? seen[0] : null;
}

/**
 * Wait until the cluster is settled: every node runs, agrees on one leader,
 * all three are voters and the leader sees every follower caught up.
 */
export async function settled(cluster: TestCluster, timeoutMs = 20_000): Promise<number> {
  return await eventually("a settled cluster", timeoutMs, async () => {
    const leader = await agreedLeader(cluster, IDS);
    if (!leader) return null;
    const rows = await cluster.sql(leader)`
      select node_id, state, is_voter, lag_entries from pgraft_get_nodes()`;
    if (rows.length !== IDS.length) return null;
    const ok = rows.every((r) =>
      r.is_voter &&
      (r.node_id === leader
        ? r.state === "leader"
        : r.state === "follower" && Number(r.lag_entries ?? 1) === 0)
    );
    return ok ? leader : null;
  }, 25);
}

/**
 * Poll writes to every node in `ids` until one answers 200; returns the time
 * since `t0` and that node. Bounded by `timeoutMs`.
 */
async function firstAcceptedWrite(
  kv: KvClient,
  cluster: TestCluster,
  ids: number[],
  t0: number,
  key: string,
  timeoutMs = 10_000,
): Promise<{ ms: number; node: number; attempts: number }> {
  const deadline = t0 + timeoutMs;
  let done: { ms: number; node: number; attempts: number } | null = null;
  let attempts = 0;
  await Promise.all(ids.map(async (id) => {
    const port = cluster.node(id).agentPort;
    while (!done && performance.now() < deadline) {
      attempts++;
      const out = await kv.put(port, key, VALUE_100B, 1_000);
      if (out.status === 200) {
        done ??= { ms: performance.now() - t0, node: id, attempts };
        return;
      }
      await sleep(5);
    }
  }));
  if (!done) throw new Error(`no node of ${ids} accepted a write within ${timeoutMs} ms`);
  return done;
}

/** Wait until the nodes in `ids` agree on a leader other than `not`; ms since `t0`. */
async function agreementAfter(
  cluster: TestCluster,
  ids: number[],
  not: number,
  t0: number,
  timeoutMs = 10_000,
): Promise<{ ms: number; leader: number }> {
  const leader = await eventually("the survivors agree on a new leader", timeoutMs, async () => {
    const l = await agreedLeader(cluster, ids);
    return l && l !== not ? l : null;
  }, 5);
  return { ms: performance.now() - t0, leader };
}

/** Sequential PUTs to the leader over HTTP; latency of each. */
async function commitLatency(
  cluster: TestCluster,
  kv: KvClient,
  port: number,
  ops: number,
  warmup: number,
): Promise<Record<string, unknown>> {
  let errors = 0;
  const once = async (i: number) => {
    const out = await kv.put(port, `lat/${i % 1000}`, VALUE_100B);
    if (out.status !== 200) errors++;
  };
  for (let i = 0; i < warmup; i++) await once(i);
  const cpuBefore = await readProcTimes();
  const started = performance.now();
  const samples = await timedLoop(ops, 60_000, once);
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuByGroup(cpuBefore, await readProcTimes(), seconds, clusterGrouper(cluster));
  return {
    ...latencySummary(samples),
    mean_ms: round(samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length)),
    errors,
    value_bytes: 100,
    cpu_pct_of_one_core: cpu,
  };
}

async function termOf(cluster: TestCluster, id: number): Promise<number | null> {
  const [row] = await cluster.sql(id)`select pgraft_get_term() as t`;
  return row?.t === null || row?.t === undefined ? null : Number(row.t);
}

/** Groups processes by node: each agent, each PostgreSQL server (postmaster and backends), us. */
function clusterGrouper(cluster: TestCluster): Grouper {
  const agents = new Map<number, string>();
  const servers = new Map<number, string>();
  for (const n of cluster.nodes) {
    if (n.agent) agents.set(n.agent.pid, `agent_node${n.id}`);
    if (n.server.pid) servers.set(n.server.pid, `postgres_node${n.id}`);
  }
  return (pid, ppid) =>
    pid === Deno.pid
      ? "bench_client"
      : agents.get(pid) ?? servers.get(pid) ?? servers.get(ppid) ?? null;
}

/** Closed-loop writers for `durationMs`: writes/s, latency of successful writes, errors. */
async function throughput(
  cluster: TestCluster,
  kv: KvClient,
  port: number,
  clients: number,
  durationMs: number,
): Promise<Record<string, unknown>> {
  const samples: number[] = [];
  const errors: Record<string, number> = {};
  // A short warm-up opens every client's connection before the clock starts.
  await Promise.all(
    Array.from({ length: clients }, (_, c) => kv.put(port, `tp/${c}/warm`, VALUE_100B)),
  );
  const cpuBefore = await readProcTimes();
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    let to = port;
    for (let i = 0; performance.now() < deadline; i++) {
      const t = performance.now();
      const out = await kv.put(to, `tp/${c}/${i % 200}`, VALUE_100B, 5_000);
      // A leader change meanwhile: follow the redirect (the 307 still counts as an error).
      if (out.status === 307 && out.location) to = Number(new URL(out.location).port);
      if (out.status === 200) {
        samples.push(performance.now() - t);
      } else {
        const what = out.status ? `http_${out.status}` : (out.error ?? "error").slice(0, 80);
        errors[what] = (errors[what] ?? 0) + 1;
        await sleep(5);
      }
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuByGroup(cpuBefore, await readProcTimes(), seconds, clusterGrouper(cluster));
  const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
  return {
    clients,
    seconds: round(seconds, 3),
    writes: samples.length,
    writes_per_s: Math.round(samples.length / seconds),
    ...latencySummary(samples),
    errors: errorCount,
    ...(errorCount ? { error_kinds: errors } : {}),
    cpu_pct_of_one_core: cpu,
  };
}

/** The leader's own log statistics (append batching, persist latency, snapshots). */
async function logStats(cluster: TestCluster, id: number): Promise<Record<string, unknown>> {
  const [row] = await cluster.sql(id)`
    select avg_append_batch, persist_p50_ms, persist_p99_ms, snapshots_taken,
           snapshot_threshold, entries_applied, append_batches, rpc_errors
      from pgraft_log_get_stats()`;
  const out: Record<string, unknown> = { node: id };
  for (const [k, v] of Object.entries(row ?? {})) out[k] = v === null ? null : Number(v);
  return out;
}

/** p50/p99 of each SQL status function on node `id`. */
async function sqlStatusLatency(
  cluster: TestCluster,
  id: number,
  calls: number,
): Promise<Record<string, unknown>> {
  const sql = cluster.sql(id);
  const queries: Record<string, () => Promise<unknown>> = {
    "pgraft_get_nodes()": () => sql`select * from pgraft_get_nodes()`,
    "pgraft_get_cluster_status()": () => sql`select * from pgraft_get_cluster_status()`,
    "pgraft_is_leader()": () => sql`select pgraft_is_leader()`,
  };
  const result: Record<string, unknown> = { node: id };
  for (const [name, q] of Object.entries(queries)) {
    for (let i = 0; i < 20; i++) await q();
    result[name] = latencySummary(await timedLoop(calls, 20_000, q));
  }
  return result;
}

/** Restart node `id`'s agent and wait until the cluster is settled again (it caught up). */
async function restartAndCatchUp(cluster: TestCluster, id: number): Promise<number> {
  const t0 = performance.now();
  await cluster.startAgent(id);
  await settled(cluster, 30_000);
  return performance.now() - t0;
}

/** Failover after kill -9 of the leader's agent, `rounds` times. */
async function failover(
  cluster: TestCluster,
  kv: KvClient,
  rounds: number,
): Promise<Record<string, unknown>> {
  const runs: Record<string, unknown>[] = [];
  for (let round_ = 1; round_ <= rounds; round_++) {
    const leader = await settled(cluster);
    const survivors = IDS.filter((id) => id !== leader);
    // Open keep-alive connections to the survivors, as a client already talking to them has.
    await Promise.all(
      survivors.map((id) => kv.put(cluster.node(id).agentPort, "fo/warm", VALUE_100B)),
    );
    const termBefore = await termOf(cluster, survivors[0]!);
    const t0 = performance.now();
    const stopping = cluster.stopAgent(leader, "SIGKILL");
    const [write, agree] = await Promise.all([
      firstAcceptedWrite(kv, cluster, survivors, t0, `fo/${round_}`),
      agreementAfter(cluster, survivors, leader, t0),
    ]);
    await stopping;
    const termAfter = await termOf(cluster, write.node);
    const catchUpMs = await restartAndCatchUp(cluster, leader);
    const run = {
      round: round_,
      killed: leader,
      new_leader: write.node,
      to_write_ms: Math.round(write.ms),
      to_agreement_ms: Math.round(agree.ms),
      // > 1: more than one election round (a split vote) before a leader won
      terms_advanced: termBefore !== null && termAfter !== null ? termAfter - termBefore : null,
      restart_catch_up_ms: Math.round(catchUpMs),
    };
    progress(`failover round ${round_}: ${JSON.stringify(run)}`);
    runs.push(run);
  }
  const toWrite = runs.map((r) => r.to_write_ms as number);
  const toAgree = runs.map((r) => r.to_agreement_ms as number);
  return {
    rounds: runs.length,
    to_write_median_ms: median(toWrite),
    to_write_max_ms: Math.max(...toWrite),
    to_agreement_median_ms: median(toAgree),
    to_agreement_max_ms: Math.max(...toAgree),
    election_timeout_ms: ELECTION_MS,
    runs,
  };
}

/** pgraft_transfer_leadership(n) on the leader → n accepts a write; `rounds` times. */
async function transfer(
  cluster: TestCluster,
  kv: KvClient,
  rounds: number,
): Promise<Record<string, unknown>> {
  const runs: Record<string, unknown>[] = [];
  for (let round_ = 1; round_ <= rounds; round_++) {
    const leader = await settled(cluster);
    const target = IDS[(IDS.indexOf(leader) + 1) % IDS.length]!;
    await kv.put(cluster.node(target).agentPort, "tr/warm", VALUE_100B);
    const t0 = performance.now();
    await cluster.sql(leader)`select pgraft_transfer_leadership(${target})`;
    const sqlMs = performance.now() - t0;
    const write = await firstAcceptedWrite(kv, cluster, [target], t0, `tr/${round_}`);
    const agree = await agreementAfter(cluster, IDS, leader, t0);
    const run = {
      round: round_,
      from: leader,
      to: target,
      sql_call_ms: round(sqlMs),
      to_write_ms: Math.round(write.ms),
      to_agreement_ms: Math.round(agree.ms),
    };
    progress(`transfer round ${round_}: ${JSON.stringify(run)}`);
    runs.push(run);
  }
  const toWrite = runs.map((r) => r.to_write_ms as number);
  return {
    rounds: runs.length,
    to_write_median_ms: median(toWrite),
    to_write_max_ms: Math.max(...toWrite),
    to_agreement_median_ms: median(runs.map((r) => r.to_agreement_ms as number)),
    heartbeat_ms: HEARTBEAT_MS,
    runs,
  };
}

/**
 * One client writing sequentially to whoever leads (following 307s, trying
 * the other nodes on errors) until `stop()`; per logical write its latency
 * from first attempt to success, or a failure after `giveUpMs`.
 */
function backgroundWriter(cluster: TestCluster, kv: KvClient, startAt: number) {
  let running = true;
  const latencies: { at: number; ms: number; node: number }[] = [];
  let failed = 0;
  let retries = 0;
  const giveUpMs = 5_000;
  const portToId = new Map(cluster.nodes.map((n) => [n.agentPort, n.id]));
  let target = startAt;
  const done = (async () => {
    for (let i = 0; running && i < 1_000_000; i++) {
      const t = performance.now();
      let ok = false;
      while (!ok && performance.now() - t < giveUpMs) {
        const out = await kv.put(
          cluster.node(target).agentPort,
          `bg/${i % 500}`,
          VALUE_100B,
          1_500,
        );
        if (out.status === 200) {
          ok = true;
          latencies.push({ at: t, ms: performance.now() - t, node: target });
          break;
        }
        retries++;
        const redirected = out.location ? portToId.get(Number(new URL(out.location).port)) : null;
        if (out.status === 307 && redirected && redirected !== target) {
          target = redirected;
        } else {
          target = IDS[(IDS.indexOf(target) + 1) % IDS.length]!;
          await sleep(5);
        }
      }
      if (!ok) failed++;
    }
  })();
  return {
    latencies,
    stats: () => ({ failed, retries }),
    stop: async () => {
      running = false;
      await done;
    },
  };
}

/** SIGTERM the leader's agent with a client writing; time to a new leader's first write. */
async function sigtermHandoff(
  cluster: TestCluster,
  kv: KvClient,
): Promise<Record<string, unknown>> {
  const leader = await settled(cluster);
  const survivors = IDS.filter((id) => id !== leader);
  await Promise.all(
    survivors.map((id) => kv.put(cluster.node(id).agentPort, "st/warm", VALUE_100B)),
  );
  const writer = backgroundWriter(cluster, kv, leader);
  await sleep(1_000);
  const t0 = performance.now();
  const stopping = cluster.stopAgent(leader, "SIGTERM").then(() => performance.now() - t0);
  const [write, agree] = await Promise.all([
    firstAcceptedWrite(kv, cluster, survivors, t0, "st/probe"),
    agreementAfter(cluster, survivors, leader, t0),
  ]);
  const exitMs = await stopping;
  await sleep(1_000);
  await writer.stop();
  const during = writer.latencies.filter((l) => l.at + l.ms >= t0);
  const worst = during.length ? Math.max(...during.map((l) => l.ms)) : NaN;
  const { failed, retries } = writer.stats();
  const delayed = during.filter((l) => l.ms > ELECTION_MS).length;
  const catchUpMs = await restartAndCatchUp(cluster, leader);
  return {
    stopped: leader,
    new_leader: write.node,
    to_write_ms: Math.round(write.ms),
    to_agreement_ms: Math.round(agree.ms),
    agent_exit_ms: Math.round(exitMs),
    client: {
      writes_total: writer.latencies.length,
      writes_after_sigterm: during.length,
      worst_write_after_sigterm_ms: round(worst),
      writes_delayed_over_election_timeout: delayed,
      writes_failed: failed,
      retries,
    },
    no_client_saw_election_timeout: failed === 0 && delayed === 0,
    restart_catch_up_ms: Math.round(catchUpMs),
  };
}

async function rssAll(cluster: TestCluster): Promise<Record<string, number | null>> {
  const out: Record<string, number | null> = {};
  for (const id of IDS) {
    const pid = cluster.node(id).agent?.pid;
    out[`node${id}`] = pid ? await rssMb(pid) : null;
  }
  return out;
}

/** Run the cluster benchmark; returns its figures. */
export async function clusterBench(options: ClusterBenchOptions): Promise<Record<string, unknown>> {
  const q = options.quick;
  const extraConfig = `pgraft.heartbeat_interval = '${HEARTBEAT_MS}ms'\n` +
    `pgraft.election_timeout = '${ELECTION_MS}ms'\n`;
  const startedAt = performance.now();
  progress("cluster: starting 3 PostgreSQL servers and 3 agents");
  return await withCluster({ nodes: 3, bootstrap: true, extraConfig }, async (cluster) => {
    const kv = new KvClient();
    try {
      const result: Record<string, unknown> = {
        nodes: 3,
        heartbeat_ms: HEARTBEAT_MS,
        election_timeout_ms: ELECTION_MS,
      };
      let leader = await settled(cluster, 30_000);
      progress(`cluster: up in ${Math.round(performance.now() - startedAt)} ms, leader ${leader}`);
      result["rss_idle_mb"] = await rssAll(cluster);

      progress("cluster: SQL status function latency");
      result["sql_status"] = await sqlStatusLatency(cluster, leader, q ? 100 : 300);

      progress("cluster: commit latency, one client");
      const port = () => cluster.node(leader).agentPort;
      result["commit_latency_1_client"] = await commitLatency(
        cluster,
        kv,
        port(),
        q ? 300 : 2_000,
        q ? 50 : 200,
      );

      const tp: Record<string, unknown> = {};
      for (const clients of [1, 16, 64]) {
        progress(`cluster: throughput, ${clients} clients`);
        leader = await settled(cluster);
        tp[`clients_${clients}`] = await throughput(
          cluster,
          kv,
          port(),
          clients,
          q ? 1_500 : 5_000,
        );
      }
      result["throughput"] = tp;
      result["leader_log_stats_after_load"] = await logStats(cluster, leader);
      result["rss_after_load_mb"] = await rssAll(cluster);

      progress("cluster: leadership transfer");
      result["transfer"] = await transfer(cluster, kv, q ? 2 : 5);

      progress("cluster: SIGTERM handoff");
      result["sigterm_handoff"] = await sigtermHandoff(cluster, kv);

      progress("cluster: failover after kill -9");
      result["failover"] = await failover(cluster, kv, q ? 2 : 5);

      result["rss_end_mb"] = await rssAll(cluster);
      result["seconds"] = round((performance.now() - startedAt) / 1000, 1);
      return result;
    } finally {
      kv.close();
    }
  });
}
