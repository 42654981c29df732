/**
 * High-availability clusters for end-to-end tests: agents with
 * `pgraft.manage_postgres = on` that run their own PostgreSQL servers, laid
 * out the Debian way (each node's postgresql.conf and pg_hba.conf in `etc/`,
 * outside its data directory). Node 1's data directory is initialized (as an
 * operator would), the others are empty and get cloned. The agents are
 * started as a user starts them (`pgraft run --config FILE`); everything is
 * stopped by PID at the end, servers included.
 *
 * @module
 */

import { join } from "node:path";
import postgres from "postgres";
import { poll } from "../../lib/async.ts";
import {
  HA_HOST,
  haClient,
  type HaNode,
  layoutHaCluster,
  startHaAgent,
  startHaCluster,
  stopHaAgent,
} from "../../lib/cli/dev_ha.ts";
import { waitForPidGone } from "../../lib/postgres/server.ts";
import { ensurePgBinaries } from "./pg.ts";

export const HOST = HA_HOST;
export type { HaNode };

/** Options of {@link HaCluster.create}. */
export interface HaClusterOptions {
  nodes: number;
  /** extra lines for every node's postgresql.conf */
  extraConfig?: string;
  /**
   * The agents advertise this host (`pgraft.address`) and listen on
   * {@link HOST}: proxies on it (tests/helpers/tcp_proxy.ts) can cut the
   * links between agents, while PostgreSQL (listening on both) replicates
   * directly.
   */
  peerHost?: string;
}

/** A cluster of HA nodes under one temporary directory, laid out as `pgraft dev --ha` does. */
export class HaCluster {
  readonly root: string;
  readonly nodes: HaNode[];
  readonly peerHost: string;

  private constructor(root: string, nodes: HaNode[], peerHost: string) {
    this.root = root;
    this.nodes = nodes;
    this.peerHost = peerHost;
  }

  /** Lay out `nodes` nodes (nothing started): node 1 initialized, the others empty. */
  static async create(options: HaClusterOptions): Promise<HaCluster> {
    const bins = await ensurePgBinaries();
    const root = await Deno.makeTempDir({ prefix: "pgraft-ha-" });
    const peerHost = options.peerHost ?? HOST;
    // A member's PostgreSQL is reached at its pgraft.address too: the server
    // listens there as well, so replication bypasses the proxies.
    const peerConfig = peerHost === HOST ? "" : [
      `pgraft.address = '${peerHost}'`,
      `pgraft.listen_address = '${HOST}'`,
      `listen_addresses = '${HOST},${peerHost}'`,
      "",
    ].join("\n");
    const nodes = await layoutHaCluster({
      dir: root,
      nodes: options.nodes,
      extraConfig: peerConfig + (options.extraConfig ?? ""),
      bins,
    });
    return new HaCluster(root, nodes, peerHost);
  }

  node(id: number): HaNode {
    const node = this.nodes.find((n) => n.id === id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  /**
   * Start every agent and bootstrap the cluster as `pgraft dev --ha` does:
   * pgraft_init() on node 1, the others added, cloned and streaming from it.
   */
  bootstrap(): Promise<void> {
    return startHaCluster(this.nodes, () => {}, undefined, this.peerHost);
  }

  /** Start node `id`'s agent (its output appended to its agent.log). */
  startAgent(id: number): void {
    startHaAgent(this.node(id));
  }

  /** Stop node `id`'s agent with `signal` and wait until it is gone (SIGKILL after 20 s). */
  stopAgent(id: number, signal: Deno.Signal = "SIGTERM"): Promise<void> {
    return stopHaAgent(this.node(id), signal);
  }

  /** SIGSTOP / SIGCONT node `id`'s agent. */
  signalAgent(id: number, signal: "SIGSTOP" | "SIGCONT"): void {
    this.node(id).agent?.kill(signal);
  }

  /** The PID of node `id`'s postmaster, from postmaster.pid, or null. */
  async postmasterPid(id: number): Promise<number | null> {
    const text = await Deno.readTextFile(join(this.node(id).dataDir, "postmaster.pid")).catch(
      () => null,
    );
    const pid = Number(text?.split("\n")[0]);
    if (!Number.isInteger(pid) || pid <= 0) return null;
    try {
      Deno.kill(pid, "SIGCONT");
      return pid;
    } catch {
      return null;
    }
  }

  /** kill -9 node `id`'s postmaster (its backends exit on their own). */
  async killServer(id: number): Promise<void> {
    const pid = await this.postmasterPid(id);
    if (pid === null) return;
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
    await waitForPidGone(pid, 10_000);
  }

  /** One statement on a fresh session of node `id`'s server. */
  async sql<T extends postgres.MaybeRow[] = postgres.Row[]>(
    id: number,
    text: string,
    params: postgres.ParameterOrJSON<never>[] = [],
  ): Promise<T> {
    const client = this.client(id);
    try {
      return await client.unsafe(text, params) as unknown as T;
    } finally {
      await client.end({ timeout: 1 });
    }
  }

  /** A client of node `id`'s server (the caller ends it). */
  client(id: number, options: postgres.Options<Record<string, never>> = {}): postgres.Sql {
    return haClient(this.node(id), options);
  }

  /** The libpq multi-host string for the writable server, as clients use it. */
  get multiHostUrl(): string {
    const hosts = this.nodes.map((n) => `${HOST}:${n.pgPort}`).join(",");
    return `postgres://postgres@${hosts}/postgres?target_session_attrs=read-write`;
  }

  /** GET a path of node `id`'s agent (null when it does not answer). */
  async agentGet(id: number, path: string): Promise<{ status: number; body: unknown } | null> {
    try {
      const res = await fetch(`http://${HOST}:${this.node(id).agentPort}${path}`, {
        signal: AbortSignal.timeout(1_000),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch { /* not JSON */ }
      return { status: res.status, body };
    } catch {
      return null;
    }
  }

  /** Whether node `id`'s server runs and accepts writes (not in recovery). */
  async writable(id: number): Promise<boolean> {
    try {
      const [row] = await this.sql<{ recovery: boolean }[]>(
        id,
        "select pg_is_in_recovery() as recovery",
      );
      return row?.recovery === false;
    } catch {
      return false;
    }
  }

  /** Wait until node `id`'s server is a standby streaming from node `from`'s. */
  async waitStreaming(id: number, from: number, timeoutMs = 60_000): Promise<void> {
    const port = this.node(from).pgPort;
    await poll(async () => {
      const [row] = await this.sql<{ n: number }[]>(
        id,
        `select count(*)::int as n from pg_stat_wal_receiver
          where status = 'streaming' and sender_port = ${port}`,
      );
      return row!.n > 0;
    }, {
      timeoutMs,
      intervalMs: 100,
      ignoreErrors: true,
      what: `node ${id}'s server to stream from node ${from}'s`,
    });
  }

  /** The last lines of node `id`'s agent log. */
  async agentLog(id: number, lines = 60): Promise<string> {
    const text = await Deno.readTextFile(this.node(id).logFile).catch(() => "");
    return text.split("\n").slice(-lines).join("\n");
  }

  /** Stop every agent (SIGTERM, then SIGKILL), then every server still running, by PID. */
  async stop(): Promise<void> {
    for (const node of this.nodes) {
      if (node.agent) this.signalAgent(node.id, "SIGCONT");
    }
    await Promise.all(this.nodes.map((n) => this.stopAgent(n.id)));
    for (const node of this.nodes) {
      const pid = await this.postmasterPid(node.id);
      if (pid === null) continue;
      try {
        Deno.kill(pid, "SIGQUIT");
      } catch { /* gone */ }
      if (!(await waitForPidGone(pid, 10_000))) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
        await waitForPidGone(pid, 5_000);
      }
    }
  }

  /** Remove the files (after stop), unless the test failed (then say where they are). */
  async remove(failed: boolean): Promise<void> {
    if (failed || Deno.env.get("PGRAFT_KEEP_TEST_FILES")) {
      console.error(`HA cluster files kept in ${this.root}`);
      return;
    }
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
}

/** Lay out and run a cluster for `fn`; stop everything whatever happened. */
export async function withHaCluster<T>(
  options: HaClusterOptions,
  fn: (cluster: HaCluster) => Promise<T>,
): Promise<T> {
  const cluster = await HaCluster.create(options);
  let failed = true;
  try {
    const result = await fn(cluster);
    failed = false;
    return result;
  } catch (error) {
    for (const node of cluster.nodes) {
      console.error(`--- agent log of node ${node.id} ---\n${await cluster.agentLog(node.id)}`);
    }
    throw error;
  } finally {
    await cluster.stop();
    await cluster.remove(failed);
  }
}

/**
 * A client writing rows one at a time to whichever server accepts writes, as
 * an application with libpq's multi-host string and
 * `target_session_attrs=read-write` does: it tries the hosts in order and
 * keeps the first that is not in recovery. (postgres.js's own
 * target_session_attrs takes a hot standby for read-write: it only looks at
 * default_transaction_read_only.) It records every acknowledged id and the
 * longest gap between two acknowledgements. A write that does not answer
 * within {@link WRITE_TIMEOUT_MS} is abandoned with its connection: its
 * outcome is unknown, so it is not counted (no statement_timeout: a commit
 * cancelled while it waits for synchronous standbys is reported as a
 * success with a warning — DESIGN.md "Known traps").
 */
export class Writer {
  readonly acknowledged: number[] = [];
  /** longest time without an acknowledged write, in ms */
  longestGapMs = 0;
  /** when that gap ended: the first acknowledgement after it (performance.now()) */
  longestGapEndedAtMs = 0;
  errors = 0;
  #stopped = false;
  #done: Promise<void> | null = null;
  readonly #cluster: HaCluster;
  readonly #table: string;

  constructor(cluster: HaCluster, table: string) {
    this.#cluster = cluster;
    this.#table = table;
  }

  /** Start writing (the table must exist), bounded to `maxMs`. */
  start(maxMs = 120_000): void {
    this.#done = this.#run(maxMs);
  }

  async #run(maxMs: number): Promise<void> {
    const until = performance.now() + maxMs;
    let lastAck = performance.now();
    let next = 1;
    let sql: postgres.Sql | null = null;
    while (!this.#stopped && performance.now() < until) {
      sql ??= await this.#connect();
      if (sql === null) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const id = next++;
      const write = sql.unsafe(`insert into ${this.#table} (id) values (${id})`);
      const outcome = await Promise.race([
        write.then(() => "ok" as const, () => "error" as const),
        new Promise<"timeout">((r) => setTimeout(() => r("timeout"), WRITE_TIMEOUT_MS)),
      ]);
      if (outcome === "ok") {
        const now = performance.now();
        this.acknowledged.push(id);
        if (now - lastAck > this.longestGapMs) {
          this.longestGapMs = now - lastAck;
          this.longestGapEndedAtMs = now;
        }
        lastAck = now;
        continue;
      }
      this.errors++;
      await sql.end({ timeout: 0 }).catch(() => {});
      sql = null;
    }
    this.longestGapMs = Math.max(this.longestGapMs, performance.now() - lastAck);
    await sql?.end({ timeout: 1 }).catch(() => {});
  }

  /** A session on the first server (in node order) that accepts writes, or null. */
  async #connect(): Promise<postgres.Sql | null> {
    for (const node of this.#cluster.nodes) {
      const sql = this.#cluster.client(node.id, { connect_timeout: 1 });
      try {
        const [row] = await sql<{ recovery: boolean }[]>`select pg_is_in_recovery() as recovery`;
        if (row?.recovery === false) return sql;
      } catch { /* next host */ }
      await sql.end({ timeout: 0 }).catch(() => {});
    }
    return null;
  }

  /** Stop writing; resolves once the last write has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

/** How long the writer waits for one write before it gives the connection up. */
export const WRITE_TIMEOUT_MS = 3_000;

/**
 * Checks every `intervalMs` that at most one server accepts writes (not in
 * recovery), and remembers the most seen at one probe. It keeps one session
 * per server (a new one after a failure): a promotion shows on a session
 * already open, and opening three sessions every probe would load the very
 * machine whose failover times are measured.
 */
export class Prober {
  mostWritable = 0;
  probes = 0;
  /** the probes that saw two or more writable servers: when and which */
  readonly violations: { atMs: number; writable: number[] }[] = [];
  #stopped = false;
  #done: Promise<void> | null = null;
  readonly #cluster: HaCluster;
  readonly #sessions = new Map<number, postgres.Sql>();

  constructor(cluster: HaCluster) {
    this.#cluster = cluster;
  }

  start(intervalMs = 100, maxMs = 180_000): void {
    this.#done = (async () => {
      const until = performance.now() + maxMs;
      while (!this.#stopped && performance.now() < until) {
        const started = performance.now();
        const writable = await Promise.all(
          this.#cluster.nodes.map(async (n) => (await this.#writable(n.id)) ? n.id : 0),
        );
        const ids = writable.filter((id) => id !== 0);
        this.probes++;
        this.mostWritable = Math.max(this.mostWritable, ids.length);
        if (ids.length > 1) this.violations.push({ atMs: started, writable: ids });
        const left = intervalMs - (performance.now() - started);
        if (left > 0) await new Promise((r) => setTimeout(r, left));
      }
    })();
  }

  /** Whether node `id`'s server accepts writes, on the kept session (false when it fails). */
  async #writable(id: number): Promise<boolean> {
    let sql = this.#sessions.get(id);
    if (sql === undefined) {
      sql = this.#cluster.client(id, { connect_timeout: 1, idle_timeout: 0 });
      this.#sessions.set(id, sql);
    }
    try {
      const [row] = await sql<{ recovery: boolean }[]>`select pg_is_in_recovery() as recovery`;
      return row?.recovery === false;
    } catch {
      this.#sessions.delete(id);
      await sql.end({ timeout: 0 }).catch(() => {});
      return false;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
    await Promise.all(
      [...this.#sessions.values()].map((s) => s.end({ timeout: 0 }).catch(() => {})),
    );
    this.#sessions.clear();
  }
}

/** The node whose server accepts writes among `among`, waiting up to `timeoutMs`. */
export async function waitPrimary(
  cluster: HaCluster,
  among: number[],
  timeoutMs: number,
): Promise<number> {
  return await poll(async () => {
    for (const id of among) if (await cluster.writable(id)) return id;
    return null;
  }, { timeoutMs, intervalMs: 20, what: `a writable server among nodes ${among.join(", ")}` });
}

/** What one {@link faultRound} measured. */
export interface FaultOutcome {
  newPrimary: number;
  /** from the fault until writes were acknowledged again (the end of the longest gap) */
  writesAgainMs: number;
  /** the longest time without an acknowledged write: the write unavailability */
  longestGapMs: number;
  acknowledged: number;
  /** acknowledged ids missing on the new primary (must be none) */
  lost: number[];
  /** the most servers a probe found writable at once (must be 1) */
  mostWritable: number;
  violations: Prober["violations"];
  probes: number;
}

/**
 * One fault under load: a writer (through the multi-host rule) and a prober
 * run; `fault` is injected once 200 writes are acknowledged; then a writable
 * server among `survivors` and 100 more acknowledged writes are waited for,
 * the acknowledged ids are looked up on the new primary, and `heal` runs
 * while the prober still watches. Each round writes its own `table`,
 * created on `primary`.
 */
export async function faultRound(
  cluster: HaCluster,
  options: {
    table: string;
    primary: number;
    fault: () => Promise<void>;
    survivors: number[];
    heal?: (newPrimary: number) => Promise<void>;
  },
): Promise<FaultOutcome> {
  const { table } = options;
  await cluster.sql(options.primary, `create table ${table} (id int primary key)`);
  const writer = new Writer(cluster, table);
  const prober = new Prober(cluster);
  prober.start();
  writer.start();
  try {
    await poll(() => writer.acknowledged.length >= 200, {
      timeoutMs: 20_000,
      intervalMs: 20,
      what: "200 acknowledged writes",
    });
    const faultAtMs = performance.now();
    await options.fault();
    const newPrimary = await waitPrimary(cluster, options.survivors, 15_000);
    const before = writer.acknowledged.length;
    await poll(() => writer.acknowledged.length >= before + 100, {
      timeoutMs: 20_000,
      intervalMs: 20,
      what: "100 more acknowledged writes after the fault",
    });
    await writer.stop();
    const rows = await cluster.sql<{ id: number }[]>(newPrimary, `select id from ${table}`);
    const present = new Set(rows.map((r) => r.id));
    const lost = writer.acknowledged.filter((id) => !present.has(id));
    await options.heal?.(newPrimary);
    await prober.stop();
    return {
      newPrimary,
      writesAgainMs: Math.round(Math.max(0, writer.longestGapEndedAtMs - faultAtMs)),
      longestGapMs: Math.round(writer.longestGapMs),
      acknowledged: writer.acknowledged.length,
      lost,
      mostWritable: prober.mostWritable,
      violations: prober.violations,
      probes: prober.probes,
    };
  } finally {
    await writer.stop();
    await prober.stop();
  }
}
