/**
 * The two ways the supervisor repairs a data directory: pg_rewind (a diverged
 * former primary or standby) and pg_basebackup (an empty one, or — only when
 * the operator allowed it — our own whose rewind failed), with the checks
 * before them. Both keep the node's own configuration files when they live
 * inside the data directory, and both quote the program's stderr when they
 * fail. The supervisor (./supervisor.ts) stops the server before and starts
 * it after.
 *
 * @module
 */

import { openPostgres } from "./connection.ts";
import { deadline } from "../async.ts";
import {
  clearRewindFailed,
  type DataDirectoryState,
  directoryEntries,
  emptyForReclone,
  keepNodeConfig,
  markRewindFailed,
  removeStandbySignal,
  restoreNodeConfig,
  rewindFailed,
  writeStandbySignal,
} from "./data_directory.ts";
import { chownToServerUser, ProgramError, quote, runProgram } from "./programs.ts";
import {
  CONNECT_TIMEOUT_S,
  identifyTarget,
  type PrimaryTarget,
  sourceConninfo,
} from "./replication.ts";
import { unreachableByServerUser } from "./server.ts";
import {
  type CloneOutcome,
  RefusedError,
  RewindError,
  type RewindOutcome,
  SupervisorError,
  type SupervisorOperation,
} from "./supervisor_types.ts";

/** Bound on the queries before a rewind. */
const CHECK_TIMEOUT_MS = 10_000;

/** The database pg_rewind connects to on the source (pgraft's pg_hba.conf block allows it). */
export const REWIND_DATABASE = "postgres";

/** The refusal to touch another database system's data directory. */
export function foreignRefusal(
  op: SupervisorOperation,
  state: DataDirectoryState & { kind: "foreign" },
): RefusedError {
  return new RefusedError(
    op,
    `${state.reason}; pgraft never wipes a data directory: move it away (or empty it) if it is ` +
      `not needed, and this node is cloned from the primary`,
    state,
  );
}

/**
 * Refuse a rewind of an empty or foreign data directory, or from a source of
 * another database system (pg_rewind would refuse too, after the supervisor
 * had stopped the server).
 *
 * @throws RefusedError; RewindError when the source cannot be reached
 */
export async function checkRewindable(
  dataDir: string,
  state: DataDirectoryState,
  source: PrimaryTarget,
  timeoutMs: number,
): Promise<void> {
  if (state.kind === "foreign") throw foreignRefusal("rewind", state);
  if (state.kind === "empty") {
    throw new RefusedError("rewind", `${dataDir} holds no database to rewind`, state);
  }
  const identity = await identifyTarget(source, "pgraft-rewind", timeoutMs).catch((error) => {
    throw new RewindError(`cannot rewind ${dataDir}: ${(error as Error).message}`, "", {
      cause: error,
    });
  });
  if (identity.systemIdentifier !== state.systemIdentifier) {
    throw new RefusedError(
      "rewind",
      `refusing to rewind ${dataDir} (database system ${state.systemIdentifier}) from ` +
        `${source.host}:${source.port}, which runs database system ${identity.systemIdentifier}`,
      state,
    );
  }
}

/** What {@link rewindDataDirectory} needs. */
export interface RewindParams {
  pgRewind: string;
  dataDir: string;
  /** the node's postgresql.conf when outside the data directory (`--config-file`), else null */
  configFile: string | null;
  source: PrimaryTarget;
  timeoutMs: number;
}

/**
 * Run pg_rewind on a stopped server's data directory against `source`. Its
 * `standby.signal` is taken away for the run (crash recovery in single-user
 * mode refuses standby mode) and put back whatever happens: a member's server
 * always starts as a standby. A failure marks the directory
 * (`pgraft_rewind_failed`) until a rewind or a clone succeeds.
 *
 * @throws RewindError quoting pg_rewind's stderr, saying that a re-clone is needed
 */
export async function rewindDataDirectory(params: RewindParams): Promise<RewindOutcome> {
  const { dataDir, source } = params;
  const kept = params.configFile === null ? await keepNodeConfig(dataDir) : null;
  const args = [
    `--target-pgdata=${dataDir}`,
    `--source-server=${sourceConninfo(source, REWIND_DATABASE, "pgraft-rewind")}`,
  ];
  if (params.configFile !== null) args.push(`--config-file=${params.configFile}`);
  const from = `${source.host}:${source.port}`;
  await checkpointIfPromoted(params);
  await removeStandbySignal(dataDir);
  let stderr: string;
  let rewindMs: number;
  try {
    const out = await runProgram(params.pgRewind, args, {
      what: `pg_rewind of ${dataDir} from ${from}`,
      timeoutMs: params.timeoutMs,
      env: passwordEnv(source),
    });
    stderr = `${out.stderr}\n${out.stdout}`.trim();
    rewindMs = out.durationMs;
  } catch (error) {
    const said = error instanceof ProgramError ? error.stderr : "";
    await markRewindFailed(dataDir, (error as Error).message).catch(() => {});
    throw new RewindError(
      `${(error as Error).message}\n${dataDir} could not be rewound: it needs a re-clone from ` +
        `the primary (pg_basebackup into an emptied data directory), which pgraft does only when ` +
        `the operator allows it`,
      said,
      { cause: error },
    );
  } finally {
    if (kept) await restoreNodeConfig(dataDir, kept);
    await writeStandbySignal(dataDir);
  }
  await clearRewindFailed(dataDir);
  const diverged = /servers diverged at WAL location ([0-9A-Fa-f]+\/[0-9A-Fa-f]+) on timeline (\d+)/
    .exec(stderr);
  return {
    rewound: !/no rewind required/.test(stderr),
    divergedAt: diverged
      ? { lsn: diverged[1]!.toUpperCase(), timeline: Number(diverged[2]) }
      : null,
    crashRecovery: /crash recovery/.test(stderr),
    rewindMs,
    output: quote(stderr),
  };
}

/**
 * pg_rewind reads the source's timeline from its control file, which a
 * freshly promoted server updates only at its first checkpoint: until then
 * pg_rewind says "same timeline, no rewind required" and the diverged server
 * could not stream. So the source checkpoints first when its control file is
 * behind its timeline (as PostgreSQL's documentation of pg_rewind advises).
 */
async function checkpointIfPromoted(params: RewindParams): Promise<void> {
  const { source } = params;
  const sql = openPostgres({
    host: source.host,
    port: source.port,
    user: source.user,
    password: source.password,
    database: REWIND_DATABASE,
    max: 1,
    connect_timeout: CONNECT_TIMEOUT_S,
    connection: { application_name: "pgraft-rewind" },
  });
  const where = `the rewind source ${source.host}:${source.port}`;
  try {
    const [row] = await deadline(
      sql<{ behind: boolean }[]>`
        select not pg_is_in_recovery() and (select timeline_id from pg_control_checkpoint())
            <> ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
          as behind`,
      CHECK_TIMEOUT_MS,
      `the timeline of ${where}`,
    );
    if (row?.behind) await deadline(sql`checkpoint`, params.timeoutMs, `a checkpoint on ${where}`);
  } catch (error) {
    throw new RewindError(
      `cannot prepare ${where} for pg_rewind: ${(error as Error).message}`,
      "",
      { cause: error },
    );
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/**
 * Refuse a clone into anything but an empty data directory; with `reclone`
 * (the operator allowed it), empty our own stopped data directory whose
 * rewind failed first.
 *
 * @throws RefusedError saying what the directory holds
 */
export async function prepareClone(
  dataDir: string,
  state: DataDirectoryState,
  runningPid: number | null,
  reclone: boolean,
): Promise<void> {
  if (state.kind === "empty") return;
  const failed = state.kind !== "foreign" && await rewindFailed(dataDir);
  if (reclone && failed && state.kind === "ours" && runningPid === null) {
    await emptyForReclone(dataDir);
    return;
  }
  const what = state.kind === "foreign"
    ? state.reason
    : `${dataDir} already holds database system ${state.systemIdentifier}` +
      (runningPid === null ? "" : ` (running, PID ${runningPid})`) +
      (failed ? ", whose rewind failed (a re-clone needs the operator's permission)" : "");
  throw new RefusedError(
    "clone",
    `refusing to clone into ${dataDir}: ${what}; pgraft clones only into an empty data ` +
      `directory and never wipes one`,
    state,
  );
}

/** What {@link cloneDataDirectory} needs. */
export interface CloneParams {
  pgBaseBackup: string;
  /** empty or missing, or holding only the node's own configuration files */
  dataDir: string;
  source: PrimaryTarget;
  /** the cluster's system identifier; a source of another system is refused */
  expectedSystem: string | null;
  timeoutMs: number;
  queryTimeoutMs: number;
}

/**
 * pg_basebackup `source` into an empty data directory (WAL streamed, fast
 * checkpoint), putting the node's own configuration files back over the
 * copies. The caller writes the standby settings.
 *
 * @throws RefusedError when the source is another database system;
 *   SupervisorError when pg_basebackup fails (stderr quoted)
 */
export async function cloneDataDirectory(params: CloneParams): Promise<CloneOutcome> {
  const { dataDir, source } = params;
  const from = `${source.host}:${source.port}`;
  const identity = await identifyTarget(source, "pgraft-clone", params.queryTimeoutMs)
    .catch((error) => {
      throw new SupervisorError("clone", `cannot clone: ${(error as Error).message}`, {
        cause: error,
      });
    });
  const systemIdentifier = identity.systemIdentifier;
  if (params.expectedSystem !== null && systemIdentifier !== params.expectedSystem) {
    throw new RefusedError(
      "clone",
      `refusing to clone ${dataDir} from ${from}: it runs database system ${systemIdentifier}, ` +
        `not the cluster's ${params.expectedSystem}`,
      null,
    );
  }
  const kept = await keepNodeConfig(dataDir);
  for (const name of kept.keys()) await Deno.remove(`${dataDir}/${name}`);
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dataDir, 0o700);
  await chownToServerUser(dataDir);
  const blocked = await unreachableByServerUser(dataDir);
  if (blocked !== null) {
    await restoreNodeConfig(dataDir, kept);
    throw new SupervisorError(
      "clone",
      `cannot clone into ${dataDir}: the server's OS user may not enter ${blocked}`,
    );
  }
  const args = ["-D", dataDir, "-d", sourceConninfo(source, REWIND_DATABASE, "pgraft-clone")];
  args.push("-X", "stream", "--checkpoint=fast", "--no-password");
  let cloneMs: number;
  try {
    const out = await runProgram(params.pgBaseBackup, args, {
      what: `pg_basebackup of ${dataDir} from ${from}`,
      timeoutMs: params.timeoutMs,
      env: passwordEnv(source),
    });
    cloneMs = out.durationMs;
  } catch (error) {
    // pg_basebackup removes what it wrote; make sure nothing half-copied stays either way
    // (the directory was empty but for the kept files, checked before).
    for (const name of (await directoryEntries(dataDir)) ?? []) {
      await Deno.remove(`${dataDir}/${name}`, { recursive: true });
    }
    await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
    await restoreNodeConfig(dataDir, kept);
    throw new SupervisorError("clone", (error as Error).message, { cause: error });
  }
  await restoreNodeConfig(dataDir, kept);
  return { systemIdentifier, cloneMs };
}

function passwordEnv(source: PrimaryTarget): Record<string, string> {
  return source.password === undefined ? {} : { PGPASSWORD: source.password };
}
