/**
 * `pgraft dev`: a local cluster for trying pgraft. N PostgreSQL servers under
 * one directory (reused on the next start), one agent each as a child
 * process, bootstrapped with pgraft_init() and pgraft_add_node(); then one
 * psql line per node. Ctrl+C stops every process it started.
 *
 * @module
 */

import { join, resolve } from "node:path";
import postgres from "postgres";
import { poll } from "../async.ts";
import { freePort, PgServer } from "../postgres/server.ts";
import type { Flags, Output } from "./output.ts";

/** What `dev` remembers between runs (ports stay the same). */
interface DevLayout {
  nodes: { id: number; pgPort: number; agentPort: number }[];
}

/** One node of the dev cluster. */
export interface DevNode {
  id: number;
  server: PgServer;
  agentPort: number;
  configFile: string;
  agent: Deno.ChildProcess | null;
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
}

/** Start a node's agent as a child process, its output appended to agent.log in its data dir. */
export function startAgent(node: DevNode, extraArgs: string[] = []): void {
  if (node.agent) throw new Error(`the agent of node ${node.id} is already running`);
  const logFile = join(node.server.dataDir, "agent.log");
  const { cmd, args } = agentCommand([
    "run",
    "--config",
    node.configFile,
    "--log-format",
    "text",
    ...extraArgs,
  ]);
  // The shell appends the agent's output to its log file and then becomes the
  // agent (exec), so the child's PID is the agent's and the log survives us.
  const quoted = [cmd, ...args, ">>", logFile, "2>&1"].map((a) =>
    a === ">>" || a === "2>&1" ? a : `'${a.replaceAll("'", `'"'"'`)}'`
  ).join(" ");
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", `exec ${quoted}`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  node.agent = child;
}

/** Stop a node's agent with `signal` and wait for it (SIGKILL after 15 s). */
export async function stopAgent(node: DevNode, signal: Deno.Signal = "SIGTERM"): Promise<void> {
  const child = node.agent;
  if (!child) return;
  try {
    child.kill(signal);
  } catch { /* gone */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 15_000);
  await child.status;
  clearTimeout(timer);
  node.agent = null;
}

/**
 * V8 flags for agents: a small young generation keeps the agent's resident
 * memory near its live data (measured: ~150 MB -> ~95 MB after a write burst)
 * at no measurable throughput cost. compile.sh builds them into the executable.
 */
export const AGENT_V8_FLAGS = "--max-semi-space-size=1";

/** The command line that starts an agent: this executable, or deno running main.ts. */
export function agentCommand(args: string[]): { cmd: string; args: string[] } {
  const exec = Deno.execPath();
  if (/(^|\/)deno$/.test(exec)) {
    const main = new URL("../../main.ts", import.meta.url).pathname;
    return { cmd: exec, args: ["run", "-A", `--v8-flags=${AGENT_V8_FLAGS}`, main, ...args] };
  }
  return { cmd: exec, args };
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
  return main;
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
    layout = {
      nodes: Array.from({ length: options.nodes }, (_, i) => ({
        id: i + 1,
        pgPort: freePort(),
        agentPort: freePort(),
      })),
    };
    await Deno.writeTextFile(layoutFile, JSON.stringify(layout, null, 2));
  }
  const nodes: DevNode[] = [];
  try {
    for (const n of layout.nodes) {
      const dataDir = join(dir, `node${n.id}`);
      say(`starting PostgreSQL for node ${n.id} on port ${n.pgPort}`);
      const server = await PgServer.create({ dataDir, port: n.pgPort, removeOnStop: false });
      const configFile = await writeConfig(
        dataDir,
        n.id,
        n.pgPort,
        n.agentPort,
        options.extraConfig ?? "",
      );
      nodes.push({ id: n.id, server, agentPort: n.agentPort, configFile, agent: null });
    }
    for (const node of nodes) {
      say(`starting the agent of node ${node.id} on port ${node.agentPort}`);
      startAgent(node);
    }
    await waitForAgents(nodes);
    if (options.bootstrap ?? true) await bootstrap(nodes, say);
    return nodes;
  } catch (error) {
    await stopDevCluster(nodes);
    throw error;
  }
}

function connectTo(node: DevNode) {
  return postgres({
    host: node.server.host,
    port: node.server.port,
    user: node.server.user,
    database: node.server.database,
    max: 1,
    onnotice: () => {},
  });
}

/** Wait until every agent publishes its status (60 s at most); an agent that exits is reported. */
export async function waitForAgents(nodes: DevNode[], timeoutMs = 60_000): Promise<void> {
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
      }, { timeoutMs, intervalMs: 100, what: `the agent of node ${node.id} to start` });
    } finally {
      await sql.end();
    }
  }
}

/** Init the cluster on node 1 and add the others (first start only). */
async function bootstrap(nodes: DevNode[], say: (line: string) => void): Promise<void> {
  const first = connectTo(nodes[0]!);
  try {
    const [status] = await first`select cluster_id from pgraft_get_cluster_status()`;
    if (status?.cluster_id) {
      say(`cluster ${status.cluster_id} already initialized; rejoining`);
      return;
    }
    say("bootstrapping: pgraft_init() on node 1");
    await first`select pgraft_init()`;
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
  } finally {
    await first.end();
  }
}

/** Stop agents (SIGTERM: a leader hands over first), then the servers. */
export async function stopDevCluster(nodes: DevNode[]): Promise<void> {
  await Promise.all(nodes.map((node) => stopAgent(node)));
  await Promise.all(nodes.map((node) => node.server.stop()));
}

/** Run the command. */
export async function devCommand(flags: Flags, io: Output): Promise<number> {
  const count = flags.nodes === undefined ? 3 : Number(flags.nodes);
  if (!Number.isInteger(count) || count < 1 || count > 9) {
    io.err(`pgraft dev: invalid --nodes "${flags.nodes}" (expected 1..9)\n`);
    return 2;
  }
  const dir = (flags.dir as string | undefined) ?? ".pgraft-dev";
  let nodes: DevNode[];
  try {
    nodes = await startDevCluster({ nodes: count, dir, say: (line) => io.err(line + "\n") });
  } catch (error) {
    io.err(`pgraft dev: ${(error as Error).message}\n`);
    return 1;
  }
  const sql = connectTo(nodes[0]!);
  const [row] = await sql`select pgraft_get_leader() as leader`.catch(() => [{ leader: null }]);
  await sql.end();
  io.out(
    `\npgraft dev cluster is up (${count} nodes, data in ${
      resolve(dir)
    }); leader: node ${row?.leader}\n\n`,
  );
  for (const node of nodes) {
    io.out(
      `  node ${node.id}: ${node.server.psqlCommand}    # agent on 127.0.0.1:${node.agentPort}\n`,
    );
  }
  io.out(`
Try:
  SELECT * FROM pgraft_get_cluster_status();
  SELECT node_id, state, match_index, commit_index, last_heartbeat_ms FROM pgraft_get_nodes();
  SELECT pgraft_transfer_leadership(2);
  SELECT pgraft_is_leader(), pgraft_get_leader();
  SELECT * FROM pgraft_get_events() ORDER BY event_timestamp DESC LIMIT 5;

Agent logs: ${resolve(dir)}/nodeN/agent.log. Press Ctrl+C to stop every process.
`);
  await new Promise<void>((resolveStop) => {
    const stop = () => resolveStop();
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
  io.err("stopping the dev cluster…\n");
  await stopDevCluster(nodes);
  return 0;
}
