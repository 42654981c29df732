/**
 * A PostgreSQL data directory as the supervisor sees it: empty, a data
 * directory of this database system, or another one (foreign, never wiped);
 * what `pg_controldata` says about it; `postgresql.auto.conf` (ALTER SYSTEM's
 * file, written here only while the server is stopped) and `standby.signal`;
 * `initdb` for tests and `pgraft dev`.
 *
 * @module
 */

import { join } from "node:path";
import { AUTO_CONF_NAME, parseConfigText } from "../config/mod.ts";
import { chownToServerUser, runProgram } from "./programs.ts";
import { type Lsn, parseLsn } from "./replication.ts";
import type { PgBinaries } from "./server.ts";

/** What `pg_controldata` says about a data directory (the fields the supervisor uses). */
export interface ControlData {
  /** "Database system identifier" (decimal, 64-bit) */
  systemIdentifier: string;
  /** "Database cluster state": `shut down`, `shut down in recovery`, `in production`, … */
  state: string;
  /** the state is `shut down` or `shut down in recovery` */
  cleanShutdown: boolean;
  /** "Latest checkpoint location" */
  checkpointLsn: Lsn;
  /** "Latest checkpoint's TimeLineID" */
  checkpointTimeline: number;
  /** "Minimum recovery ending location" (`0/0` when none) */
  minRecoveryLsn: Lsn;
  /** "Min recovery ending loc's timeline" (0 when none) */
  minRecoveryTimeline: number;
  /** "wal_log_hints setting" as of the last start */
  walLogHints: boolean;
  /** "Data page checksum version" is not 0 */
  dataChecksums: boolean;
}

/**
 * Parse the output of `pg_controldata` (run with `LC_ALL=C`).
 *
 * @throws SyntaxError naming the first missing field
 * @example
 * ```ts
 * const text = [
 *   "Database system identifier:           7400000000000000001",
 *   "Database cluster state:               shut down",
 *   "Latest checkpoint location:           0/3000060",
 *   "Latest checkpoint's TimeLineID:       1",
 *   "Minimum recovery ending location:     0/0",
 *   "Min recovery ending loc's timeline:   0",
 *   "wal_log_hints setting:                on",
 *   "Data page checksum version:           0",
 * ].join("\n");
 * const control = parseControlData(text);
 * if (!control.cleanShutdown || control.checkpointLsn !== "0/3000060") throw new Error();
 * ```
 */
export function parseControlData(text: string): ControlData {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const field = (name: string): string => {
    const value = fields.get(name);
    if (value === undefined) throw new SyntaxError(`Cannot read pg_controldata: no "${name}" line`);
    return value;
  };
  const state = field("Database cluster state");
  const lsn = (name: string): Lsn => {
    const value = field(name).toUpperCase();
    parseLsn(value);
    return value;
  };
  return {
    systemIdentifier: field("Database system identifier"),
    state,
    cleanShutdown: state === "shut down" || state === "shut down in recovery",
    checkpointLsn: lsn("Latest checkpoint location"),
    checkpointTimeline: Number(field("Latest checkpoint's TimeLineID")),
    minRecoveryLsn: lsn("Minimum recovery ending location"),
    minRecoveryTimeline: Number(field("Min recovery ending loc's timeline")),
    walLogHints: field("wal_log_hints setting") === "on",
    dataChecksums: field("Data page checksum version") !== "0",
  };
}

/** Bound on one `pg_controldata` run. */
const CONTROLDATA_TIMEOUT_MS = 10_000;

/** Run `pg_controldata` on `dataDir` and parse it. */
export async function readControlData(
  pgControlData: string,
  dataDir: string,
): Promise<ControlData> {
  const out = await runProgram(pgControlData, [dataDir], {
    what: `pg_controldata of ${dataDir}`,
    timeoutMs: CONTROLDATA_TIMEOUT_MS,
  });
  return parseControlData(out.stdout);
}

/** What a data directory holds, as far as joining the cluster goes. */
export type DataDirectoryState =
  /** missing, or nothing but the node's own configuration files: ready for a clone */
  | { kind: "empty" }
  /** a data directory of the cluster's database system */
  | { kind: "ours"; systemIdentifier: string }
  /** a data directory, while no system identifier is recorded for the cluster to compare with */
  | { kind: "unrecorded"; systemIdentifier: string }
  /** another database system, or not a data directory at all: never wiped, reported */
  | { kind: "foreign"; systemIdentifier: string | null; reason: string };

/**
 * The configuration files a data directory may hold that belong to the node,
 * not to the database system: kept across a clone or a rewind when the
 * configuration lives inside the data directory.
 */
export const NODE_CONFIG_FILES: readonly string[] = [
  "postgresql.conf",
  "pg_hba.conf",
  "pg_ident.conf",
];

/** Entries listed in a "not empty" message at most. */
const ENTRIES_NAMED_MAX = 5;

/**
 * The entries of `dir` (names), or null when it does not exist.
 *
 * @throws Error when it exists but is not a readable directory
 */
export async function directoryEntries(dir: string): Promise<string[] | null> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new Error(`cannot read the data directory ${dir}: ${String(error)}`, { cause: error });
  }
  return names.sort();
}

/**
 * What `dataDir` holds, compared with the cluster's system identifier.
 *
 * @param pgControlData path of `pg_controldata`
 * @param dataDir the data directory
 * @param expected the cluster's system identifier, or null when none is recorded yet
 */
export async function inspectDataDirectory(
  pgControlData: string,
  dataDir: string,
  expected: string | null,
): Promise<DataDirectoryState> {
  const entries = await directoryEntries(dataDir);
  if (entries === null) return { kind: "empty" };
  const others = entries.filter((name) => !NODE_CONFIG_FILES.includes(name));
  if (others.length === 0) return { kind: "empty" };
  if (!entries.includes("PG_VERSION") || !entries.includes("global")) {
    return {
      kind: "foreign",
      systemIdentifier: null,
      reason: `${dataDir} is not empty and not a PostgreSQL data directory (it holds ${
        namedEntries(others)
      })`,
    };
  }
  let control: ControlData;
  try {
    control = await readControlData(pgControlData, dataDir);
  } catch (error) {
    return {
      kind: "foreign",
      systemIdentifier: null,
      reason: `pg_controldata cannot read ${dataDir}: ${(error as Error).message}`,
    };
  }
  const id = control.systemIdentifier;
  return classifySystem(id, expected, dataDir);
}

/** Compare a data directory's system identifier with the cluster's. */
export function classifySystem(
  id: string,
  expected: string | null,
  dataDir: string,
): DataDirectoryState {
  if (expected === null) return { kind: "unrecorded", systemIdentifier: id };
  if (id === expected) return { kind: "ours", systemIdentifier: id };
  return {
    kind: "foreign",
    systemIdentifier: id,
    reason: `${dataDir} belongs to database system ${id}, not to the cluster's ${expected}`,
  };
}

/** A few of `names`, for a message. */
export function namedEntries(names: readonly string[]): string {
  const shown = names.slice(0, ENTRIES_NAMED_MAX).join(", ");
  return names.length > ENTRIES_NAMED_MAX
    ? `${shown} and ${names.length - ENTRIES_NAMED_MAX} more`
    : shown;
}

/** The header ALTER SYSTEM writes at the top of postgresql.auto.conf. */
const AUTO_CONF_HEADER = "# Do not edit this file manually!\n" +
  "# It will be overwritten by the ALTER SYSTEM command.\n";

/** A setting name ALTER SYSTEM accepts (and we write unquoted). */
export const SETTING_NAME = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;

/** A value in postgresql.conf syntax, as ALTER SYSTEM writes it. */
function confValue(value: string): string {
  return `'${value.replaceAll("\\", "\\\\").replaceAll("'", "''")}'`;
}

/**
 * Change settings in `dataDir/postgresql.auto.conf` as ALTER SYSTEM would
 * (null removes a setting). Only while the server is stopped: a running
 * server's file is ALTER SYSTEM's. Written to a new file and renamed, owned by
 * the server's OS user.
 *
 * @throws RangeError for a name ALTER SYSTEM would not take
 */
export async function updateAutoConf(
  dataDir: string,
  changes: Readonly<Record<string, string | null>>,
): Promise<void> {
  const path = join(dataDir, AUTO_CONF_NAME);
  const current = new Map<string, string>();
  const text = await Deno.readTextFile(path).catch((error) => {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  });
  for (const line of parseConfigText(text)) current.set(line.name, line.value);
  for (const [name, value] of Object.entries(changes)) {
    if (!SETTING_NAME.test(name)) throw new RangeError(`invalid setting name "${name}"`);
    if (value === null) current.delete(name);
    else current.set(name, value);
  }
  let out = AUTO_CONF_HEADER;
  for (const [name, value] of current) out += `${name} = ${confValue(value)}\n`;
  const temporary = `${path}.pgraft-tmp`;
  await Deno.writeTextFile(temporary, out, { mode: 0o600 });
  await chownToServerUser(temporary);
  await Deno.rename(temporary, path);
}

/** The settings of `dataDir/postgresql.auto.conf` (name → value). */
export async function readAutoConf(dataDir: string): Promise<Map<string, string>> {
  const text = await Deno.readTextFile(join(dataDir, AUTO_CONF_NAME)).catch(() => "");
  return new Map(parseConfigText(text).map((line) => [line.name, line.value]));
}

/** Create `standby.signal` (the server then starts as a standby). */
export async function writeStandbySignal(dataDir: string): Promise<void> {
  const path = join(dataDir, "standby.signal");
  await Deno.writeFile(path, new Uint8Array(), { mode: 0o600 });
  await chownToServerUser(path);
}

/** Remove `standby.signal` (the server then starts as a primary); no error when absent. */
export async function removeStandbySignal(dataDir: string): Promise<void> {
  await Deno.remove(join(dataDir, "standby.signal")).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

/** Whether `standby.signal` is present. */
export async function hasStandbySignal(dataDir: string): Promise<boolean> {
  return await Deno.stat(join(dataDir, "standby.signal")).then(() => true, () => false);
}

/** The node's configuration files inside a data directory, kept in memory across a clone or a rewind. */
export type KeptFiles = Map<string, Uint8Array>;

/** Read the {@link NODE_CONFIG_FILES} present in `dataDir`. */
export async function keepNodeConfig(dataDir: string): Promise<KeptFiles> {
  const kept: KeptFiles = new Map();
  for (const name of NODE_CONFIG_FILES) {
    const bytes = await Deno.readFile(join(dataDir, name)).catch(() => null);
    if (bytes) kept.set(name, bytes);
  }
  return kept;
}

/** Write kept files back into `dataDir` (over the copies a clone or rewind brought). */
export async function restoreNodeConfig(dataDir: string, kept: KeptFiles): Promise<void> {
  for (const [name, bytes] of kept) {
    const path = join(dataDir, name);
    await Deno.writeFile(path, bytes, { mode: 0o600 });
    await chownToServerUser(path);
  }
}

/** Options of {@link initDataDirectory}. */
export interface InitDataDirectoryOptions {
  /**
   * authentication for local and loopback connections
   * @default "trust"
   */
  auth?: string;
  /** @default 60_000 */
  timeoutMs?: number;
}

/**
 * `initdb` a new data directory (as the server's OS user when root), with the
 * superuser `postgres`, UTF8 and the C locale, as `pgraft dev` and the tests
 * need. The operator initializes production data directories.
 *
 * @throws Error when `dataDir` is not empty, or initdb fails (its output quoted)
 */
export async function initDataDirectory(
  bins: PgBinaries,
  dataDir: string,
  options: InitDataDirectoryOptions = {},
): Promise<void> {
  const entries = await directoryEntries(dataDir);
  if (entries !== null && entries.length > 0) {
    throw new Error(`cannot initdb ${dataDir}: it is not empty (${namedEntries(entries)})`);
  }
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dataDir, 0o700);
  await chownToServerUser(dataDir);
  const args = ["-D", dataDir, "-U", "postgres", `--auth=${options.auth ?? "trust"}`];
  args.push("--encoding=UTF8", "--locale=C", "--no-sync");
  await runProgram(bins.initdb, args, {
    what: `initdb of ${dataDir}`,
    timeoutMs: options.timeoutMs ?? 60_000,
  });
}

/**
 * A file in the data directory saying its last pg_rewind failed (it may be
 * half rewound): the HA controller then re-clones only when the operator
 * allows it. A successful rewind removes it (pg_rewind deletes files the
 * source lacks), as does a clone.
 */
export const REWIND_FAILED_FILE = "pgraft_rewind_failed";

/** Mark the data directory as needing a re-clone, with why. */
export async function markRewindFailed(dataDir: string, why: string): Promise<void> {
  const path = join(dataDir, REWIND_FAILED_FILE);
  await Deno.writeTextFile(path, `${new Date().toISOString()} ${why}\n`, { mode: 0o600 });
  await chownToServerUser(path);
}

/** Whether the last pg_rewind of the data directory failed. */
export async function rewindFailed(dataDir: string): Promise<boolean> {
  return await Deno.stat(join(dataDir, REWIND_FAILED_FILE)).then(() => true, () => false);
}

/** Remove the mark of a failed rewind; no error when absent. */
export async function clearRewindFailed(dataDir: string): Promise<void> {
  await Deno.remove(join(dataDir, REWIND_FAILED_FILE)).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

/**
 * Empty our own data directory for a re-clone the operator allowed, keeping
 * the node's configuration files. The caller has checked that it is ours,
 * stopped, and marked {@link REWIND_FAILED_FILE}.
 */
export async function emptyForReclone(dataDir: string): Promise<void> {
  for (const name of (await directoryEntries(dataDir)) ?? []) {
    if (NODE_CONFIG_FILES.includes(name)) continue;
    await Deno.remove(join(dataDir, name), { recursive: true });
  }
}

/** The timeline a history file name stands for (`00000003.history` → 3), else null. */
function historyTimeline(name: string): number | null {
  const match = /^([0-9A-F]{8})\.history$/.exec(name);
  return match ? parseInt(match[1]!, 16) : null;
}

/**
 * The timeline PostgreSQL gives a standby it promotes: one above the newest
 * of the unbroken run of timeline history files in `pg_wal` above the
 * timeline it recovers on (`findNewestTimeLine` + 1).
 *
 * @param timeline the timeline the standby replays
 */
export async function naturalPromotionTimeline(
  dataDir: string,
  timeline: number,
): Promise<number> {
  const known = new Set<number>();
  for await (const entry of Deno.readDir(join(dataDir, "pg_wal"))) {
    const tli = historyTimeline(entry.name);
    if (tli !== null) known.add(tli);
  }
  let newest = timeline;
  while (known.has(newest + 1)) newest++;
  return newest + 1;
}

/** The name of a timeline's history file. */
export function historyFileName(timeline: number): string {
  return `${timeline.toString(16).toUpperCase().padStart(8, "0")}.history`;
}

/**
 * Write placeholder history files for timelines `from` … `to - 1` into
 * `pg_wal`, so that a promotion takes timeline `to` (the one the HA
 * controller recorded). They hold only a comment: no server ever ran on
 * those timelines, and no history names them as a parent.
 */
export async function writeTimelinePlaceholders(
  dataDir: string,
  from: number,
  to: number,
): Promise<void> {
  for (let tli = from; tli < to; tli++) {
    const path = join(dataDir, "pg_wal", historyFileName(tli));
    const text = `# pgraft: placeholder so that a promotion takes timeline ${to}; ` +
      `no server ran on timeline ${tli}\n`;
    await Deno.writeTextFile(`${path}.tmp`, text, { mode: 0o600 });
    await chownToServerUser(`${path}.tmp`);
    await Deno.rename(`${path}.tmp`, path);
  }
}
