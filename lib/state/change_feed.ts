/**
 * The change feed: what each applied entry changed, for the publisher that
 * mirrors the state into PostgreSQL.
 *
 * Design: a bounded ring of change records, one per applied entry that
 * changed something (an entry changes at most one thing, so indexes are
 * strictly increasing). A consumer keeps a cursor, the applied index its copy
 * reflects, and asks {@link ChangeFeed.since} for what came after it:
 *
 * - the records with index > cursor, oldest first, at most `limit`; the
 *   consumer reads the *current* state of what they name (kv keys, or the
 *   whole small table for members, settings, identity, primary), writes it,
 *   and moves its cursor to `next`. Reading the current state rather than a
 *   recorded one is what lets the consumer coalesce many writes of one key;
 * - or `resync`, when records after the cursor were dropped (the ring is full,
 *   or the machine was restored from a snapshot after the cursor): the
 *   consumer rewrites its whole copy from the current state and resumes from
 *   the `index` it was given.
 *
 * The ring is bounded by records and by the characters of the keys it holds
 * (a dropped key's string stays alive while its record does).
 *
 * @module
 */

import { assert } from "../assert.ts";

/** What an applied entry changed. */
export type ChangeKind = "kv_put" | "kv_delete" | "members" | "settings" | "identity" | "primary";

/** One change: the entry `index` changed `kind` (and `key`, for kv kinds). */
export interface Change {
  index: number;
  kind: ChangeKind;
  /** the key, for `kv_put` and `kv_delete` */
  key?: string;
}

/** The answer to {@link ChangeFeed.since}. */
export type ChangeBatch =
  /** Changes after the cursor; afterwards the cursor is `next`. */
  | { resync: false; changes: Change[]; next: number }
  /**
   * Changes after the cursor are gone: rewrite the whole copy from the
   * current state (which is at `index`), then continue from `index`.
   */
  | { resync: true; index: number };

/** Default number of change records kept. */
export const CHANGE_FEED_RECORDS_MAX = 65_536;

/** Default number of key characters (UTF-16 units) the kept records may hold. */
export const CHANGE_FEED_KEY_CHARS_MAX = 4 * 1024 * 1024;

/** Default number of changes one call returns. */
export const CHANGE_BATCH_MAX = 4096;

const KINDS: readonly ChangeKind[] = [
  "kv_put",
  "kv_delete",
  "members",
  "settings",
  "identity",
  "primary",
];
const KIND_CODES: ReadonlyMap<ChangeKind, number> = new Map(KINDS.map((k, i) => [k, i]));

/** Bounds of a {@link ChangeFeed}. */
export interface ChangeFeedOptions {
  /** records kept; @default {@link CHANGE_FEED_RECORDS_MAX} */
  recordsMax?: number;
  /** key characters kept; @default {@link CHANGE_FEED_KEY_CHARS_MAX} */
  keyCharsMax?: number;
}

/** A bounded ring of change records. */
export class ChangeFeed {
  readonly #capacity: number;
  readonly #keyCharsMax: number;
  #indexes: Float64Array;
  #kinds: Uint8Array;
  #keys: (string | undefined)[];
  /** ring position of the oldest record */
  #head = 0;
  #count = 0;
  #keyChars = 0;
  /** Invariant: every change with index > #floor is in the ring. */
  #floor: number;

  /**
   * @param floor the applied index the feed starts at: changes at or before it
   *   are unknown (a cursor below it must resync)
   */
  constructor(floor: number, options: ChangeFeedOptions = {}) {
    const capacity = options.recordsMax ?? CHANGE_FEED_RECORDS_MAX;
    assert(Number.isSafeInteger(capacity) && capacity >= 1, "ChangeFeed: bad recordsMax");
    this.#capacity = capacity;
    this.#keyCharsMax = options.keyCharsMax ?? CHANGE_FEED_KEY_CHARS_MAX;
    this.#indexes = new Float64Array(capacity);
    this.#kinds = new Uint8Array(capacity);
    this.#keys = new Array<string | undefined>(capacity).fill(undefined);
    this.#floor = floor;
  }

  /** Changes at or before this index are no longer (or never were) kept. */
  get floor(): number {
    return this.#floor;
  }

  /** Number of records kept. */
  get size(): number {
    return this.#count;
  }

  /** Record a change; `index` must exceed every recorded index and the floor. */
  push(index: number, kind: ChangeKind, key?: string): void {
    const last = this.#count > 0 ? this.#indexAt(this.#count - 1) : this.#floor;
    assert(index > last, () => `ChangeFeed.push: index ${index} after ${last}`);
    if (this.#count === this.#capacity) this.#dropOldest();
    const at = (this.#head + this.#count) % this.#capacity;
    this.#indexes[at] = index;
    this.#kinds[at] = KIND_CODES.get(kind)!;
    this.#keys[at] = key;
    this.#count++;
    if (key !== undefined) {
      this.#keyChars += key.length;
      while (this.#keyChars > this.#keyCharsMax && this.#count > 1) this.#dropOldest();
    }
  }

  #dropOldest(): void {
    assert(this.#count > 0, "ChangeFeed: nothing to drop");
    const key = this.#keys[this.#head];
    if (key !== undefined) this.#keyChars -= key.length;
    this.#floor = this.#indexes[this.#head]!;
    this.#keys[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#capacity;
    this.#count--;
  }

  #indexAt(i: number): number {
    return this.#indexes[(this.#head + i) % this.#capacity]!;
  }

  /**
   * What changed after `cursor`.
   *
   * @param cursor the applied index the consumer's copy reflects
   * @param lastApplied the state's applied index now (the `index` of a resync,
   *   and `next` when every change is returned)
   * @param limit most changes to return
   */
  since(cursor: number, lastApplied: number, limit = CHANGE_BATCH_MAX): ChangeBatch {
    assert(Number.isSafeInteger(cursor) && cursor >= 0, `ChangeFeed.since: bad cursor ${cursor}`);
    assert(Number.isSafeInteger(limit) && limit >= 1, `ChangeFeed.since: bad limit ${limit}`);
    if (cursor < this.#floor) return { resync: true, index: lastApplied };
    // First record with index > cursor (binary search: indexes increase).
    let lo = 0;
    let hi = this.#count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#indexAt(mid) <= cursor) lo = mid + 1;
      else hi = mid;
    }
    const end = Math.min(this.#count, lo + limit);
    const changes: Change[] = [];
    for (let i = lo; i < end; i++) {
      const at = (this.#head + i) % this.#capacity;
      const change: Change = { index: this.#indexes[at]!, kind: KINDS[this.#kinds[at]!]! };
      const key = this.#keys[at];
      if (key !== undefined) change.key = key;
      changes.push(change);
    }
    const next = end < this.#count ? this.#indexAt(end - 1) : Math.max(cursor, lastApplied);
    return { resync: false, changes, next };
  }
}
