/**
 * The durable storage the Raft core needs, and nothing else: the hard state
 * (term, vote, commit), the log entries after the latest snapshot, the
 * snapshots, and the identity of the node the storage belongs to. The
 * replicated state machine lives in memory (lib/state) and is restored from
 * the snapshot plus the log.
 *
 * Implemented by `WalStorage` (a write-ahead log on the node's own disk) and
 * `MemoryRaftStorage` (tests and simulations); one contract suite runs against
 * both (tests/unit/storage/raft_storage_contract.ts).
 *
 * @module
 */

import { assert } from "../assert.ts";
import { type Entry, type HardState, NODE_ID_MAX, type Snapshot } from "../raft/types.ts";

/** What a node restarts from: exactly what the storage made durable. */
export interface LoadedState {
  hardState: HardState;
  /** the latest usable snapshot, or null when the log starts at index 1 */
  snapshot: Snapshot | null;
  /** the entries after the snapshot, contiguous from `snapshot.meta.index + 1` (or 1) */
  entries: Entry[];
}

/** What one Ready asks to make durable. */
export interface SaveUpdate {
  /**
   * A snapshot received from the leader. Installed when newer than the stored
   * one: it replaces every entry <= its index, and the entries after it are
   * kept only when the log holds the snapshot's last entry with the same term
   * (Raft §7); otherwise the whole log is discarded.
   */
  snapshot: Snapshot | null;
  /** Entries to append: every stored entry with index >= entries[0].index is replaced. */
  entries: Entry[];
  hardState: HardState | null;
}

/** Who a storage belongs to. */
export interface StorageIdentity {
  nodeId: number;
  /** null until the node learns the cluster it belongs to */
  clusterId: string | null;
}

/** Everything the Raft core needs from durable storage. */
export interface RaftStorage {
  readonly identity: StorageIdentity;
  /** What the core restarts from. */
  load(): Promise<LoadedState>;
  /**
   * Make one Ready durable with ONE fdatasync however many entries: first the
   * snapshot (if newer than the stored one; it replaces every entry <= its
   * index), then the entries (every stored entry with index >= entries[0].index
   * is replaced: suffix truncation on conflict), then the hard state. Resolves
   * only once durable.
   */
  save(update: SaveUpdate): Promise<void>;
  /**
   * A snapshot this node made (its index is in the log): write it
   * atomically, then compact the log prefix. Older snapshots are removed,
   * keeping a bounded number. A snapshot not newer than the stored one is
   * ignored; one whose last entry (index and term) is not in the log is a
   * RangeError.
   */
  saveSnapshot(snapshot: Snapshot): Promise<void>;
  /** Record the cluster id once known; a different id later is a StorageIdentityError. */
  setClusterId(clusterId: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * A file of the storage fails its checks: a bad checksum before the tail of
 * the log, a record that does not decode, a log that does not continue from
 * its snapshot. The agent must stop: the data is never served.
 */
export class StorageCorruptError extends Error {
  override name = "StorageCorruptError";
  /** the file at fault */
  readonly file: string;
  /** byte offset of the bad record in `file`, null when the fault is not at one place */
  readonly offset: number | null;
  /** what is wrong, without the file and offset */
  readonly reason: string;

  /**
   * @param file the file at fault
   * @param offset byte offset in `file` (null when the fault is not at one place)
   * @param reason what is wrong
   */
  constructor(file: string, offset: number | null, reason: string, options?: ErrorOptions) {
    super(
      offset === null
        ? `Corrupt storage file ${file}: ${reason}`
        : `Corrupt storage file ${file} at byte offset ${offset}: ${reason}`,
      options,
    );
    this.file = file;
    this.offset = offset;
    this.reason = reason;
  }
}

/** The storage directory belongs to another node or another cluster. */
export class StorageIdentityError extends Error {
  override name = "StorageIdentityError";
  readonly dir: string;
  /** who asked to use the directory */
  readonly expected: StorageIdentity;
  /** whom the directory belongs to */
  readonly found: StorageIdentity;

  /**
   * @param dir the storage directory
   * @param expected the identity of the caller
   * @param found the identity recorded in the directory
   */
  constructor(dir: string, expected: StorageIdentity, found: StorageIdentity) {
    const who = (i: StorageIdentity) =>
      `node ${i.nodeId} of cluster ${i.clusterId ?? "(not yet known)"}`;
    super(
      found.nodeId !== expected.nodeId
        ? `Storage directory ${dir} belongs to node ${found.nodeId}, not node ${expected.nodeId}` +
          ` (it holds ${who(found)}; this agent is ${who(expected)})`
        : `Storage directory ${dir} belongs to cluster ${found.clusterId}, not cluster ` +
          `${expected.clusterId} (node ${found.nodeId})`,
    );
    this.dir = dir;
    this.expected = expected;
    this.found = found;
  }
}

/**
 * Check a node id given to open a storage.
 *
 * @param nodeId the node id (1..NODE_ID_MAX)
 * @returns nothing; throws RangeError when out of range
 */
export function checkNodeId(nodeId: number): void {
  if (!Number.isInteger(nodeId) || nodeId < 1 || nodeId > NODE_ID_MAX) {
    throw new RangeError(`node id must be an integer in 1..${NODE_ID_MAX}, got ${nodeId}`);
  }
}

/**
 * Check a cluster id (non-empty, printable, at most 200 characters).
 *
 * @param clusterId the cluster id
 * @returns nothing; throws RangeError when malformed
 */
export function checkClusterId(clusterId: string): void {
  if (clusterId.length === 0 || clusterId.length > 200 || !/^[\x21-\x7e]+$/.test(clusterId)) {
    throw new RangeError(`cluster id must be 1..200 printable ASCII characters: ${clusterId}`);
  }
}

/**
 * Assert what the core promises about the entries of a Ready: valid indexes,
 * terms and types, contiguous. A violation is a bug of the caller.
 *
 * @param entries the entries to append
 * @returns nothing; throws AssertionError on a violation
 */
export function assertEntries(entries: readonly Entry[]): void {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    assert(Number.isSafeInteger(e.index) && e.index >= 1, () => `bad entry index ${e.index}`);
    assert(Number.isSafeInteger(e.term) && e.term >= 1, () => `bad entry term ${e.term}`);
    assert(e.type === "normal" || e.type === "conf_change", () => `bad entry type ${e.type}`);
    assert(e.data instanceof Uint8Array, "entry data must be a Uint8Array");
    if (i > 0) {
      assert(e.index === entries[i - 1]!.index + 1, "entries are not contiguous");
      assert(e.term >= entries[i - 1]!.term, "entry terms decrease");
    }
  }
}

/**
 * Assert a hard state is well formed.
 *
 * @param hs the hard state
 * @returns nothing; throws AssertionError on a violation
 */
export function assertHardState(hs: HardState): void {
  assert(Number.isSafeInteger(hs.term) && hs.term >= 0, () => `bad term ${hs.term}`);
  assert(
    Number.isInteger(hs.vote) && hs.vote >= 0 && hs.vote <= NODE_ID_MAX,
    () => `bad vote ${hs.vote}`,
  );
  assert(Number.isSafeInteger(hs.commit) && hs.commit >= 0, () => `bad commit ${hs.commit}`);
}

/**
 * Assert a snapshot is well formed.
 *
 * @param s the snapshot
 * @returns nothing; throws AssertionError on a violation
 */
export function assertSnapshot(s: Snapshot): void {
  assert(Number.isSafeInteger(s.meta.index) && s.meta.index >= 1, "bad snapshot index");
  assert(Number.isSafeInteger(s.meta.term) && s.meta.term >= 1, "bad snapshot term");
  assert(s.data instanceof Uint8Array, "snapshot data must be a Uint8Array");
  for (const id of [...s.meta.membership.voters, ...s.meta.membership.learners]) {
    assert(Number.isInteger(id) && id >= 1 && id <= NODE_ID_MAX, () => `bad member id ${id}`);
  }
}

/**
 * A deep copy of an entry (callers never share buffers with stored state).
 *
 * @param e the entry
 * @returns a copy
 */
export function copyEntry(e: Entry): Entry {
  return { index: e.index, term: e.term, type: e.type, data: e.data.slice() };
}

/**
 * A deep copy of a snapshot.
 *
 * @param s the snapshot
 * @returns a copy
 */
export function copySnapshot(s: Snapshot): Snapshot {
  return {
    meta: {
      index: s.meta.index,
      term: s.meta.term,
      membership: {
        voters: [...s.meta.membership.voters],
        learners: [...s.meta.membership.learners],
      },
    },
    data: s.data.slice(),
  };
}
