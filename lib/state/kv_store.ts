/**
 * The replicated key-value store's data: a hash map for point reads, a
 * {@link SortedIndex} for ordered scans, and the byte count the quota is
 * measured against. Pure data structure: the rules (limits, quota) are applied
 * by the state machine.
 *
 * Values live in slabs: ArrayBuffers that small values are copied into one
 * after the other; a record names its slab, offset and length. One
 * ArrayBuffer (or even one view) per value would cost an allocation in the
 * runtime per write (about 2 µs for a buffer) and around a hundred bytes of
 * bookkeeping per key. A slab's space is not reused; instead, once less than
 * half of a slab is still in use, its live values are copied into the current
 * slab and the old one is dropped: slabs hold at most about twice the live
 * bytes, and a byte is copied at most once per byte freed. Values larger than
 * {@link SLAB_VALUE_BYTES_MAX} get a buffer of their own.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { SortedIndex, sortForm } from "./sorted_index.ts";

/** Values larger than this get a buffer of their own. */
export const SLAB_VALUE_BYTES_MAX = 16 * 1024;

/** Size of the first slab; each next one doubles, up to {@link SLAB_BYTES_MAX}. */
const SLAB_BYTES_MIN = 64 * 1024;

/** Size of the largest slab. */
const SLAB_BYTES_MAX = 1024 * 1024;

/** A slab takes no more values after this many (bounds its list of records). */
const SLAB_VALUES_MAX = 16 * 1024;

const EMPTY = new Uint8Array(0);

interface Slab {
  bytes: Uint8Array;
  /** bytes handed out (the next value goes at this offset) */
  used: number;
  /** bytes of values still stored */
  live: number;
  /** records whose values were copied here (some since moved, overwritten or deleted) */
  records: KvRecord[];
}

/** One stored key. Internal: never handed out (values are copied out). */
export interface KvRecord {
  readonly key: string;
  /** the key's sort form (the index's order) */
  readonly form: string;
  /** where the value is: a slab, or a buffer of its own (large or empty values) */
  home: Slab | Uint8Array;
  offset: number;
  length: number;
  /** index of the entry that last wrote the key */
  revision: number;
  /** bytes of the key's UTF-8 form */
  readonly keyBytes: number;
}

/** The store. */
export class KvStore {
  #map = new Map<string, KvRecord>();
  /** the records in key order */
  #index = new SortedIndex<KvRecord>();
  /** Invariant: sum over keys of keyBytes + length. */
  #bytes = 0;
  /** Invariant: every slab holding a live value, plus the current one. */
  #slabs = new Set<Slab>();
  #current: Slab | null = null;

  /**
   * Build a store from records given in strictly increasing order of form
   * (the caller checked it), one at a time: each key goes into the hash map
   * while the caller's decoding has it in cache.
   *
   * @returns `add` for each record (the store copies `value`), then `finish`
   */
  static load(): { add(record: KvRecord, value: Uint8Array): void; finish(): KvStore } {
    const store = new KvStore();
    const records: KvRecord[] = [];
    return {
      add(record: KvRecord, value: Uint8Array): void {
        store.#place(record, value);
        store.#map.set(record.key, record);
        store.#bytes += record.keyBytes + record.length;
        records.push(record);
      },
      finish(): KvStore {
        assert(store.#map.size === records.length, "KvStore.load: duplicate keys");
        store.#index = SortedIndex.fromSorted(records);
        return store;
      },
    };
  }

  /** Number of keys. */
  get count(): number {
    return this.#map.size;
  }

  /** Sum of the keys' UTF-8 bytes and the values' bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The record of `key` (internal: callers must not modify it). */
  get(key: string): KvRecord | undefined {
    return this.#map.get(key);
  }

  /** A view of the value of `record`: valid until the next write; never hand it out. */
  view(record: KvRecord): Uint8Array {
    const data = record.home instanceof Uint8Array ? record.home : record.home.bytes;
    return new Uint8Array(data.buffer, data.byteOffset + record.offset, record.length);
  }

  /** A copy of the value of `record`, for the caller to keep. */
  copy(record: KvRecord): Uint8Array {
    return this.view(record).slice();
  }

  /** The store's size after putting a value of `valueBytes` bytes at `key` (`keyBytes` long). */
  bytesAfterPut(key: string, keyBytes: number, valueBytes: number): number {
    const old = this.#map.get(key);
    const oldBytes = old ? old.keyBytes + old.length : 0;
    return this.#bytes - oldBytes + keyBytes + valueBytes;
  }

  /**
   * Store a copy of `value` at `key`.
   *
   * @param keyBytes bytes of the key's UTF-8 form
   * @returns whether the key existed
   */
  put(key: string, keyBytes: number, value: Uint8Array, revision: number): boolean {
    const old = this.#map.get(key);
    if (old) {
      const { home, length } = old;
      // Detach the old value first: a compaction started below must not move it.
      old.home = EMPTY;
      old.offset = 0;
      old.length = 0;
      this.#release(home, length);
      this.#place(old, value);
      old.revision = revision;
      this.#bytes += value.byteLength - length;
      return true;
    }
    const record: KvRecord = {
      key,
      form: sortForm(key),
      home: EMPTY,
      offset: 0,
      length: 0,
      revision,
      keyBytes,
    };
    this.#place(record, value);
    this.#map.set(key, record);
    this.#index.insert(record);
    this.#bytes += keyBytes + record.length;
    return false;
  }

  /**
   * Remove `key`.
   *
   * @returns whether it existed
   */
  delete(key: string): boolean {
    const old = this.#map.get(key);
    if (!old) return false;
    this.#map.delete(key);
    this.#index.delete(old.form);
    this.#bytes -= old.keyBytes + old.length;
    const { home, length } = old;
    // Detached, so that a compaction skips it.
    old.home = EMPTY;
    old.length = 0;
    this.#release(home, length);
    return true;
  }

  /** Point `record` at a copy of `value` in the current slab (or in a buffer of its own). */
  #place(record: KvRecord, value: Uint8Array): void {
    const length = value.byteLength;
    record.length = length;
    record.offset = 0;
    if (length === 0) {
      record.home = EMPTY;
      return;
    }
    if (length > SLAB_VALUE_BYTES_MAX) {
      record.home = value.slice();
      return;
    }
    let slab = this.#current;
    // A loop: the compaction a new slab may start can fill that one too.
    while (
      slab === null || slab.used + length > slab.bytes.byteLength ||
      slab.records.length >= SLAB_VALUES_MAX
    ) {
      this.#newSlab();
      slab = this.#current;
    }
    slab.bytes.set(value, slab.used);
    record.home = slab;
    record.offset = slab.used;
    slab.used += length;
    slab.live += length;
    slab.records.push(record);
  }

  #newSlab(): void {
    const previous = this.#current;
    const size = previous === null
      ? SLAB_BYTES_MIN
      : Math.min(SLAB_BYTES_MAX, previous.bytes.byteLength * 2);
    const slab: Slab = { bytes: new Uint8Array(size), used: 0, live: 0, records: [] };
    this.#slabs.add(slab);
    this.#current = slab;
    if (previous !== null) this.#reclaim(previous);
  }

  /** Give back the space of a value no longer stored there. */
  #release(home: Slab | Uint8Array, length: number): void {
    if (home instanceof Uint8Array) return;
    assert(this.#slabs.has(home), "KvStore: released a value of a dropped slab");
    home.live -= length;
    assert(home.live >= 0, "KvStore: slab live bytes below zero");
    if (home !== this.#current) this.#reclaim(home);
  }

  /** Drop a slab that holds nothing, or compact one less than half in use. */
  #reclaim(slab: Slab): void {
    if (slab.live === 0) {
      this.#slabs.delete(slab);
    } else if (slab.live * 2 < slab.used) {
      this.#slabs.delete(slab);
      for (const record of slab.records) {
        // Records moved, overwritten or deleted since point elsewhere.
        if (record.home !== slab) continue;
        const value = new Uint8Array(slab.bytes.buffer, record.offset, record.length);
        this.#place(record, value);
      }
    }
  }

  /**
   * Records of the keys starting with `prefix`, in code point order, after
   * `after` when given, at most `limit` of them.
   */
  list(prefix: string, limit: number, after?: string): KvRecord[] {
    const out: KvRecord[] = [];
    if (limit <= 0) return out;
    const prefixForm = sortForm(prefix);
    const afterForm = after === undefined ? undefined : sortForm(after);
    const exclusive = afterForm !== undefined && afterForm >= prefixForm;
    const start = exclusive ? afterForm : prefixForm;
    this.#index.scan(start, exclusive, (record) => {
      if (!record.form.startsWith(prefixForm)) return false;
      out.push(record);
      return out.length < limit;
    });
    return out;
  }

  /** Visit every record in code point order of keys. */
  forEach(visit: (record: KvRecord) => void): void {
    this.#index.forEach(visit);
  }

  /** Bytes of the slabs held (memory accounting, tests). */
  get slabBytes(): number {
    let bytes = 0;
    for (const slab of this.#slabs) bytes += slab.bytes.byteLength;
    return bytes;
  }

  /** Check the invariants (tests; O(n)). */
  checkInvariants(): void {
    this.#index.checkInvariants();
    assert(this.#index.size === this.#map.size, "KvStore: index and map differ in size");
    let bytes = 0;
    const live = new Map<Slab, number>();
    this.#index.forEach((record) => {
      assert(this.#map.get(record.key) === record, "KvStore: indexed record not in the map");
      assert(record.form === sortForm(record.key), "KvStore: stale sort form");
      bytes += record.keyBytes + record.length;
      const home = record.home;
      if (home instanceof Uint8Array) {
        assert(record.length === 0 || record.length > SLAB_VALUE_BYTES_MAX, "KvStore: own buffer");
        assert(home.byteLength === record.length, "KvStore: own buffer of another length");
      } else {
        assert(this.#slabs.has(home), "KvStore: value in a dropped slab");
        assert(record.offset + record.length <= home.used, "KvStore: value beyond its slab");
        live.set(home, (live.get(home) ?? 0) + record.length);
      }
    });
    assert(bytes === this.#bytes, "KvStore: byte count is off");
    for (const slab of this.#slabs) {
      assert((live.get(slab) ?? 0) === slab.live, "KvStore: slab live bytes are off");
      assert(
        slab === this.#current || slab.live * 2 >= slab.used,
        "KvStore: a slab mostly free was not compacted",
      );
    }
  }
}
