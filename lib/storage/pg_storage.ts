/**
 * RaftStorage on the node's own PostgreSQL (schema `pgraft`, tables of
 * sql/002_storage.sql), through a small postgres.js pool of its own with
 * `synchronous_commit = on`: a call resolves only after its transaction is
 * durable.
 *
 * When PostgreSQL is down, restarting, or does not answer in time, every call
 * rejects with {@link StorageUnavailableError} (the cause attached) and the
 * next call tries again: the pool reconnects by itself, and a pool stuck on a
 * silent server is replaced.
 *
 * Every operation is ONE SQL statement (writes call the plpgsql functions of
 * sql/002_storage.sql): atomic without an explicit transaction, consistent
 * for reads, and one round trip. There is deliberately no `sql.begin()`: when
 * its session is terminated, postgres.js 3.4 still writes the ROLLBACK to the
 * closed socket and throws an uncaught TypeError from a timer (DESIGN.md
 * "Known traps"); likewise `fetch_types` is off (a session terminated while
 * it fetches the array types rejects a promise nobody handles).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import postgres from "postgres";
import { assert, AssertionError, unreachable } from "../assert.ts";
import { deadline, TimeoutError } from "../async.ts";
import type { Entry, EntryType, Membership, PersistentState, Snapshot } from "../raft/types.ts";
import { decodeStateImage, parseMemberContext, prefixUpperBound } from "./commands.ts";
import { checkEntries, checkListArgs } from "./memory_storage.ts";
import {
  type AppliedState,
  type ApplyItem,
  type ApplyResult,
  type KvPair,
  type Member,
  type PersistUpdate,
  type RaftStorage,
  StorageUnavailableError,
} from "./types.ts";

/** Options of {@link PgStorage.open}. */
export interface PgStorageOptions {
  connection: { host: string; port: number; database: string; user: string; password?: string };
  /** pool size (at least 2: see DESIGN.md "Known traps"). @default 3 */
  maxConnections?: number;
  /** a call that takes longer fails with StorageUnavailableError. @default 10000 */
  timeoutMs?: number;
  /** seconds to wait for a new connection. @default 3 */
  connectTimeoutS?: number;
}

// deno-lint-ignore no-explicit-any
type Sql = postgres.Sql<any>;

const ENTRY_TYPE_CODE: Record<EntryType, number> = { normal: 0, conf_change: 1 };

/** Array types we send (PostgreSQL's fixed OIDs). */
const INT2_ARRAY = 1005;
const INT4_ARRAY = 1007;
const INT8_ARRAY = 1016;
const TEXT_ARRAY = 1009;
const BYTEA_ARRAY = 1001;

function numberArray(xs: readonly (number | null)[]): string {
  return "{" + xs.map((x) => x === null ? "NULL" : String(x)).join(",") + "}";
}

function textArray(xs: readonly (string | null)[]): string {
  return "{" +
    xs.map((x) => x === null ? "NULL" : '"' + x.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"')
      .join(",") +
    "}";
}

function byteaArray(xs: readonly (Uint8Array | null)[]): string {
  return "{" +
    xs.map((x) =>
      x === null
        ? "NULL"
        : '"\\\\x' + Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("hex") + '"'
    ).join(",") + "}";
}

/**
 * Serializers for the arrays we send. postgres.js would learn array types by
 * querying the catalog on each new connection (fetch_types), but a session
 * terminated during that query rejects a promise nobody handles; so it is off
 * and the arrays are declared here.
 */
const ARRAY_TYPES = {
  int2Array: { to: INT2_ARRAY, from: [] as number[], serialize: numberArray, parse: String },
  int4Array: { to: INT4_ARRAY, from: [] as number[], serialize: numberArray, parse: String },
  int8Array: { to: INT8_ARRAY, from: [] as number[], serialize: numberArray, parse: String },
  textArray: { to: TEXT_ARRAY, from: [] as number[], serialize: textArray, parse: String },
  byteaArray: { to: BYTEA_ARRAY, from: [] as number[], serialize: byteaArray, parse: String },
};

/** Error codes of postgres.js for a connection that broke or never came. */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ENOENT",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
]);

/**
 * Whether an error means "PostgreSQL cannot be used right now" (retry later)
 * rather than a bug or bad data.
 */
export function isUnavailable(error: unknown): boolean {
  if (error instanceof StorageUnavailableError) return true;
  if (typeof error !== "object" || error === null) return false;
  const e = error as { code?: unknown; name?: unknown };
  const code = typeof e.code === "string" ? e.code : "";
  if (CONNECTION_CODES.has(code)) return true;
  if (e.name === "PostgresError") {
    // 08: connection exception; 57P01..57P05: shutdown, crash, cannot connect now,
    // database dropped, idle session timeout; 53: insufficient resources
    // (too many connections, disk full); 58: system error.
    return code.startsWith("08") || code.startsWith("57P") || code.startsWith("53") ||
      code.startsWith("58");
  }
  // Deno's own network errors (a refused or reset socket).
  return error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.TimedOut;
}

function bytes(b: Uint8Array): Uint8Array {
  // postgres.js hands out Buffers that may share a pool; return a plain, owned copy.
  return new Uint8Array(b);
}

function num(x: unknown): number {
  const n = Number(x);
  assert(Number.isSafeInteger(n), `storage: expected an integer, got ${String(x)}`);
  return n;
}

/** The PostgreSQL storage. Open with {@link PgStorage.open}. */
export class PgStorage implements RaftStorage {
  #options: PgStorageOptions;
  #sql: Sql;
  #closed = false;
  /** pools being ended (replaced after a timeout, or at close) */
  #ending = new Set<Promise<void>>();

  private constructor(options: PgStorageOptions) {
    this.#options = options;
    this.#sql = this.#newPool();
  }

  /**
   * Create the pool and check the schema is there (run the migrations first).
   *
   * @throws StorageUnavailableError when PostgreSQL cannot be reached
   * @throws Error when the storage tables are missing
   */
  static async open(options: PgStorageOptions): Promise<PgStorage> {
    const max = options.maxConnections ?? 3;
    if (!Number.isInteger(max) || max < 2 || max > 16) {
      throw new RangeError(`maxConnections must be an integer in 2..16, got ${max}`);
    }
    const storage = new PgStorage(options);
    try {
      const [row] = await storage.#run(
        "open",
        (sql) => sql`select to_regclass('pgraft.applied') is not null as ok`,
      );
      if (!row?.ok) {
        throw new Error(
          "the pgraft storage tables are missing: run the migrations (pgraft migrate) first",
        );
      }
    } catch (error) {
      await storage.close();
      throw error;
    }
    return storage;
  }

  #newPool(): Sql {
    const c = this.#options.connection;
    return postgres({
      host: c.host,
      port: c.port,
      database: c.database,
      user: c.user,
      password: c.password,
      max: this.#options.maxConnections ?? 3,
      prepare: true,
      fetch_types: false,
      types: ARRAY_TYPES,
      onnotice: () => {},
      connect_timeout: this.#options.connectTimeoutS ?? 3,
      idle_timeout: 60,
      connection: {
        application_name: "pgraft agent storage",
        synchronous_commit: "on",
      },
    });
  }

  /** Throw away the pool (it may hold a connection stuck on a silent server). */
  #replacePool(old: Sql): void {
    if (this.#sql !== old) return;
    this.#sql = this.#newPool();
    const ending = old.end({ timeout: 0 }).catch(() => {});
    this.#ending.add(ending);
    ending.finally(() => this.#ending.delete(ending));
  }

  /** Run one storage operation: classify its failure, bound its time. */
  async #run<T>(what: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error(`PgStorage.${what}: the storage is closed`);
    const sql = this.#sql;
    const timeoutMs = this.#options.timeoutMs ?? 10_000;
    try {
      return await deadline(fn(sql), timeoutMs, `PgStorage.${what}`);
    } catch (error) {
      if (error instanceof TimeoutError) {
        this.#replacePool(sql);
        throw new StorageUnavailableError(
          `PgStorage.${what}: PostgreSQL did not answer within ${timeoutMs} ms`,
        );
      }
      if (isUnavailable(error)) {
        const e = error as { code?: string; message?: string };
        throw new StorageUnavailableError(
          `PgStorage.${what}: PostgreSQL is unavailable (${e.code ?? "error"}: ${e.message})`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  load(): Promise<PersistentState> {
    // One statement, so one consistent view: hard state and applied index
    // (kind 0), the snapshot (kind 1), the log after it (kind 2).
    return this.#run("load", async (sql) => {
      const rows = await sql`
        with snap as (select idx, term, membership, data from pgraft.snapshot)
        select 0 as kind, a.last_applied as idx, h.term, h.vote, h.commit,
               null::smallint as type, null::bytea as data, null::jsonb as membership
          from pgraft.applied a left join pgraft.hard_state h on true
        union all
        select 1, idx, term, null, null, null, data, membership from snap
        union all
        select 2, l.idx, l.term, null, null, l.type, l.data, null
          from pgraft.log l where l.idx > coalesce((select idx from snap), 0)
        order by 1, 2`;
      const head = rows[0];
      assert(head !== undefined && head.kind === 0, "load: pgraft.applied has no row");
      const snap = rows[1]?.kind === 1 ? rows[1] : undefined;
      const snapshotIndex = snap ? num(snap.idx) : 0;
      const entries: Entry[] = [];
      for (const r of rows) {
        if (r.kind !== 2) continue;
        const e: Entry = {
          index: num(r.idx),
          term: num(r.term),
          type: r.type === 1 ? "conf_change" : "normal",
          data: bytes(r.data),
        };
        assert(
          e.index === snapshotIndex + 1 + entries.length,
          `load: the log is not contiguous after ${snapshotIndex}: found index ${e.index}`,
        );
        entries.push(e);
      }
      return {
        hardState: head.term === null
          ? { term: 0, vote: 0, commit: 0 }
          : { term: num(head.term), vote: num(head.vote), commit: num(head.commit) },
        snapshot: snap
          ? {
            meta: {
              index: snapshotIndex,
              term: num(snap.term),
              membership: snap.membership as Membership,
            },
            data: bytes(snap.data),
          }
          : null,
        entries,
        applied: num(head.idx),
      };
    });
  }

  async persist(update: PersistUpdate): Promise<void> {
    checkEntries(update.entries);
    const { snapshot, entries, hardState: hs } = update;
    if (snapshot) {
      decodeStateImage(snapshot.data); // a TypeError before anything changes
      const { index, term, membership } = snapshot.meta;
      await this.#run("persist", (sql) =>
        sql`select pgraft.storage_persist_snapshot(
              ${index}, ${term}, ${sql.json(membership as unknown as postgres.JSONValue)},
              ${snapshot.data},
              ${sql.typed(entries.map((e) => e.index), INT8_ARRAY)}, ${
          sql.typed(entries.map((e) => e.term), INT8_ARRAY)
        },
              ${sql.typed(entries.map((e) => ENTRY_TYPE_CODE[e.type]), INT2_ARRAY)},
              ${sql.typed(entries.map((e) => e.data), BYTEA_ARRAY)},
              ${hs?.term ?? null}::bigint, ${hs?.vote ?? null}::int, ${
          hs?.commit ?? null
        }::bigint)`);
      return;
    }
    if (entries.length === 0 && !hs) return;
    await this.#run("persist", (sql) => this.#appendAndHardState(sql, update));
  }

  /**
   * Append (overwriting the entries from entries[0].index on) and write the hard
   * state, in one statement: one round trip, atomic. Upserting the overlap and
   * deleting what lies beyond the new last index equals "delete >= first, then
   * insert", and the two touch disjoint rows.
   */
  async #appendAndHardState(sql: Sql, update: PersistUpdate): Promise<void> {
    const { entries, hardState: hs } = update;
    const last = entries[entries.length - 1];
    const writeHardState = hs
      ? sql`
        insert into pgraft.hard_state (id, term, vote, commit)
        values (true, ${hs.term}, ${hs.vote}, ${hs.commit})
        on conflict (id) do update
          set term = excluded.term, vote = excluded.vote, commit = excluded.commit`
      : null;
    if (!last) {
      if (writeHardState) await writeHardState;
      return;
    }
    const appended = sql`appended as (
          insert into pgraft.log (idx, term, type, data)
          select * from unnest(${sql.typed(entries.map((e) => e.index), INT8_ARRAY)},
                               ${sql.typed(entries.map((e) => e.term), INT8_ARRAY)},
                               ${
      sql.typed(entries.map((e) => ENTRY_TYPE_CODE[e.type]), INT2_ARRAY)
    },
                               ${sql.typed(entries.map((e) => e.data), BYTEA_ARRAY)})
          on conflict (idx) do update
            set term = excluded.term, type = excluded.type, data = excluded.data
        )`;
    const truncate = sql`delete from pgraft.log where idx > ${last.index}`;
    if (writeHardState) await sql`with ${appended}, truncated as (${truncate}) ${writeHardState}`;
    else await sql`with ${appended} ${truncate}`;
  }

  apply(items: ApplyItem[]): Promise<ApplyResult[]> {
    if (items.length === 0) return Promise.resolve([]);
    const n = items.length;
    const op = new Array<number>(n);
    const s1 = new Array<string | null>(n).fill(null);
    const s2 = new Array<string | null>(n).fill(null);
    const n1 = new Array<number | null>(n).fill(null);
    const n2 = new Array<number | null>(n).fill(null);
    const val = new Array<Uint8Array | null>(n).fill(null);
    items.forEach((item, i) => {
      const c = item.command;
      switch (c.op) {
        case "noop":
          op[i] = 0;
          break;
        case "init_cluster":
          op[i] = 1;
          s1[i] = c.clusterId;
          s2[i] = c.clusterName;
          break;
        case "conf_change": {
          op[i] = 2;
          s1[i] = c.change.kind;
          n1[i] = c.change.nodeId;
          const address = c.change.kind === "remove_node"
            ? null
            : parseMemberContext(c.change.context);
          s2[i] = address?.address ?? null;
          n2[i] = address?.port ?? null;
          break;
        }
        case "set_config":
          op[i] = 3;
          s1[i] = c.name;
          s2[i] = c.value;
          break;
        case "kv_put":
          op[i] = 4;
          s1[i] = c.key;
          val[i] = c.value;
          break;
        case "kv_delete":
          op[i] = 5;
          s1[i] = c.key;
          break;
        default:
          unreachable(c, "command");
      }
    });
    return this.#run("apply", async (sql) => {
      let rows;
      try {
        rows = await sql`
          select r_idx, r_applied, r_existed from pgraft.storage_apply(
            ${sql.typed(items.map((it) => it.index), INT8_ARRAY)}, ${sql.typed(op, INT2_ARRAY)}, ${
          sql.typed(s1, TEXT_ARRAY)
        },
            ${sql.typed(s2, TEXT_ARRAY)}, ${sql.typed(n1, INT8_ARRAY)}, ${
          sql.typed(n2, INT4_ARRAY)
        },
            ${sql.typed(val, BYTEA_ARRAY)})`;
      } catch (error) {
        if ((error as { code?: unknown }).code === "PGR01") {
          throw new AssertionError((error as Error).message);
        }
        throw error;
      }
      assert(rows.length === n, `apply: ${rows.length} results for ${n} items`);
      return rows.map((r, i): ApplyResult => {
        const index = items[i]!.index;
        assert(num(r.r_idx) === index, "apply: results out of order");
        if (!r.r_applied) return { index, applied: false };
        const kind = items[i]!.command.op;
        if (kind === "kv_put" || kind === "kv_delete") {
          return { index, applied: true, existed: r.r_existed === true, revision: index };
        }
        return { index, applied: true };
      });
    });
  }

  snapshotData(): Promise<{ index: number; data: Uint8Array }> {
    // The state image is built by the server in one statement (one consistent
    // view); its shape is StateImage (lib/storage/commands.ts).
    return this.#run("snapshotData", async (sql) => {
      const [row] = await sql`
        select a.last_applied,
               convert_to(json_build_object(
                 'version', 1,
                 'lastApplied', a.last_applied,
                 'clusterId', a.cluster_id,
                 'clusterName', a.cluster_name,
                 'members', coalesce((
                   select json_agg(json_build_object(
                            'nodeId', m.node_id, 'address', m.address, 'port', m.port,
                            'isVoter', m.is_voter, 'addedIndex', m.added_index)
                          order by m.node_id)
                     from pgraft.members m), '[]'),
                 'settings', coalesce((
                   select json_agg(json_build_object(
                            'name', s.name, 'value', s.value, 'setIndex', s.set_index)
                          order by s.name collate "C")
                     from pgraft.cluster_settings s), '[]'),
                 'kv', coalesce((
                   select json_agg(json_build_array(
                            k.key, translate(encode(k.value, 'base64'), E'\n', ''), k.revision)
                          order by k.key collate "C")
                     from pgraft.kv k), '[]')
               )::text, 'UTF8') as data
          from pgraft.applied a`;
      assert(row !== undefined, "snapshotData: pgraft.applied has no row");
      return { index: num(row.last_applied), data: bytes(row.data) };
    });
  }

  saveSnapshot(snapshot: Snapshot): Promise<void> {
    const { index, term, membership } = snapshot.meta;
    return this.#run("saveSnapshot", async (sql) => {
      await sql`select pgraft.storage_save_snapshot(${index}, ${term},
                  ${sql.json(membership as unknown as postgres.JSONValue)}, ${snapshot.data})`;
    });
  }

  appliedState(): Promise<AppliedState> {
    return this.#run("appliedState", async (sql) => {
      const [a] = await sql`
        select a.last_applied, a.cluster_id, a.cluster_name,
               coalesce((select json_agg(json_build_object(
                                  'nodeId', m.node_id, 'address', m.address, 'port', m.port,
                                  'isVoter', m.is_voter) order by m.node_id)
                           from pgraft.members m), '[]') as members,
               coalesce((select json_object_agg(s.name, s.value)
                           from pgraft.cluster_settings s), '{}') as settings
          from pgraft.applied a`;
      assert(a !== undefined, "appliedState: pgraft.applied has no row");
      return {
        lastApplied: num(a.last_applied),
        clusterId: a.cluster_id ?? null,
        clusterName: a.cluster_name ?? null,
        members: a.members as Member[],
        settings: a.settings as Record<string, string>,
      };
    });
  }

  kvGet(key: string): Promise<KvPair | null> {
    if (typeof key !== "string") return Promise.reject(new TypeError("key must be a string"));
    return this.#run("kvGet", async (sql) => {
      const [r] = await sql`select value, revision from pgraft.kv where key = ${key}`;
      return r ? { key, value: bytes(r.value), revision: num(r.revision) } : null;
    });
  }

  kvList(prefix: string, limit: number): Promise<KvPair[]> {
    try {
      checkListArgs(prefix, limit);
    } catch (error) {
      return Promise.reject(error);
    }
    if (limit === 0) return Promise.resolve([]);
    const upper = prefixUpperBound(prefix);
    return this.#run("kvList", async (sql) => {
      const rows = await sql`
        select key, value, revision from pgraft.kv
         where key collate "C" >= ${prefix}
           and (${upper}::text is null or key collate "C" < ${upper}::text)
           and starts_with(key, ${prefix})
         order by key collate "C"
         limit ${limit}`;
      return rows.map((r) => ({ key: r.key, value: bytes(r.value), revision: num(r.revision) }));
    });
  }

  /** End the pool (waits for running calls briefly). Calls after close reject. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#sql.end({ timeout: 1 }).catch(() => {});
    await Promise.all([...this.#ending]);
  }
}
