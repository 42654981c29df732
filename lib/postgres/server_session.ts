/**
 * The supervisor's own sessions to its server: a small SQL pool and, on a
 * standby, a replication-protocol session for `IDENTIFY_SYSTEM` (the one
 * exact source of a standby's replay timeline in PostgreSQL 15). Every query
 * is bounded and its error names what was asked. Both are ended before the
 * server stops and opened again lazily.
 *
 * @module
 */

import postgres from "postgres";
import { deadline } from "../async.ts";
import { openPostgres, type PgConnectionOptions } from "./connection.ts";
import { SETTING_NAME } from "./data_directory.ts";
import {
  conninfoTarget,
  identifySystem,
  type Lsn,
  maxLsn,
  replicationClient,
  type SystemIdentity,
} from "./replication.ts";
import { type Observation, SupervisorError, type SupervisorOperation } from "./supervisor_types.ts";

/** The application_name of the supervisor's sessions. */
export const SUPERVISOR_APPLICATION_NAME = "pgraft-supervisor";

/** SQL and replication sessions to one server. */
export class ServerSession {
  readonly #connection: PgConnectionOptions;
  readonly #where: string;
  readonly #queryMs: number;
  #sql: postgres.Sql | null = null;
  #replication: postgres.Sql | null = null;

  /**
   * @param connection how to reach the server, as a superuser
   * @param where the data directory, for messages
   * @param queryMs the default bound of one query
   */
  constructor(connection: PgConnectionOptions, where: string, queryMs: number) {
    this.#connection = connection;
    this.#where = where;
    this.#queryMs = queryMs;
  }

  /** The SQL pool (opened on first use). */
  pool(): postgres.Sql {
    this.#sql ??= openPostgres({
      ...this.#connection,
      max: 2,
      idle_timeout: 30,
      connect_timeout: 3,
      connection: { application_name: SUPERVISOR_APPLICATION_NAME },
    });
    return this.#sql;
  }

  /**
   * Run `fn` on the pool, bounded.
   *
   * @throws SupervisorError for `op` naming `what` and the server
   */
  async query<T>(
    op: SupervisorOperation,
    what: string,
    fn: (sql: postgres.Sql) => Promise<T>,
    timeoutMs = this.#queryMs,
  ): Promise<T> {
    try {
      return await deadline(fn(this.pool()), timeoutMs, what);
    } catch (error) {
      throw new SupervisorError(
        op,
        `${what} on PostgreSQL of ${this.#where} failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  /**
   * The one row a query returns.
   *
   * @throws SupervisorError when it fails or returns no row
   */
  async row<T>(
    op: SupervisorOperation,
    what: string,
    fn: (sql: postgres.Sql) => Promise<readonly T[]>,
    timeoutMs = this.#queryMs,
  ): Promise<T> {
    const rows = await this.query(op, what, fn, timeoutMs);
    const row = rows[0];
    if (row === undefined) throw new SupervisorError(op, `${what} returned no row`);
    return row;
  }

  /**
   * ALTER SYSTEM SET each setting, then reload.
   *
   * @throws RangeError for a name ALTER SYSTEM would not take
   */
  async alterSystem(op: SupervisorOperation, settings: Record<string, string>): Promise<void> {
    for (const [name, value] of Object.entries(settings)) {
      if (!SETTING_NAME.test(name)) throw new RangeError(`invalid setting name "${name}"`);
      // A utility statement takes no parameters: a literal, quotes doubled
      // (standard_conforming_strings is on since PostgreSQL 9.1).
      const literal = `'${value.replaceAll("'", "''")}'`;
      await this.query(
        op,
        `ALTER SYSTEM SET ${name}`,
        (sql) => sql.unsafe(`alter system set ${name} to ${literal}`),
      );
    }
    await this.reload(op);
  }

  /** `pg_reload_conf()`. */
  async reload(op: SupervisorOperation): Promise<void> {
    await this.query(op, "pg_reload_conf()", (sql) => sql`select pg_reload_conf()`);
  }

  /** IDENTIFY_SYSTEM on this server, or null when it cannot be asked (pg_hba.conf, a restart). */
  async identity(): Promise<SystemIdentity | null> {
    const { host, port, user, password } = this.#connection;
    this.#replication ??= replicationClient(
      { host, port, user, password },
      SUPERVISOR_APPLICATION_NAME,
    );
    try {
      return await identifySystem(this.#replication, this.#queryMs);
    } catch {
      await this.endReplication();
      return null;
    }
  }

  /** End the replication session (a promoted server has no use for it). */
  async endReplication(timeoutS = 1): Promise<void> {
    const replication = this.#replication;
    this.#replication = null;
    await replication?.end({ timeout: timeoutS }).catch(() => {});
  }

  /**
   * End both sessions, waiting up to `timeoutS` for the statements under way
   * (0: cut them, as before a shutdown that ends them anyway).
   */
  async end(timeoutS = 1): Promise<void> {
    const sql = this.#sql;
    this.#sql = null;
    await Promise.all([
      sql?.end({ timeout: timeoutS }).catch(() => {}),
      this.endReplication(timeoutS),
    ]);
  }

  /** A primary's WAL position and timeline (from the name of its current WAL file). */
  async primaryPosition(
    op: SupervisorOperation,
  ): Promise<{ lsn: Lsn; flushLsn: Lsn; timeline: number }> {
    const row = await this.row(
      op,
      "the primary's WAL position",
      (sql) =>
        sql<{ lsn: string; flush: string; walfile: string }[]>`
        select pg_current_wal_lsn()::text as lsn, pg_current_wal_flush_lsn()::text as flush,
          pg_walfile_name(pg_current_wal_lsn()) as walfile`,
    );
    return {
      lsn: row.lsn,
      flushLsn: row.flush,
      timeline: parseInt(row.walfile.slice(0, 8), 16),
    };
  }

  /**
   * A standby's positions, WAL receiver and timeline (IDENTIFY_SYSTEM's; else
   * the receiver's, else the latest restartpoint's).
   */
  async standbyState(op: SupervisorOperation): Promise<StandbyState> {
    const row = await this.row(op, "the standby's state", (sql) =>
      sql<
        {
          receive: string | null;
          replay: string | null;
          sender_end: string | null;
          conninfo: string;
          status: string | null;
          host: string | null;
          port: number | null;
          tli: number | null;
          checkpoint_tli: number;
        }[]
      >`
        select pg_last_wal_receive_lsn()::text as receive, pg_last_wal_replay_lsn()::text as replay,
          r.latest_end_lsn::text as sender_end, current_setting('primary_conninfo') as conninfo, r.status, r.sender_host as host,
          r.sender_port as port, r.received_tli as tli,
          (select timeline_id from pg_control_checkpoint()) as checkpoint_tli
        from (select 1) as one left join pg_stat_wal_receiver as r on true`);
    const identity = await this.identity();
    return {
      receiveLsn: row.receive,
      replayLsn: row.replay,
      lsn: identity?.lsn ?? maxLsn(row.receive, row.replay),
      timeline: identity?.timeline ?? row.tli ?? row.checkpoint_tli,
      flushLsn: row.receive,
      primaryConninfo: row.conninfo,
      upstream: conninfoTarget(row.conninfo),
      sender: row.host !== null && row.port !== null ? { host: row.host, port: row.port } : null,
      streaming: row.status === "streaming",
      senderLsn: row.sender_end,
    };
  }
}

/** What a standby reports about its replication. */
export type StandbyState = Pick<
  Observation,
  | "lsn"
  | "timeline"
  | "receiveLsn"
  | "replayLsn"
  | "flushLsn"
  | "primaryConninfo"
  | "upstream"
  | "sender"
  | "streaming"
  | "senderLsn"
>;
