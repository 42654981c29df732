/**
 * An ordered index of the key-value store's records, in code point order
 * (UTF-8 byte order, PostgreSQL's `collate "C"`), for ordered scans.
 *
 * Items are ordered by their *sort form* ({@link sortForm}): the key with its
 * UTF-16 units remapped so that JavaScript's native comparison (by unit) is
 * code point order. A key without a unit >= U+D800 is its own sort form, so
 * the usual key costs no extra memory, and comparisons run at native speed.
 *
 * The structure is a list of sorted chunks, as Python's sortedcontainers: a
 * binary search over the chunks' last forms finds the chunk, a second one the
 * place inside it. Insert and delete cost O(log n) comparisons plus a move of
 * at most {@link CHUNK_ITEMS_MAX} references; a scan from any key costs
 * O(log n) to start and O(1) per item after that.
 *
 * @module
 */

import { assert } from "../assert.ts";

/** A chunk is split in two when it grows beyond this many items. */
const CHUNK_ITEMS_MAX = 1024;

/** A chunk is merged with a neighbour when it shrinks below this many items. */
const CHUNK_ITEMS_MIN = 128;

const HIGH_UNITS = /[\ud800-\uffff]/;

/**
 * The sort form of `key`: surrogates (U+D800..U+DFFF) move above every other
 * unit and U+E000..U+FFFF move down to make room, so that comparing sort forms
 * with `<` orders keys by code point. A bijection on UTF-16 units.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * // By UTF-16 unit U+FF5E sorts after U+1F600; by code point, before.
 * assert.ok(sortForm("\uff5e") < sortForm("\u{1f600}"));
 * assert.equal(sortForm("abc"), "abc");
 * ```
 */
export function sortForm(key: string): string {
  if (!HIGH_UNITS.test(key)) return key;
  let out = "";
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    out += String.fromCharCode(c >= 0xe000 ? c - 0x800 : c >= 0xd800 ? c + 0x2000 : c);
  }
  return out;
}

/** What the index orders: anything with a sort form. */
export interface Sortable {
  readonly form: string;
}

/** First position in `items` whose form is >= `form` (items.length when none). */
function lowerBound(items: readonly Sortable[], form: string): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (items[mid]!.form < form) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First position in `forms` whose element is >= `form` (forms.length when none). */
function lowerBoundForm(forms: readonly string[], form: string): number {
  let lo = 0;
  let hi = forms.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (forms[mid]! < form) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Items ordered by form; no two with the same form. */
export class SortedIndex<T extends Sortable> {
  /** Invariant: every chunk is non-empty and sorted; chunk i's forms all sort before chunk i+1's. */
  #chunks: T[][] = [];
  /** Invariant: #lasts[i] is the form of the last item of #chunks[i]. */
  #lasts: string[] = [];
  #size = 0;

  /**
   * An index holding `items`, which must be in strictly increasing order of
   * form (the caller checked it). O(n).
   */
  static fromSorted<T extends Sortable>(items: readonly T[]): SortedIndex<T> {
    const index = new SortedIndex<T>();
    const half = CHUNK_ITEMS_MAX / 2;
    for (let i = 0; i < items.length; i += half) {
      const chunk = items.slice(i, i + half);
      index.#chunks.push(chunk);
      index.#lasts.push(chunk[chunk.length - 1]!.form);
    }
    index.#size = items.length;
    return index;
  }

  /** Number of items. */
  get size(): number {
    return this.#size;
  }

  /** Add `item`, whose form must not be in the index. */
  insert(item: T): void {
    const form = item.form;
    this.#size++;
    if (this.#chunks.length === 0) {
      this.#chunks.push([item]);
      this.#lasts.push(form);
      return;
    }
    let i = lowerBoundForm(this.#lasts, form);
    if (i === this.#chunks.length) {
      // Beyond every item: append to the last chunk.
      i--;
      this.#chunks[i]!.push(item);
      this.#lasts[i] = form;
    } else {
      const chunk = this.#chunks[i]!;
      const j = lowerBound(chunk, form);
      assert(
        chunk[j]?.form !== form,
        () => `SortedIndex.insert: ${JSON.stringify(form)} is present`,
      );
      chunk.splice(j, 0, item);
    }
    const chunk = this.#chunks[i]!;
    if (chunk.length > CHUNK_ITEMS_MAX) {
      const upper = chunk.splice(chunk.length >>> 1);
      this.#chunks.splice(i + 1, 0, upper);
      this.#lasts[i] = chunk[chunk.length - 1]!.form;
      this.#lasts.splice(i + 1, 0, upper[upper.length - 1]!.form);
    }
  }

  /** Remove the item of form `form`, which must be in the index. */
  delete(form: string): void {
    const i = lowerBoundForm(this.#lasts, form);
    const chunk = this.#chunks[i];
    assert(chunk !== undefined, () => `SortedIndex.delete: ${JSON.stringify(form)} is absent`);
    const j = lowerBound(chunk, form);
    assert(chunk[j]?.form === form, () => `SortedIndex.delete: ${JSON.stringify(form)} is absent`);
    chunk.splice(j, 1);
    this.#size--;
    if (chunk.length === 0) {
      this.#chunks.splice(i, 1);
      this.#lasts.splice(i, 1);
      return;
    }
    this.#lasts[i] = chunk[chunk.length - 1]!.form;
    if (chunk.length < CHUNK_ITEMS_MIN && this.#chunks.length > 1) {
      this.#merge(i > 0 ? i - 1 : i);
    }
  }

  /** Merge chunks `i` and `i + 1`, splitting again if the result is too large. */
  #merge(i: number): void {
    const merged = this.#chunks[i]!.concat(this.#chunks[i + 1]!);
    if (merged.length > CHUNK_ITEMS_MAX) {
      const upper = merged.splice(merged.length >>> 1);
      this.#chunks.splice(i, 2, merged, upper);
      this.#lasts.splice(i, 2, merged[merged.length - 1]!.form, upper[upper.length - 1]!.form);
    } else {
      this.#chunks.splice(i, 2, merged);
      this.#lasts.splice(i, 2, merged[merged.length - 1]!.form);
    }
  }

  /**
   * Visit items in order, starting at the first whose form is >= `start`
   * (> `start` when `exclusive`), until `visit` returns false or the items run out.
   */
  scan(start: string, exclusive: boolean, visit: (item: T) => boolean): void {
    let i = lowerBoundForm(this.#lasts, start);
    if (i === this.#chunks.length) return;
    let j = lowerBound(this.#chunks[i]!, start);
    for (; i < this.#chunks.length; i++, j = 0) {
      const chunk = this.#chunks[i]!;
      for (; j < chunk.length; j++) {
        const item = chunk[j]!;
        if (exclusive && item.form === start) continue;
        if (!visit(item)) return;
      }
    }
  }

  /** Visit every item in order. */
  forEach(visit: (item: T) => void): void {
    for (const chunk of this.#chunks) {
      for (let j = 0; j < chunk.length; j++) visit(chunk[j]!);
    }
  }

  /** Check the invariants (tests; O(n)). */
  checkInvariants(): void {
    let count = 0;
    let previous: string | null = null;
    assert(this.#chunks.length === this.#lasts.length, "SortedIndex: chunks and lasts differ");
    for (let i = 0; i < this.#chunks.length; i++) {
      const chunk = this.#chunks[i]!;
      assert(chunk.length > 0, "SortedIndex: empty chunk");
      assert(chunk.length <= CHUNK_ITEMS_MAX, "SortedIndex: oversized chunk");
      assert(this.#lasts[i] === chunk[chunk.length - 1]!.form, "SortedIndex: stale last form");
      for (const item of chunk) {
        assert(previous === null || previous < item.form, "SortedIndex: out of order");
        previous = item.form;
        count++;
      }
    }
    assert(count === this.#size, "SortedIndex: size is off");
  }
}
