/**
 * The HA runner's hands on this node's PostgreSQL server: it carries out the
 * controller's server actions with the supervisor (lib/postgres), one at a
 * time — an immediate fence never waits behind another — records an event
 * for each that changes the server's role, and keeps the primary's
 * {@link Watchdog} in step with the lease. It decides nothing.
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { PgraftSettings } from "../config/mod.ts";
import type { HaAction, ServerOperation } from "../ha/mod.ts";
import type { NodeId } from "../raft/mod.ts";
import type { PrimaryTarget } from "../postgres/replication.ts";
import { RewindError, type Supervisor } from "../postgres/supervisor.ts";
import { Watchdog } from "../postgres/watchdog.ts";
import type { Logger } from "./log.ts";

/** The controller's actions that operate the server. */
export type ServerAction = Extract<
  HaAction,
  {
    type:
      | "start_as_is"
      | "start_standby"
      | "fence"
      | "freeze"
      | "follow"
      | "promote"
      | "rewind"
      | "clone"
      | "set_synchronous_standby_names";
  }
>;

const SERVER_ACTIONS: ReadonlySet<string> = new Set<ServerAction["type"]>([
  "start_as_is",
  "start_standby",
  "fence",
  "freeze",
  "follow",
  "promote",
  "rewind",
  "clone",
  "set_synchronous_standby_names",
]);

/** Whether `action` operates the server. */
export function isServerAction(action: HaAction): action is ServerAction {
  return SERVER_ACTIONS.has(action.type);
}

/** What {@link ServerOperations} needs. */
export interface ServerOperationsOptions {
  nodeId: NodeId;
  supervisor: Supervisor;
  settings: () => PgraftSettings;
  log: Logger;
  event: (type: string, fields?: { nodeId?: NodeId; detail?: string }) => void;
  /** how this node's standby reaches member `nodeId`'s server (null: address not known yet) */
  target: (nodeId: NodeId) => PrimaryTarget | null;
  /** an operation ended: the server must be observed before the next decision */
  ended: () => void;
}

/** The server operations of one node. */
export class ServerOperations {
  readonly #o: ServerOperationsOptions;
  #inProgress: { op: ServerOperation; sinceMs: number; token: number } | null = null;
  #token = 0;
  /** settles when the operations under way have ended */
  #operations: Promise<void> = Promise.resolve();
  /** an immediate fence is under way (it preempted whatever ran) */
  #fencingImmediately = false;
  #watchdog: Watchdog | null = null;
  #watchdogStarting = false;
  /** the agent is stopping: no operation starts but a stop */
  #stopping = false;

  constructor(options: ServerOperationsOptions) {
    this.#o = options;
  }

  /** The operation under way, if any (an HA input). */
  get inProgress(): { op: ServerOperation; sinceMs: number } | null {
    const p = this.#inProgress;
    return p === null ? null : { op: p.op, sinceMs: p.sinceMs };
  }

  /** Carry out `action`: at once for an immediate fence, else unless an operation is under way. */
  run(action: ServerAction): void {
    if (action.type === "fence" && action.mode === "immediate") {
      this.#fenceNow();
      return;
    }
    const sup = this.#o.supervisor;
    switch (action.type) {
      case "fence":
        this.#operate("stop", () => this.#fence("fast"));
        return;
      case "start_as_is":
        this.#operate("start", async () => {
          await sup.bootstrapSettings();
          const report = await sup.start();
          return `started as it is in ${Math.round(report.ms)} ms`;
        });
        return;
      case "start_standby": {
        const target = action.upstream === null ? null : this.#o.target(action.upstream);
        if (action.upstream !== null && target === null) return;
        this.#operate("start", async () => {
          if ((await sup.pid()) === null) await sup.bootstrapSettings();
          const report = await sup.startStandby(target);
          const upstream = action.upstream === null ? "no one (frozen)" : `node ${action.upstream}`;
          return `started as a standby of ${upstream} in ${Math.round(report.ms)} ms`;
        });
        return;
      }
      case "freeze":
        this.#operate("freeze", async () => {
          const report = await sup.freeze();
          return `stopped streaming at ${report.lsn ?? "?"} in ${Math.round(report.ms)} ms`;
        });
        return;
      case "follow": {
        const target = this.#o.target(action.upstream);
        if (target === null) return;
        this.#operate("follow", async () => {
          await sup.follow(target, { waitStreaming: false });
          return `follows node ${action.upstream}`;
        });
        return;
      }
      case "promote":
        this.#operate("promote", async () => {
          const report = await sup.promote({ timeline: action.timeline });
          const detail =
            `node ${this.#o.nodeId}'s server promoted to timeline ${report.timeline} ` +
            `at ${report.lsn} in ${Math.round(report.ms)} ms`;
          this.#o.event("postgres_promoted", { detail });
          return detail;
        });
        return;
      case "rewind": {
        const target = this.#o.target(action.source);
        if (target === null) return;
        this.#operate("rewind", async () => {
          try {
            const report = await sup.rewind(target);
            const at = report.divergedAt;
            const detail = report.rewound
              ? `rewound from node ${action.source} in ${Math.round(report.ms)} ms` +
                (at ? ` (diverged at ${at.lsn} on timeline ${at.timeline})` : "")
              : `no rewind was needed; follows node ${action.source}`;
            this.#o.event("postgres_rewound", { detail });
            return detail;
          } catch (error) {
            if (error instanceof RewindError) {
              this.#o.event("rewind_failed", { detail: error.message });
            }
            throw error;
          }
        });
        return;
      }
      case "clone": {
        const target = this.#o.target(action.source);
        if (target === null) return;
        this.#operate("clone", async () => {
          const report = await sup.clone(target, { reclone: this.#o.settings().allowReclone });
          const detail = `cloned from node ${action.source} in ${Math.round(report.cloneMs)} ms ` +
            `(system ${report.systemIdentifier})`;
          this.#o.event("postgres_cloned", { detail });
          return detail;
        });
        return;
      }
      case "set_synchronous_standby_names":
        this.#operate("set_synchronous", async () => {
          await sup.setSynchronousStandbys(action.value);
          return `synchronous_standby_names = '${action.value}'`;
        });
        return;
      default:
        assert(false, `unhandled server action ${(action as HaAction).type}`);
    }
  }

  /**
   * Keep the watchdog in step: while the server is (or is becoming) the
   * leader's primary, armed and told it may go on for `validForMs`; else
   * disarmed once the server is no longer the primary.
   */
  guard(guarded: boolean, serverIsPrimary: boolean, validForMs: number): void {
    if (!guarded || this.#fencingImmediately) {
      if (this.#watchdog !== null && !serverIsPrimary) {
        const watchdog = this.#watchdog;
        this.#watchdog = null;
        watchdog.disarm().catch(() => {});
      }
      return;
    }
    if (this.#watchdog !== null) {
      this.#watchdog.renew(validForMs);
      return;
    }
    if (this.#watchdogStarting || validForMs <= 0 || this.#stopping) return;
    this.#watchdogStarting = true;
    (async () => {
      const pid = await this.#o.supervisor.pid();
      if (pid === null) return;
      const watchdog = await Watchdog.start(pid, this.#o.supervisor.dataDir, validForMs);
      if (this.#stopping) {
        await watchdog.disarm();
        return;
      }
      this.#watchdog = watchdog;
      this.#o.log.info("watchdog armed: the server stops if the agent stops renewing its lease", {
        postmaster: pid,
      });
    })().catch((error) =>
      this.#o.log.error("the watchdog could not start", { error: String(error) })
    ).finally(() => (this.#watchdogStarting = false));
  }

  /** From now on only a stop may start (the agent is stopping). */
  stopping(): void {
    this.#stopping = true;
  }

  /**
   * Wait for the operations under way, disarm the watchdog and stop the
   * server cleanly (a server without its agent would be unguarded).
   */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    await this.#operations;
    await this.#disarm();
    const stop = await this.#o.supervisor.stop().catch((error) => {
      this.#o.log.warn("could not stop PostgreSQL", { error: String(error) });
      return null;
    });
    if (stop && stop.mode !== "none") {
      this.#o.log.info("PostgreSQL stopped", { mode: stop.mode, ms: Math.round(stop.ms) });
    }
    await this.#o.supervisor.close().catch(() => {});
  }

  /** Run an operation unless one is under way. */
  #operate(op: ServerOperation, work: () => Promise<string>): void {
    if (this.#inProgress !== null || (this.#stopping && op !== "stop")) return;
    const token = ++this.#token;
    this.#inProgress = { op, sinceMs: performance.now(), token };
    this.#o.log.info(`PostgreSQL: ${op}`);
    this.#track(
      work().then(
        (detail) => this.#o.log.info(`PostgreSQL: ${op} done`, { detail }),
        (error) => this.#o.log.warn(`PostgreSQL: ${op} failed`, { error: String(error) }),
      ).finally(() => this.#ended(token)),
    );
  }

  /** An immediate fence: now, whatever else runs (the one operation never kept waiting). */
  #fenceNow(): void {
    if (this.#fencingImmediately) return;
    const token = ++this.#token;
    this.#inProgress = { op: "stop", sinceMs: performance.now(), token };
    this.#fencingImmediately = true;
    this.#track(
      this.#fence("immediate").then(
        (detail) => this.#o.log.info("PostgreSQL fenced", { detail }),
        (error) => this.#o.log.error("fencing PostgreSQL failed", { error: String(error) }),
      ).finally(() => {
        this.#fencingImmediately = false;
        this.#ended(token);
      }),
    );
  }

  async #fence(mode: "fast" | "immediate"): Promise<string> {
    // An immediate stop is the agent's own: the watchdog must not fire later
    // at a new postmaster of this data directory.
    if (mode === "immediate") await this.#disarm();
    const report = await this.#o.supervisor.fence({ mode });
    await this.#disarm();
    const checkpoint = report.checkpointMs === null
      ? ""
      : `checkpoint in ${Math.round(report.checkpointMs)} ms, then `;
    const detail = `node ${this.#o.nodeId}'s server stopped (${checkpoint}${report.stop.mode} ` +
      `shutdown in ${Math.round(report.stop.ms)} ms)`;
    this.#o.event(mode === "immediate" ? "postgres_fenced" : "postgres_demoted", { detail });
    return detail;
  }

  async #disarm(): Promise<void> {
    const watchdog = this.#watchdog;
    this.#watchdog = null;
    await watchdog?.disarm();
  }

  #track(operation: Promise<void>): void {
    const before = this.#operations;
    this.#operations = Promise.all([before, operation]).then(() => {});
  }

  #ended(token: number): void {
    if (this.#inProgress?.token === token) this.#inProgress = null;
    this.#o.ended();
  }
}
