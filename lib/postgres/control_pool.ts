/**
 * The agent's connection pool to its own PostgreSQL for the control schema:
 * every statement runs with a deadline, and a pool whose connection hangs
 * (its server went away at the wrong moment) is replaced so that the next
 * statement gets a fresh connection. LISTEN subscriptions follow the pool.
 *
 * @module
 */

import type postgres from "postgres";
import { deadline, TimeoutError } from "../async.ts";

/** A control statement that takes longer than this is abandoned and the pool replaced. */
export const CONTROL_TIMEOUT_MS = 3_000;

/** A deadline-guarded, self-replacing postgres.js pool. */
export class ControlPool {
  readonly #connect: () => postgres.Sql;
  #sql: postgres.Sql;
  #listeners: { channel: string; onNotify: () => void; handle: postgres.ListenMeta | null }[] = [];

  /** @param connect makes a new pool (called again when one has to be replaced) */
  constructor(connect: () => postgres.Sql) {
    this.#connect = connect;
    this.#sql = connect();
  }

  /** The current pool (for the migrations and reads that need no deadline). */
  get sql(): postgres.Sql {
    return this.#sql;
  }

  /**
   * Run one statement with a deadline.
   *
   * @param what names the statement in the timeout error
   * @param fn the statement on the current pool
   * @throws TimeoutError past {@link CONTROL_TIMEOUT_MS} (the pool is then replaced), or the statement's error
   */
  async run<T>(what: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
    const sql = this.#sql;
    try {
      return await deadline(fn(sql), CONTROL_TIMEOUT_MS, `PostgreSQL to answer ${what}`);
    } catch (error) {
      if (error instanceof TimeoutError && sql === this.#sql) this.#replace();
      throw error;
    }
  }

  /** Subscribe to a NOTIFY channel; `onNotify` also runs when the subscription (re)connects. */
  async listen(channel: string, onNotify: () => void): Promise<void> {
    const listener = { channel, onNotify, handle: null as postgres.ListenMeta | null };
    this.#listeners.push(listener);
    listener.handle = await this.#sql.listen(channel, () => onNotify(), () => onNotify());
  }

  async close(): Promise<void> {
    await Promise.all(this.#listeners.map((l) => l.handle?.unlisten().catch(() => {})));
    this.#listeners = [];
    await this.#sql.end({ timeout: 2 });
  }

  #replace(): void {
    const old = this.#sql;
    const listeners = this.#listeners;
    this.#sql = this.#connect();
    for (const l of listeners) {
      l.handle?.unlisten().catch(() => {});
      l.handle = null;
    }
    old.end({ timeout: 0 }).catch(() => {});
    for (const l of listeners) {
      this.#sql.listen(l.channel, () => l.onNotify(), () => l.onNotify())
        .then((handle) => (l.handle = handle))
        .catch(() => {});
    }
  }
}
