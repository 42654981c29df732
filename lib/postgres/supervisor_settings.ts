/**
 * The settings the supervisor manages: the HA settings every server runs
 * with (in postgresql.auto.conf), and pgraft's lines in the server's
 * `pg_hba.conf`. Where that file lives is the server's own answer
 * (`postgres -C hba_file` with the node's configuration): beside
 * postgresql.conf on Debian (`hba_file` is set there), in the data directory
 * otherwise.
 *
 * @module
 */

import { poll } from "../async.ts";
import { chownToServerUser, runProgram } from "./programs.ts";
import { hbaBlock, type ReplicationAccess, withHbaBlock } from "./replication.ts";
import type { ServerSession } from "./server_session.ts";
import { type BootstrapOptions, SupervisorError } from "./supervisor_types.ts";

/** The settings that need a server restart, among those bootstrap sets. */
const RESTART_SETTINGS: readonly string[] = [
  "wal_level",
  "max_wal_senders",
  "wal_log_hints",
  "hot_standby",
];

/**
 * What every server of an HA cluster runs with: `wal_level = replica`,
 * `max_wal_senders`, `wal_log_hints = on` (pg_rewind), `wal_keep_size`
 * (pg_rewind after kill -9, lagging standbys: no replication slots),
 * `hot_standby = on`, `synchronous_commit`, `wal_retrieve_retry_interval`.
 *
 * @example
 * ```ts
 * if (haSettings({}).wal_log_hints !== "on") throw new Error();
 * ```
 */
export function haSettings(options: BootstrapOptions): Record<string, string> {
  return {
    wal_level: "replica",
    max_wal_senders: String(options.maxWalSenders ?? 10),
    wal_log_hints: "on",
    wal_keep_size: options.walKeepSize ?? "512MB",
    hot_standby: "on",
    synchronous_commit: options.synchronousCommit ?? "on",
    wal_retrieve_retry_interval: options.walRetrieveRetryInterval ?? "1s",
  };
}

/** Which of `wanted`'s restart-only settings the running server does not run with yet. */
export async function restartRequired(
  session: ServerSession,
  wanted: Readonly<Record<string, string>>,
): Promise<string[]> {
  const rows = await session.query(
    "settings",
    "pg_settings",
    (sql) =>
      sql<{ name: string; setting: string }[]>`
      select name, setting from pg_settings
      where name = any(string_to_array(${RESTART_SETTINGS.join(",")}, ','))`,
  );
  return rows.filter((r) => wanted[r.name] !== undefined && r.setting !== wanted[r.name])
    .map((r) => r.name);
}

/**
 * Wait (bounded) until the session sees `name = value` after a reload.
 *
 * @throws SupervisorError after `timeoutMs`
 */
export async function waitSetting(
  session: ServerSession,
  name: string,
  value: string,
  timeoutMs: number,
): Promise<void> {
  await poll(async () => {
    const row = await session.row(
      "settings",
      name,
      (sql) => sql<{ value: string }[]>`select current_setting(${name}) as value`,
    );
    return row.value === value;
  }, { timeoutMs, intervalMs: 5, what: `the reload to apply ${name}` })
    .catch((error) => {
      throw new SupervisorError("settings", (error as Error).message, { cause: error });
    });
}

/** What {@link updateHba} takes: who may replicate and rewind, from where, how. */
export type ReplicationAccessOptions = ReplicationAccess;

/** What {@link updateHba} did. */
export interface HbaReport {
  /** the server's `hba_file` */
  hbaFile: string;
  /** the file was rewritten (the server needs a reload) */
  changed: boolean;
}

/** Bound on `postgres -C`. */
const SHOW_TIMEOUT_MS = 10_000;

/**
 * A setting as the server computes it from its configuration, without
 * starting it (`postgres -C name`).
 *
 * @param postgresBin the `postgres` binary
 * @param args `-D <data>` and `-c config_file=…` as the server is started with
 */
export async function serverSetting(
  postgresBin: string,
  args: readonly string[],
  name: string,
): Promise<string> {
  const out = await runProgram(postgresBin, [...args, "-C", name], {
    what: `postgres -C ${name}`,
    timeoutMs: SHOW_TIMEOUT_MS,
  });
  return out.stdout.trim();
}

/** Where a server's files are, for {@link hbaFileOf}. */
export interface ServerFiles {
  dataDir: string;
  /** postgresql.conf when outside the data directory, else null */
  configFile: string | null;
}

/**
 * The server's `hba_file`, also before its data directory exists (a node
 * waiting for its clone): `postgres -C` then runs with an empty stand-in for
 * the data directory, and an answer inside that stand-in means the file will
 * come with the clone.
 *
 * @throws Error when the file lives in a data directory that does not exist yet
 */
export async function hbaFileOf(postgresBin: string, files: ServerFiles): Promise<string> {
  const config = files.configFile === null ? [] : ["-c", `config_file=${files.configFile}`];
  const exists = await Deno.stat(`${files.dataDir}/PG_VERSION`).then(() => true, () => false);
  if (exists) return await serverSetting(postgresBin, ["-D", files.dataDir, ...config], "hba_file");
  const standIn = await Deno.makeTempDir({ prefix: "pgraft-hba-" });
  try {
    await chownToServerUser(standIn);
    await Deno.chmod(standIn, 0o700);
    const found = await serverSetting(postgresBin, ["-D", standIn, ...config], "hba_file");
    if (!found.startsWith(`${standIn}/`)) return found;
  } finally {
    await Deno.remove(standIn, { recursive: true });
  }
  throw new Error(
    `pg_hba.conf lives in the data directory ${files.dataDir}, which holds no database yet: ` +
      `allow replication once it is cloned (the clone brings the primary's pg_hba.conf)`,
  );
}

/**
 * Put pgraft's block at the top of the server's `hba_file` (replacing an
 * earlier one), keeping the file's mode and owner.
 *
 * @param postgresBin the `postgres` binary
 * @param files the data directory and configuration file
 */
export async function updateHba(
  postgresBin: string,
  files: ServerFiles,
  access: ReplicationAccessOptions,
): Promise<HbaReport> {
  const hbaFile = await hbaFileOf(postgresBin, files);
  const text = await Deno.readTextFile(hbaFile);
  const updated = withHbaBlock(text, hbaBlock(access));
  if (updated === text) return { hbaFile, changed: false };
  const info = await Deno.stat(hbaFile);
  const mode = (info.mode ?? 0o640) & 0o777;
  const temporary = `${hbaFile}.pgraft-tmp`;
  await Deno.writeTextFile(temporary, updated, { mode });
  await Deno.chmod(temporary, mode);
  if (info.uid !== null && info.gid !== null && info.uid !== Deno.uid()) {
    await Deno.chown(temporary, info.uid, info.gid);
  }
  await Deno.rename(temporary, hbaFile);
  return { hbaFile, changed: true };
}
