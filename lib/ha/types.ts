/**
 * The contract between the HA controller ({@link decide} in controller.ts)
 * and the agent that runs it: what the agent gathers each time it asks
 * ({@link HaInputs}), and what it is told to do ({@link HaAction}).
 *
 * Everything here is plain data. Times are milliseconds on the asking
 * agent's own monotonic clock (`performance.now()` in the agent, a drifting
 * fake in the simulator); the controller never reads a clock.
 *
 * Positions in the write-ahead log are numbers (a `pg_lsn` as a byte
 * offset: exact up to 2^53 bytes, 8 PiB of WAL).
 *
 * @module
 */

import type { NodeId, Role } from "../raft/mod.ts";

/** A WAL position as a byte offset (`pg_lsn` converted with `pg_lsn - '0/0'`). */
export type Lsn = number;

/** Where a server's WAL stands: its timeline and LSNs. */
export interface WalState {
  /** the timeline of the newest WAL the server holds (`received_tli` on a standby) */
  timeline: number;
  /** standby: `pg_last_wal_receive_lsn()`; primary: `pg_current_wal_insert_lsn()` */
  receivedLsn: Lsn;
  /** standby: `pg_last_wal_replay_lsn()`; primary: `pg_current_wal_lsn()` */
  replayedLsn: Lsn;
  /**
   * WAL on this server's disk: standby `pg_last_wal_receive_lsn()` (written and
   * flushed by the WAL receiver), primary `pg_current_wal_flush_lsn()`. This
   * is the position failovers compare: a synchronous standby acknowledges a
   * commit (`synchronous_commit = on`) once it has flushed it.
   */
  flushedLsn: Lsn;
}

/**
 * What a server is doing, as the supervisor observed it. Each variant
 * carries what is known in that state (a stopped server's exact end of WAL
 * is not known until it runs again: `pg_controldata` shows only the last
 * checkpoint).
 */
export type ServerObservation =
  /** the data directory is empty (a new member: clone it) */
  | { state: "empty" }
  /** the data directory belongs to another database system: never wiped */
  | { state: "refused"; detail: string }
  /**
   * not running. `clean`: the last stop was a clean shutdown (fast or smart:
   * a shutdown checkpoint, which the connected standbys flushed before the
   * stop ended). `wal`: after a clean shutdown, where its WAL ends (the
   * shutdown checkpoint, `pg_controldata`), else null (unknown until it runs
   * again). `rewindFailed`: the last pg_rewind failed and left the directory
   * needing repair.
   */
  | { state: "stopped"; clean: boolean; rewindFailed: boolean; wal: WalState | null }
  /** started, not yet accepting connections */
  | { state: "starting" }
  /**
   * in recovery. `upstream`: the member whose server it streams from (its
   * `primary_conninfo`), null when it streams from no one (frozen).
   */
  | { state: "standby"; upstream: NodeId | null; wal: WalState }
  /**
   * in recovery, but its history forked from its upstream's (the WAL receiver
   * keeps failing: "requested timeline is not a child of this server's
   * history", "… forked off … before the current recovery point"); it streams
   * nothing until rewound
   */
  | { state: "diverged"; upstream: NodeId; wal: WalState }
  /** not in recovery: it accepts writes */
  | { state: "primary"; wal: WalState };

/** The name of a {@link ServerObservation} state. */
export type ServerStateName = ServerObservation["state"];

/** The agent's own server, with what only the local agent knows. */
export type LocalServer = ServerObservation & {
  /** when the server entered this state */
  sinceMs: number;
  /** its `synchronous_standby_names` now ('' when unset); meaningful while it runs */
  synchronousStandbyNames: string;
};

/**
 * Another member's report, as the leader received it (answers to
 * {@link HaAction} `collect_lsns`).
 */
export interface MemberReport {
  nodeId: NodeId;
  /** the reporter's Raft term when it reported */
  term: number;
  server: ServerObservation;
  /** its server streamed from no one when it reported (its WAL receiver was stopped) */
  frozen: boolean;
  /** when this agent received the report */
  receivedAtMs: number;
}

/** The PostgreSQL primary record of the replicated state (lib/state `set_primary`). */
export interface PrimaryRecordView {
  nodeId: NodeId;
  timeline: number;
}

/** A supervisor operation that takes time. */
export type ServerOperation =
  | "start"
  | "stop"
  | "freeze"
  | "follow"
  | "promote"
  | "rewind"
  | "clone"
  | "set_synchronous";

/** What the agent gathers each time it asks the controller. */
export interface HaInputs {
  /** the agent's monotonic clock */
  nowMs: number;
  /** this node */
  self: NodeId;
  /**
   * the node belongs to a cluster (pgraft_init() ran here, or it was added);
   * a node in no cluster yet runs its initialized server as it is
   */
  inCluster: boolean;
  raft: {
    role: Role;
    term: number;
    /** the leader this node knows in its term, or 0 (NONE) */
    leaderId: NodeId;
    voters: readonly NodeId[];
    /** leader only: the voter a leadership transfer is under way to, or 0 */
    transferTarget: NodeId;
    /**
     * leader only (followers pass true): the state machine applied an entry of
     * the leader's own term. Until then `primary` may be stale: a new leader
     * holds every committed entry but learns which are committed, and applies
     * them, only once it commits one of its own term (Raft §5.4.2, §8).
     */
    caughtUp: boolean;
  };
  /**
   * leader only: how long the leader lease lasts from now (may be negative
   * once expired); null when not leader. See lease.ts {@link LeaseTracker}.
   */
  leaseRemainingMs: number | null;
  /**
   * a leader whose lease has less left than this fences its server: the
   * time from deciding to a server that accepts no more writes (see
   * lease.ts {@link fencingBudgetMs})
   */
  fencingBudgetMs: number;
  /** the committed (applied) primary record, or null when none was ever set */
  primary: PrimaryRecordView | null;
  /** leader only: a `set_primary` it proposed in this term that is not applied yet */
  proposedPrimary: PrimaryRecordView | null;
  /** cluster setting failover_enabled */
  failoverEnabled: boolean;
  /** cluster setting synchronous_replication */
  synchronous: boolean;
  /** the operator allowed re-cloning a data directory whose rewind failed */
  recloneAllowed: boolean;
  server: LocalServer;
  /** the supervisor operation under way, if any */
  inProgress: { op: ServerOperation; sinceMs: number } | null;
  /** leader only: the latest report of each other member (any term; the controller filters) */
  members: readonly MemberReport[];
  /** a leader asked this node for a report (the latest such request, until answered) */
  reportRequest: { leader: NodeId; term: number; freeze: boolean } | null;
  /**
   * the highest term of a leader that asked this node to freeze (volatile:
   * 0 after a restart — safe, see controller.ts "Freezing")
   */
  frozenForTerm: number;
  /** leader only: the operator's pgraft_transfer_leadership(target), until done or abandoned */
  switchover: { target: NodeId; requestedAtMs: number } | null;
}

/** Problems the controller reports (events; the agent logs each once per occurrence). */
export type HaProblem =
  | "postgres_refused"
  | "rewind_failed"
  | "timeline_mismatch"
  | "no_safe_candidate";

/** What the agent must do now. Each action carries everything it needs. */
export type HaAction =
  /** nothing to do now */
  | { type: "wait" }
  /** a node in no cluster: start its initialized server as it is */
  | { type: "start_as_is" }
  /**
   * start the server in recovery (`standby.signal`), streaming from
   * `upstream`'s server (`primary_conninfo`, application_name =
   * sync.ts {@link applicationName}), or from no one when null
   */
  | { type: "start_standby"; upstream: NodeId | null }
  /**
   * stop accepting writes now. `immediate`: `pg_ctl stop -m immediate` (a
   * lost lease; Patroni's "immediate-nolock" demotion); `fast`: a clean
   * shutdown whose end of WAL reaches the connected standbys (switchover).
   * An immediate fence preempts whatever is under way (a promotion, a fast
   * stop); the agent never leaves it waiting behind another operation.
   */
  | { type: "fence"; mode: "immediate" | "fast" }
  /** stop streaming: `primary_conninfo = ''`, reload, until no WAL receiver runs */
  | { type: "freeze" }
  /** send this node's report (its server's state and WAL position, its Raft term) to the leader */
  | { type: "report_lsn"; to: NodeId; term: number }
  /**
   * ask these members for a report; with `freeze` they stop streaming first
   * (each remembers the term as its `frozenForTerm`)
   */
  | { type: "collect_lsns"; from: readonly NodeId[]; term: number; freeze: boolean }
  /**
   * hand Raft leadership to a voter (`RaftNode.transferLeadership`); tell the
   * lease tracker first ({@link LeaseTracker.transferStarted})
   */
  | { type: "transfer_leadership"; to: NodeId }
  /** propose `set_primary {nodeId, timeline}` to the log */
  | { type: "propose_primary"; nodeId: NodeId; timeline: number }
  /**
   * promote the local standby (`pg_promote()`); PostgreSQL must pick exactly
   * this timeline (see controller.ts "Timelines")
   */
  | { type: "promote"; timeline: number }
  /** re-point the standby at `upstream`'s server (`primary_conninfo`, reload) */
  | { type: "follow"; upstream: NodeId }
  /** stop the server if it runs, then `pg_rewind --source-server` = `source`'s server */
  | { type: "rewind"; source: NodeId }
  /**
   * `pg_basebackup` from `source`'s server into the data directory: only an
   * empty one, or our own whose rewind failed when the operator allowed it
   */
  | { type: "clone"; source: NodeId }
  /** `ALTER SYSTEM SET synchronous_standby_names = value`, reload */
  | { type: "set_synchronous_standby_names"; value: string }
  /** give up the operator's switchover (event command_failed with the reason) */
  | { type: "abandon_switchover"; target: NodeId }
  /** report a problem and wait */
  | { type: "problem"; event: HaProblem; detail: string };

/** The type of an {@link HaAction}. */
export type HaActionType = HaAction["type"];

/** The controller's answer: one action, and why (for logs and events). */
export interface Decision {
  action: HaAction;
  reason: string;
}

/**
 * Bugs a test plants in the controller to prove the HA simulator catches
 * them. Never set outside tests.
 */
export interface HaPlantedBugs {
  /** a new leader proposes and promotes itself without freezing and comparing the standbys */
  promoteWithoutCollecting?: boolean;
  /** promote as soon as the new primary record is proposed, before it is committed */
  promoteBeforeRecordCommitted?: boolean;
}

/** Options of {@link decide}. */
export interface DecideOptions {
  /** bugs to plant (tests only) */
  plantedBugs?: HaPlantedBugs;
}
