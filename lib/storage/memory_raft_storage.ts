/**
 * RaftStorage in memory, with the semantics of `WalStorage`: for unit tests
 * and simulations. A {@link MemoryRaftDisk} plays the storage directory: it
 * outlives the storages opened on it, so a test can "restart" a node by
 * opening a new storage on the same disk. Everything handed in or out is
 * copied.
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { Entry, HardState, Snapshot } from "../raft/types.ts";
import {
  assertEntries,
  assertHardState,
  assertSnapshot,
  checkClusterId,
  checkNodeId,
  copyEntry,
  copySnapshot,
  type LoadedState,
  type RaftStorage,
  type SaveUpdate,
  type StorageIdentity,
  StorageIdentityError,
} from "./raft_storage.ts";

/** What survives a restart: the durable state of one node. */
export class MemoryRaftDisk {
  /** a name for error messages (the "directory") */
  readonly name: string;
  identity: StorageIdentity | null = null;
  hardState: HardState = { term: 0, vote: 0, commit: 0 };
  snapshot: Snapshot | null = null;
  /** entries after the snapshot, contiguous */
  entries: Entry[] = [];
  /** whether a storage has it open */
  inUse = false;
  /** saves and snapshot writes made durable (what a WAL would fdatasync) */
  syncs = 0;

  /** @param name a name for error messages */
  constructor(name = "memory") {
    this.name = name;
  }
}

/** Options of {@link MemoryRaftStorage.open}. */
export interface MemoryRaftStorageOptions {
  nodeId: number;
  /** the cluster id, when known; a disk of another cluster is refused. @default null */
  clusterId?: string | null;
}

/** The in-memory storage, on a {@link MemoryRaftDisk}. */
export class MemoryRaftStorage implements RaftStorage {
  readonly #disk: MemoryRaftDisk;
  #closed = false;

  private constructor(disk: MemoryRaftDisk) {
    this.#disk = disk;
  }

  /**
   * Open a storage on `disk`.
   *
   * @param disk the disk (it keeps its state across storages; `new MemoryRaftDisk()` for a fresh one)
   * @param options the node id (required) and cluster id
   * @returns the storage; StorageIdentityError for a disk of another node or cluster
   */
  static open(
    disk: MemoryRaftDisk,
    options: MemoryRaftStorageOptions,
  ): Promise<MemoryRaftStorage> {
    checkNodeId(options.nodeId);
    const clusterId = options.clusterId ?? null;
    if (clusterId !== null) checkClusterId(clusterId);
    const wanted = { nodeId: options.nodeId, clusterId };
    const found = disk.identity;
    if (disk.inUse) return Promise.reject(new Error(`${disk.name} is in use`));
    if (found && found.nodeId !== wanted.nodeId) {
      return Promise.reject(new StorageIdentityError(disk.name, wanted, found));
    }
    if (found && clusterId !== null && found.clusterId !== null && found.clusterId !== clusterId) {
      return Promise.reject(new StorageIdentityError(disk.name, wanted, found));
    }
    if (!found || (clusterId !== null && found.clusterId === null)) disk.identity = wanted;
    disk.inUse = true;
    return Promise.resolve(new MemoryRaftStorage(disk));
  }

  /** Who the disk belongs to. */
  get identity(): StorageIdentity {
    assert(this.#disk.identity !== null, "an open disk has an identity");
    return { ...this.#disk.identity };
  }

  /**
   * What the core restarts from.
   *
   * @returns copies of the hard state, snapshot and entries
   */
  async load(): Promise<LoadedState> {
    await this.#turn();
    const d = this.#disk;
    const index = d.snapshot?.meta.index ?? 0;
    return {
      hardState: { ...d.hardState, commit: Math.max(d.hardState.commit, index) },
      snapshot: d.snapshot ? copySnapshot(d.snapshot) : null,
      entries: d.entries.map(copyEntry),
    };
  }

  /**
   * Make one Ready durable: snapshot, entries, hard state.
   *
   * @param update what to store
   * @returns once stored
   */
  async save(update: SaveUpdate): Promise<void> {
    await this.#turn();
    const d = this.#disk;
    const { snapshot, entries, hardState } = update;
    if (snapshot) assertSnapshot(snapshot);
    assertEntries(entries);
    if (hardState) assertHardState(hardState);
    const snapIndex = d.snapshot?.meta.index ?? 0;
    const installs = snapshot !== null && snapshot.meta.index > snapIndex;
    let kept = d.entries;
    let floor = snapIndex;
    if (installs) {
      const { index, term } = snapshot.meta;
      floor = index;
      kept = termAt(d, index) === term ? d.entries.filter((e) => e.index > index) : [];
    }
    const first = entries[0];
    if (first) {
      const last = kept.length > 0 ? kept[kept.length - 1]!.index : floor;
      assert(
        first.index > floor && first.index <= last + 1,
        () => `entries start at ${first.index}; the log holds ${floor + 1}..${last}`,
      );
    }
    if (!installs && !first && !hardState) return;
    if (installs) d.snapshot = copySnapshot(snapshot);
    if (first) kept = kept.filter((e) => e.index < first.index).concat(entries.map(copyEntry));
    d.entries = kept;
    if (hardState) d.hardState = { ...hardState };
    d.syncs++;
  }

  /**
   * Store a snapshot this node made and drop the entries it covers.
   *
   * @param snapshot a snapshot whose last entry is in the log
   * @returns once stored
   */
  async saveSnapshot(snapshot: Snapshot): Promise<void> {
    await this.#turn();
    assertSnapshot(snapshot);
    const d = this.#disk;
    const { index, term } = snapshot.meta;
    if (index <= (d.snapshot?.meta.index ?? 0)) return;
    if (termAt(d, index) !== term) {
      throw new RangeError(`the log does not hold index ${index} with term ${term}`);
    }
    d.snapshot = copySnapshot(snapshot);
    d.entries = d.entries.filter((e) => e.index > index);
    d.syncs++;
  }

  /**
   * Record the cluster id once; another id later is refused.
   *
   * @param clusterId the cluster id
   * @returns once stored; StorageIdentityError when another id is recorded
   */
  async setClusterId(clusterId: string): Promise<void> {
    await this.#turn();
    checkClusterId(clusterId);
    const current = this.identity;
    if (current.clusterId === clusterId) return;
    if (current.clusterId !== null) {
      throw new StorageIdentityError(this.#disk.name, { ...current, clusterId }, current);
    }
    this.#disk.identity = { nodeId: current.nodeId, clusterId };
  }

  /**
   * Release the disk. Later calls reject.
   *
   * @returns once closed
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#disk.inUse = false;
    }
    return Promise.resolve();
  }

  /** Every call completes asynchronously, like a real storage. */
  #turn(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`${this.#disk.name} storage is closed`));
    return Promise.resolve();
  }
}

function termAt(d: MemoryRaftDisk, index: number): number | null {
  const first = d.entries[0];
  if (!first || index < first.index) return null;
  return d.entries[index - first.index]?.term ?? null;
}
