/**
 * What the node shows about itself and the members it knows: the rows the
 * publisher writes for the `pgraft_*` read functions, `GET /status`, and the
 * health check. Computed from the replica, the peers and the state machine
 * whenever asked; nothing here is stored.
 *
 * @module
 */

import type { PgraftSettings } from "../config/mod.ts";
import { hasQuorum, type NodeId, NONE, type Status } from "../raft/mod.ts";
import { parseLsn } from "../postgres/replication.ts";
import type { MemberStatusRow, StatusSnapshot } from "../postgres/status_rows.ts";
import type { StateMachine } from "../state/mod.ts";
import { VERSION } from "../version.ts";
import type { Peers } from "./peers.ts";
import type { Replica } from "./replica.ts";
import type { MemberProgress, MembersView } from "../transport/mod.ts";

/** Everything a status is computed from. */
export interface StatusSource {
  nodeId: NodeId;
  replica: Replica;
  peers: Peers;
  /** the replicated state machine (members, cluster id) */
  state: StateMachine;
  settings: PgraftSettings;
  /** the port the agent listens on (the actual one when 0 was configured) */
  port: number;
  /** when the current leader was first seen, and when this node last lost sight of one */
  leaderSince: Date | null;
  noLeaderSince: Date | null;
  startedAt: Date;
  /** peer requests the transport's gate turned away */
  rpcRejected: number;
  /**
   * the leader's view of the members and how old it is: this node's own when it
   * leads (age 0), else the last one its leader's heartbeats brought, while fresh
   */
  leaderView: { view: MembersView; ageMs: number } | null;
  /**
   * each member's PostgreSQL server as this node knows it (manage_postgres:
   * its own, and on the leader what the members report); null when the agent
   * does not run its server
   */
  servers: ReadonlyMap<NodeId, MemberServer> | null;
}

/** A member's server, for `pg_role`, `pg_lsn` and `wal_lag_bytes`. */
export interface MemberServer {
  role: string;
  /** its WAL position (`pg_lsn` text), null when unknown */
  lsn: string | null;
}

/** The member states `pgraft_get_nodes()` shows for this node itself. */
export function selfState(st: Status): string {
  if (st.removed) return "removed";
  if (st.membership.learners.includes(st.id)) return "learner";
  if (!st.membership.voters.includes(st.id) && st.role !== "leader") {
    return st.term === 0 && st.lastIndex === 0 ? "waiting" : "follower";
  }
  return st.role === "pre_candidate" ? "candidate" : st.role;
}

/**
 * Whether this node knows a quorum stands behind the leader: a leader counts
 * the voters heard from within an election timeout; a follower that hears
 * from its leader knows one does (check-quorum, thesis §6.2).
 */
export function quorumMet(src: StatusSource, st: Status): boolean {
  const voters = st.membership.voters;
  const electionMs = src.settings.electionTimeoutMs;
  const heard = (id: NodeId) => {
    const age = src.peers.contactAgeMs(id);
    return age !== null && age <= electionMs;
  };
  if (st.role === "leader") return hasQuorum(voters, (id) => id === src.nodeId || heard(id));
  return st.leaderId !== NONE && heard(st.leaderId);
}

/**
 * The leader's view of the members: what it shows itself, and what it sends
 * its followers with its heartbeats so that every node shows every member's
 * progress. Null on a node that does not lead.
 */
export function membersView(
  src: Pick<StatusSource, "nodeId" | "replica" | "peers">,
): MembersView | null {
  const st = src.replica.status();
  if (st.role !== "leader") return null;
  return {
    lastIndex: st.lastIndex,
    commitIndex: st.commitIndex,
    members: [
      {
        id: src.nodeId,
        match: st.lastIndex,
        next: st.lastIndex + 1,
        state: "leader",
        lastContactMs: 0,
      },
      ...st.progress.map((p): MemberProgress => {
        const age = src.peers.contactAgeMs(p.id);
        return {
          id: p.id,
          match: p.matchIndex,
          next: p.nextIndex,
          state: p.state,
          lastContactMs: age === null ? null : Math.round(age),
        };
      }),
    ],
  };
}

/**
 * One row per member, as this node sees it: from the leader's view of the
 * members (its own on the leader, the last one its heartbeats brought on a
 * follower), and without progress figures when no fresh view is at hand.
 */
function memberRows(src: StatusSource, st: Status): MemberStatusRow[] {
  const now = Date.now();
  const electionMs = src.settings.electionTimeoutMs;
  const voters = new Set(st.membership.voters);
  const learners = new Set(st.membership.learners);
  const seen = src.leaderView;
  const progress = new Map(seen?.view.members.map((m) => [m.id, m]) ?? []);
  const lastIndex = seen?.view.lastIndex ?? st.lastIndex;
  const ids = new Set<NodeId>([
    ...voters,
    ...learners,
    ...src.state.members().map((m) => m.nodeId),
  ]);
  const record = src.state.primary();
  const primaryLsn = record === null ? null : src.servers?.get(record.nodeId)?.lsn ?? null;
  const rows: MemberStatusRow[] = [];
  for (const id of [...ids].sort((a, b) => a - b)) {
    const server = src.servers?.get(id) ?? null;
    const addr = src.peers.address(id) ?? { address: "", port: 0 };
    const p = progress.get(id);
    // How long ago the leader last heard from the member, as of now.
    const contactAgeMs = p?.lastContactMs === null || p === undefined || seen === null
      ? null
      : p.lastContactMs + seen.ageMs;
    let state: string;
    if (id === src.nodeId) state = selfState(st);
    else if (p?.state === "leader" || (p === undefined && id === st.leaderId)) state = "leader";
    else if (p !== undefined && (contactAgeMs === null || contactAgeMs > electionMs)) {
      state = "unreachable";
    } else state = learners.has(id) ? "learner" : voters.has(id) ? "follower" : "unknown";
    const matchIndex = id === src.nodeId ? st.lastIndex : p?.match ?? null;
    const leaderContact = id === st.leaderId && id !== src.nodeId
      ? src.peers.contactAgeMs(id)
      : null;
    const lastContactAt = contactAgeMs !== null
      ? new Date(now - contactAgeMs)
      : leaderContact !== null
      ? new Date(now - leaderContact)
      : null;
    rows.push({
      nodeId: id,
      address: addr.address,
      port: addr.port,
      state,
      isVoter: voters.has(id),
      matchIndex,
      nextIndex: id === src.nodeId ? st.lastIndex + 1 : p?.next ?? null,
      commitIndex: id === src.nodeId
        ? st.commitIndex
        : p
        ? Math.min(p.match, seen!.view.commitIndex)
        : null,
      lastContactAt,
      lagEntries: matchIndex === null ? null : Math.max(0, lastIndex - matchIndex),
      lagBytes: matchIndex === null ? null : src.replica.bytesAfter(matchIndex, lastIndex),
      pgRole: src.servers === null ? null : server?.role ?? "unknown",
      pgLsn: server?.lsn ?? null,
      walLagBytes: walLag(primaryLsn, server?.lsn ?? null),
    });
  }
  return rows;
}

/** Bytes of WAL `lsn` is behind `primaryLsn` (0 when ahead), null when either is unknown. */
function walLag(primaryLsn: string | null, lsn: string | null): number | null {
  if (primaryLsn === null || lsn === null) return null;
  const behind = Number(parseLsn(primaryLsn) - parseLsn(lsn));
  return Math.max(0, behind);
}

/** The value at quantile `q` of ascending `sorted`, 0 when empty. */
function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** What the read functions show: node, members and counters. */
export function statusSnapshot(src: StatusSource): StatusSnapshot {
  const st = src.replica.status();
  const s = src.settings;
  const stats = src.replica.stats;
  const persist = [...stats.persistMs].sort((a, b) => a - b);
  const ms3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    node: {
      nodeId: src.nodeId,
      address: s.address,
      port: src.port,
      role: selfState(st),
      term: st.term,
      leaderId: st.leaderId === NONE ? null : st.leaderId,
      commitIndex: st.commitIndex,
      lastApplied: src.replica.appliedIndex,
      firstIndex: st.firstIndex,
      lastIndex: st.lastIndex,
      snapshotIndex: st.snapshotIndex,
      quorumMet: quorumMet(src, st),
      electionsTriggered: st.electionsStarted,
      failoverEnabled: st.failoverEnabled,
      clusterId: src.state.clusterId,
      clusterName: s.clusterName,
      // The log is on this node's disk: a failed write stops the agent, so a running one can write.
      storageOk: true,
      heartbeatIntervalMs: s.heartbeatIntervalMs,
      electionTimeoutMs: s.electionTimeoutMs,
      noLeaderSince: src.noLeaderSince,
      leaderSince: src.leaderSince,
      agentPid: Deno.pid,
      agentStartedAt: src.startedAt,
      agentVersion: VERSION,
      staleAfterMs: Math.max(1000, 5 * s.heartbeatIntervalMs),
      primaryId: src.state.primary()?.nodeId || null,
      timeline: src.state.primary()?.timeline ?? null,
    },
    members: memberRows(src, st),
    stats: {
      entriesAppended: stats.entriesAppended,
      entriesApplied: stats.entriesApplied,
      proposals: stats.proposals,
      snapshotsTaken: stats.snapshotsTaken,
      snapshotsInstalled: stats.snapshotsInstalled,
      lastSnapshotIndex: Math.max(stats.lastSnapshotIndex, st.snapshotIndex),
      lastSnapshotAt: stats.lastSnapshotAt,
      snapshotThreshold: s.snapshotThreshold,
      rpcSent: src.peers.counters.sent,
      rpcReceived: src.peers.counters.received,
      rpcErrors: src.peers.counters.errors,
      rpcRejected: src.rpcRejected,
      appendBatches: stats.appendBatches,
      avgAppendBatch: stats.appendBatches
        ? Math.round(100 * stats.entriesAppended / stats.appendBatches) / 100
        : 0,
      persistP50Ms: ms3(quantile(persist, 0.5)),
      persistP99Ms: ms3(quantile(persist, 0.99)),
    },
  };
}

/** `GET /status`: the node and its members as JSON. */
export function httpStatus(snap: StatusSnapshot): unknown {
  return {
    node: snap.node.nodeId,
    role: snap.node.role,
    term: snap.node.term,
    leader: snap.node.leaderId,
    commitIndex: snap.node.commitIndex,
    appliedIndex: snap.node.lastApplied,
    lastIndex: snap.node.lastIndex,
    clusterId: snap.node.clusterId,
    clusterName: snap.node.clusterName,
    quorumMet: snap.node.quorumMet,
    failoverEnabled: snap.node.failoverEnabled,
    storageOk: snap.node.storageOk,
    version: VERSION,
    peers: snap.members.map((m) => ({
      id: m.nodeId,
      address: m.address,
      port: m.port,
      state: m.state,
      voter: m.isVoter,
      match: m.matchIndex,
      next: m.nextIndex,
      lagEntries: m.lagEntries,
    })),
  };
}
