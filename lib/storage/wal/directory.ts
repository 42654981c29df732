/**
 * Reading a storage directory as a whole: the identity check, the segments in
 * order, their replay (cutting a torn tail off the last one), the choice of
 * snapshot, and what the core restarts from.
 *
 * @module
 */

import { join } from "node:path";
import { assert } from "../../assert.ts";
import {
  type LoadedState,
  StorageCorruptError,
  type StorageIdentity,
  StorageIdentityError,
} from "../raft_storage.ts";
import { listNames, syncDir } from "./files.ts";
import { IDENTITY_FILE, readIdentity, writeIdentity } from "./identity.ts";
import { chooseSnapshot, loadedState, ReplayLog } from "./replay.ts";
import {
  createSegment,
  parseSegmentName,
  scanSegment,
  SEGMENT_SUFFIX,
  type SegmentName,
} from "./segment.ts";
import { listSnapshots, SNAPSHOT_SUFFIX, type SnapshotName } from "./snapshot_file.ts";

/** What opening the directory repaired or set aside, for the agent's log. */
export interface WalRecovery {
  /** bytes of a torn last record cut off the last segment (0: none) */
  tornBytes: number;
  /** the segment the torn record was in */
  tornFile: string | null;
  /** which case of the torn-tail rule (wal/torn.ts) the cut record met */
  tornReason: string | null;
  /** snapshot files that failed their checks, renamed to *.broken */
  brokenSnapshots: string[];
  /** snapshot files from the leader never recorded as installed (a crash), removed */
  staleSnapshots: string[];
}

/** A segment, and the highest index written to it. */
export interface SegmentInfo {
  seq: number;
  name: string;
  /** highest entry or snapshot-marker index written to the segment (0: none) */
  maxIndex: number;
}

/** What reading the directory found. */
export interface ReadResult {
  state: LoadedState;
  segments: SegmentInfo[];
  tailSize: number;
  recovery: WalRecovery;
  broken: StorageCorruptError[];
  stale: SnapshotName[];
}

/**
 * Remove a file that may already be gone.
 *
 * @param path the file
 * @returns once it is gone
 */
export async function removeIfThere(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * Check the identity file against the caller, creating it (fresh directory)
 * or completing it (cluster id learned).
 *
 * @param dir the storage directory
 * @param wanted the caller's node id and cluster id (null: not known)
 * @returns the directory's identity; StorageIdentityError when it is another
 *   node's or cluster's, StorageCorruptError when a log has no identity file
 */
export async function claimIdentity(
  dir: string,
  wanted: StorageIdentity,
): Promise<StorageIdentity> {
  const found = await readIdentity(dir);
  if (found === null) {
    const logged = [
      ...(await listNamesIfThere(join(dir, "wal"), SEGMENT_SUFFIX)),
      ...(await listNamesIfThere(join(dir, "snap"), SNAPSHOT_SUFFIX)),
    ];
    if (logged.length > 0) {
      throw new StorageCorruptError(
        join(dir, IDENTITY_FILE),
        null,
        `missing, yet the directory holds ${logged.length} log or snapshot files`,
      );
    }
    await writeIdentity(dir, wanted);
    return wanted;
  }
  if (found.nodeId !== wanted.nodeId) throw new StorageIdentityError(dir, wanted, found);
  if (wanted.clusterId === null || found.clusterId === wanted.clusterId) return found;
  if (found.clusterId !== null) throw new StorageIdentityError(dir, wanted, found);
  await writeIdentity(dir, wanted);
  return wanted;
}

async function listNamesIfThere(dir: string, suffix: string): Promise<string[]> {
  try {
    return await listNames(dir, suffix);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

/**
 * Rename broken snapshots to *.broken (kept for the operator); remove stale ones.
 *
 * @param snapDir the snap directory
 * @param broken snapshot files that failed their checks
 * @param stale snapshot files never recorded as installed
 * @returns once durable
 */
export async function setAside(
  snapDir: string,
  broken: StorageCorruptError[],
  stale: SnapshotName[],
): Promise<void> {
  for (const b of broken) await Deno.rename(b.file, b.file + ".broken");
  for (const s of stale) await removeIfThere(join(snapDir, s.name));
  if (broken.length + stale.length > 0) await syncDir(snapDir);
}

/** The segments of the wal directory, in order, checked to be consecutive. */
async function listSegments(walDir: string): Promise<SegmentName[]> {
  const segments: SegmentName[] = [];
  for (const name of await listNames(walDir, SEGMENT_SUFFIX)) {
    const parsed = parseSegmentName(name);
    if (parsed) segments.push(parsed);
  }
  segments.sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < segments.length; i++) {
    const [prev, cur] = [segments[i - 1]!, segments[i]!];
    if (cur.seq !== prev.seq + 1) {
      throw new StorageCorruptError(
        join(walDir, cur.name),
        null,
        `segment ${cur.seq} follows segment ${prev.seq}: a segment is missing`,
      );
    }
  }
  return segments;
}

/**
 * Read the whole directory: replay the segments, choose the snapshot, and put
 * together the state. With `repair`, a torn tail is cut off and a directory
 * without segments gets its first one.
 *
 * @param dir the storage directory
 * @param nodeId the node the segments must have been written by
 * @param repair whether to cut a torn tail (on open) or refuse it (while running)
 * @returns the state and what is known of the segments; StorageCorruptError on corruption
 */
export async function readDirectory(
  dir: string,
  nodeId: number,
  repair: boolean,
): Promise<ReadResult> {
  const walDir = join(dir, "wal");
  const snapDir = join(dir, "snap");
  const names = await listSegments(walDir);
  const candidates = await listSnapshots(snapDir);
  const recovery: WalRecovery = {
    tornBytes: 0,
    tornFile: null,
    tornReason: null,
    brokenSnapshots: [],
    staleSnapshots: [],
  };
  if (names.length === 0) {
    if (candidates.length > 0) {
      throw new StorageCorruptError(walDir, null, "no log segment, yet snapshots exist");
    }
    assert(repair, "the last segment disappeared");
    const hardState = { term: 0, vote: 0, commit: 0 };
    const created = await createSegment(walDir, { nodeId, seq: 1, firstIndex: 1, hardState });
    created.file.close();
    return {
      state: { hardState, snapshot: null, entries: [] },
      segments: [{ seq: 1, name: created.name, maxIndex: 0 }],
      tailSize: created.size,
      recovery,
      broken: [],
      stale: [],
    };
  }
  const oldest = candidates[candidates.length - 1]?.index ?? 0;
  let replay = await replaySegments(walDir, names, nodeId, oldest, repair);
  const chosen = await chooseSnapshot(snapDir, walDir, candidates, replay.log);
  const index = chosen.snapshot?.meta.index ?? 0;
  if (!replay.log.keeps(index)) replay = await replaySegments(walDir, names, nodeId, index, false);
  recovery.tornBytes = replay.tornBytes;
  recovery.tornFile = replay.tornBytes > 0 ? join(walDir, names[names.length - 1]!.name) : null;
  recovery.tornReason = replay.tornReason;
  recovery.brokenSnapshots = chosen.broken.map((b) => b.file);
  recovery.staleSnapshots = chosen.stale.map((s) => join(snapDir, s.name));
  return {
    state: loadedState(replay.log, chosen.snapshot),
    segments: replay.segments,
    tailSize: replay.tailSize,
    recovery,
    broken: chosen.broken,
    stale: chosen.stale,
  };
}

/** What replaying the segments found. */
interface Replayed {
  log: ReplayLog;
  segments: SegmentInfo[];
  tailSize: number;
  /** bytes cut off the last segment (0: none) */
  tornBytes: number;
  tornReason: string | null;
}

async function replaySegments(
  walDir: string,
  names: readonly SegmentName[],
  nodeId: number,
  keepAbove: number,
  repair: boolean,
): Promise<Replayed> {
  const log = new ReplayLog(keepAbove);
  const segments: SegmentInfo[] = [];
  let tailSize = 0;
  let tornBytes = 0;
  let tornReason: string | null = null;
  for (let i = 0; i < names.length; i++) {
    const { seq, name } = names[i]!;
    const path = join(walDir, name);
    const info: SegmentInfo = { seq, name, maxIndex: 0 };
    const last = i === names.length - 1;
    const scan = await scanSegment(path, { last, keepAbove }, {
      header: (header) => {
        if (header.seq !== seq) {
          throw new StorageCorruptError(path, 0, `header says segment ${header.seq}`);
        }
        if (header.nodeId !== nodeId) {
          throw new StorageCorruptError(path, 0, `written by node ${header.nodeId}`);
        }
        // The hard state current when the segment was created (older segments may be gone).
        log.hardState = header.hardState;
      },
      batch: (batch, offset) => {
        log.apply(batch, path, offset);
        const top = batch.terms.length > 0 ? batch.firstIndex + batch.terms.length - 1 : 0;
        info.maxIndex = Math.max(info.maxIndex, top, batch.marker?.index ?? 0);
      },
    });
    segments.push(info);
    if (scan.torn) {
      if (!repair) throw new StorageCorruptError(path, scan.validEnd, "torn record while running");
      await truncateTail(path, scan.validEnd);
      tornBytes = scan.size - scan.validEnd;
      tornReason = scan.tornReason;
    }
    tailSize = scan.validEnd;
  }
  return { log, segments, tailSize, tornBytes, tornReason };
}

/** Cut a torn tail off the last segment, durably. */
async function truncateTail(path: string, validEnd: number): Promise<void> {
  const file = await Deno.open(path, { write: true });
  try {
    await file.truncate(validEnd);
    await file.syncData();
  } finally {
    file.close();
  }
}
