/**
 * The agent's link to its own PostgreSQL: everything on that side, started in
 * the background so that consensus never waits for it. Until the server can
 * be reached it retries (with a growing pause, at most a second); once it
 * can, it applies the migrations, checks that the server's published copy is
 * this cluster's, then runs the publisher and the SQL command queue. While the
 * server is down or read-only the node goes on voting, replicating and
 * serving HTTP; the publisher catches up when it is writable again.
 *
 * @module
 */

import { sleep } from "../async.ts";
import { CommandQueue, type CommandRunner } from "./command_queue.ts";
import { openPostgres, type PgConnectionOptions } from "./connection.ts";
import { ControlPool } from "./control_pool.ts";
import { migrate } from "./migrations.ts";
import { Publisher, type PublishSource } from "./publisher.ts";

/** What the link needs from the node: what to publish and how to run commands. */
export interface LinkSource extends PublishSource, CommandRunner {
  /** this node's cluster id, when it belongs to one */
  clusterId(): string | null;
  /** the link is up: migrated, checked, publishing */
  connected(): void;
  /**
   * The server's published copy belongs to another cluster: the agent must not
   * write there (the node and its PostgreSQL were mixed up).
   */
  foreignCluster(theirs: string, ours: string): void;
}

/** Pause between attempts to reach the server; it doubles up to the max. */
const CONNECT_PAUSE_MS_MIN = 50;
const CONNECT_PAUSE_MS_MAX = 1_000;

/** The link to the node's PostgreSQL. */
export class PostgresLink {
  readonly pool: ControlPool;
  readonly publisher: Publisher;
  readonly commands: CommandQueue;
  readonly #source: LinkSource;
  #starting: Promise<void> | null = null;
  #stopped = false;
  #up = false;

  constructor(connection: PgConnectionOptions, source: LinkSource) {
    this.#source = source;
    this.pool = new ControlPool(() =>
      openPostgres({
        ...connection,
        max: 2,
        connect_timeout: 5,
        idle_timeout: 0,
        connection: { application_name: "pgraft agent" },
      })
    );
    this.publisher = new Publisher(this.pool, source);
    this.commands = new CommandQueue(this.pool, this.publisher, source);
  }

  /** Whether the link is up (migrated and publishing). */
  get up(): boolean {
    return this.#up;
  }

  /**
   * Start in the background; `firstAttempt` resolves after the first try to
   * connect (whether it worked or not), so a caller can say at start-up
   * whether PostgreSQL was there.
   */
  start(): { firstAttempt: Promise<boolean> } {
    let first: (ok: boolean) => void = () => {};
    const firstAttempt = new Promise<boolean>((resolve) => (first = resolve));
    this.#starting ??= (async () => {
      let pauseMs = 0;
      while (!this.#stopped) {
        try {
          await this.#connect();
          first(true);
          return;
        } catch (error) {
          first(false);
          if (pauseMs === 0 || pauseMs >= CONNECT_PAUSE_MS_MAX) {
            this.#source.trouble("cannot reach PostgreSQL", error);
          }
          pauseMs = Math.min(CONNECT_PAUSE_MS_MAX, Math.max(CONNECT_PAUSE_MS_MIN, pauseMs * 2));
          await sleep(pauseMs);
        }
      }
      first(false);
    })();
    return { firstAttempt };
  }

  async #connect(): Promise<void> {
    await migrate(this.pool.sql);
    const ours = this.#source.clusterId();
    const [row] = await this.pool.run(
      "read published",
      (sql) => sql<{ cluster_id: string | null }[]>`select cluster_id::text from pgraft.published`,
    );
    const theirs = row?.cluster_id ?? null;
    if (ours !== null && theirs !== null && theirs !== ours) {
      this.#stopped = true;
      this.#source.foreignCluster(theirs, ours);
      return;
    }
    if (this.#stopped) return;
    this.#up = true;
    this.publisher.start();
    await this.commands.start();
    this.#source.connected();
  }

  /** Stop publishing and taking commands; close the pool. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.commands.stop();
    await this.#starting?.catch(() => {});
    await this.publisher.stop();
    if (this.#up) await this.publisher.flushEvents().catch(() => {});
    await this.pool.close().catch(() => {});
  }
}
