/**
 * The fake disk of one simulated node, modelled on lib/storage's write-ahead
 * log (DESIGN.md, "Storage"):
 *
 * - each save (one Ready's snapshot, entries and hard state) is ONE record,
 *   first written (it reached the OS) and then synced (`fdatasync` returned);
 * - a crash while a record is written but not synced keeps either none of it
 *   (a torn last record is cut off whole on open) or all of it (the OS had
 *   written it back): both are legal for a write nobody was told about;
 * - a bit flipped in a record before the tail fails its checksum, and
 *   {@link Disk.open} refuses the disk (the agent's StorageCorruptError): the
 *   node never votes, acknowledges or serves from it.
 *
 * The disk holds the state as written (what the node and the checker see);
 * the unsynced record keeps what it changed, so a crash that loses it can put
 * the synced state back.
 *
 * @module
 */

import type { Entry, HardState, PersistentState, Snapshot } from "../../lib/raft/mod.ts";
import { assert } from "../../lib/assert.ts";
import type { LogView } from "./checker.ts";
import type { Rng } from "./rng.ts";

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();

/** The replicated state machine: how far it applied and a hash of what. */
export interface StateMachine {
  applied: number;
  /** hash chain of every entry key applied, 1..applied */
  hash: number;
  /** normal entries with data (client proposals) applied */
  proposals: number;
}

/**
 * Encode a state machine as snapshot data.
 *
 * @param sm the state to encode
 * @returns JSON bytes
 * @example
 * ```ts
 * const sm = { applied: 3, hash: 7, proposals: 1 };
 * console.assert(decodeStateMachine(encodeStateMachine(sm)).applied === 3);
 * ```
 */
export function encodeStateMachine(sm: StateMachine): Uint8Array {
  return ENCODER.encode(JSON.stringify(sm));
}

/**
 * Decode snapshot data written by {@link encodeStateMachine}.
 *
 * @param data snapshot data
 * @returns the state machine; TypeError when the data is not one
 */
export function decodeStateMachine(data: Uint8Array): StateMachine {
  const value = JSON.parse(DECODER.decode(data)) as Partial<StateMachine>;
  if (
    typeof value.applied !== "number" || typeof value.hash !== "number" ||
    typeof value.proposals !== "number"
  ) {
    throw new TypeError(`Cannot decode state machine snapshot: ${DECODER.decode(data)}`);
  }
  return { applied: value.applied, hash: value.hash, proposals: value.proposals };
}

/** {@link Disk.open} of a disk with a corrupt record (the agent's StorageCorruptError). */
export class CorruptRecordError extends Error {
  override name = "CorruptRecordError";
}

/** What a crash did to the record written but not yet synced. */
export type CrashOutcome =
  /** no record was unsynced */
  | "none"
  /** the whole record had reached the disk: it is kept */
  | "kept"
  /** torn: cut off whole on open */
  | "lost";

/** What one node's disk holds: as written, and what survives a crash. */
export class Disk implements LogView {
  hardState: HardState;
  snapshot: Snapshot | null;
  /** entries after the snapshot, contiguous */
  entries: Entry[];
  /** durable together with `applied` */
  sm: StateMachine;
  /** records synced so far (a bootstrap or an empty disk counts as its first) */
  records = 1;
  /** which record a bit flip corrupted; null while every record checks out */
  corrupt: string | null = null;
  /**
   * Undo steps of the record written but not yet synced, latest last; null
   * when every record written is synced.
   */
  #unsynced: (() => void)[] | null = null;

  constructor(state: PersistentState) {
    this.hardState = { ...state.hardState };
    this.snapshot = state.snapshot;
    this.entries = state.entries.slice();
    this.sm = { applied: state.applied, hash: 0, proposals: 0 };
  }

  get snapshotIndex(): number {
    return this.snapshot?.meta.index ?? 0;
  }

  get snapshotTerm(): number {
    return this.snapshot?.meta.term ?? 0;
  }

  get lastIndex(): number {
    return this.snapshotIndex + this.entries.length;
  }

  /** True while a record is written but not synced. */
  get unsynced(): boolean {
    return this.#unsynced !== null;
  }

  entryAt(index: number): Entry | undefined {
    const k = index - this.snapshotIndex - 1;
    return k >= 0 ? this.entries[k] : undefined;
  }

  /** Term at `index`: 0 before the log, the snapshot's at its index, undefined if unknown. */
  termAt(index: number): number | undefined {
    if (index === 0) return 0;
    if (index === this.snapshotIndex) return this.snapshotTerm;
    return this.entryAt(index)?.term;
  }

  /**
   * Start writing one record. Saves are written one at a time: the previous
   * one must be synced (or lost in a crash) first.
   */
  beginRecord(): void {
    assert(this.#unsynced === null, "a record is written while the previous one is unsynced");
    this.#unsynced = [];
  }

  /** In the current record: a snapshot from the leader, with the state machine it holds. */
  writeSnapshot(snapshot: Snapshot, sm: StateMachine): void {
    const undo = this.#undoSteps();
    const { snapshot: oldSnapshot, entries: oldEntries, sm: oldSm } = this;
    undo.push(() => {
      this.snapshot = oldSnapshot;
      this.entries = oldEntries;
      this.sm = oldSm;
    });
    this.snapshot = snapshot;
    this.entries = [];
    this.sm = sm;
  }

  /** In the current record: entries from `entries[0].index` on replace the log's suffix. */
  writeEntries(entries: readonly Entry[]): void {
    const undo = this.#undoSteps();
    const first = entries[0];
    assert(first !== undefined, "an empty append");
    const log = this.entries;
    const keep = first.index - this.snapshotIndex - 1;
    assert(keep >= 0 && keep <= log.length, `append at ${first.index} leaves a gap`);
    const replaced = log.slice(keep);
    undo.push(() => {
      log.length = keep;
      for (const e of replaced) log.push(e);
    });
    log.length = keep;
    for (const e of entries) log.push(e);
  }

  /** In the current record: the hard state. */
  writeHardState(hardState: HardState): void {
    const undo = this.#undoSteps();
    const old = this.hardState;
    undo.push(() => {
      this.hardState = old;
    });
    this.hardState = { ...hardState };
  }

  /** `fdatasync` returned: the record written is durable. */
  sync(): void {
    assert(this.#unsynced !== null, "sync without a record written");
    this.#unsynced = null;
    this.records++;
  }

  /**
   * The node crashed: a record written but not synced is kept whole
   * (`keepUnsynced`) or cut off whole, putting back the synced state.
   *
   * @param keepUnsynced whether the OS had written the unsynced record back
   * @returns what became of the unsynced record
   */
  crash(keepUnsynced: boolean): CrashOutcome {
    const undo = this.#unsynced;
    if (undo === null) return "none";
    if (keepUnsynced) {
      this.sync();
      return "kept";
    }
    for (let k = undo.length - 1; k >= 0; k--) undo[k]!();
    this.#unsynced = null;
    return "lost";
  }

  /**
   * Flip a bit in any synced record, the tail included: the WAL tells a
   * flipped bit from a torn write (lib/storage/wal/torn.ts), so the node
   * refuses to start either way. Only while the node is down.
   *
   * @param rng chooses the record
   * @returns the record corrupted, or null when there is none (or one already is)
   */
  flipBit(rng: Rng): string | null {
    assert(this.#unsynced === null, "a bit flip while a record is unsynced");
    if (this.records < 1 || this.corrupt !== null) return null;
    this.corrupt = `record ${rng.range(1, this.records)} of ${this.records}`;
    return this.corrupt;
  }

  /**
   * What a restarting node is given (copies: the core must not share our
   * arrays). A corrupt record makes the disk unusable, as on the agent.
   *
   * @returns the durable state; CorruptRecordError when a record is corrupt
   */
  open(): PersistentState {
    assert(this.#unsynced === null, "a disk opened with an unsynced record");
    if (this.corrupt !== null) {
      throw new CorruptRecordError(`${this.corrupt} fails its checksum`);
    }
    return {
      hardState: { ...this.hardState },
      snapshot: this.snapshot,
      entries: this.entries.slice(),
      applied: this.sm.applied,
    };
  }

  /** Apply committed entries: the state machine moves on (never ahead of a sync). */
  apply(sm: StateMachine): void {
    assert(this.#unsynced === null, "entries applied before their record is synced");
    this.sm = sm;
  }

  /**
   * The node's own snapshot at `snapshot.meta.index`: a file of its own,
   * written atomically (temporary file, sync, rename); the log before it is
   * compacted away.
   */
  compact(snapshot: Snapshot): void {
    assert(this.#unsynced === null, "a snapshot taken while a record is unsynced");
    const index = snapshot.meta.index;
    this.entries = this.entries.slice(index - this.snapshotIndex);
    this.snapshot = snapshot;
  }

  #undoSteps(): (() => void)[] {
    const undo = this.#unsynced;
    assert(undo !== null, "a write outside a record");
    return undo;
  }
}
