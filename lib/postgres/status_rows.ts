/**
 * The rows the agent publishes about itself (`pgraft.node_status`,
 * `pgraft.member_status`, `pgraft.log_stats`, `pgraft.effective_config`,
 * `pgraft.events`), and their JSON form for the SQL functions that write them.
 *
 * @module
 */

import type postgres from "postgres";

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
  /** the node the primary record names (manage_postgres), null when none */
  primaryId: number | null;
  /** the primary record's timeline, null when none */
  timeline: number | null;
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
  /**
   * its PostgreSQL server (manage_postgres): `primary`, `standby`, `starting`,
   * `stopped`, `diverged`, `unknown`; null when the agent does not run it
   */
  pgRole: string | null;
  /** its server's WAL position (`pg_lsn` text), null when unknown */
  pgLsn: string | null;
  /** bytes of WAL its server is behind the primary's, null when unknown */
  walLagBytes: number | null;
}

/** pgraft.log_stats. */
export interface LogStatsRow {
  entriesAppended: number;
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
  valueType: "integer" | "duration" | "bytes" | "boolean" | "string";
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

/** The status as rows keyed by column name, for pgraft.publish_status(). */
export function statusRows(status: StatusSnapshot): postgres.JSONValue {
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
      primary_id: n.primaryId,
      timeline: n.timeline,
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
      pg_role: m.pgRole,
      pg_lsn: m.pgLsn,
      wal_lag_bytes: m.walLagBytes,
    })),
    stats: {
      singleton: true,
      entries_appended: s.entriesAppended,
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
