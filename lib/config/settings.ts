/**
 * The `pgraft.*` settings: their types, scopes, defaults and limits, and the
 * parsing of one value by name.
 *
 * @module
 */

import { formatBytes, parseBoolean, parseBytes, parseDuration, parseInteger } from "./units.ts";

/** How a setting's value is written. */
export type SettingType = "integer" | "duration" | "bytes" | "boolean" | "string";

/** `node`: each node's own file only; `cluster`: may also be set through the log. */
export type SettingScope = "node" | "cluster";

/** The description of one `pgraft.*` setting. */
export interface SettingSpec {
  /** without `pgraft.`, e.g. `heartbeat_interval` */
  name: string;
  type: SettingType;
  scope: SettingScope;
  /** `"ms"` for durations, `"B"` for sizes, null otherwise */
  unit: string | null;
  /** display form, e.g. `"100ms"`, `"on"`, `"512"`; null = required or none */
  default: string | null;
  /** smallest value (integers; durations in ms; sizes in bytes) */
  min?: number;
  /** largest value (integers; durations in ms; sizes in bytes) */
  max?: number;
  /**
   * set only cluster-wide with `pgraft_set_config()`, never in a file: the
   * value is part of the replicated state (every node must apply the same)
   */
  clusterWideOnly?: boolean;
  description: string;
}

/** The prefix of every pgraft setting in postgresql.conf. */
export const SETTING_PREFIX = "pgraft.";

/** Largest value of a PostgreSQL `int4`. */
export const INT4_MAX = 2147483647;

/** Settings that must be set in the configuration file. */
export const REQUIRED_SETTINGS: readonly string[] = ["node_id", "address", "port"];

/** Every `pgraft.*` setting, in DESIGN.md table order. */
export const SETTINGS: readonly SettingSpec[] = [
  {
    name: "node_id",
    type: "integer",
    scope: "node",
    unit: null,
    default: null,
    min: 1,
    max: INT4_MAX,
    description: "this node's id, unique in the cluster (required)",
  },
  {
    name: "address",
    type: "string",
    scope: "node",
    unit: null,
    default: null,
    description: "host name or IP address peers use to reach this node (required)",
  },
  {
    name: "port",
    type: "integer",
    scope: "node",
    unit: null,
    default: null,
    min: 1,
    max: 65535,
    description: "HTTP port of this node's agent for peers and clients (required)",
  },
  {
    name: "listen_address",
    type: "string",
    scope: "node",
    unit: null,
    default: null,
    description: "address the agent's HTTP server binds to (default: pgraft.address)",
  },
  {
    name: "database",
    type: "string",
    scope: "node",
    unit: null,
    default: "postgres",
    description: "database holding the pgraft schema",
  },
  {
    name: "auth_secret",
    type: "string",
    scope: "node",
    unit: null,
    default: null,
    description: "shared secret peers and clients present (none: only loopback peers)",
  },
  {
    name: "auth_secret_file",
    type: "string",
    scope: "node",
    unit: null,
    default: null,
    description: "file holding the shared secret, relative to the file that sets it",
  },
  {
    name: "tls_cert_file",
    type: "string",
    scope: "node",
    unit: null,
    default: null,
    description:
      "PEM certificate (chain) the agent serves HTTPS with, relative to the file that sets it " +
      "(none: plain HTTP); needs pgraft.tls_key_file",
  },
  {
    name: "tls_key_file",
    type: "string",
    scope: "node",
    unit: null,
    default: null,
    description: "PEM private key of pgraft.tls_cert_file, relative to the file that sets it",
  },
  {
    name: "tls_ca_file",
    type: "string",
    scope: "node",
    unit: null,
    default: null,
    description:
      "PEM CA certificates trusted for peers' HTTPS, relative to the file that sets it " +
      "(none: the system's)",
  },
  {
    name: "cluster_name",
    type: "string",
    scope: "cluster",
    unit: null,
    default: "pgraft",
    description: "name of the cluster",
  },
  {
    name: "heartbeat_interval",
    type: "duration",
    scope: "cluster",
    unit: "ms",
    default: "100ms",
    min: 1,
    max: 3_600_000,
    description: "how often a leader sends heartbeats",
  },
  {
    name: "election_timeout",
    type: "duration",
    scope: "cluster",
    unit: "ms",
    default: "1000ms",
    min: 2,
    max: 86_400_000,
    description: "how long a follower waits without a leader before an election",
  },
  {
    name: "append_batch_size",
    type: "integer",
    scope: "cluster",
    unit: null,
    default: "512",
    min: 1,
    max: 65536,
    description: "most log entries sent in one append request",
  },
  {
    name: "snapshot_threshold",
    type: "integer",
    scope: "cluster",
    unit: null,
    default: "8000",
    min: 1,
    max: INT4_MAX,
    description: "applied entries after which the log is compacted into a snapshot",
  },
  {
    name: "failover_enabled",
    type: "boolean",
    scope: "cluster",
    unit: null,
    default: "on",
    description: "whether the agent promotes a new PostgreSQL primary on leader change",
  },
  {
    name: "data_dir",
    type: "string",
    scope: "node",
    unit: null,
    default: null,
    description: "directory of the agent's Raft log and snapshots, relative to the file that " +
      "sets it (default: the PostgreSQL data directory's path with .pgraft appended)",
  },
  {
    name: "manage_postgres",
    type: "boolean",
    scope: "node",
    unit: null,
    default: "off",
    description: "the agent runs this node's PostgreSQL server: the Raft leader's server is " +
      "the primary, the others stream from it as standbys",
  },
  {
    name: "synchronous_replication",
    type: "boolean",
    scope: "cluster",
    unit: null,
    default: "on",
    description: "with manage_postgres: a commit on the primary waits until enough standbys " +
      "hold it that a majority of the voters does (off: asynchronous, a failover may lose " +
      "the last commits)",
  },
  {
    name: "replication_user",
    type: "string",
    scope: "cluster",
    unit: null,
    default: "postgres",
    description: "with manage_postgres: the role standbys stream as (and pg_rewind, " +
      "pg_basebackup connect as)",
  },
  {
    name: "pg_bin_dir",
    type: "string",
    scope: "node",
    unit: null,
    default: null,
    description: "with manage_postgres: directory of the PostgreSQL server programs, relative " +
      "to the file that sets it (default: found as for pgraft dev)",
  },
  {
    name: "kv_quota",
    type: "bytes",
    scope: "cluster",
    unit: "B",
    default: "64MB",
    min: 1024,
    max: Number.MAX_SAFE_INTEGER,
    clusterWideOnly: true,
    description: "most bytes (keys and values) the replicated key-value store may hold " +
      "(set with pgraft_set_config(); the default is lib/state's KV_QUOTA_BYTES_DEFAULT)",
  },
  {
    name: "allow_reclone",
    type: "boolean",
    scope: "node",
    unit: null,
    default: "off",
    description: "with manage_postgres: a data directory whose pg_rewind failed may be " +
      "emptied and cloned from the primary again",
  },
];

/** String settings that cannot be empty (for the others, empty means none). */
const NON_EMPTY_SETTINGS: readonly string[] = [
  "address",
  "listen_address",
  "database",
  "cluster_name",
  "replication_user",
];

/** Shown instead of a secret. */
export const SECRET_MASK = "********";

/** The spec of `name` (without prefix), or undefined. */
export function findSetting(name: string): SettingSpec | undefined {
  return SETTINGS.find((spec) => spec.name === name);
}

/**
 * Edit distance between two strings (insertions, deletions, substitutions).
 *
 * @example
 * ```ts
 * if (levenshtein("kitten", "sitting") !== 3) throw new Error();
 * ```
 */
export function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** Greatest edit distance for a did-you-mean suggestion. */
export const SUGGESTION_DISTANCE_MAX = 3;

/**
 * The message for an unknown pgraft setting, with the closest known name when
 * one is within {@link SUGGESTION_DISTANCE_MAX} edits.
 *
 * @param name without prefix
 */
export function unknownSettingMessage(name: string): string {
  let best: { name: string; distance: number } | null = null;
  for (const spec of SETTINGS) {
    const distance = levenshtein(name, spec.name);
    if (distance <= SUGGESTION_DISTANCE_MAX && (best === null || distance < best.distance)) {
      best = { name: spec.name, distance };
    }
  }
  const base = `unrecognized configuration parameter "${SETTING_PREFIX}${name}"`;
  return best ? `${base} (did you mean "${SETTING_PREFIX}${best.name}"?)` : base;
}

/** A parsed setting value and how it is displayed. */
export interface ParsedSetting {
  value: number | boolean | string;
  display: string;
}

function invalid(
  spec: SettingSpec,
  raw: string,
  expected: string,
  ErrorClass: typeof TypeError | typeof RangeError,
): Error {
  return new ErrorClass(
    `invalid value for ${SETTING_PREFIX}${spec.name}: ${JSON.stringify(raw)} (${expected})`,
  );
}

function checkRange(spec: SettingSpec, raw: string, value: number, unit: string): void {
  const min = spec.min ?? Number.MIN_SAFE_INTEGER;
  const max = spec.max ?? Number.MAX_SAFE_INTEGER;
  if (value < min || value > max) {
    throw invalid(spec, raw, `must be between ${min}${unit} and ${max}${unit}`, RangeError);
  }
}

/**
 * Parse the value of one pgraft setting.
 *
 * @param name the setting's name, without `pgraft.` (a `pgraft.` prefix and
 *   upper case are accepted too)
 * @param raw the value as written (quotes already removed)
 * @returns the typed value (durations in ms) and its display form (durations
 *   as `"90ms"`, booleans `"on"`/`"off"`, `auth_secret` masked)
 * @throws {RangeError} for an unknown name (with a did-you-mean) or a value out
 *   of range
 * @throws {TypeError} for a value not of the setting's type
 * @example
 * ```ts
 * const { value, display } = parseSettingValue("heartbeat_interval", "0.5s");
 * if (value !== 500 || display !== "500ms") throw new Error();
 * ```
 */
export function parseSettingValue(name: string, raw: string): ParsedSetting {
  let bare = name.toLowerCase();
  if (bare.startsWith(SETTING_PREFIX)) bare = bare.slice(SETTING_PREFIX.length);
  const spec = findSetting(bare);
  if (!spec) throw new RangeError(unknownSettingMessage(bare));
  switch (spec.type) {
    case "integer": {
      let value: number;
      try {
        value = parseInteger(raw);
      } catch {
        throw invalid(spec, raw, "expected an integer", TypeError);
      }
      checkRange(spec, raw, value, "");
      return { value, display: String(value) };
    }
    case "duration": {
      let value: number;
      try {
        value = parseDuration(raw);
      } catch (error) {
        if (error instanceof RangeError && /unit/.test(error.message)) {
          throw invalid(spec, raw, `${error.message}`, RangeError);
        }
        throw invalid(spec, raw, "expected a duration such as '100ms'", TypeError);
      }
      checkRange(spec, raw, value, "ms");
      return { value, display: `${value}ms` };
    }
    case "bytes": {
      let value: number;
      try {
        value = parseBytes(raw);
      } catch (error) {
        if (error instanceof RangeError && /unit/.test(error.message)) {
          throw invalid(spec, raw, `${error.message}`, RangeError);
        }
        throw invalid(spec, raw, "expected a size such as '64MB'", TypeError);
      }
      checkRange(spec, raw, value, "B");
      return { value, display: formatBytes(value) };
    }
    case "boolean": {
      let value: boolean;
      try {
        value = parseBoolean(raw);
      } catch {
        throw invalid(spec, raw, "expected on, off, true, false, yes, no, 1 or 0", TypeError);
      }
      return { value, display: value ? "on" : "off" };
    }
    case "string": {
      if (raw.includes("\0")) throw invalid(spec, raw, "must not contain a NUL byte", TypeError);
      if (raw === "" && NON_EMPTY_SETTINGS.includes(spec.name)) {
        throw invalid(spec, raw, "must not be empty", TypeError);
      }
      if (spec.name === "auth_secret") {
        return { value: raw, display: raw === "" ? "" : SECRET_MASK };
      }
      return { value: raw, display: raw };
    }
  }
}
