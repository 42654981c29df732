/**
 * RaftStorage on the node's own disk: a write-ahead log in segment files plus
 * snapshot files, in the directory `pgraft.data_dir`.
 *
 * Layout, for operators:
 * ```
 * <dir>/identity   JSON: the node id and (once known) the cluster id the directory belongs to
 * <dir>/lock       held (flock) by the agent using the directory
 * <dir>/wal/*.wal  log segments, <seq>-<first index>.wal (16 hex digits each)
 * <dir>/snap/*.snap  snapshots, <term>-<index>.snap (16 hex digits each); at most 2 are kept
 * ```
 * `*.tmp` files are writes a crash interrupted (removed on open);
 * `*.snap.broken` are snapshots that failed their checksum and were set aside.
 *
 * Each save is ONE record (framed with its length and CRC-32C, see
 * wal/record.ts) appended to the last segment — written synchronously to the
 * page cache, microseconds — then one asynchronous `fdatasync`, so the event
 * loop never waits for the disk. A segment
 * that has grown past `segmentBytes` is closed and a new one started: its
 * first record carries the current hard state, and it is created under a
 * temporary name, synced, renamed, and the directory synced.
 *
 * On open, every segment is read and checked. The last record of the last
 * segment is cut off as torn (a crash during its append, so never
 * acknowledged) only when the torn-tail rule (wal/torn.ts) says an
 * interrupted write explains it: (a) the file ends inside the record, (b) the
 * file is all zero from the record's start, or (c) its failing checksum comes
 * with a record's share of a 512-byte sector that is all zero (a sector the
 * write never reached) and is not one flipped bit; `recovery` says which.
 * Any other bad record, the last one included (a flipped bit in the header,
 * checksums or payload of a record that was fully written), stops the open
 * with a StorageCorruptError naming the file and byte offset: it is never cut
 * off. The newest snapshot that checks out is used; if the newest
 * fails its checksum, the previous one is used when the log still covers from
 * it (segments are only deleted up to the OLDER of the two kept snapshots, so
 * it normally does).
 *
 * A failed write or sync leaves the storage failed: every later call rejects
 * (what reached the disk is unknown until the directory is opened again).
 *
 * @module
 */

import { join } from "node:path";
import { assert } from "../assert.ts";
import type { HardState, Snapshot } from "../raft/types.ts";
import {
  assertEntries,
  assertHardState,
  assertSnapshot,
  checkClusterId,
  checkNodeId,
  type LoadedState,
  type RaftStorage,
  type SaveUpdate,
  type StorageIdentity,
  StorageIdentityError,
} from "./raft_storage.ts";
import {
  claimIdentity,
  readDirectory,
  type ReadResult,
  removeIfThere,
  type SegmentInfo,
  setAside,
  type WalRecovery,
} from "./wal/directory.ts";
import { ensureDir, FILE_MODE, removeTempFiles, syncDir, writeAllSync } from "./wal/files.ts";
import { writeIdentity } from "./wal/identity.ts";
import { encodeBatch, type SnapshotMarker } from "./wal/record.ts";
import { createSegment } from "./wal/segment.ts";
import { listSnapshots, writeSnapshotFile } from "./wal/snapshot_file.ts";

export type { WalRecovery } from "./wal/directory.ts";

/** Options of {@link WalStorage.open}. */
export interface WalStorageOptions {
  /** the node this agent runs as; a directory of another node is refused */
  nodeId: number;
  /** the cluster id, when known; a directory of another cluster is refused. @default null */
  clusterId?: string | null;
  /** a segment past this size is closed and a new one started. @default 64 MiB */
  segmentBytes?: number;
}

/** Default segment size: 64 MiB. */
export const SEGMENT_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Smallest segment size accepted (tests use small segments). */
export const SEGMENT_BYTES_MIN = 1024;
/** Snapshot files kept. */
export const SNAPSHOTS_KEPT = 2;
const LOCK_FILE = "lock";

/** The write-ahead log storage. Calls are serialized in the order they are made. */
export class WalStorage implements RaftStorage {
  readonly dir: string;
  /** what opening repaired or set aside */
  readonly recovery: WalRecovery;
  readonly #walDir: string;
  readonly #snapDir: string;
  readonly #segmentBytes: number;
  readonly #lock: Deno.FsFile;
  #identity: StorageIdentity;
  #segments: SegmentInfo[];
  #tail: Deno.FsFile;
  #tailSize: number;
  #hardState: HardState;
  #snapIndex: number;
  /** terms of the entries after the snapshot: #terms[i] is the term of #snapIndex + 1 + i */
  #terms: number[];
  /** what open() read, handed to the first load() */
  #pending: LoadedState | null;
  #queue: Promise<void> = Promise.resolve();
  #failed: unknown = null;
  #closed = false;

  private constructor(
    dir: string,
    identity: StorageIdentity,
    segmentBytes: number,
    lock: Deno.FsFile,
    read: ReadResult,
    tail: Deno.FsFile,
  ) {
    this.dir = dir;
    this.#walDir = join(dir, "wal");
    this.#snapDir = join(dir, "snap");
    this.#identity = identity;
    this.#segmentBytes = segmentBytes;
    this.#lock = lock;
    this.#segments = read.segments;
    this.#tail = tail;
    this.#tailSize = read.tailSize;
    this.#hardState = { ...read.state.hardState };
    this.#snapIndex = read.state.snapshot?.meta.index ?? 0;
    this.#terms = read.state.entries.map((e) => e.term);
    this.#pending = read.state;
    this.recovery = read.recovery;
  }

  /**
   * Open (or create, mode 0700) the storage directory `dir`.
   *
   * @param dir the storage directory
   * @param options the node id (required), cluster id, segment size
   * @returns the storage; StorageIdentityError for a directory of another node
   *   or cluster, StorageCorruptError for a damaged log
   */
  static async open(dir: string, options: WalStorageOptions): Promise<WalStorage> {
    checkNodeId(options.nodeId);
    const clusterId = options.clusterId ?? null;
    if (clusterId !== null) checkClusterId(clusterId);
    const segmentBytes = options.segmentBytes ?? SEGMENT_BYTES_DEFAULT;
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes < SEGMENT_BYTES_MIN) {
      throw new RangeError(`segmentBytes must be an integer >= ${SEGMENT_BYTES_MIN}`);
    }
    await ensureDir(dir);
    const lock = await Deno.open(join(dir, LOCK_FILE), {
      write: true,
      create: true,
      mode: FILE_MODE,
    });
    try {
      if (!(await lock.tryLock(true))) {
        throw new Error(`Storage directory ${dir} is in use by another process (${LOCK_FILE})`);
      }
      const identity = await claimIdentity(dir, { nodeId: options.nodeId, clusterId });
      const walDir = join(dir, "wal");
      const snapDir = join(dir, "snap");
      await ensureDir(walDir);
      await ensureDir(snapDir);
      for (const d of [dir, walDir, snapDir]) await removeTempFiles(d);
      const read = await readDirectory(dir, identity.nodeId, true);
      await setAside(snapDir, read.broken, read.stale);
      const last = read.segments[read.segments.length - 1]!;
      const tail = await Deno.open(join(walDir, last.name), { write: true, append: true });
      return new WalStorage(dir, identity, segmentBytes, lock, read, tail);
    } catch (error) {
      lock.close();
      throw error;
    }
  }

  /** Who the directory belongs to. */
  get identity(): StorageIdentity {
    return { ...this.#identity };
  }

  /**
   * What the core restarts from (read from disk; the first call after open
   * returns what open read).
   *
   * @returns hard state, snapshot and the entries after it
   */
  load(): Promise<LoadedState> {
    return this.#run(async () => {
      this.#usable();
      const pending = this.#pending;
      this.#pending = null;
      if (pending) return pending;
      return (await readDirectory(this.dir, this.#identity.nodeId, false)).state;
    });
  }

  /**
   * Make one Ready durable with one fdatasync (a snapshot from the leader
   * costs its own file write and syncs first).
   *
   * @param update snapshot, entries, hard state
   * @returns once durable
   */
  save(update: SaveUpdate): Promise<void> {
    return this.#run(async () => {
      this.#usable();
      const { snapshot, entries, hardState } = update;
      if (snapshot) assertSnapshot(snapshot);
      assertEntries(entries);
      if (hardState) assertHardState(hardState);
      // Decide everything before writing anything.
      let marker: SnapshotMarker | null = null;
      let keepsLog = true;
      if (snapshot && snapshot.meta.index > this.#snapIndex) {
        const { index, term } = snapshot.meta;
        keepsLog = this.#termAt(index) === term;
        marker = { index, term, keepsLog };
      }
      const floor = marker ? marker.index : this.#snapIndex;
      const last = keepsLog ? this.#lastIndex() : floor;
      const first = entries[0];
      if (first) {
        assert(
          first.index > floor && first.index <= last + 1,
          () => `entries start at ${first.index}; the log holds ${floor + 1}..${last}`,
        );
      }
      if (!marker && !first && !hardState) return;
      await this.#guard(async () => {
        if (snapshot && marker) await writeSnapshotFile(this.#snapDir, snapshot);
        if (this.#tailSize >= this.#segmentBytes) await this.#rollover();
        const frame = encodeBatch(marker, hardState, entries);
        writeAllSync(this.#tail, frame);
        await this.#tail.syncData();
        this.#tailSize += frame.length;
      });
      this.#pending = null;
      const tail = this.#segments[this.#segments.length - 1]!;
      if (marker) {
        this.#terms = keepsLog ? this.#terms.slice(marker.index - this.#snapIndex) : [];
        this.#snapIndex = marker.index;
        tail.maxIndex = Math.max(tail.maxIndex, marker.index);
      }
      if (first) {
        this.#terms.length = first.index - this.#snapIndex - 1;
        for (const e of entries) this.#terms.push(e.term);
        tail.maxIndex = Math.max(tail.maxIndex, this.#lastIndex());
      }
      if (hardState) this.#hardState = { ...hardState };
      if (marker) await this.#guard(() => this.#compact());
    });
  }

  /**
   * Store a snapshot this node made, then drop old snapshots and segments.
   *
   * @param snapshot a snapshot of applied entries; the log holds its last entry
   * @returns once the snapshot file is durable and compaction done
   */
  saveSnapshot(snapshot: Snapshot): Promise<void> {
    return this.#run(async () => {
      this.#usable();
      assertSnapshot(snapshot);
      const { index, term } = snapshot.meta;
      if (index <= this.#snapIndex) return;
      if (this.#termAt(index) !== term) {
        throw new RangeError(`the log does not hold index ${index} with term ${term}`);
      }
      await this.#guard(() => writeSnapshotFile(this.#snapDir, snapshot));
      this.#pending = null;
      this.#terms = this.#terms.slice(index - this.#snapIndex);
      this.#snapIndex = index;
      await this.#guard(() => this.#compact());
    });
  }

  /**
   * Record the cluster id the first time; the same id again is a no-op.
   *
   * @param clusterId the cluster id
   * @returns once durable; StorageIdentityError when another id is recorded
   */
  setClusterId(clusterId: string): Promise<void> {
    return this.#run(async () => {
      this.#usable();
      checkClusterId(clusterId);
      const current = this.#identity;
      if (current.clusterId === clusterId) return;
      if (current.clusterId !== null) {
        throw new StorageIdentityError(this.dir, { nodeId: current.nodeId, clusterId }, current);
      }
      const next = { nodeId: current.nodeId, clusterId };
      await this.#guard(() => writeIdentity(this.dir, next));
      this.#identity = next;
    });
  }

  /**
   * Close the files and release the directory. Later calls reject.
   *
   * @returns once closed
   */
  close(): Promise<void> {
    return this.#run(() => {
      if (this.#closed) return Promise.resolve();
      this.#closed = true;
      this.#tail.close();
      this.#lock.close();
      return Promise.resolve();
    });
  }

  #run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(fn);
    this.#queue = result.then(() => {}, () => {});
    return result;
  }

  #usable(): void {
    if (this.#closed) throw new Error(`WalStorage ${this.dir} is closed`);
    if (this.#failed !== null) {
      throw new Error(`WalStorage ${this.dir} failed earlier; reopen it`, { cause: this.#failed });
    }
  }

  /** Run I/O; a failure leaves the storage failed. */
  async #guard<T>(io: () => Promise<T>): Promise<T> {
    try {
      return await io();
    } catch (error) {
      this.#failed = error;
      throw error;
    }
  }

  #lastIndex(): number {
    return this.#snapIndex + this.#terms.length;
  }

  #termAt(index: number): number | null {
    if (index <= this.#snapIndex || index > this.#lastIndex()) return null;
    return this.#terms[index - this.#snapIndex - 1]!;
  }

  /** Close the last segment (already synced) and start the next one. */
  async #rollover(): Promise<void> {
    const last = this.#segments[this.#segments.length - 1]!;
    const created = await createSegment(this.#walDir, {
      nodeId: this.#identity.nodeId,
      seq: last.seq + 1,
      firstIndex: this.#lastIndex() + 1,
      hardState: this.#hardState,
    });
    this.#tail.close();
    this.#tail = created.file;
    this.#tailSize = created.size;
    this.#segments.push({ seq: last.seq + 1, name: created.name, maxIndex: 0 });
  }

  /**
   * Keep the newest SNAPSHOTS_KEPT snapshots, and delete the segments (never
   * the last) whose every entry is at or below the older kept snapshot.
   */
  async #compact(): Promise<void> {
    const snapshots = await listSnapshots(this.#snapDir);
    const doomed = snapshots.slice(SNAPSHOTS_KEPT);
    for (const s of doomed) await removeIfThere(join(this.#snapDir, s.name));
    if (doomed.length > 0) await syncDir(this.#snapDir);
    const floor = snapshots.length >= SNAPSHOTS_KEPT ? snapshots[SNAPSHOTS_KEPT - 1]!.index : 0;
    let removed = 0;
    while (this.#segments.length > 1 && this.#segments[0]!.maxIndex <= floor) {
      await removeIfThere(join(this.#walDir, this.#segments[0]!.name));
      this.#segments.shift();
      removed++;
    }
    if (removed > 0) await syncDir(this.#walDir);
  }
}
