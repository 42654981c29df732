/**
 * The publisher keeps the node's PostgreSQL in step with the agent, beside
 * consensus and never holding it back: the live status, events, the effective
 * configuration with the input rules, and a copy of the replicated state
 * machine (members and the key-value store) stamped with the applied index it
 * reflects (`pgraft.published`).
 *
 * One publish runs at a time; whatever changes meanwhile goes out together in
 * the next one (coalesced: a key written many times is written once, with its
 * current value). The state copy follows the state machine's change feed; when
 * the feed no longer reaches back to the copy's index (a long outage, a
 * snapshot installed from the leader, a fresh start) the copy is rewritten
 * whole, page by page. While PostgreSQL cannot be written, events wait in a
 * bounded buffer and the publisher retries with a growing pause.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type postgres from "postgres";
import { sleep } from "../async.ts";
import type { StateMachine } from "../state/mod.ts";
import type { ControlPool } from "./control_pool.ts";
import {
  type EffectiveConfigRow,
  type EventRow,
  statusRows,
  type StatusSnapshot,
} from "./status_rows.ts";

/** Events kept in pgraft.events; older ones are trimmed. */
export const EVENTS_KEPT_MAX = 10_000;

/** Events buffered in memory while PostgreSQL is unreachable; the oldest are dropped beyond. */
export const EVENTS_BUFFERED_MAX = 1_000;

/** Keys written per statement (a resync writes the store in pages of this many). */
export const KEYS_PER_PUBLISH_MAX = 1_000;

/**
 * How long a change waits for others to publish with it (unless a command
 * waits for it): publishing stays off the path of clients' answers and goes
 * out in batches under load.
 */
export const PUBLISH_COALESCE_MS = 10;

/** Pause after a failed publish; it doubles up to {@link RETRY_PAUSE_MS_MAX}. */
const RETRY_PAUSE_MS_MIN = 50;
const RETRY_PAUSE_MS_MAX = 1_000;

/** What the publisher reads from the node. */
export interface PublishSource {
  /** the state machine now (a snapshot from the leader replaces it) */
  state(): StateMachine;
  status(): StatusSnapshot;
  /** pgraft.effective_config rows */
  config(): EffectiveConfigRow[];
  /** pgraft.limits: the input rules the SQL functions check (name → value) */
  limits(): Record<string, string>;
  /** something could not be written (for the log; once per outage) */
  trouble(what: string, error: unknown): void;
  /** publishing works again after trouble */
  recovered(): void;
}

/** Keeps the node's PostgreSQL in step. */
export class Publisher {
  readonly #pool: ControlPool;
  readonly #source: PublishSource;
  #events: EventRow[] = [];
  #eventsDropped = 0;
  /** the applied index the published state copy reflects (null: unknown, read it first) */
  #cursor: number | null = null;
  #configDirty = true;
  #statusDirty = true;
  #running: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #again = false;
  #pauseMs = 0;
  #failing = false;
  #started = false;
  #stopped = false;
  #waiters: { index: number; resolve: () => void }[] = [];

  constructor(pool: ControlPool, source: PublishSource) {
    this.#pool = pool;
    this.#source = source;
  }

  /** The applied index the published copy reflects (0 before the first publish). */
  get publishedIndex(): number {
    return this.#cursor ?? 0;
  }

  /** Whether the last publish succeeded. */
  get writable(): boolean {
    return !this.#failing;
  }

  /** Queue an event; it is written with the next publish. */
  recordEvent(event: EventRow): void {
    this.#events.push(event);
    if (this.#events.length > EVENTS_BUFFERED_MAX) {
      this.#events.shift();
      this.#eventsDropped++;
    }
    this.kick();
  }

  /** The effective configuration changed: publish it with the next publish. */
  configChanged(): void {
    this.#configDirty = true;
    this.kick();
  }

  /** The status changed (role, leader, members' progress): publish it with the next publish. */
  statusChanged(): void {
    this.#statusDirty = true;
    this.kick();
  }

  /** Start publishing (once the schema is there): everything changed so far goes out. */
  start(): void {
    this.#started = true;
    this.#configDirty = true;
    this.#statusDirty = true;
    this.kick();
  }

  /** Something changed: publish soon (at once when idle; after the current publish otherwise). */
  kick(): void {
    if (this.#stopped || !this.#started) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    // Coalesce: what changes within the next few ms goes out in one publish,
    // and the answers to clients are written before PostgreSQL is.
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#runNow();
    }, PUBLISH_COALESCE_MS);
  }

  /** Publish now (someone waits for it), or right after the publish under way. */
  #runNow(): void {
    if (this.#stopped || !this.#started) return;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#run().finally(() => {
      this.#running = null;
      if (this.#again && !this.#stopped) {
        this.#again = false;
        this.#runNow();
      }
    });
  }

  /**
   * Resolves once the published copy reflects `index` (or after `timeoutMs`,
   * false): the SQL command queue finishes a command only then, so that the
   * next statement sees its effect.
   */
  publishedThrough(index: number, timeoutMs: number): Promise<boolean> {
    if (this.publishedIndex >= index) return Promise.resolve(true);
    this.#runNow();
    return new Promise((resolve) => {
      const waiter = { index, resolve: () => resolve(true) };
      this.#waiters.push(waiter);
      sleep(timeoutMs).then(() => {
        const at = this.#waiters.indexOf(waiter);
        if (at < 0) return;
        this.#waiters.splice(at, 1);
        resolve(false);
      });
    });
  }

  /** Stop publishing (what is under way finishes). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => {});
  }

  /** Write the events still buffered (at shutdown). */
  async flushEvents(): Promise<void> {
    if (this.#events.length === 0) return;
    const batch = this.#events.slice();
    const dropped = this.#eventsDropped;
    const rows = batch.map((e) => ({
      event_timestamp: e.at,
      event_type: e.type,
      term: e.term,
      node_id: e.nodeId,
      detail: e.detail,
    }));
    if (dropped > 0) {
      rows.push({
        event_timestamp: new Date(),
        event_type: "events_dropped",
        term: null,
        node_id: null,
        detail: `${dropped} events were dropped while PostgreSQL was unreachable`,
      });
    }
    const json = JSON.parse(JSON.stringify(rows)) as postgres.JSONValue;
    await this.#pool.run(
      "insert_events",
      (sql) => sql`select pgraft.insert_events(${sql.json(json)}, ${EVENTS_KEPT_MAX})`,
    );
    this.#events.splice(0, batch.length);
    this.#eventsDropped -= dropped;
  }

  async #run(): Promise<void> {
    if (this.#pauseMs > 0) await sleep(this.#pauseMs);
    if (this.#stopped) return;
    try {
      await this.#publishOnce();
      this.#pauseMs = 0;
      if (this.#failing) {
        this.#failing = false;
        this.#source.recovered();
      }
    } catch (error) {
      if (!this.#failing) this.#source.trouble("cannot publish to PostgreSQL", error);
      this.#failing = true;
      // The copy commits asynchronously: after a crash of PostgreSQL it may have
      // rolled back behind what was sent. Read its stamp again before going on.
      this.#cursor = null;
      this.#pauseMs = Math.min(RETRY_PAUSE_MS_MAX, Math.max(RETRY_PAUSE_MS_MIN, this.#pauseMs * 2));
      this.#again = true;
    }
  }

  async #publishOnce(): Promise<void> {
    await this.flushEvents();
    if (this.#configDirty) {
      this.#configDirty = false;
      try {
        await this.#publishConfig();
      } catch (error) {
        this.#configDirty = true;
        throw error;
      }
    }
    await this.#publishState();
    if (this.#statusDirty) {
      this.#statusDirty = false;
      try {
        await this.#pool.run(
          "publish_status",
          (sql) =>
            sql`select pgraft.publish_status(${sql.json(statusRows(this.#source.status()))})`,
        );
      } catch (error) {
        this.#statusDirty = true;
        throw error;
      }
    }
  }

  async #publishConfig(): Promise<void> {
    const rows = this.#source.config().map((r) => ({
      name: r.name,
      setting: r.setting,
      unit: r.unit,
      scope: r.scope,
      source: r.source,
      sourcefile: r.sourcefile,
      sourceline: r.sourceline,
      value_type: r.valueType,
      min_value: r.minValue,
      max_value: r.maxValue,
      description: r.description,
    }));
    const limits = this.#source.limits();
    await this.#pool.run(
      "publish_config",
      (sql) => sql`select pgraft.publish_config(${sql.json(rows)}, ${sql.json(limits)})`,
    );
  }

  /** Bring the published copy of the state machine up to the state's applied index. */
  async #publishState(): Promise<void> {
    if (this.#cursor === null) this.#cursor = await this.#readPublishedIndex();
    for (let round = 0; round < 64; round++) {
      const state = this.#source.state();
      const batch = state.changesSince(this.#cursor);
      if (batch.resync) {
        await this.#resync(state);
        continue;
      }
      if (batch.changes.length === 0 && batch.next === this.#cursor) break;
      const puts = new Map<string, true>();
      const deletes = new Set<string>();
      let members = false;
      for (const change of batch.changes) {
        if (change.kind === "kv_put" || change.kind === "kv_delete") {
          const key = change.key!;
          if (state.kvGet(key)) {
            puts.set(key, true);
            deletes.delete(key);
          } else {
            deletes.add(key);
            puts.delete(key);
          }
        } else if (change.kind === "members") members = true;
      }
      const pairs = [...puts.keys()].map((key) => state.kvGet(key)).filter((p) => p !== null);
      await this.#write(state, this.#cursor, batch.next, false, pairs, [...deletes], members);
      this.#advanceTo(batch.next);
    }
  }

  /** Rewrite the whole copy: empty it, then the keys in pages; stamped only once complete. */
  async #resync(state: StateMachine): Promise<void> {
    const index = state.lastApplied;
    let after: string | undefined;
    let first = true;
    for (;;) {
      const page = state.kvList("", KEYS_PER_PUBLISH_MAX, after === undefined ? {} : { after });
      const last = page.length < KEYS_PER_PUBLISH_MAX;
      // An unfinished copy is stamped 0, so a restart in the middle rewrites it again.
      await this.#write(state, 0, last ? index : 0, first, page, [], first);
      first = false;
      if (last) break;
      after = page[page.length - 1]!.key;
    }
    this.#cursor = index;
    this.#advanceTo(index);
  }

  async #write(
    state: StateMachine,
    from: number,
    index: number,
    reset: boolean,
    pairs: readonly { key: string; value: Uint8Array; revision: number }[],
    deletes: readonly string[],
    members: boolean,
  ): Promise<void> {
    const puts = pairs.map((p) => ({
      k: p.key,
      v: Buffer.from(p.value.buffer, p.value.byteOffset, p.value.byteLength).toString("hex"),
      r: p.revision,
    }));
    const memberRows = members
      ? state.members().map((m) => ({
        node_id: m.nodeId,
        address: m.address,
        port: m.port,
        is_voter: m.isVoter,
        pg_host: m.pgHost,
        pg_port: m.pgPort,
      }))
      : null;
    await this.#pool.run(
      "publish_state",
      (sql) =>
        sql`select pgraft.publish_state(${from}, ${index}, ${state.clusterId}, ${reset},
                                      ${puts.length > 0 ? sql.json(puts) : null},
                                      ${deletes.length > 0 ? sql.json(deletes as string[]) : null},
                                      ${memberRows ? sql.json(memberRows) : null})`,
    );
  }

  async #readPublishedIndex(): Promise<number> {
    const [row] = await this.#pool.run(
      "read published",
      (sql) => sql<{ applied_index: string }[]>`select applied_index from pgraft.published`,
    );
    return row ? Number(row.applied_index) : 0;
  }

  #advanceTo(index: number): void {
    this.#cursor = Math.max(this.#cursor ?? 0, index);
    const still = [];
    for (const w of this.#waiters) {
      if (this.#cursor >= w.index) w.resolve();
      else still.push(w);
    }
    this.#waiters = still;
  }
}
