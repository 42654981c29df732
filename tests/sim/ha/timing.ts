/**
 * The HA simulator's timings and knobs: PostgreSQL operations take the
 * durations measured on this machine (DESIGN.md "Known traps"; the immediate
 * stop measured for lib/ha/lease.ts), the Raft timing is the default
 * configuration (100 ms heartbeats, 1 s election timeout, 10 ms ticks).
 *
 * @module
 */

/** An inclusive range of milliseconds (real time). */
export interface Span {
  min: number;
  max: number;
}

/** How long each PostgreSQL operation takes, in real milliseconds. */
export const PG_DURATIONS = {
  /** standby start to streaming: 0.5–0.75 s */
  start: { min: 500, max: 750 },
  /** pg_promote(): 0.24–0.45 s */
  promote: { min: 240, max: 450 },
  /** re-pointing a standby (primary_conninfo + reload): 0.3–0.7 s */
  follow: { min: 300, max: 700 },
  /** primary_conninfo = '' + reload, until the WAL receiver is gone */
  freeze: { min: 20, max: 200 },
  /** immediate stop (SIGQUIT): measured 39–41 ms under load, bounded at 250 ms */
  stopImmediate: { min: 20, max: 250 },
  /** fast shutdown of a busy primary: 0.4–0.6 s, about 1 s with the CPUs saturated */
  stopFast: { min: 400, max: 1000 },
  /** pg_rewind after a clean stop: 0.1 s */
  rewindClean: { min: 80, max: 150 },
  /** pg_rewind after kill -9: 1–1.3 s, up to 3 s under load */
  rewindCrashed: { min: 1000, max: 3000 },
  /** pg_basebackup of a young cluster: 0.4–0.9 s */
  clone: { min: 400, max: 900 },
  /** ALTER SYSTEM SET synchronous_standby_names + reload */
  setSynchronous: { min: 5, max: 50 },
} as const satisfies Record<string, Span>;

/** The agents' Raft timing (DESIGN.md defaults; lib/agent/settings.ts derives the ticks). */
export const RAFT_TIMING = {
  tickMs: 10,
  heartbeatTicks: 10,
  electionTicks: 100,
  electionJitterTicks: 25,
  appendBatchSize: 64,
  maxInflight: 16,
} as const;

/** The agent's HA loop: ask the controller this often (local ms). */
export const DECISION_INTERVAL_MS = 50;
/** A lease round (ReadIndex) every heartbeat interval (local ms). */
export const LEASE_ROUND_MS = RAFT_TIMING.tickMs * RAFT_TIMING.heartbeatTicks;
/** The leader re-sends a report request no more often than this (local ms). */
export const COLLECT_RESEND_MS = 100;

/** One-way network delay of a message (real ms); a few are slower. */
export const NETWORK_DELAY: Span = { min: 1, max: 8 };
export const NETWORK_DELAY_SLOW: Span = { min: 10, max: 30 };
export const NETWORK_SLOW_CHANCE = 0.05;

/** Per real ms: a streaming standby catches up with its upstream with this chance. */
export const REPLICATION_CATCH_UP_CHANCE = 0.6;
/** Per real ms and running primary: a client commits with this chance. */
export const CLIENT_WRITE_CHANCE = 0.2;
/** A pg_rewind fails for good ("could not find previous WAL record") with this chance. */
export const REWIND_FAILURE_CHANCE = 0.08;
