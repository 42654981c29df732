/**
 * `deno task bench`: the benchmark suite. Prints ONE JSON object on stdout
 * (progress goes to stderr) with the floor of this machine (PostgreSQL commit,
 * loopback HTTP), the storage (the Raft log on disk: bench/wal.ts), core,
 * transport and cluster figures, high availability (bench/ha.ts: switchovers
 * and failovers of PostgreSQL under load), and DESIGN.md's targets beside
 * them, each with `met`.
 *
 * Flags: `--only floor,storage,transport,cluster,ha` runs a subset; `--quick`
 * shortens every part (a smoke run); `--peer etcd` runs a 3-member etcd beside
 * the cluster part (same timeouts, same load generator) and adds the sections
 * `etcd` (its figures) and `vs_etcd` (each figure of both, with the ratio
 * pgraft / etcd) — or, without etcd on the machine, says so and measures
 * pgraft alone.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { connect, withPgServer } from "../tests/helpers/pg.ts";
import { clusterBench, ELECTION_MS, HEARTBEAT_MS, type Peer, versusEtcd } from "./cluster.ts";
import { coreBench } from "./core.ts";
import { httpRoundTrip, pgCommitLatency } from "./floor.ts";
import { HA_ELECTION_MS, haBench } from "./ha.ts";
import { pick, progress, round } from "./stats.ts";
import { walBench } from "./wal.ts";

const PARTS = ["floor", "core", "storage", "transport", "cluster", "ha"] as const;
type Part = (typeof PARTS)[number];
const PEERS: readonly Peer[] = ["etcd"];

/** One target: the figure measured, the bound, and whether it is met (null: not measured). */
interface Target {
  figure: string;
  target: string;
  actual: number | boolean | null;
  /** the bound in `actual`'s unit when it is etcd's figure (null: etcd not measured) */
  bound?: number | null;
  met: boolean | null;
}

/** The parsed command line. */
interface Flags {
  only: Set<Part>;
  quick: boolean;
  peer: Peer | null;
}

function parseFlags(args: string[]): Flags {
  const { values } = parseArgs({
    args,
    options: {
      only: { type: "string" },
      quick: { type: "boolean", default: false },
      peer: { type: "string" },
    },
    strict: true,
  });
  const peer = values.peer ?? null;
  if (peer !== null && !(PEERS as readonly string[]).includes(peer)) {
    throw new TypeError(`--peer: unknown system "${peer}" (expected ${PEERS.join(", ")})`);
  }
  const only = new Set<Part>();
  for (const name of (values.only ?? PARTS.join(",")).split(",").map((s) => s.trim())) {
    if (!name) continue;
    if (!(PARTS as readonly string[]).includes(name)) {
      throw new TypeError(`--only: unknown part "${name}" (expected ${PARTS.join(", ")})`);
    }
    only.add(name as Part);
  }
  return { only, quick: values.quick ?? false, peer: peer as Peer | null };
}

/** Run `fn`; a failure becomes `{ error }` in the report instead of ending the run. */
async function part(
  name: string,
  fn: () => Promise<Record<string, unknown>>,
): Promise<Record<string, unknown>> {
  const started = performance.now();
  progress(`${name}: start`);
  try {
    const result = await fn();
    progress(`${name}: done in ${round((performance.now() - started) / 1000, 1)} s`);
    return result;
  } catch (error) {
    progress(`${name}: FAILED: ${(error as Error).stack ?? error}`);
    return { error: String((error as Error).message ?? error) };
  }
}

/** The transport benchmark of bench/transport.ts, when that file exists. */
async function transportPart(): Promise<Record<string, unknown>> {
  const url = new URL("./transport.ts", import.meta.url);
  try {
    await Deno.stat(url);
  } catch {
    return { skipped: "bench/transport.ts missing" };
  }
  const mod = await import(url.href) as {
    transportBench?: () => Promise<Record<string, unknown>>;
  };
  if (typeof mod.transportBench !== "function") {
    return { skipped: "bench/transport.ts does not export transportBench()" };
  }
  return await mod.transportBench();
}

function atMost(figure: string, actual: number | null, bound: number, unit: string): Target {
  return {
    figure,
    target: `<= ${bound} ${unit}`,
    actual,
    met: actual === null ? null : actual <= bound,
  };
}

function atLeast(figure: string, actual: number | null, bound: number, unit: string): Target {
  return {
    figure,
    target: `>= ${bound} ${unit}`,
    actual,
    met: actual === null ? null : actual >= bound,
  };
}

/**
 * A bound relative to etcd's figure in the same run: `actual` against
 * `factor` × `etcd` (`op` "<=" or ">="); `met` is null when either is missing.
 */
function versusPeer(
  figure: string,
  actual: number | null,
  etcd: number | null,
  op: "<=" | ">=",
  factor: number,
  what: string,
): Target {
  const bound = etcd === null ? null : round(factor * etcd, 2);
  const met = actual === null || bound === null
    ? null
    : op === "<="
    ? actual <= bound
    : actual >= bound;
  return {
    figure,
    target: `${op} ${factor === 1 ? "" : `${factor} x `}${what}` +
      (bound === null ? " (etcd not measured: run with --peer etcd)" : ` = ${bound}`),
    actual,
    bound,
    met,
  };
}

/** DESIGN.md "Targets", each beside what this run measured (and etcd's figures when measured). */
function targets(
  core: Record<string, unknown> | undefined,
  storage: Record<string, unknown> | undefined,
  cluster: Record<string, unknown> | undefined,
  etcd: Record<string, unknown> | undefined,
  ha: Record<string, unknown> | undefined,
): Record<string, Target> {
  const c = cluster ?? {};
  const e = etcd ?? {};
  const rss = ["rss_after_load_mb", "rss_peak_mb", "rss_end_mb"].flatMap((k) =>
    Object.values((c[k] ?? {}) as Record<string, number | null>)
  ).filter((x): x is number => typeof x === "number");
  const handoff = c["sigterm_handoff"] as Record<string, unknown> | undefined;
  const noTimeout = handoff?.["no_client_saw_election_timeout"];
  const out: Record<string, Target> = {
    throughput_64_clients: versusPeer(
      "cluster.throughput.clients_64.writes_per_s",
      pick(c, "throughput", "clients_64", "writes_per_s"),
      pick(e, "throughput", "clients_64", "writes_per_s"),
      ">=",
      3,
      "etcd's writes/s at 64 clients",
    ),
    commit_latency_p50: versusPeer(
      "cluster.commit_latency_1_client.p50_ms",
      pick(c, "commit_latency_1_client", "p50_ms"),
      pick(e, "commit_latency_1_client", "p50_ms"),
      "<=",
      1,
      "etcd's p50 ms at one client",
    ),
    commit_latency_p99: atMost(
      "cluster.commit_latency_1_client.p99_ms",
      pick(c, "commit_latency_1_client", "p99_ms"),
      10,
      "ms",
    ),
    failover_agent_dies: atMost(
      "cluster.failover.to_write_max_ms (kill -9 of the leader's agent, every round)",
      pick(c, "failover", "to_write_max_ms"),
      4 * HEARTBEAT_MS,
      "ms (4 x heartbeat_interval)",
    ),
    failover_silent_median: versusPeer(
      "cluster.failover_silent.to_write_median_ms (SIGSTOP of the leader's agent)",
      pick(c, "failover_silent", "to_write_median_ms"),
      pick(e, "failover_silent", "to_write_median_ms"),
      "<=",
      1,
      "etcd's median ms after SIGSTOP of its leader, equal timeouts",
    ),
    failover_silent_max: atMost(
      "cluster.failover_silent.to_write_max_ms (every round)",
      pick(c, "failover_silent", "to_write_max_ms"),
      2 * ELECTION_MS,
      "ms (2 x election_timeout)",
    ),
    transfer: atMost(
      "cluster.transfer.to_write_max_ms (every round)",
      pick(c, "transfer", "to_write_max_ms"),
      4 * HEARTBEAT_MS,
      "ms (4 x heartbeat_interval)",
    ),
    sigterm_handoff: {
      figure: "cluster.sigterm_handoff.no_client_saw_election_timeout",
      target: "true (no client write failed or waited > election_timeout)",
      actual: typeof noTimeout === "boolean" ? noTimeout : null,
      met: typeof noTimeout === "boolean" ? noTimeout : null,
    },
    sigterm_handoff_time: atMost(
      "cluster.sigterm_handoff.to_write_ms",
      pick(handoff, "to_write_ms"),
      ELECTION_MS,
      "ms (less than one election_timeout)",
    ),
    agent_rss: atMost(
      "cluster.rss_after_load_mb / rss_peak_mb (VmHWM) / rss_end_mb (max over nodes)",
      rss.length ? Math.max(...rss) : null,
      80,
      "MB",
    ),
  };
  for (const fn of ["pgraft_get_nodes()", "pgraft_get_cluster_status()", "pgraft_is_leader()"]) {
    out[`sql_${fn.replace(/\W/g, "")}`] = atMost(
      `cluster.sql_status["${fn}"].p50_ms`,
      pick(c, "sql_status", fn, "p50_ms"),
      1,
      "ms",
    );
  }
  out["ha_switchover"] = atMost(
    "ha.switchover.gap_max_ms (write unavailability, every round)",
    pick(ha, "switchover", "gap_max_ms"),
    1_500,
    "ms",
  );
  out["ha_failover"] = atMost(
    "ha.failover_machine_dies.writes_again_max_ms (every round)",
    pick(ha, "failover_machine_dies", "writes_again_max_ms"),
    HA_ELECTION_MS + 2_000,
    "ms (election_timeout + 2 s)",
  );
  const lost = ["switchover", "failover_machine_dies"].map((k) => pick(ha, k, "lost_acknowledged"));
  out["ha_nothing_lost"] = atMost(
    "ha.*.lost_acknowledged (synchronous_replication on)",
    lost.some((n) => n === null) ? null : lost.reduce((a, b) => a! + b!, 0),
    0,
    "acknowledged commits",
  );
  const writable = ["switchover", "failover_machine_dies"].map((k) =>
    pick(ha, k, "most_writable_at_one_probe")
  );
  out["ha_one_writable"] = atMost(
    "ha.*.most_writable_at_one_probe",
    writable.some((n) => n === null) ? null : Math.max(...writable.map((n) => n!)),
    1,
    "writable server at any probe",
  );
  // Issue 3: the core alone, 3 nodes in memory.
  out["core_entries_per_s"] = atLeast(
    "core.entriesPerSecond",
    pick(core, "entriesPerSecond"),
    200_000,
    "entries/s (issue 3)",
  );
  out["storage_append_1"] = atMost(
    "storage.wal_storage.append_1_entry.p50_vs_fdatasync",
    pick(storage, "wal_storage", "append_1_entry", "p50_vs_fdatasync"),
    2,
    "x the disk's fdatasync p50",
  );
  out["storage_batch_512"] = atLeast(
    "storage.wal_storage.batch_512_entries.entries_per_s",
    pick(storage, "wal_storage", "batch_512_entries", "entries_per_s"),
    200_000,
    "entries/s",
  );
  return out;
}

function loadavg(): Promise<string[] | null> {
  return Deno.readTextFile("/proc/loadavg").then((t) => t.split(" ").slice(0, 3))
    .catch(() => null);
}

async function machine(): Promise<Record<string, unknown>> {
  return {
    deno: Deno.version.deno,
    cpus: navigator.hardwareConcurrency,
    loadavg_at_start: await loadavg(),
  };
}

/** Run the selected parts; returns the report. */
export async function runBench(args: string[]): Promise<Record<string, unknown>> {
  const { only, quick, peer } = parseFlags(args);
  const report: Record<string, unknown> = { quick, peer, machine: await machine() };
  const startedAt = performance.now();

  if (only.has("floor")) {
    await withPgServer(async (server) => {
      const sql = connect(server, { max: 1 });
      try {
        report["floor"] = {
          pg_commit: await part("floor.pg_commit", () => pgCommitLatency(sql, quick ? 200 : 500)),
          http_loopback: await part("floor.http", () => httpRoundTrip(quick ? 300 : 1_000)),
        };
      } finally {
        await sql.end();
      }
    });
  }
  if (only.has("storage")) report["storage"] = await part("storage", () => walBench({ quick }));
  if (only.has("core")) {
    report["core"] = await part(
      "core",
      () => Promise.resolve(coreBench({ durationMs: quick ? 500 : 2_000 })),
    );
  }
  if (only.has("transport")) report["transport"] = await part("transport", transportPart);
  if (only.has("cluster")) {
    let etcd: Record<string, unknown> | null = null;
    report["cluster"] = await part("cluster", async () => {
      const both = await clusterBench({ quick, peer });
      etcd = both.etcd;
      return both.cluster;
    });
    if (peer === "etcd") {
      const e: Record<string, unknown> = etcd ?? { error: "the cluster part failed first" };
      report["etcd"] = e;
      if (!("skipped" in e) && !("error" in e)) {
        report["vs_etcd"] = versusEtcd(report["cluster"] as Record<string, unknown>, e);
      }
    }
  } else if (peer) {
    const why = `--peer ${peer} runs with the cluster part, which --only left out`;
    progress(why);
    report[peer] = { skipped: why };
  }

  if (only.has("ha")) report["ha"] = await part("ha", () => haBench({ quick }));

  report["targets"] = targets(
    report["core"] as Record<string, unknown> | undefined,
    report["storage"] as Record<string, unknown> | undefined,
    report["cluster"] as Record<string, unknown> | undefined,
    report["etcd"] as Record<string, unknown> | undefined,
    report["ha"] as Record<string, unknown> | undefined,
  );
  report["seconds"] = round((performance.now() - startedAt) / 1000, 1);
  (report["machine"] as Record<string, unknown>)["loadavg_at_end"] = await loadavg();
  return report;
}

if (import.meta.main) {
  let code = 0;
  try {
    console.log(JSON.stringify(await runBench(Deno.args), null, 2));
  } catch (error) {
    console.error(`bench: ${(error as Error).message}`);
    code = 2;
  }
  Deno.exit(code);
}
