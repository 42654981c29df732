/**
 * The replicated state machine: members (peer and PostgreSQL addresses),
 * cluster settings, the key-value store and the PostgreSQL primary record.
 * Pure and deterministic: no I/O, clock or randomness, so every node that
 * applies the same entries holds the same state (and the same snapshot bytes).
 *
 * Each committed entry is applied exactly once, in order. What an entry may
 * refuse (a put over the quota, an invalid key) it refuses the same way on
 * every node: the result says so and nothing changes.
 *
 * @module
 */

import { assert, AssertionError, unreachable } from "../assert.ts";
import { decodeConfChange } from "../raft/conf_change.ts";
import type { ConfChange, Entry, NodeId } from "../raft/types.ts";
import { type ChangeBatch, ChangeFeed, type ChangeFeedOptions } from "./change_feed.ts";
import { type Command, type CommandOp, compareCodePoints, decodeCommand } from "./commands.ts";
import { KvStore } from "./kv_store.ts";
import {
  KV_QUOTA_BYTES_DEFAULT,
  KV_QUOTA_SETTING,
  kvKeyProblem,
  kvQuotaProblem,
  kvValueProblem,
  parseKvQuotaSetting,
  parseMemberContext,
  type Problem,
  utf8Length,
} from "./limits.ts";
import {
  decodeStateImage,
  encodeStateImage,
  type Member,
  type PrimaryRecord,
  type StateImage,
} from "./snapshot.ts";

/** What an applied entry was: a command's op, or `conf_change`. */
export type ApplyOp = CommandOp | "conf_change";

/** Why an entry changed nothing. */
export type ApplyErrorCode =
  /** a kv_put that would take the store beyond its quota */
  | "quota_exceeded"
  /** a kv_put whose key breaks the key rules (limits.ts) */
  | "invalid_key"
  /** a kv_put whose value is larger than the limit */
  | "value_too_large"
  /** member_postgres for a node that is not a member */
  | "unknown_member"
  /** init_cluster when the cluster already has another id */
  | "already_initialized"
  /** postgres_system when another system identifier is recorded */
  | "postgres_system_recorded";

/** What applying one entry did, for the proposer waiting on it. */
export type ApplyResult =
  | {
    index: number;
    op: ApplyOp;
    ok: true;
    /** kv_put, kv_delete: the key's revision (this entry's index) */
    revision?: number;
    /** kv_put: whether it replaced a value; kv_delete: whether the key existed */
    existed?: boolean;
  }
  | {
    index: number;
    op: ApplyOp;
    ok: false;
    code: ApplyErrorCode;
    /** why, for the proposer's answer over HTTP (`status`) or SQL (`sqlstate`, `hint`) */
    problem: Problem;
  };

/** One key of the store. */
export interface KvPair {
  key: string;
  /** a copy: the caller may keep or modify it */
  value: Uint8Array;
  /** index of the entry that last wrote the key */
  revision: number;
}

/** Options of a {@link StateMachine}. */
export interface StateMachineOptions {
  /**
   * The key-value store's quota in bytes (keys' UTF-8 bytes plus values'
   * bytes) when the cluster setting `kv_quota` does not set one. Apply
   * depends on it: every node must be given the same value.
   * @default {@link KV_QUOTA_BYTES_DEFAULT} (64 MiB)
   */
  kvQuotaBytes?: number;
  /**
   * Reads the quota from the `kv_quota` setting's value; null = not a quota
   * (then `kvQuotaBytes` applies). Must be pure: apply depends on it.
   * @default {@link parseKvQuotaSetting} (a plain integer of bytes)
   */
  parseKvQuota?: (value: string) => number | null;
  /** bounds of the change feed; @default see {@link ChangeFeedOptions} */
  changeFeed?: ChangeFeedOptions;
}

/** Options of {@link StateMachine.kvList}. */
export interface KvListOptions {
  /** return only keys after this one (code point order): the last key of the previous page */
  after?: string;
}

/**
 * The replicated state machine.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeCommand } from "./commands.ts";
 * const sm = new StateMachine();
 * const data = encodeCommand({ op: "kv_put", key: "a", value: new Uint8Array([1]) });
 * const result = sm.apply({ index: 1, term: 1, type: "normal", data });
 * assert.deepEqual(result, { index: 1, op: "kv_put", ok: true, revision: 1, existed: false });
 * assert.equal(sm.kvGet("a")?.revision, 1);
 * ```
 */
export class StateMachine {
  readonly #defaultQuota: number;
  readonly #parseQuota: (value: string) => number | null;
  /** Invariant: every entry <= #lastApplied was applied once, none after. */
  #lastApplied = 0;
  #identity: { clusterId: string; clusterName: string } | null = null;
  #primary: PrimaryRecord | null = null;
  #postgresSystem: string | null = null;
  #members = new Map<NodeId, Member>();
  #settings = new Map<string, string>();
  #kv = new KvStore();
  /** the quota in force: the `kv_quota` setting's, else #defaultQuota */
  #quota: number;
  #feed: ChangeFeed;

  /**
   * An empty state: nothing applied.
   *
   * @throws RangeError when `kvQuotaBytes` is not a positive integer
   */
  constructor(options: StateMachineOptions = {}) {
    const quota = options.kvQuotaBytes ?? KV_QUOTA_BYTES_DEFAULT;
    if (!Number.isSafeInteger(quota) || quota < 1) {
      throw new RangeError(`kvQuotaBytes must be a positive integer, got ${quota}`);
    }
    this.#defaultQuota = quota;
    this.#quota = quota;
    this.#parseQuota = options.parseKvQuota ?? parseKvQuotaSetting;
    this.#feed = new ChangeFeed(0, options.changeFeed);
  }

  /**
   * The state an image made by {@link snapshot} holds, at its index. The
   * change feed starts there: a consumer behind it must resync.
   *
   * @throws TypeError naming what is wrong when `data` is not a valid image
   */
  static restore(data: Uint8Array, options: StateMachineOptions = {}): StateMachine {
    const image = decodeStateImage(data);
    const sm = new StateMachine(options);
    sm.#lastApplied = image.lastApplied;
    sm.#identity = image.identity;
    sm.#primary = image.primary;
    sm.#postgresSystem = image.postgresSystem;
    sm.#members = new Map(image.members.map((m) => [m.nodeId, m]));
    sm.#settings = new Map(image.settings);
    sm.#kv = image.kv;
    sm.#quota = sm.#quotaFromSettings();
    sm.#feed = new ChangeFeed(image.lastApplied, options.changeFeed);
    return sm;
  }

  /** Index of the last applied entry (0 before any). */
  get lastApplied(): number {
    return this.#lastApplied;
  }

  /** The cluster's id (a UUID), set by init_cluster; null before. */
  get clusterId(): string | null {
    return this.#identity?.clusterId ?? null;
  }

  /** The cluster's name (a label), set by init_cluster; null before. */
  get clusterName(): string | null {
    return this.#identity?.clusterName ?? null;
  }

  /** Sum of the store's keys' UTF-8 bytes and values' bytes (what the quota measures). */
  get kvBytes(): number {
    return this.#kv.bytes;
  }

  /** Number of keys in the store. */
  get kvCount(): number {
    return this.#kv.count;
  }

  /** The quota in force, in bytes. */
  get kvQuotaBytes(): number {
    return this.#quota;
  }

  /**
   * Apply the committed entry `entry`, which must be the one after
   * {@link lastApplied}: applying an entry twice, or out of order, is a bug
   * (AssertionError). So is an entry whose data does not decode: only the
   * leader writes entries, and it encodes them with this module's codec.
   *
   * - `conf_change`: adds a learner or voter (address and port from the
   *   context; a promotion with an empty context keeps the previous ones), or
   *   removes a member;
   * - `normal`: a command ({@link Command}); empty data is the leader's no-op.
   */
  apply(entry: Entry): ApplyResult {
    const index = entry.index;
    assert(
      index === this.#lastApplied + 1,
      () => `apply: entry ${index} after ${this.#lastApplied} (each entry once, in order)`,
    );
    let result: ApplyResult;
    if (entry.type === "conf_change") {
      result = this.#applyConfChange(index, decoded(index, () => decodeConfChange(entry.data)));
    } else {
      assert(entry.type === "normal", () => `apply: entry ${index} has type ${entry.type}`);
      // No copy of a kv_put value here: the store copies it into its slabs.
      const command = decoded(index, () => decodeCommand(entry.data, { copyValue: false }));
      result = this.#applyCommand(index, command);
    }
    this.#lastApplied = index;
    return result;
  }

  #applyCommand(index: number, c: Command): ApplyResult {
    switch (c.op) {
      case "noop":
        return { index, op: c.op, ok: true };
      case "init_cluster":
        if (this.#identity !== null && this.#identity.clusterId !== c.clusterId) {
          return refused(index, c.op, "already_initialized", {
            status: 409,
            sqlstate: "55000",
            message: `the cluster is already initialized with id ${this.#identity.clusterId}`,
            hint: "pgraft_init() bootstraps a cluster once.",
          });
        }
        this.#identity = { clusterId: c.clusterId, clusterName: c.clusterName };
        this.#feed.push(index, "identity");
        return { index, op: c.op, ok: true };
      case "set_config":
        this.#settings.set(c.name, c.value);
        if (c.name === KV_QUOTA_SETTING) this.#quota = this.#quotaFromSettings();
        this.#feed.push(index, "settings");
        return { index, op: c.op, ok: true };
      case "kv_put":
        return this.#applyPut(index, c.key, c.value);
      case "kv_delete": {
        const existed = this.#kv.delete(c.key);
        if (existed) this.#feed.push(index, "kv_delete", c.key);
        return { index, op: c.op, ok: true, revision: index, existed };
      }
      case "set_primary":
        this.#primary = { nodeId: c.nodeId, timeline: c.timeline, index };
        this.#feed.push(index, "primary");
        return { index, op: c.op, ok: true };
      case "member_postgres": {
        const member = this.#members.get(c.nodeId);
        if (!member) {
          return refused(index, c.op, "unknown_member", {
            status: 404,
            sqlstate: "42704",
            message: `node ${c.nodeId} is not a member`,
            hint: "See SELECT node_id FROM pgraft_get_nodes();",
          });
        }
        this.#members.set(c.nodeId, { ...member, pgHost: c.host, pgPort: c.port });
        this.#feed.push(index, "members");
        return { index, op: c.op, ok: true };
      }
      case "postgres_system":
        if (this.#postgresSystem !== null && this.#postgresSystem !== c.systemIdentifier) {
          return refused(index, c.op, "postgres_system_recorded", {
            status: 409,
            sqlstate: "55000",
            message: `the cluster's PostgreSQL system is ${this.#postgresSystem}, ` +
              `not ${c.systemIdentifier}`,
            hint: "A server of another database system cannot join this cluster.",
          });
        }
        this.#postgresSystem = c.systemIdentifier;
        return { index, op: c.op, ok: true };
      default:
        return unreachable(c, "command");
    }
  }

  #applyPut(index: number, key: string, value: Uint8Array): ApplyResult {
    const checked = this.#checkPut(key, value.byteLength);
    if (typeof checked !== "number") {
      const { code, ...problem } = checked;
      return refused(index, "kv_put", code, problem);
    }
    const existed = this.#kv.put(key, checked, value, index);
    this.#feed.push(index, "kv_put", key);
    return { index, op: "kv_put", ok: true, revision: index, existed };
  }

  /** The key's UTF-8 bytes when a put of `valueBytes` at `key` is allowed now, else why not. */
  #checkPut(key: string, valueBytes: number): number | (Problem & { code: ApplyErrorCode }) {
    const keyProblem = kvKeyProblem(key);
    if (keyProblem) return { ...keyProblem, code: "invalid_key" };
    const valueProblem = kvValueProblem(valueBytes);
    if (valueProblem) return { ...valueProblem, code: "value_too_large" };
    const keyBytes = utf8Length(key);
    const growth = {
      currentBytes: this.#kv.bytes,
      nextBytes: this.#kv.bytesAfterPut(key, keyBytes, valueBytes),
    };
    const quotaProblem = kvQuotaProblem(growth, this.#quota);
    if (quotaProblem) return { ...quotaProblem, code: "quota_exceeded" };
    return keyBytes;
  }

  /**
   * Why a kv_put of `valueBytes` bytes at `key` would be refused if applied
   * now (key rules, value limit, quota), or null. The leader calls it to
   * refuse early with the rule apply uses; apply still decides, since entries
   * ahead of it in the log may change the store's size.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * const sm = new StateMachine({ kvQuotaBytes: 10 });
   * assert.equal(sm.kvPutProblem("k", 20)?.status, 507);
   * ```
   */
  kvPutProblem(key: string, valueBytes: number): Problem | null {
    const problem = this.#checkPut(key, valueBytes);
    if (typeof problem === "number") return null;
    const { status, sqlstate, message, hint } = problem;
    return { status, sqlstate, message, hint };
  }

  #applyConfChange(index: number, change: ConfChange): ApplyResult {
    const { kind, nodeId } = change;
    const current = this.#members.get(nodeId);
    if (kind === "remove_node") {
      if (this.#members.delete(nodeId)) this.#feed.push(index, "members");
      return { index, op: "conf_change", ok: true };
    }
    let address: { address: string; port: number } | null = null;
    try {
      address = parseMemberContext(change.context);
    } catch {
      // A committed change is applied whatever its context holds; a malformed
      // one (never written by a current proposer) counts as "" and keeps what was known.
    }
    this.#members.set(nodeId, {
      nodeId,
      address: address?.address ?? current?.address ?? "",
      port: address?.port ?? current?.port ?? 0,
      isVoter: kind === "add_voter",
      pgHost: current?.pgHost ?? null,
      pgPort: current?.pgPort ?? null,
      addedIndex: current?.addedIndex ?? index,
    });
    this.#feed.push(index, "members");
    return { index, op: "conf_change", ok: true };
  }

  #quotaFromSettings(): number {
    const value = this.#settings.get(KV_QUOTA_SETTING);
    if (value === undefined) return this.#defaultQuota;
    return this.#parseQuota(value) ?? this.#defaultQuota;
  }

  /** Every member, by node id. */
  members(): Member[] {
    return [...this.#members.values()].sort((a, b) => a.nodeId - b.nodeId).map((m) => ({ ...m }));
  }

  /** The member `nodeId`, or null. */
  member(nodeId: NodeId): Member | null {
    const m = this.#members.get(nodeId);
    return m ? { ...m } : null;
  }

  /** The cluster settings set through the log: name (without `pgraft.`) → value, by name. */
  settings(): Record<string, string> {
    return Object.fromEntries(this.#sortedSettings());
  }

  /** The value of cluster setting `name`, or undefined when it was never set through the log. */
  setting(name: string): string | undefined {
    return this.#settings.get(name);
  }

  #sortedSettings(): [string, string][] {
    return [...this.#settings.entries()].sort(([a], [b]) => compareCodePoints(a, b));
  }

  /** The PostgreSQL primary record, or null when none was ever set. */
  primary(): PrimaryRecord | null {
    return this.#primary ? { ...this.#primary } : null;
  }

  /** The cluster's PostgreSQL database system identifier, or null until recorded. */
  get postgresSystem(): string | null {
    return this.#postgresSystem;
  }

  /** The key `key`, or null. */
  kvGet(key: string): KvPair | null {
    const record = this.#kv.get(key);
    return record ? { key, value: this.#kv.copy(record), revision: record.revision } : null;
  }

  /**
   * Keys starting with `prefix`, in code point order (UTF-8 byte order,
   * PostgreSQL `collate "C"`), at most `limit`. Costs O(log n + limit).
   *
   * @throws RangeError when `limit` is not a non-negative integer
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * const sm = new StateMachine();
   * assert.deepEqual(sm.kvList("users/", 100), []);
   * ```
   */
  kvList(prefix: string, limit: number, options: KvListOptions = {}): KvPair[] {
    if (typeof prefix !== "string") throw new TypeError("kvList: prefix must be a string");
    if (!Number.isSafeInteger(limit) || limit < 0) {
      throw new RangeError(`kvList: limit must be a non-negative integer, got ${limit}`);
    }
    return this.#kv.list(prefix, limit, options.after).map((record) => ({
      key: record.key,
      value: this.#kv.copy(record),
      revision: record.revision,
    }));
  }

  /**
   * What changed after `cursor` (an applied index), for the publisher: see
   * `change_feed.ts` for the protocol.
   *
   * @param limit most changes to return; @default 4096
   */
  changesSince(cursor: number, limit?: number): ChangeBatch {
    return this.#feed.since(cursor, this.#lastApplied, limit);
  }

  /** The lowest cursor {@link changesSince} answers without a resync. */
  get changeFeedFloor(): number {
    return this.#feed.floor;
  }

  /** An image of the whole state at {@link lastApplied} (see `snapshot.ts` for the format). */
  snapshot(): Uint8Array {
    return encodeStateImage(this.#image());
  }

  #image(): StateImage {
    return {
      lastApplied: this.#lastApplied,
      identity: this.#identity,
      primary: this.#primary,
      postgresSystem: this.#postgresSystem,
      members: this.members(),
      settings: this.#sortedSettings(),
      kv: this.#kv,
    };
  }

  /** Check every invariant (tests and the simulator; O(n)). */
  checkInvariants(): void {
    this.#kv.checkInvariants();
    assert(this.#quota === this.#quotaFromSettings(), "StateMachine: stale quota");
    for (const [id, m] of this.#members) {
      assert(id === m.nodeId, "StateMachine: member filed under another id");
      assert(m.addedIndex >= 1 && m.addedIndex <= this.#lastApplied, "StateMachine: addedIndex");
    }
  }
}

/** The result of an entry refused at apply. */
function refused(index: number, op: ApplyOp, code: ApplyErrorCode, problem: Problem): ApplyResult {
  return { index, op, ok: false, code, problem };
}

/** Decode committed entry data; failing to is a bug (see {@link StateMachine.apply}). */
function decoded<T>(index: number, decode: () => T): T {
  try {
    return decode();
  } catch (error) {
    throw new AssertionError(`apply: entry ${index} does not decode: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
