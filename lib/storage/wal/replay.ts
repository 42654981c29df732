/**
 * Rebuilding the log from the write-ahead log's records, and choosing the
 * snapshot to restart from.
 *
 * Replay rules, record by record in segment order:
 * - a batch's entries starting at index i replace every entry >= i (suffix
 *   truncation on conflict); a batch starting past the end of the log is
 *   corruption (a gap);
 * - a snapshot marker (index S, term T) either kept the log (it held entry S
 *   with term T) or discarded it (the log restarts at S + 1), as recorded;
 * - the last hard state wins (each segment header carries the one current
 *   when the segment was created).
 *
 * To bound memory, entries at or below the oldest snapshot on disk keep only
 * their term (needed by the rules above); nothing at or below it is returned.
 *
 * @module
 */

import { assert } from "../../assert.ts";
import type { Entry, HardState, Snapshot } from "../../raft/types.ts";
import { type LoadedState, StorageCorruptError } from "../raft_storage.ts";
import type { Batch } from "./record.ts";
import { readSnapshotFile, type SnapshotName } from "./snapshot_file.ts";

/** The log as the records rebuild it. */
export class ReplayLog {
  readonly #keepAbove: number;
  /** index of #terms[0]; 0 while no position is known */
  #first = 0;
  #terms: number[] = [];
  /** entries with index > max(#keepAbove, #first - 1), contiguous to the end */
  #kept: Entry[] = [];
  /** the latest hard state */
  hardState: HardState = { term: 0, vote: 0, commit: 0 };
  /** highest index of a snapshot marker seen */
  markerIndex = 0;

  /** @param keepAbove entries at or below this index keep only their term */
  constructor(keepAbove: number) {
    this.#keepAbove = keepAbove;
  }

  /** index of the first entry known (0 when none) */
  get first(): number {
    return this.#first;
  }

  /** index of the last entry (first - 1 when empty; 0 when nothing is known) */
  get last(): number {
    return this.#first === 0 ? 0 : this.#first + this.#terms.length - 1;
  }

  /** the term of entry `index`, or null when it is not in the log */
  termAt(index: number): number | null {
    if (this.#first === 0 || index < this.#first || index > this.last) return null;
    return this.#terms[index - this.#first]!;
  }

  get #keptFirst(): number {
    return Math.max(this.#first, this.#keepAbove + 1);
  }

  /**
   * Apply one batch record: marker, entries, hard state.
   *
   * @param batch the decoded record
   * @param file the segment it is in (for errors)
   * @param offset its byte offset (for errors)
   */
  apply(batch: Batch, file: string, offset: number): void {
    if (batch.marker) {
      const { index, term, keepsLog } = batch.marker;
      const held = this.termAt(index);
      if (!keepsLog) {
        this.#reset(index + 1);
      } else if (held !== null && held !== term) {
        throw new StorageCorruptError(
          file,
          offset,
          `snapshot marker ${index}/${term} kept a log whose entry ${index} has term ${held}`,
        );
      }
      this.markerIndex = Math.max(this.markerIndex, index);
    }
    if (batch.terms.length > 0) this.#append(batch, file, offset);
    if (batch.hardState) this.hardState = batch.hardState;
  }

  #reset(first: number): void {
    this.#first = first;
    this.#terms = [];
    this.#kept = [];
  }

  #append(batch: Batch, file: string, offset: number): void {
    const start = batch.firstIndex;
    if (this.#first === 0) {
      this.#first = start;
    } else if (start > this.last + 1) {
      throw new StorageCorruptError(
        file,
        offset,
        `entries start at index ${start} but the log ends at ${this.last}`,
      );
    } else if (start <= this.#first) {
      this.#reset(start);
    } else {
      const keptFirst = this.#keptFirst;
      this.#terms.length = start - this.#first;
      this.#kept.length = Math.max(0, start - keptFirst);
      const previous = this.#terms[this.#terms.length - 1]!;
      if (batch.terms[0]! < previous) {
        throw new StorageCorruptError(
          file,
          offset,
          `term ${batch.terms[0]} after term ${previous}`,
        );
      }
    }
    for (const term of batch.terms) this.#terms.push(term);
    for (const e of batch.entries) {
      assert(e.index === this.#keptFirst + this.#kept.length, "kept entries not contiguous");
      this.#kept.push(e);
    }
  }

  /**
   * Why the log cannot continue from a snapshot at (index, term), or null when it can.
   *
   * @param index the snapshot's index (0: no snapshot)
   * @param term the snapshot's term
   * @returns a reason, or null
   */
  gapFrom(index: number, term: number): string | null {
    if (this.#first === 0) return null;
    if (index < this.#first - 1) {
      return `the log starts at index ${this.#first}, after the snapshot at ${index}`;
    }
    if (index > this.last) return `the log ends at index ${this.last}, before ${index}`;
    const held = this.termAt(index);
    if (held !== null && held !== term) {
      return `the log holds index ${index} with term ${held}, the snapshot has term ${term}`;
    }
    return null;
  }

  /** whether entries after `index` were kept with their data */
  keeps(index: number): boolean {
    return index >= this.#keepAbove;
  }

  /**
   * The entries after `index` (which must be at or above the keepAbove bound).
   *
   * @param index the snapshot's index (0: all)
   * @returns the entries, contiguous from index + 1
   */
  entriesAfter(index: number): Entry[] {
    assert(index >= this.#keepAbove, () => `entries after ${index} were not kept`);
    if (this.#first === 0 || index >= this.last) return [];
    const from = index + 1 - this.#keptFirst;
    assert(from >= 0, "entries after the snapshot were not kept");
    return this.#kept.slice(from);
  }
}

/** The outcome of choosing a snapshot. */
export interface ChosenSnapshot {
  /** the newest snapshot that checks out and that the log continues from; null: none */
  snapshot: Snapshot | null;
  /** newer snapshot files that failed their checks (the chosen one is older) */
  broken: StorageCorruptError[];
  /** snapshot files from the leader the log never recorded as installed (a crash in between) */
  stale: SnapshotName[];
}

/**
 * Choose the newest snapshot that checks out and that the log continues from.
 *
 * @param snapDir the snap directory
 * @param walDir the wal directory (for errors)
 * @param candidates the snapshot files, newest first
 * @param log the replayed log
 * @returns the choice; StorageCorruptError when no snapshot and log fit together
 */
export async function chooseSnapshot(
  snapDir: string,
  walDir: string,
  candidates: readonly SnapshotName[],
  log: ReplayLog,
): Promise<ChosenSnapshot> {
  const broken: StorageCorruptError[] = [];
  const stale: SnapshotName[] = [];
  const refuse = (gap: string, what: string): never => {
    const newest = broken[0];
    if (newest) {
      throw new StorageCorruptError(
        newest.file,
        newest.offset,
        `${newest.reason}; ${what} cannot take its place: ${gap}`,
        { cause: newest },
      );
    }
    throw new StorageCorruptError(walDir, null, `the log does not continue from ${what}: ${gap}`);
  };
  for (const candidate of candidates) {
    let snapshot: Snapshot;
    try {
      snapshot = await readSnapshotFile(snapDir, candidate);
    } catch (error) {
      if (!(error instanceof StorageCorruptError)) throw error;
      broken.push(error);
      continue;
    }
    const gap = log.gapFrom(candidate.index, candidate.term);
    if (gap === null) return { snapshot, broken, stale };
    // A snapshot from the leader is written before the log record that
    // installs it; without that record (a crash between the two) it was
    // never acknowledged, and the log is what counts.
    if (candidate.index > log.markerIndex) {
      stale.push(candidate);
      continue;
    }
    refuse(gap, `snapshot ${candidate.name}`);
  }
  const gap = log.gapFrom(0, 0);
  if (gap !== null) refuse(gap, "the start of the log (no snapshot)");
  return { snapshot: null, broken, stale };
}

/**
 * What the core restarts from, given the replayed log and the chosen snapshot.
 *
 * @param log the replayed log (kept entries above the snapshot's index)
 * @param snapshot the chosen snapshot
 * @returns the state (the commit is at least the snapshot's index)
 */
export function loadedState(log: ReplayLog, snapshot: Snapshot | null): LoadedState {
  const index = snapshot?.meta.index ?? 0;
  const hs = log.hardState;
  return {
    hardState: { term: hs.term, vote: hs.vote, commit: Math.max(hs.commit, index) },
    snapshot,
    entries: log.entriesAfter(index),
  };
}
