/**
 * Effective settings: the configuration file's values, with cluster-wide
 * settings replicated through the log (pgraft_set_config) taking precedence for
 * cluster-scope names. Also the conversion from milliseconds to core ticks.
 *
 * @module
 */

import {
  ELECTION_HEARTBEAT_RATIO_MIN,
  type LoadedConfig,
  parseSettingValue,
  type PgraftSettings,
  SETTINGS,
} from "../config/mod.ts";
import type { EffectiveConfigRow } from "../postgres/status_rows.ts";
import type { Timing } from "../raft/mod.ts";

/** Settings a cluster may change through the log, and the PgraftSettings field each sets. */
const CLUSTER_FIELDS: Record<string, keyof PgraftSettings> = {
  cluster_name: "clusterName",
  heartbeat_interval: "heartbeatIntervalMs",
  election_timeout: "electionTimeoutMs",
  append_batch_size: "appendBatchSize",
  snapshot_threshold: "snapshotThreshold",
  failover_enabled: "failoverEnabled",
  kv_quota: "kvQuotaBytes",
  synchronous_replication: "synchronousReplication",
  replication_user: "replicationUser",
};

/** The file's settings overlaid with the cluster's. Invalid cluster values are skipped (and reported). */
export function effectiveSettings(
  loaded: LoadedConfig,
  cluster: Record<string, string>,
  onInvalid: (name: string, error: Error) => void = () => {},
): PgraftSettings {
  const settings: PgraftSettings = { ...loaded.settings };
  for (const [name, raw] of Object.entries(cluster)) {
    const field = CLUSTER_FIELDS[name];
    if (!field) continue;
    try {
      const { value } = parseSettingValue(name, raw);
      (settings as unknown as Record<string, unknown>)[field] = value;
    } catch (error) {
      onInvalid(name, error as Error);
    }
  }
  return settings;
}

/**
 * Check a cluster-wide setting before it is proposed: known name, cluster
 * scope, valid value, and the election/heartbeat ratio with the other value.
 *
 * @returns the canonical value to replicate
 * @throws RangeError / TypeError with a message fit for the operator
 */
export function validateClusterSetting(
  name: string,
  raw: string,
  current: PgraftSettings,
): string {
  const spec = SETTINGS.find((s) => s.name === name);
  if (!spec) parseSettingValue(name, raw); // throws with a did-you-mean
  if (spec!.scope !== "cluster") {
    throw new RangeError(`setting "${name}" is node-scoped: set pgraft.${name} in postgresql.conf`);
  }
  const { value, display } = parseSettingValue(name, raw);
  const heartbeat = name === "heartbeat_interval" ? value as number : current.heartbeatIntervalMs;
  const election = name === "election_timeout" ? value as number : current.electionTimeoutMs;
  if (election < ELECTION_HEARTBEAT_RATIO_MIN * heartbeat) {
    throw new RangeError(
      `election_timeout (${election}ms) must be at least ${ELECTION_HEARTBEAT_RATIO_MIN} times ` +
        `heartbeat_interval (${heartbeat}ms)`,
    );
  }
  // Sizes travel as a plain byte count, which the state machine reads (lib/state/limits.ts).
  return spec!.type === "bytes" ? String(value) : display;
}

/** The canonical display of a cluster-wide value, or null when it is not valid (then unused). */
function clusterDisplay(name: string, raw: string | undefined): string | null {
  if (raw === undefined) return null;
  try {
    return parseSettingValue(name, raw).display;
  } catch {
    return null;
  }
}

/** Rows for pgraft.effective_config: every setting with where its value comes from. */
export function effectiveConfigRows(
  loaded: LoadedConfig,
  cluster: Record<string, string>,
): EffectiveConfigRow[] {
  return SETTINGS.map((spec) => {
    const entry = loaded.entries.find((e) => e.name === spec.name);
    // Like effectiveSettings: a cluster value counts when it is cluster-scoped and valid.
    const fromClusterValue = spec.scope === "cluster"
      ? clusterDisplay(spec.name, cluster[spec.name])
      : null;
    const fromCluster = fromClusterValue !== null;
    return {
      name: spec.name,
      // File values are already shown canonically (secrets masked) by the loader.
      setting: fromClusterValue ?? entry?.setting ?? "",
      unit: spec.unit,
      scope: spec.scope,
      source: fromCluster ? "cluster" : entry?.source ?? "default",
      sourcefile: fromCluster ? null : entry?.sourcefile ?? null,
      sourceline: fromCluster ? null : entry?.sourceline ?? null,
      valueType: spec.type,
      minValue: spec.min ?? null,
      maxValue: spec.max ?? null,
      description: spec.description,
    };
  });
}

/** The core's timing in ticks, and how long a tick is. */
export interface TickTiming extends Timing {
  tickMs: number;
}

/** Append messages in flight per follower. */
export const INFLIGHT_APPENDS_MAX = 64;

/**
 * Convert settings to ticks. A tick is at most 10 ms and at most a quarter of
 * the heartbeat; the randomized election timeout spans [timeout, 1.25 × timeout)
 * so that failover lands close to one election timeout.
 */
export function timingFor(settings: PgraftSettings): TickTiming {
  const tickMs = Math.max(1, Math.min(10, Math.floor(settings.heartbeatIntervalMs / 4)));
  const heartbeatTicks = Math.max(1, Math.round(settings.heartbeatIntervalMs / tickMs));
  const electionTicks = Math.max(
    heartbeatTicks + 1,
    Math.round(settings.electionTimeoutMs / tickMs),
  );
  return {
    tickMs,
    heartbeatTicks,
    electionTicks,
    electionJitterTicks: Math.max(1, Math.round(electionTicks / 4)),
    appendBatchSize: settings.appendBatchSize,
    snapshotThreshold: settings.snapshotThreshold,
    maxInflight: INFLIGHT_APPENDS_MAX,
  };
}
