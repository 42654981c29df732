/**
 * `pgraft dev --ha`: a local high-availability cluster — agents with
 * `pgraft.manage_postgres = on` that run their PostgreSQL servers, the Raft
 * leader's as the primary. Laid out as a Debian installation is: each node's
 * `postgresql.conf` and `pg_hba.conf` in `nodeN/etc/`, outside its data
 * directory `nodeN/data`. Node 1's data directory is initialized as an
 * operator would (initdb); the others start empty and are cloned from the
 * primary when they are added. The end-to-end tests run the same layout
 * (tests/helpers/ha_cluster.ts).
 *
 * @module
 */

import { join, resolve } from "node:path";
import postgres from "postgres";
import { openPostgres } from "../postgres/connection.ts";
import { poll } from "../async.ts";
import { initDataDirectory } from "../postgres/data_directory.ts";
import { chownToServerUser } from "../postgres/programs.ts";
import { findPgBinaries, freePort, type PgBinaries } from "../postgres/server.ts";
import { spawnAgent, stopAgentProcess } from "./agent_process.ts";

/** Every server and agent listens here. */
export const HA_HOST = "127.0.0.1";

/** One node of an HA dev cluster. */
export interface HaNode {
  id: number;
  /** nodeN/ */
  dir: string;
  dataDir: string;
  configFile: string;
  pgPort: number;
  agentPort: number;
  /** the agent's output */
  logFile: string;
  agent: Deno.ChildProcess | null;
  /** the agent runs in a session of its own (out of reach of a terminal's Ctrl+C) */
  detached: boolean;
}

/** Options of {@link layoutHaCluster}. */
export interface HaLayoutOptions {
  dir: string;
  nodes: number;
  /** the first ports to try (node N: first + N − 1 when free); @default any free ports */
  ports?: { pg: number; agent: number };
  /** extra lines for every node's postgresql.conf */
  extraConfig?: string;
  /** agents in sessions of their own @default false */
  detached?: boolean;
  bins?: PgBinaries;
}

/** What the layout remembers between runs (ports stay the same). */
interface HaLayout {
  nodes: { id: number; pgPort: number; agentPort: number }[];
}

/**
 * The cluster's nodes under `dir`: made on the first run (configuration,
 * node 1 initialized, the others empty), reused on the next.
 */
export async function layoutHaCluster(options: HaLayoutOptions): Promise<HaNode[]> {
  const dir = resolve(options.dir);
  await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
  await Deno.chmod(dir, 0o755);
  const layoutFile = join(dir, "cluster.json");
  let layout = await Deno.readTextFile(layoutFile).then((t) => JSON.parse(t) as HaLayout)
    .catch(() => null);
  const fresh = layout === null || layout.nodes.length !== options.nodes;
  if (fresh) {
    layout = { nodes: pickPorts(options.nodes, options.ports) };
    await Deno.writeTextFile(layoutFile, JSON.stringify(layout, null, 2));
  }
  const nodes: HaNode[] = [];
  for (const n of layout!.nodes) {
    const nodeDir = join(dir, `node${n.id}`);
    const node: HaNode = {
      id: n.id,
      dir: nodeDir,
      dataDir: join(nodeDir, "data"),
      configFile: join(nodeDir, "etc", "postgresql.conf"),
      pgPort: n.pgPort,
      agentPort: n.agentPort,
      logFile: join(nodeDir, "agent.log"),
      agent: null,
      detached: options.detached ?? false,
    };
    if (fresh) await writeNodeFiles(node, options.extraConfig ?? "");
    nodes.push(node);
  }
  const first = nodes[0]!;
  const initialized = await Deno.stat(join(first.dataDir, "PG_VERSION")).then(
    () => true,
    () => false,
  );
  if (!initialized) {
    await initDataDirectory(options.bins ?? await findPgBinaries(), first.dataDir);
  }
  return nodes;
}

function pickPorts(count: number, first?: { pg: number; agent: number }): HaLayout["nodes"] {
  const taken = new Set<number>();
  const pick = (preferred: number | null): number => {
    if (preferred !== null && !taken.has(preferred) && portFree(preferred)) {
      taken.add(preferred);
      return preferred;
    }
    for (let attempt = 0; attempt < 100; attempt++) {
      const port = freePort();
      if (!taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
    throw new Error(`no free TCP port on ${HA_HOST}`);
  };
  return Array.from({ length: count }, (_, i) => ({
    id: i + 1,
    pgPort: pick(first ? first.pg + i : null),
    agentPort: pick(first ? first.agent + i : null),
  }));
}

function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: HA_HOST, port }).close();
    return true;
  } catch {
    return false;
  }
}

/** postgresql.conf (with the node's pgraft settings), pg_hba.conf and pg_ident.conf in etc/. */
async function writeNodeFiles(node: HaNode, extraConfig: string): Promise<void> {
  const etc = join(node.dir, "etc");
  const run = join(node.dir, "run");
  for (const path of [node.dir, etc, run]) {
    await Deno.mkdir(path, { recursive: true, mode: 0o755 });
    await Deno.chmod(path, 0o755);
  }
  await chownToServerUser(run);
  await Deno.writeTextFile(
    node.configFile,
    [
      "# written by pgraft dev --ha; the agent runs this server (pgraft.manage_postgres)",
      `data_directory = '${node.dataDir}'`,
      `hba_file = '${join(etc, "pg_hba.conf")}'`,
      `ident_file = '${join(etc, "pg_ident.conf")}'`,
      `port = ${node.pgPort}`,
      `listen_addresses = '${HA_HOST}'`,
      `unix_socket_directories = '${run}'`,
      "max_connections = 40",
      "shared_buffers = 16MB",
      "logging_collector = off",
      `pgraft.node_id = ${node.id}`,
      `pgraft.address = '${HA_HOST}'`,
      `pgraft.port = ${node.agentPort}`,
      "pgraft.manage_postgres = on",
      `pgraft.data_dir = '${join(node.dir, "pgraft")}'`,
      "pgraft.heartbeat_interval = '100ms'",
      "pgraft.election_timeout = '1000ms'",
      extraConfig,
      "",
    ].join("\n"),
    { mode: 0o644 },
  );
  // Loopback only: every member may connect, also to stream (and pg_rewind, pg_basebackup).
  await Deno.writeTextFile(
    join(etc, "pg_hba.conf"),
    [
      "local all all trust",
      `host all all ${HA_HOST}/32 trust`,
      "local replication all trust",
      `host replication all ${HA_HOST}/32 trust`,
      "",
    ].join("\n"),
    { mode: 0o644 },
  );
  await Deno.writeTextFile(join(etc, "pg_ident.conf"), "", { mode: 0o644 });
}

/** Start `node`'s agent (`pgraft run --config`), its output appended to its log file. */
export function startHaAgent(node: HaNode): void {
  if (node.agent) throw new Error(`the agent of node ${node.id} is already running`);
  node.agent = spawnAgent(node.configFile, node.logFile, { detached: node.detached });
}

/**
 * Stop `node`'s agent with `signal` and wait for it (SIGKILL after 20 s). A
 * SIGTERM'd agent stops its server too (a primary after handing it over).
 */
export async function stopHaAgent(node: HaNode, signal: Deno.Signal = "SIGTERM"): Promise<void> {
  const child = node.agent;
  if (!child) return;
  await stopAgentProcess(child, signal, 20_000);
  node.agent = null;
}

/** A session on `node`'s server (the caller ends it). */
export function haClient(
  node: HaNode,
  options: postgres.Options<Record<string, never>> = {},
): postgres.Sql {
  return openPostgres({
    host: HA_HOST,
    port: node.pgPort,
    user: "postgres",
    database: "postgres",
    max: 1,
    connect_timeout: 2,
    idle_timeout: 5,
    ...options,
  });
}

/** One statement on a fresh session of `node`'s server. */
export async function haQuery<T extends postgres.MaybeRow[] = postgres.Row[]>(
  node: HaNode,
  text: string,
): Promise<T> {
  const sql = haClient(node);
  try {
    return await sql.unsafe(text) as unknown as T;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/**
 * Start every agent, and on a new cluster bootstrap it: `pgraft_init()` on
 * node 1 (whose server its agent runs as it is), `pgraft_add_node()` for the
 * others, then wait until each streams from node 1 (cloned on the way).
 */
export async function startHaCluster(
  nodes: HaNode[],
  say: (line: string) => void,
  signal?: AbortSignal,
  /** the host the agents reach each other at (the tests' partition proxies) */
  peerHost = HA_HOST,
): Promise<void> {
  for (const node of nodes) {
    startHaAgent(node);
    say(`started the agent of node ${node.id} on port ${node.agentPort}: pid ${node.agent?.pid}`);
  }
  const first = nodes[0]!;
  const exited = new Set<number>();
  for (const node of nodes) node.agent!.status.then(() => exited.add(node.id));
  const waitFor = async <T>(
    what: string,
    check: () => Promise<T | null | false>,
    timeoutMs = 90_000,
  ): Promise<T> => {
    // An agent that exits will not do its part: say which, and where its log is.
    let gone: HaNode | undefined;
    const value = await poll(async () => {
      gone = nodes.find((n) => exited.has(n.id));
      return gone ? true : await check();
    }, { timeoutMs, intervalMs: 100, ignoreErrors: true, what, signal });
    if (gone) throw new Error(`the agent of node ${gone.id} exited; see ${gone.logFile}`);
    return value as T;
  };
  const [status] = await waitFor("an agent to run a writable server", async () => {
    for (const node of nodes) {
      const rows = await haQuery<{ cluster_id: string | null; recovery: boolean }[]>(
        node,
        `select (select cluster_id::text from pgraft_get_cluster_status()) as cluster_id,
                pg_is_in_recovery() as recovery`,
      ).catch(() => null);
      if (rows?.[0]?.recovery === false) return rows;
    }
    return null;
  });
  if (status?.cluster_id) {
    say(`cluster ${status.cluster_id} already initialized; rejoining`);
    return;
  }
  say("bootstrapping: pgraft_init() on node 1");
  await haQuery(first, "select pgraft_init()");
  for (const node of nodes.slice(1)) {
    const call = `pgraft_add_node(${node.id}, '${peerHost}', ${node.agentPort})`;
    say(`adding node ${node.id}: ${call}`);
    await haQuery(first, `select ${call}`);
  }
  for (const node of nodes.slice(1)) {
    say(`  node ${node.id}: cloning node 1's server and streaming from it`);
    await waitFor(`node ${node.id}'s server to stream from node 1's`, async () => {
      const [row] = await haQuery<{ n: number }[]>(
        node,
        `select count(*)::int as n from pg_stat_wal_receiver
          where status = 'streaming' and sender_port = ${first.pgPort}`,
      );
      return row!.n > 0;
    });
  }
}

/**
 * Stop the agents (each stops its server): the standbys' first, the
 * primary's last, so that it has no voter to hand over to and stops at once.
 */
export async function stopHaCluster(nodes: HaNode[]): Promise<void> {
  const primaries: HaNode[] = [];
  for (const node of nodes) {
    const [row] = await haQuery<{ recovery: boolean }[]>(
      node,
      "select pg_is_in_recovery() as recovery",
    ).catch(() => [{ recovery: true }]);
    if (row?.recovery === false) primaries.push(node);
  }
  await Promise.all(nodes.filter((n) => !primaries.includes(n)).map((n) => stopHaAgent(n)));
  await Promise.all(primaries.map((n) => stopHaAgent(n)));
}

/** The libpq multi-host string that reaches whichever server accepts writes. */
export function multiHostConninfo(nodes: HaNode[]): string {
  return `host=${nodes.map(() => HA_HOST).join(",")} port=${
    nodes.map((n) => n.pgPort).join(",")
  } user=postgres dbname=postgres target_session_attrs=read-write`;
}

/** What to paste: the multi-host psql line, one line per node, the health checks. */
function readyText(nodes: HaNode[], dir: string, psql: boolean): string {
  const primaryAt = (n: HaNode) => `http://${HA_HOST}:${n.agentPort}`;
  return [
    "",
    `pgraft dev --ha cluster is up (${nodes.length} nodes, data in ${dir}): the Raft leader's ` +
    "server is the primary",
    "",
    "Connect to whichever server accepts writes (libpq's multi-host string):",
    `  psql '${multiHostConninfo(nodes)}'`,
    "",
    ...nodes.map((n) =>
      `  node ${n.id}: psql -h ${HA_HOST} -p ${n.pgPort} -U postgres    # agent on ${HA_HOST}:${n.agentPort}`
    ),
    ...(psql ? [] : [
      "  (no psql on this machine: install a client, e.g. apt-get install postgresql-client)",
    ]),
    "",
    "Try in psql:",
    "  SELECT node_id, state, pg_role, pg_lsn, wal_lag_bytes FROM pgraft_get_nodes();",
    "  SELECT node_id, leader_id, primary_id, timeline FROM pgraft_get_cluster_status();",
    "  SELECT pgraft_transfer_leadership(2);   -- a switchover: node 2's server becomes the primary",
    "",
    "Load balancers' health checks (as Patroni answers them):",
    ...nodes.map((n) =>
      `  curl -s -o /dev/null -w '%{http_code}\\n' ${primaryAt(n)}/primary    # node ${n.id}`
    ),
    `  curl ${primaryAt(nodes[nodes.length - 1]!)}/replica?lag=16MB`,
    "",
    `Agent logs: ${dir}/nodeN/agent.log; server logs: ${dir}/nodeN/data.log. ` +
    "Press Ctrl+C to stop every process.",
    "",
  ].join("\n");
}

/**
 * `pgraft dev --ha`: lay out (or reuse) the cluster under `dir`, start the
 * agents, bootstrap a new cluster, print what to try, and stop everything on
 * `signal`.
 *
 * @returns the exit code
 */
export async function runDevHa(options: {
  nodes: number;
  dir: string;
  say: (line: string) => void;
  out: (text: string) => void;
  psql: boolean;
  signal: AbortSignal;
  ports: { pg: number; agent: number };
}): Promise<number> {
  const { say, signal } = options;
  const nodes = await layoutHaCluster({
    dir: options.dir,
    nodes: options.nodes,
    ports: options.ports,
    detached: true,
  });
  try {
    await startHaCluster(nodes, say, signal);
    if (!signal.aborted) options.out(readyText(nodes, resolve(options.dir), options.psql));
    if (!signal.aborted) {
      await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
    }
  } finally {
    say("stopping the dev cluster: the standbys' agents first, the primary's last");
    const stopping = performance.now();
    await stopHaCluster(nodes);
    say(`stopped in ${((performance.now() - stopping) / 1000).toFixed(1)} s`);
  }
  return 0;
}
