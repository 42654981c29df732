/**
 * End-to-end clusters: real PostgreSQL servers and real agents started as
 * child processes the way a user starts them (`pgraft run --config FILE`).
 * Everything started is stopped by {@link withCluster}, also when a test fails.
 *
 * @module
 */

import postgres from "postgres";
import { openPostgres } from "../../lib/postgres/connection.ts";
import {
  type DevNode,
  startAgent,
  startDevCluster,
  stopAgent,
  stopDevCluster,
  waitForAgents,
} from "../../lib/cli/dev_command.ts";
import { waitForPidGone } from "../../lib/postgres/server.ts";
import { ensurePgBinaries } from "./pg.ts";

export type { DevNode };

/** Options for {@link withCluster}. */
export interface ClusterOptions {
  nodes?: number;
  /** run pgraft_init() on node 1 and add the others. @default false */
  bootstrap?: boolean;
  /** extra pgraft.* lines for every node's configuration */
  extraConfig?: string;
}

/** The result of running psql. */
export interface PsqlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A running test cluster. */
export class TestCluster {
  readonly nodes: DevNode[];
  readonly dir: string;
  #pools = new Map<number, postgres.Sql>();

  constructor(nodes: DevNode[], dir: string) {
    this.nodes = nodes;
    this.dir = dir;
  }

  node(id: number): DevNode {
    const node = this.nodes.find((n) => n.id === id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  /** A pooled connection to node `id`'s PostgreSQL (closed by stop()). */
  sql(id: number): postgres.Sql {
    let pool = this.#pools.get(id);
    if (!pool) {
      const server = this.node(id).server;
      pool = openPostgres({
        ...server.connection,
        max: 2,
        connect_timeout: 5,
      });
      this.#pools.set(id, pool);
    }
    return pool;
  }

  /** Drop node `id`'s pool (before its server is stopped, say). */
  async closeSql(id: number): Promise<void> {
    const pool = this.#pools.get(id);
    this.#pools.delete(id);
    await pool?.end({ timeout: 2 });
  }

  /** Run statements through the real psql, verbatim, as an operator pastes them. */
  async psql(id: number, statements: string, extraArgs: string[] = []): Promise<PsqlResult> {
    const server = this.node(id).server;
    const out = await new Deno.Command("psql", {
      args: [
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        server.host,
        "-p",
        String(server.port),
        "-U",
        server.user,
        "-d",
        server.database,
        ...extraArgs,
        "-c",
        statements,
      ],
      stdout: "piped",
      stderr: "piped",
      env: { PGCONNECT_TIMEOUT: "5" },
    }).output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  }

  /** The node that node `id` believes leads, or null. */
  async leaderSeenBy(id: number): Promise<number | null> {
    const [row] = await this.sql(id)`select pgraft_get_leader() as leader`;
    return (row?.leader as number | null) ?? null;
  }

  /** Wait until every running node agrees on one leader; returns it. */
  async waitForLeader(
    timeoutMs = 10_000,
    among = this.nodes.filter((n) => n.agent),
  ): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let seen: (number | null)[] = [];
    while (Date.now() < deadline) {
      seen = await Promise.all(among.map((n) => this.leaderSeenBy(n.id).catch(() => null)));
      const first = seen[0];
      if (first && seen.every((l) => l === first)) return first;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no agreed leader within ${timeoutMs} ms (seen: ${JSON.stringify(seen)})`);
  }

  /** Stop node `id`'s agent with a signal (SIGKILL = crash, SIGTERM = graceful). */
  async stopAgent(id: number, signal: Deno.Signal = "SIGTERM"): Promise<void> {
    const node = this.node(id);
    const pid = node.agent?.pid;
    await stopAgent(node, signal);
    if (pid) await waitForPidGone(pid);
  }

  /** SIGSTOP / SIGCONT node `id`'s agent (a paused process). */
  signalAgent(id: number, signal: "SIGSTOP" | "SIGCONT"): void {
    this.node(id).agent?.kill(signal);
  }

  async startAgent(id: number): Promise<void> {
    const node = this.node(id);
    startAgent(node);
    await waitForAgents([node]);
  }

  /** The agent log of node `id` (for failure messages). */
  async agentLog(id: number, lines = 40): Promise<string> {
    const text = await Deno.readTextFile(`${this.node(id).server.dataDir}/agent.log`).catch(() =>
      ""
    );
    return text.split("\n").slice(-lines).join("\n");
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.end({ timeout: 2 }).catch(() => {})));
    this.#pools.clear();
    await stopDevCluster(this.nodes);
  }
}

/** Start a cluster, run `fn`, stop everything whatever happened (and keep logs on failure). */
export async function withCluster<T>(
  options: ClusterOptions,
  fn: (cluster: TestCluster) => Promise<T>,
): Promise<T> {
  await ensurePgBinaries();
  const dir = await Deno.makeTempDir({ prefix: "pgraft-e2e-" });
  if (Deno.uid?.() === 0) await Deno.chmod(dir, 0o755);
  const nodes = await startDevCluster({
    nodes: options.nodes ?? 3,
    dir,
    bootstrap: options.bootstrap ?? false,
    extraConfig: options.extraConfig,
  });
  const cluster = new TestCluster(nodes, dir);
  let failed = false;
  try {
    return await fn(cluster);
  } catch (error) {
    failed = true;
    const logs = await Promise.all(
      nodes.map(async (n) => `--- node ${n.id} agent.log\n${await cluster.agentLog(n.id)}`),
    );
    console.error(logs.join("\n"));
    throw error;
  } finally {
    await cluster.stop();
    if (!failed) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Wait until `check` returns something truthy (errors count as "not yet"),
 * polling every `pollMs`, at most `timeoutMs`; the error names `what`.
 */
export async function eventually<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | null | undefined | false>,
  pollMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${last})` : ""}`);
}
