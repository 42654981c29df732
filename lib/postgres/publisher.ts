/**
 * The agent's side of the SQL surface: it consumes commands that the
 * `pgraft_*` functions enqueue (LISTEN/NOTIFY, with a polling fallback),
 * records their outcome, publishes the live status the read functions show,
 * and records events. Its own postgres.js pool, separate from storage's, so a
 * slow status write never delays a Raft persist.
 *
 * @module
 */

import type postgres from "postgres";

/** A command row as the agent sees it. */
export interface CommandRow {
  commandId: number;
  kind:
    | "init"
    | "add_node"
    | "remove_node"
    | "transfer_leadership"
    | "set_config"
    | "kv_put"
    | "kv_delete";
  args: Record<string, unknown>;
}

/** pgraft.node_status, as published. */
export interface NodeStatusRow {
  nodeId: number;
  address: string;
  port: number;
  role: string;
  term: number;
  leaderId: number | null;
  commitIndex: number;
  lastApplied: number;
  firstIndex: number;
  lastIndex: number;
  snapshotIndex: number;
  quorumMet: boolean;
  electionsTriggered: number;
  failoverEnabled: boolean;
  clusterId: string | null;
  clusterName: string;
  storageOk: boolean;
  heartbeatIntervalMs: number;
  electionTimeoutMs: number;
  noLeaderSince: Date | null;
  leaderSince: Date | null;
  agentPid: number;
  agentStartedAt: Date;
  agentVersion: string;
  staleAfterMs: number;
}

/** pgraft.member_status, one row per member. */
export interface MemberStatusRow {
  nodeId: number;
  address: string;
  port: number;
  state: string;
  isVoter: boolean;
  matchIndex: number | null;
  nextIndex: number | null;
  commitIndex: number | null;
  lastContactAt: Date | null;
  lagEntries: number | null;
  lagBytes: number | null;
}

/** pgraft.log_stats. */
export interface LogStatsRow {
  entriesAppended: number;
  entriesCommitted: number;
  entriesApplied: number;
  proposals: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  lastSnapshotIndex: number;
  lastSnapshotAt: Date | null;
  snapshotThreshold: number;
  rpcSent: number;
  rpcReceived: number;
  rpcErrors: number;
  rpcRejected: number;
  appendBatches: number;
  avgAppendBatch: number;
  persistP50Ms: number;
  persistP99Ms: number;
}

/** Everything the read functions show, published together. */
export interface StatusSnapshot {
  node: NodeStatusRow;
  members: MemberStatusRow[];
  stats: LogStatsRow;
}

/** One row of pgraft.effective_config. */
export interface EffectiveConfigRow {
  name: string;
  setting: string;
  unit: string | null;
  scope: "node" | "cluster";
  source: "default" | "configuration file" | "cluster";
  sourcefile: string | null;
  sourceline: number | null;
  valueType: "integer" | "duration" | "boolean" | "string";
  minValue: number | null;
  maxValue: number | null;
  description: string;
}

/** An event for pgraft_get_events(). */
export interface EventRow {
  at: Date;
  type: string;
  term: number | null;
  nodeId: number | null;
  detail: string;
}

/** Events kept in pgraft.events; older ones are trimmed. */
export const EVENTS_KEPT_MAX = 10_000;

/** Events buffered in memory while PostgreSQL is unreachable; the oldest are dropped beyond. */
export const EVENTS_BUFFERED_MAX = 1_000;

/** A control write that takes longer than this is abandoned and the pool replaced. */
export const CONTROL_TIMEOUT_MS = 3_000;

/** The agent's control-plane connection. */
export class ControlDb {
  #connect: () => postgres.Sql;
  #sql: postgres.Sql;
  #listen: { unlisten: () => Promise<void> } | null = null;
  #onNotify: (() => void) | null = null;
  #pendingEvents: EventRow[] = [];
  #eventsDropped = 0;

  /** @param connect makes a new pool (called again when a pool has to be replaced) */
  constructor(connect: () => postgres.Sql) {
    this.#connect = connect;
    this.#sql = connect();
  }

  /**
   * Run one control statement with a deadline. A connection can hang without
   * an error when its server goes away at the wrong moment; past the deadline
   * the pool is replaced so the next statement gets a fresh connection.
   */
  async #run<T>(what: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
    const sql = this.#sql;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`${what}: no answer from PostgreSQL within ${CONTROL_TIMEOUT_MS} ms`));
      }, CONTROL_TIMEOUT_MS);
    });
    try {
      return await Promise.race([fn(sql), deadline]);
    } catch (error) {
      if (sql === this.#sql && String(error).includes("no answer from PostgreSQL")) {
        this.#replacePool();
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  #replacePool(): void {
    const old = this.#sql;
    const listen = this.#listen;
    this.#sql = this.#connect();
    this.#listen = null;
    listen?.unlisten().catch(() => {});
    old.end({ timeout: 0 }).catch(() => {});
    if (this.#onNotify) this.listen(this.#onNotify).catch(() => {});
  }

  /** The pool (shared with the agent's read paths such as status queries). */
  get sql(): postgres.Sql {
    return this.#sql;
  }

  /** Subscribe to command notifications; `onNotify` is called for each NOTIFY. */
  async listen(onNotify: () => void): Promise<void> {
    this.#onNotify = onNotify;
    this.#listen = await this.#sql.listen("pgraft_commands", () => onNotify(), () => onNotify());
  }

  /**
   * Commands still to do, oldest first. Rows left 'running' by a previous agent
   * process (it died mid-command) are returned too, so they are finished or failed.
   */
  async pendingCommands(limit = 100): Promise<CommandRow[]> {
    const rows = await this.#run("pendingCommands", (sql) =>
      sql<
        { command_id: string; kind: CommandRow["kind"]; args: Record<string, unknown> }[]
      >`
      select command_id, kind, args from pgraft.commands
       where status in ('pending', 'running')
       order by command_id limit ${limit}`);
    return rows.map((r) => ({ commandId: Number(r.command_id), kind: r.kind, args: r.args }));
  }

  async markRunning(commandId: number): Promise<void> {
    await this.#run(
      "markRunning",
      (sql) => sql`update pgraft.commands set status = 'running' where command_id = ${commandId}`,
    );
  }

  /**
   * Finish a command, publishing `status` in the same transaction so the next
   * SQL statement that waits for the command sees the status that goes with it.
   */
  async finishCommand(
    commandId: number,
    outcome: { ok: true; result: unknown } | { ok: false; error: string },
    status: StatusSnapshot | null,
  ): Promise<void> {
    // One statement (a function): atomic without a client-side transaction,
    // so a terminated session cannot leave the driver inside one (DESIGN.md traps).
    const error = outcome.ok ? null : outcome.error;
    await this.#run("finishCommand", (sql) => {
      const rows = status ? sql.json(statusRows(status)) : null;
      const result = outcome.ok ? sql.json((outcome.result ?? null) as postgres.JSONValue) : null;
      return sql`select pgraft.finish_command(${commandId}, ${outcome.ok}, ${result}, ${error}, ${rows})`;
    });
  }

  /** Replace the published status. */
  async publish(status: StatusSnapshot): Promise<void> {
    await this.#run(
      "publish",
      (sql) => sql`select pgraft.publish_status(${sql.json(statusRows(status))})`,
    );
  }

  /** Replace pgraft.effective_config. */
  async publishConfig(rows: EffectiveConfigRow[]): Promise<void> {
    const json = rows.map((r) => ({
      name: r.name,
      setting: r.setting,
      unit: r.unit,
      scope: r.scope,
      source: r.source,
      sourcefile: r.sourcefile,
      sourceline: r.sourceline,
      value_type: r.valueType,
      min_value: r.minValue,
      max_value: r.maxValue,
      description: r.description,
    }));
    await this.#run("publishConfig", (sql) => sql`select pgraft.publish_config(${sql.json(json)})`);
  }

  /** Queue an event; {@link flushEvents} writes the queue. */
  recordEvent(event: EventRow): void {
    this.#pendingEvents.push(event);
    if (this.#pendingEvents.length > EVENTS_BUFFERED_MAX) {
      this.#pendingEvents.shift();
      this.#eventsDropped++;
    }
  }

  /** Write queued events; on failure they stay queued for the next try. */
  async flushEvents(): Promise<void> {
    if (this.#pendingEvents.length === 0) return;
    const batch = this.#pendingEvents.slice();
    const dropped = this.#eventsDropped;
    const rows = batch.map((e) => ({
      event_timestamp: e.at,
      event_type: e.type,
      term: e.term,
      node_id: e.nodeId,
      detail: e.detail,
    }));
    if (dropped > 0) {
      rows.push({
        event_timestamp: new Date(),
        event_type: "events_dropped",
        term: null,
        node_id: null,
        detail: `${dropped} events were dropped while PostgreSQL was unreachable`,
      });
    }
    const json = JSON.parse(JSON.stringify(rows)) as postgres.JSONValue;
    await this.#run(
      "flushEvents",
      (sql) => sql`select pgraft.insert_events(${sql.json(json)}, ${EVENTS_KEPT_MAX})`,
    );
    this.#pendingEvents.splice(0, batch.length);
    this.#eventsDropped -= dropped;
  }

  async close(): Promise<void> {
    await this.#listen?.unlisten().catch(() => {});
    await this.#sql.end({ timeout: 2 });
  }
}

/** The status as rows keyed by column name, for pgraft.publish_status(). */
function statusRows(status: StatusSnapshot): postgres.JSONValue {
  const n = status.node;
  const s = status.stats;
  const rows = {
    node: {
      singleton: true,
      node_id: n.nodeId,
      address: n.address,
      port: n.port,
      role: n.role,
      term: n.term,
      leader_id: n.leaderId,
      commit_index: n.commitIndex,
      last_applied: n.lastApplied,
      first_index: n.firstIndex,
      last_index: n.lastIndex,
      snapshot_index: n.snapshotIndex,
      quorum_met: n.quorumMet,
      elections_triggered: n.electionsTriggered,
      failover_enabled: n.failoverEnabled,
      cluster_id: n.clusterId,
      cluster_name: n.clusterName,
      storage_ok: n.storageOk,
      heartbeat_interval_ms: n.heartbeatIntervalMs,
      election_timeout_ms: n.electionTimeoutMs,
      no_leader_since: n.noLeaderSince,
      leader_since: n.leaderSince,
      agent_pid: n.agentPid,
      agent_started_at: n.agentStartedAt,
      agent_version: n.agentVersion,
      stale_after_ms: n.staleAfterMs,
    },
    members: status.members.map((m) => ({
      node_id: m.nodeId,
      address: m.address,
      port: m.port,
      state: m.state,
      is_voter: m.isVoter,
      match_index: m.matchIndex,
      next_index: m.nextIndex,
      commit_index: m.commitIndex,
      last_contact_at: m.lastContactAt,
      lag_entries: m.lagEntries,
      lag_bytes: m.lagBytes,
    })),
    stats: {
      singleton: true,
      entries_appended: s.entriesAppended,
      entries_committed: s.entriesCommitted,
      entries_applied: s.entriesApplied,
      proposals: s.proposals,
      snapshots_taken: s.snapshotsTaken,
      snapshots_installed: s.snapshotsInstalled,
      last_snapshot_index: s.lastSnapshotIndex,
      last_snapshot_at: s.lastSnapshotAt,
      snapshot_threshold: s.snapshotThreshold,
      rpc_sent: s.rpcSent,
      rpc_received: s.rpcReceived,
      rpc_errors: s.rpcErrors,
      rpc_rejected: s.rpcRejected,
      append_batches: s.appendBatches,
      avg_append_batch: s.avgAppendBatch,
      persist_p50_ms: s.persistP50Ms,
      persist_p99_ms: s.persistP99Ms,
    },
  };
  // Dates become ISO strings, which PostgreSQL reads back as timestamptz.
  return JSON.parse(JSON.stringify(rows)) as postgres.JSONValue;
}
