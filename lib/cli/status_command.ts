/**
 * `pgraft status --config FILE [--json]`: the cluster as this node sees it,
 * read through the same SQL functions operators use
 * (`pgraft_get_cluster_status()`, `pgraft_get_nodes()`), printed like
 * `patronictl list`: a header with the cluster's name, id and leader, then
 * one line per member — member, host:port, role, state, term, lag.
 *
 * @module
 */

import { openPostgres } from "../postgres/connection.ts";
import { configAndConnection, type Flags, formatTable, type Output } from "./output.ts";

/** One member as the table shows it. */
export interface StatusMember {
  /** the node id */
  member: number;
  host: string;
  port: number;
  /** `leader`, `follower` or `learner` (a non-voting member catching up) */
  role: "leader" | "follower" | "learner";
  /** `running`, `candidate`, `unreachable` (the leader cannot reach it) or `unknown` */
  state: string;
  /** the term as this node knows it */
  term: number | null;
  /** entries the member has not acknowledged yet; null when this node does not know */
  lag: number | null;
}

/** What `pgraft status` reports (`--json` prints it as is). */
export interface StatusReport {
  /** the cluster: this node's `pgraft_get_cluster_status()` row */
  cluster: Record<string, unknown> | null;
  /** one entry per member, as the table shows them */
  members: StatusMember[];
  /** this node's `pgraft_get_nodes()` rows */
  nodes: Record<string, unknown>[];
}

function numberOrNull(value: unknown): number | null {
  if (value === null || value === undefined) return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

/**
 * The members as the table shows them, from the rows of the two SQL functions.
 *
 * @param cluster this node's `pgraft_get_cluster_status()` row
 * @param nodes this node's `pgraft_get_nodes()` rows
 * @example
 * ```ts
 * const [m] = statusMembers({ leader_id: 1, current_term: 2 }, [
 *   { node_id: 1, address: "127.0.0.1", port: 7001, state: "leader", is_voter: true, lag_entries: 0 },
 * ]);
 * // m.role === "leader" && m.state === "running"
 * ```
 */
export function statusMembers(
  cluster: Record<string, unknown> | null,
  nodes: readonly Record<string, unknown>[],
): StatusMember[] {
  const leader = numberOrNull(cluster?.leader_id);
  const term = numberOrNull(cluster?.current_term);
  return nodes.map((node) => {
    const id = Number(node.node_id);
    const seen = String(node.state ?? "unknown");
    const role = id === leader ? "leader" : node.is_voter === false ? "learner" : "follower";
    const state = seen === "unreachable" || seen === "unknown" || seen === "candidate"
      ? seen
      : "running";
    return {
      member: id,
      host: String(node.address ?? ""),
      port: Number(node.port),
      role,
      state,
      term,
      lag: numberOrNull(node.lag_entries),
    };
  });
}

/**
 * The report as text: a header line, then the members' table.
 *
 * @example
 * ```ts
 * formatStatus({ cluster: { cluster_name: "pgraft", node_id: 1, leader_id: 1 }, members: [], nodes: [] });
 * // starts with "cluster pgraft"
 * ```
 */
export function formatStatus(report: StatusReport): string {
  const c = report.cluster;
  const leader = c?.leader_id === null || c?.leader_id === undefined
    ? "none known"
    : `node ${c.leader_id}`;
  const header = `cluster ${c?.cluster_name ?? "?"} (${
    c?.cluster_id ?? "not initialized"
  }) · leader: ${leader} · term ${c?.current_term ?? "?"} · quorum: ${
    c?.quorum_met ? "yes" : "no"
  } · as seen by node ${c?.node_id ?? "?"}`;
  const rows = report.members.map((m) => ({
    member: m.member,
    "host:port": `${m.host}:${m.port}`,
    role: m.role,
    state: m.state,
    term: m.term,
    lag: m.lag === null ? "unknown" : m.lag,
  }));
  return header + "\n\n" + formatTable(rows);
}

/** Run the command. */
export async function statusCommand(flags: Flags, io: Output): Promise<number> {
  const loaded = await configAndConnection(flags, io, "status");
  if (!loaded) return 1;
  const { connection } = loaded;
  const sql = openPostgres({ ...connection, max: 1, connect_timeout: 5 });
  try {
    const [cluster] = await sql`select * from pgraft_get_cluster_status()`;
    const nodes = [...await sql`select * from pgraft_get_nodes()`];
    const report: StatusReport = {
      cluster: cluster ?? null,
      members: statusMembers(cluster ?? null, nodes),
      nodes,
    };
    io.out(flags.json ? JSON.stringify(report, null, 2) + "\n" : formatStatus(report));
    if (cluster?.agent_running) return 0;
    io.err(
      "pgraft status: the agent is not running on this node (its status is not being refreshed); " +
        "start it with pgraft run --config FILE\n",
    );
    return 1;
  } catch (error) {
    io.err(`pgraft status: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await sql.end({ timeout: 2 });
  }
}
