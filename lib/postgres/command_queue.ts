/**
 * The SQL command queue: the `pgraft_*` command functions insert a row into
 * `pgraft.commands` and NOTIFY; the agent takes the rows in order, has each
 * executed ({@link CommandRunner}, which the agent implements), and records
 * the outcome together with the status that goes with it, so the next SQL
 * statement that waits for the command sees its effect.
 *
 * A missed notification costs nothing: the queue is drained again on every
 * notification, on (re)connection, and after a failed read.
 *
 * @module
 */

import { retry, sleep } from "../async.ts";
import type { ControlPool } from "./control_pool.ts";
import type { Publisher } from "./publisher.ts";
import { statusRows, type StatusSnapshot } from "./status_rows.ts";
import type postgres from "postgres";

/** The kinds of rows in pgraft.commands (sql/ checks the same list). */
export type CommandKind =
  | "init"
  | "add_node"
  | "remove_node"
  | "transfer_leadership"
  | "set_config"
  | "kv_put"
  | "kv_delete";

/** A command row as the agent sees it. */
export interface CommandRow {
  commandId: number;
  kind: CommandKind;
  args: Record<string, unknown>;
}

/** What executing a command gave: its result, and the log index whose application shows it. */
export interface CommandOutcome {
  /** recorded in pgraft.commands.result */
  result: Record<string, unknown>;
  /** 0 when nothing was written to the log */
  index: number;
}

/** What the queue needs from the node around it. */
export interface CommandRunner {
  /** Execute one command; resolves once its effect is applied on this node. */
  execute(kind: CommandKind, args: Record<string, unknown>): Promise<CommandOutcome>;
  /** The status published together with a command's outcome. */
  status(): StatusSnapshot;
  /** A command failed (the runner records an event and logs it). */
  failed(row: CommandRow, message: string): void;
  /** A command finished (for the log). */
  done(row: CommandRow): void;
  /** The queue cannot read or record commands right now (for the log). */
  trouble(what: string, error: unknown): void;
}

/** Delay before reading pgraft.commands again after a failed read. */
const COMMAND_READ_RETRY_MS = 50;

/** Attempts to record a command's outcome (about 5 s of retries at 50 ms). */
const OUTCOME_RECORD_ATTEMPTS_MAX = 100;

/** Rows taken per read. */
const COMMANDS_PER_READ_MAX = 100;

/** How long a finished command waits for the published copy to show its effect. */
const PUBLISH_WAIT_MS = 2_000;

/** Runs queued commands one at a time, oldest first. */
export class CommandQueue {
  readonly #pool: ControlPool;
  readonly #publisher: Publisher;
  readonly #runner: CommandRunner;
  #draining: Promise<void> | null = null;
  #again = false;
  #stopped = false;

  constructor(pool: ControlPool, publisher: Publisher, runner: CommandRunner) {
    this.#pool = pool;
    this.#publisher = publisher;
    this.#runner = runner;
  }

  /** Subscribe to notifications and drain what is already queued. */
  async start(): Promise<void> {
    await this.#pool.listen("pgraft_commands", () => this.poll());
    this.poll();
  }

  /** Drain the queue (again, when a drain is under way). */
  poll(): void {
    if (this.#stopped) return;
    if (this.#draining) {
      this.#again = true;
      return;
    }
    this.#draining = this.#drain().finally(() => {
      this.#draining = null;
      if (this.#again) {
        this.#again = false;
        this.poll();
      }
    });
  }

  /** Stop taking commands (the one under way ends with the replica's stop). */
  stop(): void {
    this.#stopped = true;
  }

  async #drain(): Promise<void> {
    let rows: CommandRow[];
    try {
      rows = await this.#pending();
    } catch (error) {
      // A terminated session or a restarting server: try again shortly.
      this.#runner.trouble("cannot read pgraft.commands", error);
      if (!this.#stopped) sleep(COMMAND_READ_RETRY_MS).then(() => this.poll());
      return;
    }
    for (const row of rows) {
      if (this.#stopped) return;
      await this.#runOne(row);
    }
    if (rows.length > 0) this.#again = true;
  }

  /**
   * Commands still to do, oldest first. Rows left 'running' by a previous agent
   * process (it died mid-command) are returned too, so they are finished or failed.
   */
  async #pending(): Promise<CommandRow[]> {
    const rows = await this.#pool.run(
      "pendingCommands",
      (sql) =>
        sql<{ command_id: string; kind: CommandKind; args: Record<string, unknown> }[]>`
        select command_id, kind, args from pgraft.commands
         where status in ('pending', 'running')
         order by command_id limit ${COMMANDS_PER_READ_MAX}`,
    );
    return rows.map((r) => ({ commandId: Number(r.command_id), kind: r.kind, args: r.args }));
  }

  async #runOne(row: CommandRow): Promise<void> {
    await this.#pool.run(
      "markRunning",
      // pgraft.start_command() commits without waiting for synchronous standbys.
      (sql) => sql`select pgraft.start_command(${row.commandId})`,
    ).catch(() => {});
    let outcome: { ok: true; result: unknown } | { ok: false; error: string };
    try {
      const { result, index } = await this.#runner.execute(row.kind, row.args);
      // The command counts as finished once the next statement can see its effect.
      await this.#publisher.publishedThrough(index, PUBLISH_WAIT_MS);
      outcome = { ok: true, result };
      this.#runner.done(row);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      outcome = { ok: false, error: message };
      this.#runner.failed(row, message);
    }
    // The outcome is known: record it, retrying through transient errors
    // (running the command again would repeat its effect).
    await retry(async () => {
      await this.#publisher.flushEvents().catch(() => {});
      await this.#finish(row.commandId, outcome, this.#runner.status());
    }, {
      retryable: () => !this.#stopped,
      delaysMs: [COMMAND_READ_RETRY_MS],
      attemptsMax: OUTCOME_RECORD_ATTEMPTS_MAX,
      onRetry: (error) => this.#runner.trouble(`cannot record command ${row.commandId}`, error),
    }).catch(() => {});
  }

  /**
   * Record a command's outcome and, in the same statement, the status that goes
   * with it (one statement: atomic without a client-side transaction, so a
   * terminated session cannot leave the driver inside one).
   */
  async #finish(
    commandId: number,
    outcome: { ok: true; result: unknown } | { ok: false; error: string },
    status: StatusSnapshot,
  ): Promise<void> {
    const error = outcome.ok ? null : outcome.error;
    await this.#pool.run("finishCommand", (sql) => {
      const result = outcome.ok ? sql.json((outcome.result ?? null) as postgres.JSONValue) : null;
      return sql`select pgraft.finish_command(${commandId}, ${outcome.ok}, ${result}, ${error},
                                              ${sql.json(statusRows(status))})`;
    });
  }
}
