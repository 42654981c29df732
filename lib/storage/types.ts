/**
 * The storage contract: what the agent persists for the Raft core and the
 * replicated state machine it applies committed entries to. Implemented by
 * `PgStorage` (the node's own PostgreSQL, control schema `pgraft`) and
 * `MemoryStorage` (tests); one contract suite runs against both.
 *
 * @module
 */

import type {
  ConfChange,
  Entry,
  HardState,
  NodeId,
  PersistentState,
  Snapshot,
} from "../raft/types.ts";

/** What one Ready asks to make durable, in one transaction. */
export interface PersistUpdate {
  /**
   * A snapshot received from the leader: it replaces the applied state
   * (members, settings, key-value store, cluster id) with `snapshot.data`, sets
   * last_applied to its index, stores it as the latest snapshot, and deletes
   * every log entry <= its index.
   */
  snapshot: Snapshot | null;
  /** Entries to append: every stored entry with index >= entries[0].index is deleted first. */
  entries: Entry[];
  hardState: HardState | null;
}

/**
 * A command of the replicated state machine. `normal` log entries carry one
 * encoded with {@link encodeCommand} (empty data = the leader's no-op);
 * `conf_change` entries are decoded by the agent (lib/raft) and handed to
 * `apply` as `{ op: "conf_change" }`.
 */
export type Command =
  | { op: "noop" }
  /** First entry a new cluster commits: its identity. */
  | { op: "init_cluster"; clusterId: string; clusterName: string }
  /** A membership change; `change.context` is JSON {"address": string, "port": number}. */
  | { op: "conf_change"; change: ConfChange }
  /** A cluster-wide setting (validated before it was proposed). */
  | { op: "set_config"; name: string; value: string }
  | { op: "kv_put"; key: string; value: Uint8Array }
  | { op: "kv_delete"; key: string };

/** One committed entry to apply. */
export interface ApplyItem {
  index: number;
  term: number;
  command: Command;
}

/** What applying one entry did, for the proposer waiting on it. */
export interface ApplyResult {
  index: number;
  /** false when the entry was already applied before (a replay after a crash): nothing changed */
  applied: boolean;
  /** kv_delete: whether the key existed; kv_put: whether it replaced a value */
  existed?: boolean;
  /** kv revision (the entry index that last wrote the key), for kv_put/kv_delete */
  revision?: number;
}

/** A member as the applied state knows it. */
export interface Member {
  nodeId: NodeId;
  address: string;
  port: number;
  isVoter: boolean;
}

/** The applied state machine, minus the key-value store. */
export interface AppliedState {
  lastApplied: number;
  clusterId: string | null;
  clusterName: string | null;
  members: Member[];
  /** cluster-wide settings set through the log: name (without `pgraft.`) → value */
  settings: Record<string, string>;
}

/** One key of the replicated key-value store. */
export interface KvPair {
  key: string;
  value: Uint8Array;
  /** index of the entry that last wrote it */
  revision: number;
}

/** Thrown when the database cannot be reached or did not answer in time. The caller may retry. */
export class StorageUnavailableError extends Error {
  override name = "StorageUnavailableError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Everything the agent needs from durable storage. */
export interface RaftStorage {
  /** What the core restarts from (applied = last_applied of the state machine). */
  load(): Promise<PersistentState>;
  /** Make one Ready durable, atomically. Resolves only once committed (synchronous_commit = on). */
  persist(update: PersistUpdate): Promise<void>;
  /**
   * Apply committed entries in order, together with last_applied, in one
   * transaction. Items with index <= last_applied are skipped (applied: false),
   * so replaying after a crash applies each entry exactly once. Asserts the
   * first new index is last_applied + 1.
   */
  apply(items: ApplyItem[]): Promise<ApplyResult[]>;
  /** Serialize the applied state (incl. the key-value store) at last_applied, for a snapshot. */
  snapshotData(): Promise<{ index: number; data: Uint8Array }>;
  /** Store a snapshot this node made (createSnapshot) and delete log entries <= its index. */
  saveSnapshot(snapshot: Snapshot): Promise<void>;
  /** The applied state machine (without the key-value store). */
  appliedState(): Promise<AppliedState>;
  kvGet(key: string): Promise<KvPair | null>;
  /** Keys starting with `prefix`, in key order, at most `limit`. */
  kvList(prefix: string, limit: number): Promise<KvPair[]>;
  close(): Promise<void>;
}
