/**
 * The supervisor (`pgraft.manage_postgres = on`): the one place that starts,
 * stops, promotes, demotes, fences, rewinds and clones this node's PostgreSQL
 * server, and observes it. It takes no decisions — the HA controller
 * (lib/ha) decides and the agent calls these operations — and each
 * operation is bounded in time and fails with an error that says what
 * happened.
 *
 * Layouts: the configuration file outside the data directory (Debian:
 * `/etc/postgresql/15/main/postgresql.conf` with `data_directory`, started as
 * `postgres -D <data> -c config_file=<conf>`), or inside it. The node's own
 * configuration is never touched by a clone or a rewind; what pgraft changes
 * goes in `postgresql.auto.conf` (ALTER SYSTEM while the server runs, the file
 * while it is stopped): `primary_conninfo`, `recovery_target_timeline`, the HA
 * settings and `synchronous_standby_names`. No replication slots: WAL is kept
 * for standbys and pg_rewind by `wal_keep_size` (a slot of a dead standby
 * would keep WAL forever, and PostgreSQL 15 does not carry slots across a
 * failover).
 *
 * As root, every server program runs as the `postgres` OS user (./server.ts).
 *
 * @module
 */

import { join, resolve } from "node:path";
import { poll } from "../async.ts";
import {
  classifySystem,
  type ControlData,
  type DataDirectoryState,
  hasStandbySignal,
  inspectDataDirectory,
  naturalPromotionTimeline,
  readControlData,
  rewindFailed,
  updateAutoConf,
  writeStandbySignal,
  writeTimelinePlaceholders,
} from "./data_directory.ts";
import { Postmaster } from "./postmaster.ts";
import { requireProgram, type SupervisorPrograms, supervisorPrograms } from "./programs.ts";
import {
  divergenceFrom,
  type Lsn,
  maxLsn,
  primaryConninfo,
  type PrimaryTarget,
  standbyWalPosition,
} from "./replication.ts";
import { findPgBinaries, type PgBinaries } from "./server.ts";
import { ServerSession } from "./server_session.ts";
import {
  checkRewindable,
  cloneDataDirectory,
  foreignRefusal,
  prepareClone,
  rewindDataDirectory,
} from "./supervisor_repair.ts";
import {
  haSettings,
  type HbaReport,
  type ReplicationAccessOptions,
  restartRequired,
  updateHba,
  waitSetting,
} from "./supervisor_settings.ts";
import {
  type BootstrapOptions,
  type BootstrapReport,
  type CloneReport,
  type DemoteReport,
  type DemoteStopped,
  type FenceReport,
  type FollowReport,
  type FreezeReport,
  type Observation,
  type PromoteReport,
  RefusedError,
  type RewindReport,
  type StartReport,
  type StopReport,
  SUPERVISOR_TIMEOUTS,
  SupervisorError,
  type SupervisorOperation,
  type SupervisorOptions,
  type SupervisorTimeouts,
} from "./supervisor_types.ts";

export * from "./supervisor_types.ts";
export type { HbaReport, ReplicationAccessOptions };

/** Time between checks of a waited-for condition. */
const POLL_MS = 20;

/** One server's supervisor (see the module documentation). */
export class Supervisor {
  readonly dataDir: string;
  readonly configFile: string;
  /** the configuration file lives outside the data directory */
  readonly configOutside: boolean;
  /** the cluster's database system identifier; null until recorded */
  systemIdentifier: string | null;
  readonly #options: SupervisorOptions;
  readonly #timeouts: SupervisorTimeouts;
  readonly #bins: PgBinaries;
  readonly #programs: SupervisorPrograms;
  readonly #postmaster: Postmaster;
  readonly #session: ServerSession;

  private constructor(options: SupervisorOptions, bins: PgBinaries) {
    this.dataDir = resolve(options.dataDir);
    this.configFile = resolve(options.configFile ?? join(this.dataDir, "postgresql.conf"));
    this.configOutside = !this.configFile.startsWith(`${this.dataDir}/`);
    this.systemIdentifier = options.systemIdentifier ?? null;
    this.#options = options;
    this.#timeouts = { ...SUPERVISOR_TIMEOUTS, ...options.timeouts };
    this.#bins = bins;
    this.#programs = supervisorPrograms(bins);
    const args = ["-D", this.dataDir];
    if (this.configOutside) args.push("-c", `config_file=${this.configFile}`);
    for (const [name, value] of Object.entries(options.settings ?? {})) {
      args.push("-c", `${name}=${value}`);
    }
    this.#session = new ServerSession(options.connection, this.dataDir, this.#timeouts.queryMs);
    this.#postmaster = new Postmaster({
      postgres: bins.postgres,
      dataDir: this.dataDir,
      args,
      logFile: options.logFile ?? `${this.dataDir}.log`,
      detached: options.detached ?? false,
    });
  }

  /**
   * A supervisor for `options.dataDir` (nothing is started).
   *
   * @throws Error when no server binaries are found
   */
  static async create(options: SupervisorOptions): Promise<Supervisor> {
    return new Supervisor(options, options.bins ?? await findPgBinaries());
  }

  /** The server binaries in use. */
  get bins(): PgBinaries {
    return this.#bins;
  }

  /** The running postmaster's PID, or null. */
  pid(): Promise<number | null> {
    return this.#postmaster.runningPid();
  }

  /** The time limits in force. */
  get timeouts(): Readonly<SupervisorTimeouts> {
    return this.#timeouts;
  }

  /** What the data directory holds, compared with the recorded system identifier. */
  inspect(): Promise<DataDirectoryState> {
    return inspectDataDirectory(this.#programs.pgControlData, this.dataDir, this.systemIdentifier);
  }

  /** `pg_controldata` of the data directory. */
  controlData(): Promise<ControlData> {
    return readControlData(this.#programs.pgControlData, this.dataDir);
  }

  /**
   * What the server and its data directory are doing now.
   *
   * @param options.primary compare with this primary: a standby that does not
   *   stream from it, or a cleanly stopped server, is checked for divergence
   */
  async observe(options: { primary?: PrimaryTarget } = {}): Promise<Observation> {
    const pid = await this.#postmaster.runningPid();
    const base: Observation = {
      role: "stopped",
      pid,
      lsn: null,
      timeline: null,
      receiveLsn: null,
      replayLsn: null,
      flushLsn: null,
      primaryConninfo: null,
      upstream: null,
      synchronousStandbyNames: null,
      rewindFailed: await rewindFailed(this.dataDir),
      sender: null,
      streaming: false,
      senderLsn: null,
      cleanShutdown: null,
      divergence: null,
      dataDirectory: { kind: "empty" },
      error: null,
    };
    if (pid === null) return await this.#observeStopped(base, options.primary);
    const file = await this.#postmaster.pidFile();
    // A stale postmaster.pid (of a crashed server) until the new postmaster writes its own.
    const status = file?.pid === pid ? file.status : null;
    if (status === "stopping" || status === "starting" || status === null) {
      return { ...base, role: status === "stopping" ? "stopping" : "starting" };
    }
    let head: { recovery: boolean; system: string; sync: string };
    try {
      head = await this.#session.row(
        "observe",
        "the server's role",
        (sql) =>
          sql<{ recovery: boolean; system: string; sync: string }[]>`
          select pg_is_in_recovery() as recovery, system_identifier::text as system,
            current_setting('synchronous_standby_names') as sync
          from pg_control_system()`,
      );
    } catch (error) {
      return { ...base, role: "unknown", error: (error as Error).message };
    }
    const observed: Observation = {
      ...base,
      dataDirectory: classifySystem(head.system, this.systemIdentifier, this.dataDir),
      synchronousStandbyNames: head.sync,
    };
    if (!head.recovery) {
      const { lsn, flushLsn, timeline } = await this.#session.primaryPosition("observe");
      return { ...observed, role: "primary", lsn, flushLsn, timeline };
    }
    const standby = await this.#session.standbyState("observe");
    const result: Observation = { ...observed, ...standby, role: "standby" };
    const position = standbyWalPosition(standby);
    if (options.primary && !standby.streaming && position !== null) {
      const divergence = await divergenceFrom(
        position,
        options.primary,
        this.systemIdentifier,
        this.#timeouts.queryMs,
      );
      if (divergence) return { ...result, role: "diverged", divergence };
    }
    return result;
  }

  async #observeStopped(base: Observation, primary?: PrimaryTarget): Promise<Observation> {
    const dataDirectory = await this.inspect();
    if (dataDirectory.kind === "empty" || dataDirectory.kind === "foreign") {
      return { ...base, dataDirectory };
    }
    const control = await this.controlData();
    const recovered = control.minRecoveryTimeline > control.checkpointTimeline;
    const observed: Observation = {
      ...base,
      dataDirectory,
      lsn: maxLsn(control.checkpointLsn, recovered ? control.minRecoveryLsn : null),
      flushLsn: control.cleanShutdown && !recovered ? control.checkpointLsn : null,
      timeline: recovered ? control.minRecoveryTimeline : control.checkpointTimeline,
      cleanShutdown: control.cleanShutdown,
    };
    if (!primary || !control.cleanShutdown || recovered) return observed;
    const position = {
      timeline: control.checkpointTimeline,
      lsn: control.checkpointLsn,
      lastRecordStart: true,
    };
    const divergence = await divergenceFrom(
      position,
      primary,
      this.systemIdentifier,
      this.#timeouts.queryMs,
    );
    return divergence ? { ...observed, role: "diverged", divergence } : observed;
  }

  /**
   * Start the server as its data directory says (a primary unless
   * `standby.signal` is there): a node in no cluster yet runs its initialized
   * server as it is.
   *
   * @throws SupervisorError when it is running already, does not start (the log's tail quoted) or overruns
   */
  async start(): Promise<StartReport> {
    await this.#assertStartable("start");
    const started = performance.now();
    const offset = await this.#postmaster.spawn();
    const exited = new AbortController();
    let pid: number;
    try {
      pid = await poll(async () => {
        if (this.#postmaster.exited) {
          exited.abort();
          return null;
        }
        const file = await this.#postmaster.pidFile();
        if (!file || (file.status !== "ready" && file.status !== "standby")) return null;
        if (file.pid !== await this.#postmaster.runningPid()) return null;
        await this.#session.pool()`select 1`;
        return file.pid;
      }, {
        timeoutMs: this.#timeouts.startMs,
        intervalMs: POLL_MS,
        ignoreErrors: true,
        signal: exited.signal,
        what: `PostgreSQL on ${this.dataDir} to accept connections`,
      });
    } catch (error) {
      const log = await this.#postmaster.logSince(offset);
      const running = this.#postmaster.exited ? "it exited" : "it is still starting (left running)";
      throw new SupervisorError(
        "start",
        `PostgreSQL on ${this.dataDir} did not start within ${this.#timeouts.startMs} ms: ` +
          `${running}; its log says:\n${log}`,
        { cause: error },
      );
    }
    return { ms: performance.now() - started, pid };
  }

  async #assertStartable(op: SupervisorOperation): Promise<void> {
    const pid = await this.#postmaster.runningPid();
    if (pid !== null) {
      throw new SupervisorError(
        op,
        `PostgreSQL on ${this.dataDir} is already running (PID ${pid})`,
      );
    }
    const state = await this.inspect();
    if (state.kind === "empty") {
      throw new RefusedError(
        op,
        `${this.dataDir} holds no database to start: clone it first`,
        state,
      );
    }
    if (state.kind === "foreign") throw foreignRefusal(op, state);
  }

  /**
   * Start as a standby following `primary` (null: a read-only standby waiting
   * for one): `standby.signal`, and `primary_conninfo` and
   * `recovery_target_timeline = 'latest'` in postgresql.auto.conf. A running
   * standby is re-pointed instead ({@link follow}).
   *
   * @throws SupervisorError when the server runs as a primary (demote or fence it)
   */
  async startStandby(
    primary: PrimaryTarget | null,
    options: { waitStreaming?: boolean } = {},
  ): Promise<StartReport> {
    const started = performance.now();
    const pid = await this.#postmaster.runningPid();
    if (pid !== null) {
      if (!(await this.#inRecovery("start"))) {
        throw new SupervisorError(
          "start",
          `PostgreSQL on ${this.dataDir} runs as a primary: demote or fence it first`,
        );
      }
      await this.#repoint("start", primary, options.waitStreaming ?? false);
      return { ms: performance.now() - started, pid };
    }
    await this.#assertStartable("start");
    await updateAutoConf(this.dataDir, {
      primary_conninfo: primary ? primaryConninfo(primary) : "",
      recovery_target_timeline: "latest",
      primary_slot_name: null,
    });
    await writeStandbySignal(this.dataDir);
    const report = await this.start();
    if (primary && options.waitStreaming) await this.#waitStreaming("start", primary);
    return { ...report, ms: performance.now() - started };
  }

  async #inRecovery(op: SupervisorOperation): Promise<boolean> {
    const row = await this.#session.row(
      op,
      "pg_is_in_recovery()",
      (sql) => sql<{ recovery: boolean }[]>`select pg_is_in_recovery() as recovery`,
    );
    return row.recovery;
  }

  /**
   * Re-point a running standby to `primary` (null: stop streaming), applied
   * by a reload (PostgreSQL 13+ restarts the WAL receiver, not the server).
   *
   * @param options.waitStreaming wait until it streams from `primary` @default true
   * @throws SupervisorError when it is not a standby, or does not stream in time (with the reason
   *   when it has diverged)
   */
  follow(
    primary: PrimaryTarget | null,
    options: { waitStreaming?: boolean } = {},
  ): Promise<FollowReport> {
    return this.#repoint("follow", primary, options.waitStreaming ?? true);
  }

  async #repoint(
    op: SupervisorOperation,
    primary: PrimaryTarget | null,
    waitStreaming: boolean,
  ): Promise<FollowReport> {
    const started = performance.now();
    if (!(await this.#inRecovery(op))) {
      throw new SupervisorError(op, `PostgreSQL on ${this.dataDir} is not a standby`);
    }
    await this.#session.alterSystem(op, {
      primary_conninfo: primary ? primaryConninfo(primary) : "",
      recovery_target_timeline: "latest",
    });
    if (!primary || !waitStreaming) return { ms: 0 };
    await this.#waitStreaming(op, primary);
    return { ms: performance.now() - started };
  }

  async #waitStreaming(op: SupervisorOperation, primary: PrimaryTarget): Promise<void> {
    try {
      await poll(async () => {
        const row = await this.#session.row(op, "the WAL receiver", (sql) =>
          sql<{ n: number }[]>`
            select count(*)::int as n from pg_stat_wal_receiver
            where status = 'streaming' and sender_host = ${primary.host}
              and sender_port = ${primary.port}`);
        return row.n > 0;
      }, {
        timeoutMs: this.#timeouts.followMs,
        intervalMs: POLL_MS,
        what: `${this.dataDir} to stream from ${primary.host}:${primary.port}`,
      });
    } catch (error) {
      const seen = await this.observe({ primary }).catch(() => null);
      const why = seen?.divergence ? `: it has diverged (${seen.divergence}); rewind it` : "";
      throw new SupervisorError(op, `${(error as Error).message}${why}`, { cause: error });
    }
  }

  /**
   * Stop streaming now (empty `primary_conninfo` + reload) and report what
   * the standby received and replayed.
   *
   * @throws SupervisorError when it is not a standby, or its WAL receiver does not stop in time
   */
  async freeze(): Promise<FreezeReport> {
    const started = performance.now();
    await this.#repoint("freeze", null, false);
    await poll(async () => {
      const row = await this.#session.row(
        "freeze",
        "the WAL receiver",
        (sql) => sql<{ n: number }[]>`select count(*)::int as n from pg_stat_wal_receiver`,
      );
      return row.n === 0;
    }, {
      timeoutMs: this.#timeouts.followMs,
      intervalMs: POLL_MS,
      what: `the WAL receiver of ${this.dataDir} to stop`,
    }).catch((error) => {
      throw new SupervisorError("freeze", (error as Error).message, { cause: error });
    });
    const state = await this.#session.standbyState("freeze");
    if (state.timeline === null) {
      throw new SupervisorError("freeze", `cannot tell the timeline of ${this.dataDir}`);
    }
    return {
      receiveLsn: state.receiveLsn,
      replayLsn: state.replayLsn,
      lsn: state.lsn,
      timeline: state.timeline,
      ms: performance.now() - started,
    };
  }

  /**
   * Wait until this standby has received WAL beyond `lsn` (a demoted
   * primary's final LSN, which is where its shutdown checkpoint starts).
   *
   * @returns how long it took
   * @throws SupervisorError after `timeoutMs` (default: the follow timeout)
   */
  async waitPast(lsn: Lsn, timeoutMs = this.#timeouts.followMs): Promise<number> {
    const started = performance.now();
    await poll(async () => {
      const row = await this.#session.row(
        "follow",
        "the received WAL",
        (sql) =>
          sql<{ past: boolean }[]>`
          select greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) > ${lsn}::pg_lsn
            as past`,
      );
      return row.past;
    }, { timeoutMs, intervalMs: 5, what: `${this.dataDir} to receive WAL beyond ${lsn}` })
      .catch((error) => {
        throw new SupervisorError("follow", (error as Error).message, { cause: error });
      });
    return performance.now() - started;
  }

  /**
   * Promote this standby: `pg_promote(wait => false)`, then a check every
   * 5 ms until it has left recovery (`pg_promote(wait => true)` checks only
   * every 100 ms, which would add up to 100 ms to every failover).
   *
   * @param options.timeline the timeline the HA controller recorded: PostgreSQL
   *   picks one above the newest history it knows, so placeholder history
   *   files for the timelines in between make it pick this one
   * @returns the new timeline and WAL position
   * @throws SupervisorError when it is not a standby, would take another
   *   timeline, or is not promoted in time
   */
  async promote(options: { timeline?: number } = {}): Promise<PromoteReport> {
    const started = performance.now();
    if (!(await this.#inRecovery("promote"))) {
      throw new SupervisorError("promote", `PostgreSQL on ${this.dataDir} is not a standby`);
    }
    if (options.timeline !== undefined) await this.#prepareTimeline(options.timeline);
    const signalled = await this.#session.row(
      "promote",
      "pg_promote()",
      (sql) => sql<{ promoted: boolean }[]>`select pg_promote(false) as promoted`,
    );
    if (!signalled.promoted) {
      throw new SupervisorError("promote", `pg_promote() on ${this.dataDir} returned false`);
    }
    await poll(async () => !(await this.#inRecovery("promote")), {
      timeoutMs: this.#timeouts.promoteMs,
      intervalMs: 5,
      what: `PostgreSQL on ${this.dataDir} to leave recovery after pg_promote()`,
    }).catch((error) => {
      throw new SupervisorError("promote", (error as Error).message, { cause: error });
    });
    await this.#session.endReplication();
    const { lsn, timeline } = await this.#session.primaryPosition("promote");
    if (options.timeline !== undefined && timeline !== options.timeline) {
      throw new SupervisorError(
        "promote",
        `PostgreSQL on ${this.dataDir} was promoted to timeline ${timeline}, not ${options.timeline}`,
      );
    }
    return { timeline, lsn, ms: performance.now() - started };
  }

  async #prepareTimeline(wanted: number): Promise<void> {
    const state = await this.#session.standbyState("promote");
    const natural = await naturalPromotionTimeline(this.dataDir, state.timeline ?? 1);
    if (wanted < natural) {
      throw new SupervisorError(
        "promote",
        `PostgreSQL on ${this.dataDir} knows timelines up to ${natural - 1}: it cannot be ` +
          `promoted to timeline ${wanted}`,
      );
    }
    await writeTimelinePlaceholders(this.dataDir, natural, wanted);
  }

  /**
   * Stop accepting writes now: a fast shutdown, made immediate when it
   * overruns `fenceFastMs` (a standby that does not answer holds a fast
   * shutdown up), or at once immediate with `mode: "immediate"` (a lost
   * lease); then, when asked, start again as a standby with no primary.
   *
   * A fast shutdown is preceded by a CHECKPOINT while the server still takes
   * writes (bounded by `fenceFastMs`; a failure does not stop the shutdown):
   * the shutdown checkpoint then has little left to write, and writes stop
   * for less time.
   */
  async fence(
    options: { mode?: "fast" | "immediate"; restartAsStandby?: boolean } = {},
  ): Promise<FenceReport> {
    const fastMs = options.mode === "immediate" ? 0 : this.#timeouts.fenceFastMs;
    const checkpointMs = fastMs > 0 ? await this.#checkpoint(fastMs) : null;
    const stop = await this.#shutdown("fence", fastMs);
    const restart = options.restartAsStandby ? await this.startStandby(null) : null;
    return { checkpointMs, stop, restart };
  }

  /** CHECKPOINT within `timeoutMs`: how long it took, or null when it failed. */
  async #checkpoint(timeoutMs: number): Promise<number | null> {
    const started = performance.now();
    try {
      await this.#session.query("fence", "CHECKPOINT", (sql) => sql`checkpoint`, timeoutMs);
      return performance.now() - started;
    } catch {
      return null;
    }
  }

  /**
   * Switchover: a clean (fast) shutdown of this primary, then a restart as a
   * standby following `primary` (null: none yet). A server in the middle of a
   * cluster may follow a standby (cascading) until it is promoted.
   *
   * @param options.onStopped called once the server has stopped, before the
   *   restart: the switchover's target may promote meanwhile
   * @throws SupervisorError when it is not running as a primary
   */
  async demote(
    primary: PrimaryTarget | null,
    options: { onStopped?: (stopped: DemoteStopped) => void } = {},
  ): Promise<DemoteReport> {
    if ((await this.#postmaster.runningPid()) === null || await this.#inRecovery("demote")) {
      throw new SupervisorError(
        "demote",
        `PostgreSQL on ${this.dataDir} is not running as a primary`,
      );
    }
    const stop = await this.#shutdown("demote", this.#timeouts.stopMs);
    const control = await this.controlData();
    const stopped: DemoteStopped = {
      stop,
      clean: stop.mode === "fast",
      finalLsn: control.checkpointLsn,
      timeline: control.checkpointTimeline,
    };
    options.onStopped?.(stopped);
    return { ...stopped, restart: await this.startStandby(primary) };
  }

  /**
   * Repair a diverged timeline with pg_rewind against `source` (the primary),
   * then start as its standby. A running server is stopped cleanly first; a
   * killed one gets crash recovery from pg_rewind itself (single-user mode,
   * with `--config-file` when the configuration is outside the data
   * directory). "No rewind required" is a success too.
   *
   * @throws RewindError quoting pg_rewind's stderr: the data directory then
   *   needs a re-clone, which pgraft never does on its own
   */
  async rewind(source: PrimaryTarget): Promise<RewindReport> {
    const started = performance.now();
    const state = await this.inspect();
    await checkRewindable(this.dataDir, state, source, this.#timeouts.queryMs);
    const stop = await this.#shutdown("rewind", this.#timeouts.stopMs);
    const report = await rewindDataDirectory({
      pgRewind: await requireProgram(this.#programs.pgRewind),
      dataDir: this.dataDir,
      configFile: this.configOutside ? this.configFile : null,
      source,
      timeoutMs: this.#timeouts.rewindMs,
    });
    const restart = await this.startStandby(source);
    return { ...report, stop, restart, ms: performance.now() - started };
  }

  /**
   * Clone an empty data directory from `source` (pg_basebackup, WAL streamed,
   * fast checkpoint), keep the node's own configuration, and start as its
   * standby (unless `start` is false). With `reclone` (only when the operator
   * allowed it), our own stopped data directory whose rewind failed is
   * emptied first; nothing else is ever emptied.
   *
   * @throws RefusedError when the data directory is not empty or the source
   *   is another database system; SupervisorError when pg_basebackup fails (stderr quoted)
   */
  async clone(
    source: PrimaryTarget,
    options: { start?: boolean; reclone?: boolean } = {},
  ): Promise<CloneReport> {
    const state = await this.inspect();
    const running = await this.#postmaster.runningPid();
    await prepareClone(this.dataDir, state, running, options.reclone ?? false);
    const report = await cloneDataDirectory({
      pgBaseBackup: await requireProgram(this.#programs.pgBaseBackup),
      dataDir: this.dataDir,
      source,
      expectedSystem: this.systemIdentifier,
      timeoutMs: this.#timeouts.cloneMs,
      queryTimeoutMs: this.#timeouts.queryMs,
    });
    await updateAutoConf(this.dataDir, {
      primary_conninfo: primaryConninfo(source),
      recovery_target_timeline: "latest",
      primary_slot_name: null,
    });
    await writeStandbySignal(this.dataDir);
    const start = (options.start ?? true) ? await this.start() : null;
    return { ...report, start };
  }

  /**
   * The settings a primary (and every server that may become one) needs for
   * HA, in postgresql.auto.conf: `wal_level = replica`, `max_wal_senders`,
   * `wal_log_hints = on` (pg_rewind), `wal_keep_size` (pg_rewind after
   * kill -9, lagging standbys), `hot_standby = on`, `synchronous_commit`.
   */
  async bootstrapSettings(options: BootstrapOptions = {}): Promise<BootstrapReport> {
    const wanted = haSettings(options);
    if (!(await this.#setSettings(wanted))) return { restartRequired: [] };
    return { restartRequired: await restartRequired(this.#session, wanted) };
  }

  /**
   * Set `synchronous_standby_names` (and `synchronous_commit` when given),
   * applied by a reload; on a stopped server, in postgresql.auto.conf.
   */
  async setSynchronousStandbys(value: string, synchronousCommit?: string): Promise<void> {
    const settings: Record<string, string> = { synchronous_standby_names: value };
    if (synchronousCommit !== undefined) settings.synchronous_commit = synchronousCommit;
    if (!(await this.#setSettings(settings))) return;
    await waitSetting(this.#session, "synchronous_standby_names", value, this.#timeouts.queryMs);
  }

  /**
   * Allow replication (standbys, pg_basebackup) and pg_rewind connections for
   * `access.user` from loopback and `access.addresses`: pgraft's block at
   * the top of the server's `hba_file` (Debian: beside postgresql.conf),
   * replaced on each call; reloaded when running.
   */
  async allowReplication(access: ReplicationAccessOptions): Promise<HbaReport> {
    const report = await updateHba(this.#bins.postgres, {
      dataDir: this.dataDir,
      configFile: this.configOutside ? this.configFile : null,
    }, access);
    if (report.changed && (await this.#postmaster.runningPid()) !== null) {
      await this.#session.query(
        "settings",
        "pg_reload_conf()",
        (sql) => sql`select pg_reload_conf()`,
      );
    }
    return report;
  }

  /** Whether `standby.signal` is in the data directory. */
  standbySignal(): Promise<boolean> {
    return hasStandbySignal(this.dataDir);
  }

  /** A clean (fast) shutdown; made immediate when it overruns the stop timeout. */
  stop(): Promise<StopReport> {
    return this.#shutdown("stop", this.#timeouts.stopMs);
  }

  /** kill -9 the postmaster (a crash, for tests), then wait until its children are gone. */
  async kill(): Promise<StopReport> {
    const started = performance.now();
    const pid = await this.#postmaster.runningPid();
    if (pid === null) return { mode: "none", ms: 0 };
    this.#postmaster.signal(pid, "SIGKILL");
    await this.#session.end();
    if (!(await this.#postmaster.waitGone(pid, this.#timeouts.immediateMs))) {
      throw new SupervisorError("kill", `postmaster ${pid} did not exit after SIGKILL`);
    }
    await this.#postmaster.waitChildrenGone().catch((error) => {
      throw new SupervisorError("kill", (error as Error).message, { cause: error });
    });
    return { mode: "kill", ms: performance.now() - started };
  }

  /** End the supervisor's own sessions (the server keeps running). */
  close(): Promise<void> {
    return this.#session.end();
  }

  /** SIGINT (fast); after `fastMs` SIGQUIT (immediate); after that SIGKILL. */
  async #shutdown(op: SupervisorOperation, fastMs: number): Promise<StopReport> {
    const started = performance.now();
    const pid = await this.#postmaster.runningPid();
    if (pid === null) return { mode: "none", ms: 0 };
    const ms = () => performance.now() - started;
    const steps = [
      { mode: "fast", signal: "SIGINT", waitMs: fastMs },
      { mode: "immediate", signal: "SIGQUIT", waitMs: this.#timeouts.immediateMs },
    ] as const;
    const skipFast = fastMs <= 0;
    // The shutdown ends every session: statements under way (an observation)
    // must not hold the stop up.
    const pools = this.#session.end(0);
    try {
      for (const step of steps) {
        if (skipFast && step.mode === "fast") continue;
        this.#postmaster.signal(pid, step.signal);
        if (await this.#postmaster.waitGone(pid, step.waitMs)) {
          return { mode: step.mode, ms: ms() };
        }
      }
      this.#postmaster.signal(pid, "SIGKILL");
      if (!(await this.#postmaster.waitGone(pid, this.#timeouts.immediateMs))) {
        throw new SupervisorError(op, `postmaster ${pid} of ${this.dataDir} does not exit`);
      }
      await this.#postmaster.waitChildrenGone();
      return { mode: "kill", ms: ms() };
    } finally {
      await pools;
    }
  }

  /** ALTER SYSTEM + reload when running (true), else postgresql.auto.conf (false). */
  async #setSettings(settings: Record<string, string>): Promise<boolean> {
    if ((await this.#postmaster.runningPid()) === null) {
      await updateAutoConf(this.dataDir, settings);
      return false;
    }
    await this.#session.alterSystem("settings", settings);
    return true;
  }
}
