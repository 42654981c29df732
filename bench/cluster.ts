/**
 * Cluster benchmark: 3 real PostgreSQL servers and 3 real agents (election
 * timeout 1000 ms, heartbeat 100 ms, the dev defaults) started by the e2e
 * harness. Commit latency with one client, throughput at 1/16/64 closed-loop
 * clients, agent RSS after the load, SQL status function latency, leadership
 * transfer, SIGTERM handoff under a writing client, and failover after kill -9
 * and after SIGSTOP of the leader's agent.
 *
 * With `peer: "etcd"` a 3-member etcd (bench/etcd.ts, same timeouts) runs
 * beside it for the whole run and the same load generator (bench/load.ts)
 * measures both, alternating: commit latency, throughput, and failover rounds
 * (kill -9 and SIGSTOP of the leader's process), plus etcd's RSS and CPU.
 *
 * @module
 */

import { type TestCluster, withCluster } from "../tests/helpers/cluster.ts";
import { ETCD_MISSING, EtcdCluster, EtcdTarget, etcdVersion } from "./etcd.ts";
import { KvClient, type PutOutcome, VALUE_100B } from "./kv_client.ts";
import {
  agreementAfter,
  commitLatency,
  type Contender,
  failoverRound,
  failoverSummary,
  type FailoverTarget,
  firstAcceptedWrite,
  type LossKind,
  throughput,
} from "./load.ts";
import type { Grouper } from "./proc.ts";
import {
  eventually,
  latencySummary,
  median,
  pick,
  progress,
  round,
  rssMb,
  sleep,
  timedLoop,
} from "./stats.ts";

export const HEARTBEAT_MS = 100;
export const ELECTION_MS = 1_000;

/** The system measured beside pgraft. */
export type Peer = "etcd";

/** Sizes of a run, and the peer to measure beside pgraft. */
export interface ClusterBenchOptions {
  quick: boolean;
  /** run a 3-member etcd beside the pgraft cluster and measure both @default null */
  peer?: Peer | null;
}

/** pgraft's figures, and the peer's when one was asked for (or why it was not measured). */
export interface ClusterBenchResult {
  cluster: Record<string, unknown>;
  etcd: Record<string, unknown> | null;
}

const IDS = [1, 2, 3];

/** The leader every node in `ids` agrees on (through SQL), or null. */
async function agreedLeader(
  cluster: TestCluster,
  ids: readonly number[],
): Promise<number | null> {
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

/**
 * pgraft as a target of the load generator: PUT /v1/kv/{key} to the leader's
 * agent (found by {@link PgraftTarget.settle}); a 307 answer points the next
 * write at its Location (the 307 itself is not a success), as a client does.
 */
export class PgraftTarget implements FailoverTarget {
  readonly name = "pgraft";
  readonly ids: readonly number[] = IDS;
  readonly cluster: TestCluster;
  readonly kv: KvClient;
  #port: number;

  constructor(cluster: TestCluster, kv: KvClient) {
    this.cluster = cluster;
    this.kv = kv;
    this.#port = cluster.node(IDS[0]!).agentPort;
  }

  async settle(timeoutMs = 20_000): Promise<number> {
    const leader = await settled(this.cluster, timeoutMs);
    this.#port = this.cluster.node(leader).agentPort;
    return leader;
  }

  async put(key: string, value: string, timeoutMs = 2_000): Promise<PutOutcome> {
    const out = await this.kv.put(this.#port, key, value, timeoutMs);
    if (out.status === 307 && out.location) this.#port = Number(new URL(out.location).port);
    return out;
  }

  putTo(id: number, key: string, value: string, timeoutMs = 2_000): Promise<PutOutcome> {
    return this.kv.put(this.cluster.node(id).agentPort, key, value, timeoutMs);
  }

  agreedLeader(ids: readonly number[]): Promise<number | null> {
    return agreedLeader(this.cluster, ids);
  }

  kill(id: number): Promise<void> {
    return this.cluster.stopAgent(id, "SIGKILL");
  }

  signal(id: number, what: "pause" | "resume"): void {
    this.cluster.signalAgent(id, what === "pause" ? "SIGSTOP" : "SIGCONT");
  }

  pid(id: number): number | null {
    return this.cluster.node(id).agent?.pid ?? null;
  }

  restart(id: number): Promise<void> {
    return this.cluster.startAgent(id);
  }

  term(id: number): Promise<number | null> {
    return termOf(this.cluster, id);
  }
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

/** pgraft_transfer_leadership(n) on the leader → n accepts a write; `rounds` times. */
async function transfer(
  cluster: TestCluster,
  pgraft: PgraftTarget,
  rounds: number,
): Promise<Record<string, unknown>> {
  const kv = pgraft.kv;
  const runs: Record<string, unknown>[] = [];
  for (let round_ = 1; round_ <= rounds; round_++) {
    const leader = await settled(cluster);
    const target = IDS[(IDS.indexOf(leader) + 1) % IDS.length]!;
    await kv.put(cluster.node(target).agentPort, "tr/warm", VALUE_100B);
    const t0 = performance.now();
    await cluster.sql(leader)`select pgraft_transfer_leadership(${target})`;
    const sqlMs = performance.now() - t0;
    const write = await firstAcceptedWrite(pgraft, [target], t0, `tr/${round_}`, { everyMs: 5 });
    const agree = await agreementAfter(pgraft, IDS, leader, t0);
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
  pgraft: PgraftTarget,
): Promise<Record<string, unknown>> {
  const kv = pgraft.kv;
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
    firstAcceptedWrite(pgraft, survivors, t0, "st/probe", { everyMs: 5 }),
    agreementAfter(pgraft, survivors, leader, t0),
  ]);
  const exitMs = await stopping;
  await sleep(1_000);
  await writer.stop();
  const during = writer.latencies.filter((l) => l.at + l.ms >= t0);
  const worst = during.length ? Math.max(...during.map((l) => l.ms)) : NaN;
  const { failed, retries } = writer.stats();
  const delayed = during.filter((l) => l.ms > ELECTION_MS).length;
  const restartedAt = performance.now();
  await pgraft.restart(leader);
  await pgraft.settle(30_000);
  const catchUpMs = performance.now() - restartedAt;
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

/** RSS of every running agent in MB: now, or its peak since it started (`"VmHWM"`). */
async function rssAll(
  cluster: TestCluster,
  field: "VmRSS" | "VmHWM" = "VmRSS",
): Promise<Record<string, number | null>> {
  const out: Record<string, number | null> = {};
  for (const id of IDS) {
    const pid = cluster.node(id).agent?.pid;
    out[`node${id}`] = pid ? await rssMb(pid, field) : null;
  }
  return out;
}

/** One figure of pgraft beside etcd's. */
export interface Versus {
  pgraft: number | null;
  etcd: number | null;
  /** pgraft / etcd */
  ratio: number | null;
  /** which side of 1 the ratio is on when pgraft does better */
  pgraft_better_when: "ratio > 1" | "ratio < 1";
  pgraft_better: boolean | null;
}

/** The largest number among the values of `obj` (a per-node record), or null. */
function maxOf(obj: unknown): number | null {
  if (typeof obj !== "object" || obj === null) return null;
  const xs = Object.values(obj).filter((x): x is number => typeof x === "number");
  return xs.length ? Math.max(...xs) : null;
}

/**
 * Each figure both systems were measured on, pgraft's beside etcd's with the
 * ratio pgraft / etcd (throughput: higher is better; latencies, failover
 * times, CPU per write and memory: lower is better).
 */
export function versusEtcd(
  pgraft: Record<string, unknown>,
  etcd: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ratio: "pgraft / etcd, for every figure",
  };
  const add = (name: string, a: number | null, b: number | null, higherIsBetter: boolean) => {
    const ratio = a !== null && b !== null && b !== 0 ? round(a / b, 2) : null;
    const entry: Versus = {
      pgraft: a,
      etcd: b,
      ratio,
      pgraft_better_when: higherIsBetter ? "ratio > 1" : "ratio < 1",
      pgraft_better: ratio === null ? null : higherIsBetter ? ratio > 1 : ratio < 1,
    };
    out[name] = entry;
  };
  const both = (path: string[], higherIsBetter: boolean) =>
    add(path.join("."), pick(pgraft, ...path), pick(etcd, ...path), higherIsBetter);
  both(["commit_latency_1_client", "p50_ms"], false);
  both(["commit_latency_1_client", "p99_ms"], false);
  for (const clients of [1, 16, 64]) {
    both(["throughput", `clients_${clients}`, "writes_per_s"], true);
    both(["throughput", `clients_${clients}`, "p50_ms"], false);
    both(["throughput", `clients_${clients}`, "p99_ms"], false);
  }
  both(["throughput", "clients_64", "cpu_ms_per_write"], false);
  both(["failover", "to_write_median_ms"], false);
  both(["failover", "to_write_max_ms"], false);
  both(["failover_silent", "to_write_median_ms"], false);
  both(["failover_silent", "to_write_max_ms"], false);
  add(
    "rss_peak_mb (max over nodes; pgraft: the agent alone, without PostgreSQL)",
    maxOf(pgraft["rss_peak_mb"]),
    maxOf(etcd["rss_peak_mb"]),
    false,
  );
  return out;
}

/** Run the cluster benchmark (and etcd's beside it when asked); returns the figures. */
export async function clusterBench(options: ClusterBenchOptions): Promise<ClusterBenchResult> {
  const q = options.quick;
  const extraConfig = `pgraft.heartbeat_interval = '${HEARTBEAT_MS}ms'\n` +
    `pgraft.election_timeout = '${ELECTION_MS}ms'\n`;
  const startedAt = performance.now();
  let peerResult: Record<string, unknown> | null = null;
  progress("cluster: starting 3 PostgreSQL servers and 3 agents");
  const pgraftResult = await withCluster(
    { nodes: 3, bootstrap: true, extraConfig },
    async (cluster) => {
      const kv = new KvClient();
      const pgraft = new PgraftTarget(cluster, kv);
      let etcd: EtcdCluster | null = null;
      let etcdTarget: EtcdTarget | null = null;
      try {
        const result: Record<string, unknown> = {
          nodes: 3,
          heartbeat_ms: HEARTBEAT_MS,
          election_timeout_ms: ELECTION_MS,
        };
        let leader = await pgraft.settle(30_000);
        progress(
          `cluster: up in ${Math.round(performance.now() - startedAt)} ms, leader ${leader}`,
        );

        // The peer runs beside pgraft for the whole run; a failure of one of its
        // steps is recorded in its section and pgraft's figures go on.
        const peer: Record<string, unknown> = {};
        const peerErrors: Record<string, string> = {};
        if (options.peer === "etcd") {
          peerResult = peer;
          const version = await etcdVersion();
          if (!version) {
            progress(`etcd: ${ETCD_MISSING}; pgraft's figures alone`);
            peer["skipped"] = ETCD_MISSING;
          } else {
            progress(`etcd: starting 3 members (etcd ${version})`);
            try {
              etcd = await EtcdCluster.start({
                heartbeatMs: HEARTBEAT_MS,
                electionMs: ELECTION_MS,
              });
              etcdTarget = new EtcdTarget(etcd);
              Object.assign(peer, {
                version,
                members: 3,
                heartbeat_ms: HEARTBEAT_MS,
                election_timeout_ms: ELECTION_MS,
                settings: "--heartbeat-interval and --election-timeout as pgraft's; etcd's " +
                  "defaults otherwise (snapshot count, backend quota, pre-vote off), " +
                  "data on the same disk, writes through the HTTP gateway POST /v3/kv/put",
                leader: await etcdTarget.settle(),
              });
            } catch (error) {
              progress(`etcd: FAILED to start: ${(error as Error).message}`);
              peer["error"] = `start: ${(error as Error).message}`;
            }
          }
        }
        /** Run one etcd step when etcd runs; null when it does not or the step failed. */
        const peerStep = async <T>(
          name: string,
          fn: (t: EtcdTarget, e: EtcdCluster) => Promise<T>,
        ): Promise<T | null> => {
          if (!etcd || !etcdTarget) return null;
          try {
            return await fn(etcdTarget, etcd);
          } catch (error) {
            progress(`etcd: ${name} FAILED: ${(error as Error).stack ?? error}`);
            peerErrors[name] = (error as Error).message;
            peer["errors"] = peerErrors;
            return null;
          }
        };
        /** CPU groups: pgraft's agents and servers, etcd's members, this client. */
        const grouper = (): Grouper => {
          const a = clusterGrouper(cluster);
          const b = etcd?.grouper();
          return (pid, ppid) => a(pid, ppid) ?? b?.(pid, ppid) ?? null;
        };
        const setPeer = (key: string, value: unknown) => {
          if (value !== null) peer[key] = value;
        };

        result["rss_idle_mb"] = await rssAll(cluster);
        setPeer("rss_idle_mb", await peerStep("rss", (_, e) => e.rss()));

        progress("cluster: SQL status function latency");
        result["sql_status"] = await sqlStatusLatency(cluster, leader, q ? 100 : 300);

        // Commit latency and throughput: pgraft and etcd interleaved in slices
        // (A B, B A, …), who starts alternating from one measurement to the next.
        const slices = q ? 2 : 4;
        /** Settle both systems and list them, `etcdFirst` or not; etcd only when it settles. */
        const contenders = async (etcdFirst: boolean): Promise<Contender[]> => {
          leader = await pgraft.settle();
          const list: Contender[] = [{ target: pgraft, systemGroups: ["agent_", "postgres_"] }];
          const e = await peerStep("settle", async (t) => {
            await t.settle();
            return { target: t, systemGroups: ["etcd_"] };
          });
          if (e && etcdFirst) list.unshift(e);
          else if (e) list.push(e);
          return list;
        };
        const names = (list: Contender[]) => list.map((c) => c.target.name).join(", ");

        let list = await contenders(false);
        progress(`cluster: commit latency, one client (${names(list)}; ${slices} slices)`);
        const latency = await commitLatency(list, {
          ops: q ? 300 : 2_000,
          warmup: q ? 50 : 200,
          grouper: grouper(),
          slices,
        });
        result["commit_latency_1_client"] = latency["pgraft"];
        setPeer("commit_latency_1_client", latency["etcd"] ?? null);

        const tp: Record<string, unknown> = {};
        const etcdTp: Record<string, unknown> = {};
        const clientCounts = [1, 16, 64];
        for (const [k, clients] of clientCounts.entries()) {
          list = await contenders(k % 2 === 0);
          progress(`cluster: throughput, ${clients} clients (${names(list)}; ${slices} slices)`);
          const both = await throughput(list, {
            clients,
            durationMs: q ? 1_500 : 5_000,
            grouper: grouper(),
            slices,
          });
          tp[`clients_${clients}`] = both["pgraft"];
          if (both["etcd"]) etcdTp[`clients_${clients}`] = both["etcd"];
        }
        result["throughput"] = tp;
        if (etcd) {
          peer["throughput"] = etcdTp;
          setPeer("rss_after_load_mb", await peerStep("rss", (_, e) => e.rss()));
          setPeer("rss_peak_mb", await peerStep("rss", (_, e) => e.rss("VmHWM")));
        }
        result["leader_log_stats_after_load"] = await logStats(cluster, leader);
        result["rss_after_load_mb"] = await rssAll(cluster);
        result["rss_peak_mb"] = await rssAll(cluster, "VmHWM");

        progress("cluster: leadership transfer");
        result["transfer"] = await transfer(cluster, pgraft, q ? 2 : 5);

        progress("cluster: SIGTERM handoff");
        result["sigterm_handoff"] = await sigtermHandoff(cluster, pgraft);

        // Failover: rounds alternating between the two systems (who goes first too);
        // after an etcd round failed, the other etcd rounds of that kind are left out.
        const rounds = q ? 2 : 5;
        for (const kind of ["kill", "pause"] as LossKind[]) {
          const key = kind === "kill" ? "failover" : "failover_silent";
          progress(`cluster: failover after ${kind === "kill" ? "kill -9" : "SIGSTOP"}`);
          const pgraftRuns: Record<string, unknown>[] = [];
          const etcdRuns: Record<string, unknown>[] = [];
          let etcdOk = true;
          for (let r = 1; r <= rounds; r++) {
            const etcdRound = async () => {
              if (!etcdOk) return;
              const run = await peerStep(
                key,
                (t) => failoverRound(t, kind, r, { heartbeatMs: HEARTBEAT_MS }),
              );
              if (run) etcdRuns.push(run);
              else etcdOk = false;
            };
            if (r % 2 === 0) await etcdRound();
            pgraftRuns.push(await failoverRound(pgraft, kind, r, { heartbeatMs: HEARTBEAT_MS }));
            if (r % 2 === 1) await etcdRound();
          }
          result[key] = failoverSummary(kind, pgraftRuns, ELECTION_MS);
          if (etcd && etcdRuns.length) peer[key] = failoverSummary(kind, etcdRuns, ELECTION_MS);
        }

        result["rss_end_mb"] = await rssAll(cluster);
        setPeer("rss_end_mb", await peerStep("rss", (_, e) => e.rss()));
        result["seconds"] = round((performance.now() - startedAt) / 1000, 1);
        return result;
      } finally {
        etcdTarget?.close();
        kv.close();
        if (etcd) {
          const t = performance.now();
          await etcd.stop();
          progress(`etcd: every member stopped in ${Math.round(performance.now() - t)} ms`);
        }
      }
    },
  );
  return { cluster: pgraftResult, etcd: peerResult };
}
