/**
 * The supervisor's vocabulary: its errors (callers branch on
 * {@link RefusedError} and {@link RewindError}), options, time limits, and
 * what each operation reports. See ./supervisor.ts.
 *
 * @module
 */

import type { PgConnectionOptions } from "./connection.ts";
import type { DataDirectoryState } from "./data_directory.ts";
import type { Lsn } from "./replication.ts";
import type { PgBinaries } from "./server.ts";

/** The operations, named in errors. */
export type SupervisorOperation =
  | "observe"
  | "start"
  | "stop"
  | "kill"
  | "follow"
  | "freeze"
  | "promote"
  | "fence"
  | "demote"
  | "rewind"
  | "clone"
  | "settings";

/** An operation failed; the message says why. */
export class SupervisorError extends Error {
  override name = "SupervisorError";
  /** the operation that failed */
  readonly operation: SupervisorOperation;

  /** @param operation what was being done */
  constructor(operation: SupervisorOperation, message: string, options?: ErrorOptions) {
    super(message, options);
    this.operation = operation;
  }
}

/** The data directory belongs to another system or is not empty: nothing was changed. */
export class RefusedError extends SupervisorError {
  override name = "RefusedError";
  /** what the data directory holds */
  readonly state: DataDirectoryState | null;

  /** @param state what was found */
  constructor(
    operation: SupervisorOperation,
    message: string,
    state: DataDirectoryState | null,
  ) {
    super(operation, message);
    this.state = state;
  }
}

/**
 * pg_rewind failed: the data directory needs a re-clone, which pgraft does
 * only when the operator allows it.
 */
export class RewindError extends SupervisorError {
  override name = "RewindError";
  /** what pg_rewind wrote to stderr */
  readonly stderr: string;

  /** @param stderr pg_rewind's stderr */
  constructor(message: string, stderr: string, options?: ErrorOptions) {
    super("rewind", message, options);
    this.stderr = stderr;
  }
}

/** Time limits of the operations, in milliseconds. */
export interface SupervisorTimeouts {
  /** start until the server accepts connections (crash recovery included) @default 60_000 */
  startMs: number;
  /** a clean (fast) shutdown, before it is made immediate @default 60_000 */
  stopMs: number;
  /** fence: the fast shutdown's budget before an immediate one @default 1_500 */
  fenceFastMs: number;
  /** an immediate shutdown's budget before SIGKILL @default 5_000 */
  immediateMs: number;
  /** one query @default 5_000 */
  queryMs: number;
  /** pg_promote @default 60_000 */
  promoteMs: number;
  /** a re-pointed or frozen standby's WAL receiver to start or stop @default 30_000 */
  followMs: number;
  /** pg_rewind (crash recovery included) @default 600_000 */
  rewindMs: number;
  /** pg_basebackup @default 3_600_000 */
  cloneMs: number;
}

/** The defaults of {@link SupervisorTimeouts}. */
export const SUPERVISOR_TIMEOUTS: Readonly<SupervisorTimeouts> = {
  startMs: 60_000,
  stopMs: 60_000,
  fenceFastMs: 1_500,
  immediateMs: 5_000,
  queryMs: 5_000,
  promoteMs: 60_000,
  followMs: 30_000,
  rewindMs: 600_000,
  cloneMs: 3_600_000,
};

/** Options of {@link Supervisor}. */
export interface SupervisorOptions {
  /** the data directory (the conf's `data_directory`) */
  dataDir: string;
  /**
   * the node's postgresql.conf; outside the data directory (Debian) or inside
   * @default dataDir/postgresql.conf
   */
  configFile?: string;
  /** how the agent connects to this server, as a superuser (./connection.ts) */
  connection: PgConnectionOptions;
  /** the cluster's database system identifier; null until one is recorded */
  systemIdentifier?: string | null;
  /** the server's log (its stderr, appended) @default `<dataDir>.log` */
  logFile?: string;
  /** extra `-c name=value` settings on the command line (not for HA settings) */
  settings?: Readonly<Record<string, string>>;
  /** the server binaries @default findPgBinaries() */
  bins?: PgBinaries;
  /** start the server in a session of its own @default false */
  detached?: boolean;
  /** time limits */
  timeouts?: Partial<SupervisorTimeouts>;
}

/** What the server is doing. */
export type ServerRole =
  | "stopped"
  | "starting"
  | "stopping"
  | "primary"
  | "standby"
  /** a standby (or a stopped server) holding WAL its primary does not have: needs pg_rewind */
  | "diverged"
  /** running, but not answering the supervisor's queries (`error` says why) */
  | "unknown";

/** What {@link Supervisor.observe} sees. */
export interface Observation {
  role: ServerRole;
  /** the postmaster's PID while running */
  pid: number | null;
  /**
   * the server's WAL position: a primary's `pg_current_wal_lsn()`, a
   * standby's furthest received or replayed, a stopped server's latest checkpoint
   */
  lsn: Lsn | null;
  /** its timeline (a standby: the one it replays or receives) */
  timeline: number | null;
  /** a standby's `pg_last_wal_receive_lsn()` */
  receiveLsn: Lsn | null;
  /** a standby's `pg_last_wal_replay_lsn()` */
  replayLsn: Lsn | null;
  /**
   * the WAL on the server's disk, the position failovers compare: a
   * primary's `pg_current_wal_flush_lsn()`, a standby's received (flushed)
   * LSN, a cleanly stopped server's shutdown checkpoint
   */
  flushLsn: Lsn | null;
  /** a standby's `primary_conninfo` ("" = none) */
  primaryConninfo: string | null;
  /** the host and port `primary_conninfo` names (connected or not), null when none */
  upstream: { host: string; port: number } | null;
  /** `synchronous_standby_names` while running ("" when unset) */
  synchronousStandbyNames: string | null;
  /** the last pg_rewind of the data directory failed: it needs a re-clone */
  rewindFailed: boolean;
  /** where a standby's WAL receiver is connected */
  sender: { host: string; port: number } | null;
  /** a standby's WAL receiver is streaming */
  streaming: boolean;
  /**
   * a standby's view of its primary's end of WAL, as the sender last reported
   * it (`pg_stat_wal_receiver.latest_end_lsn`): its lag is this minus its replay LSN
   */
  senderLsn: Lsn | null;
  /** a stopped server was shut down cleanly (null when not stopped or unknown) */
  cleanShutdown: boolean | null;
  /** why the server diverged from the primary it was compared with */
  divergence: string | null;
  dataDirectory: DataDirectoryState;
  /** why the role is `unknown` */
  error: string | null;
}

/** How a stop went. */
export interface StopReport {
  /** how it ended: a clean fast shutdown, an immediate one, SIGKILL, or nothing was running */
  mode: "fast" | "immediate" | "kill" | "none";
  ms: number;
}

/** How a start went. */
export interface StartReport {
  ms: number;
  pid: number;
}

/** What {@link Supervisor.freeze} leaves. */
export interface FreezeReport {
  receiveLsn: Lsn | null;
  replayLsn: Lsn | null;
  /** the furthest of the two */
  lsn: Lsn | null;
  timeline: number;
  ms: number;
}

/** What {@link Supervisor.promote} did. */
export interface PromoteReport {
  timeline: number;
  lsn: Lsn;
  ms: number;
}

/** What {@link Supervisor.fence} did. */
export interface FenceReport {
  /**
   * the CHECKPOINT before a fast shutdown, in ms (null: immediate, or the
   * checkpoint failed and the shutdown went ahead)
   */
  checkpointMs: number | null;
  stop: StopReport;
  /** the restart as a standby with no primary, when asked for */
  restart: StartReport | null;
}

/** A demoted primary once stopped, before its restart as a standby. */
export interface DemoteStopped {
  stop: StopReport;
  /** the shutdown was clean (fast); else the final LSN is only a lower bound */
  clean: boolean;
  /**
   * where the shutdown checkpoint record starts: a standby holds everything
   * the old primary wrote once its received LSN is beyond it (greater, not equal)
   */
  finalLsn: Lsn;
  timeline: number;
}

/** What {@link Supervisor.demote} did. */
export interface DemoteReport extends DemoteStopped {
  /** the restart as a standby */
  restart: StartReport;
}

/** What {@link Supervisor.follow} did. */
export interface FollowReport {
  /** until the WAL receiver streams from the new primary (0 when not waited for) */
  ms: number;
}

/** Options of {@link Supervisor.bootstrapSettings}. */
export interface BootstrapOptions {
  /** @default "512MB" — enough for pg_rewind after a kill -9 and for a lagging standby */
  walKeepSize?: string;
  /** @default 10 */
  maxWalSenders?: number;
  /** @default "on" */
  synchronousCommit?: string;
  /** how soon a standby retries a primary that refused it @default "1s" */
  walRetrieveRetryInterval?: string;
}

/** What {@link Supervisor.bootstrapSettings} changed. */
export interface BootstrapReport {
  /** settings that take effect only after a restart (the server is running with others) */
  restartRequired: string[];
}

/** What pg_rewind did. */
export interface RewindOutcome {
  /** false when pg_rewind found nothing to do ("no rewind required") */
  rewound: boolean;
  /** where the timelines parted, as pg_rewind says */
  divergedAt: { lsn: Lsn; timeline: number } | null;
  /** pg_rewind ran crash recovery first (the server had not been stopped cleanly) */
  crashRecovery: boolean;
  /** how long pg_rewind ran, crash recovery included */
  rewindMs: number;
  /** what pg_rewind said */
  output: string;
}

/** What pg_basebackup did. */
export interface CloneOutcome {
  /** the copied database system */
  systemIdentifier: string;
  /** how long pg_basebackup ran */
  cloneMs: number;
}

/** What {@link Supervisor.rewind} did. */
export interface RewindReport extends RewindOutcome {
  /** the clean stop before pg_rewind ("none" when it was not running) */
  stop: StopReport;
  /** the start as a standby of the source afterwards */
  restart: StartReport;
  /** the whole operation */
  ms: number;
}

/** What {@link Supervisor.clone} did. */
export interface CloneReport extends CloneOutcome {
  /** the start as a standby of the source, unless asked not to */
  start: StartReport | null;
}
