/**
 * Loading postgresql.conf the way PostgreSQL does: the main file, its
 * `include`, `include_dir` and `include_if_exists` lines, then
 * `postgresql.auto.conf` beside it; later lines win. Every `pgraft.*` line is
 * checked as it is read, so a bad value is reported at its own file and line.
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { assert } from "../assert.ts";
import { ConfigSyntaxError, parseConfigText } from "./parser.ts";
import {
  findSetting,
  parseSettingValue,
  REQUIRED_SETTINGS,
  SETTING_PREFIX,
  SETTINGS,
  type SettingSpec,
  unknownSettingMessage,
} from "./settings.ts";
import { parseInteger } from "./units.ts";

/** What postgresql.conf says about the local server's connection (lib/postgres connects with it). */
export interface LocalServerSettings {
  port: number | null;
  unixSocketDirectory: string | null;
  listenAddress: string | null;
  /** `data_directory`, absolute; null when the file does not set it */
  dataDirectory: string | null;
}

/** The typed pgraft settings of one node. */
export interface PgraftSettings {
  nodeId: number;
  address: string;
  port: number;
  listenAddress: string;
  database: string;
  /** from `auth_secret`, or the trimmed contents of `auth_secret_file`; null = none */
  authSecret: string | null;
  clusterName: string;
  heartbeatIntervalMs: number;
  electionTimeoutMs: number;
  appendBatchSize: number;
  snapshotThreshold: number;
  failoverEnabled: boolean;
  /** the key-value store's quota in bytes (`kv_quota`) */
  kvQuotaBytes: number;
  /**
   * absolute path of the Raft log and snapshots: `data_dir`, else the
   * PostgreSQL data directory (`data_directory`, else the directory holding the
   * configuration file) with `.pgraft` appended — never inside it, since
   * pg_basebackup and pg_rewind replace the data directory
   */
  dataDir: string;
  /** the agent runs this node's PostgreSQL server and its role (`manage_postgres`) */
  managePostgres: boolean;
  /** with managePostgres: commits wait for a majority of the voters (`synchronous_replication`) */
  synchronousReplication: boolean;
  /** the role standbys stream as (`replication_user`) */
  replicationUser: string;
  /** absolute path from `pg_bin_dir`; null = found as for `pgraft dev` */
  pgBinDir: string | null;
  /** a data directory whose rewind failed may be cloned again (`allow_reclone`) */
  allowReclone: boolean;
  /** absolute path from `tls_cert_file`; null = serve plain HTTP */
  tlsCertFile: string | null;
  /** absolute path from `tls_key_file`; set exactly when `tlsCertFile` is */
  tlsKeyFile: string | null;
  /** absolute path from `tls_ca_file`; null = trust the system's CAs */
  tlsCaFile: string | null;
}

/** Settings holding a file name, resolved relative to the file that sets them. */
const PATH_SETTINGS: readonly string[] = [
  "data_dir",
  "pg_bin_dir",
  "auth_secret_file",
  "tls_cert_file",
  "tls_key_file",
  "tls_ca_file",
];

/** One row of `pgraft config --json` and `pgraft_get_config()`. */
export interface SettingEntry {
  /** without prefix */
  name: string;
  /** display form: durations as `"90ms"`, booleans `"on"`/`"off"`, `auth_secret` masked */
  setting: string;
  unit: string | null;
  source: "default" | "configuration file";
  /** absolute path of the file that set it (null for a default) */
  sourcefile: string | null;
  sourceline: number | null;
}

/** Everything read from a configuration file and the files it includes. */
export interface LoadedConfig {
  settings: PgraftSettings;
  /** one per {@link SETTINGS} spec, in that order */
  entries: SettingEntry[];
  /** the local PostgreSQL server's `port`, socket directory and listen addresses */
  connection: LocalServerSettings & { sourcefile: string };
  /** advice that does not stop the agent, each starting with `file:line: ` */
  warnings: string[];
  /** every configuration file read, absolute, in read order */
  files: string[];
}

/**
 * A configuration that cannot be used. The message starts with the file's
 * base name and the line (`postgresql.conf:14: ...`, or `postgresql.conf: ...`
 * when no single line is at fault); `file` is the absolute path.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
  /** absolute path of the file at fault, or null */
  readonly file: string | null;
  /** 1-based line at fault, or null */
  readonly line: number | null;

  /**
   * @param file absolute path of the file at fault, or null
   * @param line 1-based line, or null
   * @param what what is wrong, without location
   */
  constructor(file: string | null, line: number | null, what: string, options?: ErrorOptions) {
    super(`${location(file, line)}${what}`, options);
    this.file = file;
    this.line = line;
  }
}

function location(file: string | null, line: number | null): string {
  if (file === null) return "";
  return line === null ? `${basename(file)}: ` : `${basename(file)}:${line}: `;
}

/** Deepest chain of includes below the main file, as PostgreSQL's `CONF_FILE_MAX_DEPTH`. */
export const INCLUDE_DEPTH_MAX = 10;

/** Most configuration files read for one load, a bound against runaway include_dir trees. */
export const FILES_MAX = 10_000;

/** Name of the file PostgreSQL's `ALTER SYSTEM` writes, read after the main file. */
export const AUTO_CONF_NAME = "postgresql.auto.conf";

interface Assignment {
  spec: SettingSpec;
  value: number | boolean | string;
  display: string;
  file: string;
  line: number;
  /** order in which assignments were read */
  sequence: number;
}

interface Site {
  file: string;
  line: number;
}

interface LoadState {
  files: string[];
  assignments: Map<string, Assignment>;
  sequence: number;
  connection: LocalServerSettings;
  /** the files being read, outermost first, with the line that included the next */
  stack: { file: string; realPath: string; site: Site | null }[];
}

/**
 * Load a postgresql.conf with its includes and `postgresql.auto.conf`.
 *
 * @param path the main file (relative to the current directory or absolute)
 * @returns the typed settings, one entry per setting, the local connection
 *   settings, warnings and the files read
 * @throws {ConfigError} for an unreadable file, bad syntax, an unknown or
 *   invalid `pgraft.*` setting, an include cycle or too-deep nesting, or a
 *   missing required setting
 * @example
 * ```ts ignore
 * const { settings } = await loadConfig("/etc/postgresql/postgresql.conf");
 * console.log(settings.nodeId, settings.heartbeatIntervalMs);
 * ```
 */
export async function loadConfig(path: string): Promise<LoadedConfig> {
  if (path === "") throw new ConfigError(null, null, "empty configuration file path");
  const main = resolve(path);
  const state: LoadState = {
    files: [],
    assignments: new Map(),
    sequence: 0,
    connection: { port: null, unixSocketDirectory: null, listenAddress: null, dataDirectory: null },
    stack: [],
  };
  await readConfigFile(main, 0, null, state);
  assert(state.stack.length === 0, "include stack unwound");

  const auto = join(dirname(main), AUTO_CONF_NAME);
  if (basename(main) !== AUTO_CONF_NAME && await isFile(auto)) {
    await readConfigFile(auto, 0, null, state);
  }

  const settings = await buildSettings(main, state);
  const warnings = checkTimings(settings, state);
  return {
    settings,
    entries: buildEntries(settings, state),
    connection: { ...state.connection, sourcefile: main },
    warnings,
    files: state.files,
  };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** The system's reason for an I/O error, in the words PostgreSQL would use. */
function reason(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "No such file or directory";
  if (error instanceof Deno.errors.PermissionDenied) return "Permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "Is a directory";
  if (error instanceof Deno.errors.NotADirectory) return "Not a directory";
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/ \(os error \d+\).*$/s, "");
}

function errorAt(site: Site | null, fallbackFile: string, what: string, cause?: unknown) {
  return site
    ? new ConfigError(site.file, site.line, what, { cause })
    : new ConfigError(fallbackFile, null, what, { cause });
}

async function readConfigFile(
  path: string,
  depth: number,
  site: Site | null,
  state: LoadState,
): Promise<void> {
  if (depth > INCLUDE_DEPTH_MAX) {
    throw errorAt(
      site,
      path,
      `could not open configuration file "${path}": maximum nesting depth exceeded`,
    );
  }
  if (state.files.length >= FILES_MAX) {
    throw errorAt(site, path, `more than ${FILES_MAX} configuration files`);
  }
  let text: string;
  let realPath: string;
  try {
    realPath = await Deno.realPath(path);
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw errorAt(
      site,
      path,
      `could not open configuration file "${path}": ${reason(error)}`,
      error,
    );
  }
  const open = state.stack.findIndex((frame) => frame.realPath === realPath);
  if (open >= 0) {
    assert(site !== null, "only an include can reopen a file being read");
    const chain = [...state.stack.slice(open).map((frame) => frame.file), path]
      .map((file) => basename(file)).join(" -> ");
    throw new ConfigError(
      site.file,
      site.line,
      `include cycle: "${path}" is already being read (${chain})`,
    );
  }

  let lines;
  try {
    lines = parseConfigText(text);
  } catch (error) {
    if (error instanceof ConfigSyntaxError) {
      throw new ConfigError(path, error.line, error.message, { cause: error });
    }
    throw error;
  }

  state.files.push(path);
  state.stack.push({ file: path, realPath, site });
  for (const entry of lines) {
    const here: Site = { file: path, line: entry.line };
    switch (entry.name) {
      case "include":
        await readConfigFile(includePath(path, entry.value, here), depth + 1, here, state);
        break;
      case "include_if_exists": {
        const included = includePath(path, entry.value, here);
        if (await existsAt(included, here)) {
          await readConfigFile(included, depth + 1, here, state);
        }
        break;
      }
      case "include_dir":
        for (const file of await configDirectory(includePath(path, entry.value, here), here)) {
          await readConfigFile(file, depth + 1, here, state);
        }
        break;
      default:
        assign(entry.name, entry.value, here, state);
    }
  }
  const popped = state.stack.pop();
  assert(popped?.realPath === realPath, "include stack out of order");
}

function includePath(including: string, value: string, site: Site): string {
  if (value === "") throw new ConfigError(site.file, site.line, "empty file name in include");
  return resolve(dirname(including), value);
}

async function existsAt(path: string, site: Site): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw new ConfigError(
      site.file,
      site.line,
      `could not open configuration file "${path}": ${reason(error)}`,
      { cause: error },
    );
  }
}

/** Compare strings by their UTF-8 bytes, as C's strcmp does. */
export function compareBytes(a: string, b: string): number {
  const encoder = new TextEncoder();
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const length = Math.min(x.length, y.length);
  for (let i = 0; i < length; i++) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

/** The `.conf` files of an include_dir directory, not hidden, sorted like strcmp. */
async function configDirectory(dir: string, site: Site): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.name.endsWith(".conf") || entry.name.startsWith(".")) continue;
      if (entry.isDirectory) continue;
      if (entry.isSymlink && !(await isFile(join(dir, entry.name)))) continue;
      names.push(entry.name);
      if (names.length > FILES_MAX) {
        throw new ConfigError(site.file, site.line, `more than ${FILES_MAX} files in "${dir}"`);
      }
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(
      site.file,
      site.line,
      `could not open configuration directory "${dir}": ${reason(error)}`,
      { cause: error },
    );
  }
  return names.sort(compareBytes).map((name) => join(dir, name));
}

function assign(name: string, value: string, site: Site, state: LoadState): void {
  if (name.startsWith(SETTING_PREFIX)) {
    assignPgraft(name.slice(SETTING_PREFIX.length), value, site, state);
    return;
  }
  switch (name) {
    case "port":
      state.connection.port = serverPort(value, site);
      break;
    case "unix_socket_directories":
      state.connection.unixSocketDirectory = firstListEntry(value);
      break;
    case "listen_addresses":
      state.connection.listenAddress = value.trim() === "" ? null : value.trim();
      break;
    case "data_directory":
      state.connection.dataDirectory = value.trim() === ""
        ? null
        : resolve(dirname(site.file), value.trim());
      break;
    default:
      // PostgreSQL's own settings and other extensions' are not ours to check.
      break;
  }
}

function assignPgraft(bare: string, raw: string, site: Site, state: LoadState): void {
  const spec = findSetting(bare);
  if (!spec) throw new ConfigError(site.file, site.line, unknownSettingMessage(bare));
  if (spec.clusterWideOnly) {
    throw new ConfigError(
      site.file,
      site.line,
      `${SETTING_PREFIX}${bare} is part of the replicated state and cannot be set in a file; ` +
        `set it for the whole cluster with SELECT pgraft_set_config('${bare}', ${
          JSON.stringify(raw).replaceAll('"', "'")
        });`,
    );
  }
  let parsed;
  try {
    parsed = parseSettingValue(bare, raw);
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw new ConfigError(site.file, site.line, error.message, { cause: error });
    }
    throw error;
  }
  if (PATH_SETTINGS.includes(spec.name) && raw !== "") {
    const absolute = resolve(dirname(site.file), raw);
    parsed = { value: absolute, display: absolute };
  }
  state.sequence++;
  state.assignments.set(spec.name, {
    spec,
    value: parsed.value,
    display: parsed.display,
    file: site.file,
    line: site.line,
    sequence: state.sequence,
  });
}

function serverPort(raw: string, site: Site): number {
  let port: number | null = null;
  try {
    port = parseInteger(raw);
  } catch {
    // reported below
  }
  if (port === null || port < 1 || port > 65535) {
    throw new ConfigError(
      site.file,
      site.line,
      `invalid value for port: ${JSON.stringify(raw)} (expected an integer between 1 and 65535)`,
    );
  }
  return port;
}

/**
 * The first entry of a PostgreSQL list setting such as
 * `unix_socket_directories`: split at commas, trimmed, double quotes removed;
 * null when empty.
 */
export function firstListEntry(raw: string): string | null {
  const first = raw.split(",")[0]?.trim() ?? "";
  const unquoted = /^"(.*)"$/.exec(first)?.[1]?.replaceAll('""', '"') ?? first;
  return unquoted === "" ? null : unquoted;
}

function assigned(state: LoadState, name: string): Assignment | undefined {
  assert(findSetting(name) !== undefined, () => `no setting named ${name}`);
  return state.assignments.get(name);
}

function valueOf<T extends number | boolean | string>(state: LoadState, name: string): T {
  const assignment = assigned(state, name);
  if (assignment) return assignment.value as T;
  const spec = findSetting(name)!;
  assert(spec.default !== null, () => `${name} has a default`);
  return parseSettingValue(name, spec.default).value as T;
}

async function buildSettings(main: string, state: LoadState): Promise<PgraftSettings> {
  for (const name of REQUIRED_SETTINGS) {
    if (!state.assignments.has(name)) {
      throw new ConfigError(main, null, `${SETTING_PREFIX}${name} is not set`);
    }
  }
  const address = valueOf<string>(state, "address");
  return {
    nodeId: valueOf<number>(state, "node_id"),
    address,
    port: valueOf<number>(state, "port"),
    listenAddress: (assigned(state, "listen_address")?.value as string | undefined) ?? address,
    database: valueOf<string>(state, "database"),
    authSecret: await authSecret(state),
    clusterName: valueOf<string>(state, "cluster_name"),
    heartbeatIntervalMs: valueOf<number>(state, "heartbeat_interval"),
    electionTimeoutMs: valueOf<number>(state, "election_timeout"),
    appendBatchSize: valueOf<number>(state, "append_batch_size"),
    snapshotThreshold: valueOf<number>(state, "snapshot_threshold"),
    failoverEnabled: valueOf<boolean>(state, "failover_enabled"),
    kvQuotaBytes: valueOf<number>(state, "kv_quota"),
    dataDir: (assigned(state, "data_dir")?.value as string | undefined) ||
      `${state.connection.dataDirectory ?? dirname(main)}.pgraft`,
    managePostgres: valueOf<boolean>(state, "manage_postgres"),
    synchronousReplication: valueOf<boolean>(state, "synchronous_replication"),
    replicationUser: valueOf<string>(state, "replication_user"),
    pgBinDir: (assigned(state, "pg_bin_dir")?.value as string | undefined) || null,
    allowReclone: valueOf<boolean>(state, "allow_reclone"),
    ...tlsFiles(state),
  };
}

/** The TLS file settings: null when unset or empty; cert and key go together. */
function tlsFiles(
  state: LoadState,
): { tlsCertFile: string | null; tlsKeyFile: string | null; tlsCaFile: string | null } {
  const set = (name: string) => {
    const a = assigned(state, name);
    return a && a.value !== "" ? a : undefined;
  };
  const cert = set("tls_cert_file");
  const key = set("tls_key_file");
  const ca = set("tls_ca_file");
  if ((cert === undefined) !== (key === undefined)) {
    const given = (cert ?? key)!;
    const [name, missing] = cert
      ? ["tls_cert_file", "tls_key_file"]
      : ["tls_key_file", "tls_cert_file"];
    throw new ConfigError(
      given.file,
      given.line,
      `${SETTING_PREFIX}${name} is set but ${SETTING_PREFIX}${missing} is not; set both or neither`,
    );
  }
  return {
    tlsCertFile: (cert?.value as string | undefined) ?? null,
    tlsKeyFile: (key?.value as string | undefined) ?? null,
    tlsCaFile: (ca?.value as string | undefined) ?? null,
  };
}

/** Largest secret file read, a bound against pointing it at something huge. */
export const SECRET_FILE_BYTES_MAX = 64 * 1024;

async function authSecret(state: LoadState): Promise<string | null> {
  const direct = assigned(state, "auth_secret");
  const file = assigned(state, "auth_secret_file");
  const secret = direct && direct.value !== "" ? direct : undefined;
  const secretFile = file && file.value !== "" ? file : undefined;
  if (secret && secretFile) {
    const later = secret.sequence > secretFile.sequence ? secret : secretFile;
    throw new ConfigError(
      later.file,
      later.line,
      "pgraft.auth_secret and pgraft.auth_secret_file are both set; set only one",
    );
  }
  if (secret) return secret.value as string;
  if (!secretFile) return null;
  const path = secretFile.value as string;
  let bytes: Uint8Array;
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new Deno.errors.IsADirectory("not a regular file");
    if (info.size > SECRET_FILE_BYTES_MAX) {
      throw new ConfigError(
        secretFile.file,
        secretFile.line,
        `pgraft.auth_secret_file "${path}" is larger than ${SECRET_FILE_BYTES_MAX} bytes`,
      );
    }
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(
      secretFile.file,
      secretFile.line,
      `could not read pgraft.auth_secret_file "${path}": ${reason(error)}`,
      { cause: error },
    );
  }
  const text = new TextDecoder().decode(bytes).trim();
  if (text === "") {
    throw new ConfigError(
      secretFile.file,
      secretFile.line,
      `pgraft.auth_secret_file "${path}" is empty`,
    );
  }
  return text;
}

/** Least ratio of election timeout to heartbeat interval; below it the cluster cannot work. */
export const ELECTION_HEARTBEAT_RATIO_MIN = 2;
/** Ratio of election timeout to heartbeat interval below which a warning is given. */
export const ELECTION_HEARTBEAT_RATIO_ADVISED = 5;

function checkTimings(settings: PgraftSettings, state: LoadState): string[] {
  const heartbeat = settings.heartbeatIntervalMs;
  const election = settings.electionTimeoutMs;
  if (election >= ELECTION_HEARTBEAT_RATIO_ADVISED * heartbeat) return [];
  const sites = [assigned(state, "heartbeat_interval"), assigned(state, "election_timeout")]
    .filter((a): a is Assignment => a !== undefined)
    .sort((a, b) => b.sequence - a.sequence);
  const later = sites[0];
  // The defaults (100ms, 1000ms) keep the ratio; only a file can break it.
  assert(later !== undefined, "default timings keep the advised ratio");
  const pair = `pgraft.election_timeout (${election}ms)`;
  const base = `pgraft.heartbeat_interval (${heartbeat}ms)`;
  if (election < ELECTION_HEARTBEAT_RATIO_MIN * heartbeat) {
    throw new ConfigError(
      later.file,
      later.line,
      `${pair} must be at least ${ELECTION_HEARTBEAT_RATIO_MIN} times ${base}`,
    );
  }
  return [
    `${location(later.file, later.line)}${pair} is less than ` +
    `${ELECTION_HEARTBEAT_RATIO_ADVISED} times ${base}; followers may start needless elections`,
  ];
}

function buildEntries(settings: PgraftSettings, state: LoadState): SettingEntry[] {
  return SETTINGS.map((spec): SettingEntry => {
    const assignment = state.assignments.get(spec.name);
    if (assignment) {
      return {
        name: spec.name,
        setting: assignment.display,
        unit: spec.unit,
        source: "configuration file",
        sourcefile: assignment.file,
        sourceline: assignment.line,
      };
    }
    const setting = spec.name === "listen_address"
      ? settings.listenAddress
      : spec.name === "data_dir"
      ? settings.dataDir
      : spec.default ?? "";
    return {
      name: spec.name,
      setting,
      unit: spec.unit,
      source: "default",
      sourcefile: null,
      sourceline: null,
    };
  });
}
