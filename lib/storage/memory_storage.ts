/**
 * RaftStorage in memory, with the semantics of {@link PgStorage}: for tests
 * and the simulator. Everything handed in or out is copied, so callers never
 * share buffers with the stored state.
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { Entry, HardState, PersistentState, Snapshot } from "../raft/types.ts";
import {
  compareCodePoints,
  decodeStateImage,
  encodeStateImage,
  parseMemberContext,
  type StateImage,
} from "./commands.ts";
import type {
  AppliedState,
  ApplyItem,
  ApplyResult,
  KvPair,
  Member,
  PersistUpdate,
  RaftStorage,
} from "./types.ts";

interface StoredMember extends Member {
  addedIndex: number;
}

function copyEntry(e: Entry): Entry {
  return { index: e.index, term: e.term, type: e.type, data: e.data.slice() };
}

function copySnapshot(s: Snapshot): Snapshot {
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

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** The in-memory storage. State lives as long as the object. */
export class MemoryStorage implements RaftStorage {
  #hardState: HardState = { term: 0, vote: 0, commit: 0 };
  #snapshot: Snapshot | null = null;
  /** log entries by index, contiguous */
  #log: Entry[] = [];
  #lastApplied = 0;
  #clusterId: string | null = null;
  #clusterName: string | null = null;
  #members = new Map<number, StoredMember>();
  #settings = new Map<string, { value: string; setIndex: number }>();
  #kv = new Map<string, { value: Uint8Array; revision: number }>();
  #closed = false;

  /** An empty storage: no hard state, no log, nothing applied. */
  constructor() {}

  /**
   * Every call completes asynchronously, like a real storage, so callers cannot
   * come to rely on synchronous completion.
   */
  #turn(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("MemoryStorage is closed"));
    return Promise.resolve();
  }

  async load(): Promise<PersistentState> {
    await this.#turn();
    return Promise.resolve({
      hardState: { ...this.#hardState },
      snapshot: this.#snapshot ? copySnapshot(this.#snapshot) : null,
      entries: this.#log.map(copyEntry),
      applied: this.#lastApplied,
    });
  }

  async persist(update: PersistUpdate): Promise<void> {
    await this.#turn();
    // Validate everything before changing anything (all or nothing, as one transaction).
    const image = update.snapshot ? decodeStateImage(update.snapshot.data) : null;
    checkEntries(update.entries);
    if (update.snapshot && image && this.#isNewer(update.snapshot)) {
      this.#installSnapshot(update.snapshot, image);
    }
    const first = update.entries[0];
    if (first) {
      this.#log = this.#log.filter((e) => e.index < first.index);
      const last = this.#log[this.#log.length - 1];
      const expected = last ? last.index + 1 : (this.#snapshot?.meta.index ?? 0) + 1;
      assert(
        first.index === expected,
        `persist: entries start at ${first.index}, expected ${expected}`,
      );
      for (const e of update.entries) this.#log.push(copyEntry(e));
    }
    if (update.hardState) this.#hardState = { ...update.hardState };
    return;
  }

  #isNewer(snapshot: Snapshot): boolean {
    return this.#snapshot === null || snapshot.meta.index > this.#snapshot.meta.index;
  }

  #installSnapshot(snapshot: Snapshot, image: StateImage): void {
    this.#lastApplied = snapshot.meta.index;
    this.#clusterId = image.clusterId;
    this.#clusterName = image.clusterName;
    this.#members = new Map(
      image.members.map((m) => [m.nodeId, { ...m }]),
    );
    this.#settings = new Map(
      image.settings.map((s) => [s.name, { value: s.value, setIndex: s.setIndex }]),
    );
    this.#kv = new Map(
      image.kv.map(([key, value, revision]) => [key, { value: fromBase64(value), revision }]),
    );
    this.#snapshot = copySnapshot(snapshot);
    this.#log = this.#log.filter((e) => e.index > snapshot.meta.index);
  }

  async apply(items: ApplyItem[]): Promise<ApplyResult[]> {
    await this.#turn();
    // Check the whole batch first: like a transaction, a bad batch changes nothing.
    let next = this.#lastApplied + 1;
    for (const item of items) {
      if (item.index < next) continue;
      assert(item.index === next, `apply: index ${item.index}, expected ${next}`);
      next++;
    }
    const results: ApplyResult[] = [];
    for (const item of items) {
      if (item.index <= this.#lastApplied) {
        results.push({ index: item.index, applied: false });
        continue;
      }
      results.push(this.#applyOne(item));
      this.#lastApplied = item.index;
    }
    return results;
  }

  #applyOne(item: ApplyItem): ApplyResult {
    const { index, command: c } = item;
    switch (c.op) {
      case "noop":
        return { index, applied: true };
      case "init_cluster":
        this.#clusterId = c.clusterId;
        this.#clusterName = c.clusterName;
        return { index, applied: true };
      case "set_config":
        this.#settings.set(c.name, { value: c.value, setIndex: index });
        return { index, applied: true };
      case "kv_put": {
        const existed = this.#kv.has(c.key);
        this.#kv.set(c.key, { value: c.value.slice(), revision: index });
        return { index, applied: true, existed, revision: index };
      }
      case "kv_delete": {
        const existed = this.#kv.delete(c.key);
        return { index, applied: true, existed, revision: index };
      }
      case "conf_change": {
        const { kind, nodeId, context } = c.change;
        const address = parseMemberContext(context);
        const current = this.#members.get(nodeId);
        if (kind === "remove_node") {
          this.#members.delete(nodeId);
        } else if (kind === "add_learner") {
          this.#members.set(nodeId, {
            nodeId,
            address: address?.address ?? current?.address ?? "",
            port: address?.port ?? current?.port ?? 0,
            isVoter: false,
            addedIndex: current?.addedIndex ?? index,
          });
        } else {
          this.#members.set(nodeId, {
            nodeId,
            address: address?.address ?? current?.address ?? "",
            port: address?.port ?? current?.port ?? 0,
            isVoter: true,
            addedIndex: current?.addedIndex ?? index,
          });
        }
        return { index, applied: true };
      }
      default:
        throw new TypeError(`unknown command op: ${String((c as { op: unknown }).op)}`);
    }
  }

  async snapshotData(): Promise<{ index: number; data: Uint8Array }> {
    await this.#turn();
    const kv = [...this.#kv.entries()]
      .sort(([a], [b]) => compareCodePoints(a, b))
      .map(([key, v]): [string, string, number] => [key, base64(v.value), v.revision]);
    const image: StateImage = {
      version: 1,
      lastApplied: this.#lastApplied,
      clusterId: this.#clusterId,
      clusterName: this.#clusterName,
      members: [...this.#members.values()].sort((a, b) => a.nodeId - b.nodeId).map((m) => ({
        ...m,
      })),
      settings: [...this.#settings.entries()].sort(([a], [b]) => compareCodePoints(a, b))
        .map(([name, s]) => ({ name, value: s.value, setIndex: s.setIndex })),
      kv,
    };
    return Promise.resolve({ index: this.#lastApplied, data: encodeStateImage(image) });
  }

  async saveSnapshot(snapshot: Snapshot): Promise<void> {
    await this.#turn();
    if (!this.#isNewer(snapshot)) return;
    this.#snapshot = copySnapshot(snapshot);
    this.#log = this.#log.filter((e) => e.index > snapshot.meta.index);
    return;
  }

  async appliedState(): Promise<AppliedState> {
    await this.#turn();
    const settings: Record<string, string> = {};
    for (const [name, s] of this.#settings) settings[name] = s.value;
    return Promise.resolve({
      lastApplied: this.#lastApplied,
      clusterId: this.#clusterId,
      clusterName: this.#clusterName,
      members: [...this.#members.values()].sort((a, b) => a.nodeId - b.nodeId).map((m) => ({
        nodeId: m.nodeId,
        address: m.address,
        port: m.port,
        isVoter: m.isVoter,
      })),
      settings,
    });
  }

  async kvGet(key: string): Promise<KvPair | null> {
    await this.#turn();
    if (typeof key !== "string") throw new TypeError("key must be a string");
    const v = this.#kv.get(key);
    return Promise.resolve(v ? { key, value: v.value.slice(), revision: v.revision } : null);
  }

  async kvList(prefix: string, limit: number): Promise<KvPair[]> {
    await this.#turn();
    checkListArgs(prefix, limit);
    const keys = [...this.#kv.keys()].filter((k) => k.startsWith(prefix)).sort(
      compareCodePoints,
    );
    return Promise.resolve(
      keys.slice(0, limit).map((key) => {
        const v = this.#kv.get(key)!;
        return { key, value: v.value.slice(), revision: v.revision };
      }),
    );
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}

/** Check kvList arguments (they may come from an HTTP request). */
export function checkListArgs(prefix: string, limit: number): void {
  if (typeof prefix !== "string") throw new TypeError("kvList: prefix must be a string");
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new RangeError(`kvList: limit must be a non-negative integer, got ${limit}`);
  }
}

/** Entries of one persist must be contiguous with valid indexes and terms. */
export function checkEntries(entries: Entry[]): void {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    assert(Number.isSafeInteger(e.index) && e.index >= 1, `persist: bad entry index ${e.index}`);
    assert(Number.isSafeInteger(e.term) && e.term >= 1, `persist: bad entry term ${e.term}`);
    assert(e.type === "normal" || e.type === "conf_change", `persist: bad entry type ${e.type}`);
    if (i > 0) {
      assert(e.index === entries[i - 1]!.index + 1, "persist: entries are not contiguous");
    }
  }
}
