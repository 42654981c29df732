/**
 * The HA simulator's properties, checked after every simulated millisecond.
 *
 * "Writable" is decided here as the end-to-end prober sees it: a server is
 * writable when a commit on it can be acknowledged now — it is a primary
 * (not in recovery, not yet stopped) and, with synchronous replication, k of
 * the standbys its `synchronous_standby_names` lists stream from it. A
 * primary cut off from its synchronous standbys is not writable: its commits
 * hang and are never acknowledged. "Accepts writes" (not in recovery) is the
 * weaker notion; it is checked against the lease (property a2).
 *
 * - (a) never two writable servers at the same real time. With
 *   asynchronous replication a primary whose agent is paused or down (an
 *   orphan, until its agent has had time to fence it) is left out: nothing
 *   can stop it acknowledging commits (lib/ha/sync.ts says what that loses).
 * - (a2) a server accepts writes only while its node's lease holds on its
 *   own clock (entitled, or deposed by a higher term within the lease it
 *   held: no other node can be elected before that lease ends; the
 *   controller fences at once anyway), unless its agent is paused or down, or
 *   woke less than a reaction time ago (one decision interval and one
 *   immediate stop).
 * - (b) never two nodes entitled at the same real time.
 * - (c) synchronous replication: a server that acknowledges a commit, and
 *   any writable server, holds the last acknowledged commit — hence, by the
 *   prefix property of the WAL model, every acknowledged commit.
 * - (d) synchronous replication: a promoted server holds every acknowledged
 *   commit when its promotion completes.
 * - (e) a promotion is asked for only once the cluster committed the primary
 *   record naming that node and timeline.
 * - liveness: once every fault is healed, a writable primary whose node is
 *   entitled exists again within {@link LIVENESS_BOUND_MS}.
 *
 * @module
 */

import type { NodeId } from "../../../lib/raft/mod.ts";
import type { PrimaryRecordView } from "../../../lib/ha/mod.ts";
import type { SimAgent } from "./agent.ts";
import type { PgServer, WalRecord } from "./pg.ts";
import { DECISION_INTERVAL_MS, PG_DURATIONS, RAFT_TIMING } from "./timing.ts";

/** After healing, a writable primary must exist within this (real ms). */
export const LIVENESS_BOUND_MS = 15_000;

/** What the checker reads from the world. */
export interface CheckedWorld {
  now(): number;
  synchronous: boolean;
  maxClockDrift: number;
  agents: readonly SimAgent[];
  servers: readonly PgServer[];
  /** real time every fault was healed (Infinity before) */
  healedAt: number;
}

/** Figures of one run. */
export interface CheckStats {
  acknowledged: number;
  promotions: number;
  /** asynchronous: acknowledged commits missing on a promoted server */
  lostAsync: number;
  /** real ms from healing to a writable entitled primary */
  recoveryMs: number;
  /** longest real stretch with no writable primary (after the first one) */
  longestGapMs: number;
  /** write unavailability of each switchover: the clean stop began → a new primary is writable */
  switchoverGapsMs: number[];
  /** the primary's machine crashed → another primary is writable */
  machineFailoverMs: number[];
}

/** Checks every property; the first violation is kept. */
export class HaChecker {
  violation: string | null = null;
  readonly stats: CheckStats = {
    acknowledged: 0,
    promotions: 0,
    lostAsync: 0,
    recoveryMs: -1,
    longestGapMs: 0,
    switchoverGapsMs: [],
    machineFailoverMs: [],
  };
  /** outages being timed: what happened, when, and the node that lost its primary */
  #outages: { kind: "switchover" | "machine"; since: number; node: NodeId }[] = [];
  readonly #world: CheckedWorld;
  readonly #reactionMs: number;
  #lastAcked: { position: number; id: number } | null = null;
  /** every acknowledged commit (asynchronous mode counts the lost ones) */
  #acked: { position: number; id: number }[] = [];
  #lost = new Set<number>();
  #committedRecord: { record: PrimaryRecordView; index: number } | null = null;
  #lastWritableAt = -1;

  constructor(world: CheckedWorld) {
    this.#world = world;
    const d = world.maxClockDrift;
    this.#reactionMs = (DECISION_INTERVAL_MS + RAFT_TIMING.tickMs) / (1 - d) +
      PG_DURATIONS.stopImmediate.max + 5;
  }

  /** Seed the acknowledged history with the initial WAL. */
  initialCommits(records: readonly WalRecord[]): void {
    records.forEach((r, position) => this.#acked.push({ position, id: r.id }));
    const last = records.length - 1;
    if (last >= 0) this.#lastAcked = { position: last, id: records[last]!.id };
  }

  #fail(message: string): void {
    if (this.violation === null) this.violation = `t=${this.#world.now()} ${message}`;
  }

  applied(record: PrimaryRecordView, index: number): void {
    if (this.#committedRecord === null || index > this.#committedRecord.index) {
      this.#committedRecord = { record, index };
    }
  }

  acknowledged(server: PgServer, record: WalRecord, position: number): void {
    this.stats.acknowledged++;
    const last = this.#lastAcked;
    if (this.#world.synchronous && last !== null && !server.holds(last.position, last.id)) {
      this.#fail(
        `(c) node ${server.id} acknowledged commit ${record.id} but lacks the earlier ` +
          `acknowledged commit ${last.id} (lsn ${last.position + 1})`,
      );
    }
    this.#lastAcked = { position, id: record.id };
    this.#acked.push({ position, id: record.id });
  }

  promoteIssued(node: NodeId, timeline: number): void {
    const committed = this.#committedRecord?.record;
    if (committed === undefined || committed.nodeId !== node || committed.timeline !== timeline) {
      this.#fail(
        `(e) node ${node} promotes to timeline ${timeline} but the committed primary record is ` +
          (committed ? `{node ${committed.nodeId}, timeline ${committed.timeline}}` : "none"),
      );
    }
  }

  promoted(server: PgServer): void {
    this.stats.promotions++;
    const last = this.#lastAcked;
    if (this.#world.synchronous) {
      if (last !== null && !server.holds(last.position, last.id)) {
        this.#fail(
          `(d) node ${server.id} was promoted without the acknowledged commit ${last.id} ` +
            `(lsn ${last.position + 1}; it has ${server.wal.length - 1} before its promotion)`,
        );
      }
      return;
    }
    for (const a of this.#acked) {
      if (!this.#lost.has(a.id) && !server.holds(a.position, a.id)) this.#lost.add(a.id);
    }
    this.stats.lostAsync = this.#lost.size;
  }

  /** Time an outage: until a server of another node is writable with its node entitled. */
  outage(kind: "switchover" | "machine", node: NodeId): void {
    if (this.#outages.some((o) => o.node === node && o.kind === kind)) return;
    this.#outages.push({ kind, since: this.#world.now(), node });
  }

  #orphan(agent: SimAgent): boolean {
    return agent.status !== "running" || this.#world.now() - agent.awakeSince < this.#reactionMs;
  }

  /** After every simulated millisecond. */
  step(): void {
    const world = this.#world;
    const now = world.now();
    const writable: NodeId[] = [];
    for (const server of world.servers) {
      const agent = world.agents[server.id - 1]!;
      if (server.acceptsWrites() && !this.#orphan(agent) && !agent.leaseHolds()) {
        this.#fail(`(a2) node ${server.id}'s server accepts writes but its lease is over`);
      }
      if (!server.canAcknowledge()) continue;
      if (!world.synchronous && this.#orphan(agent)) continue;
      writable.push(server.id);
      const last = this.#lastAcked;
      if (world.synchronous && last !== null && !server.holds(last.position, last.id)) {
        this.#fail(`(c) writable node ${server.id} lacks the acknowledged commit ${last.id}`);
      }
    }
    if (writable.length > 1) this.#fail(`(a) two writable servers at once: nodes ${writable}`);

    const entitled = world.agents.filter((a) => a.entitled()).map((a) => a.id);
    if (entitled.length > 1) this.#fail(`(b) two entitled leaders at once: nodes ${entitled}`);

    const serving = writable.some((id) => world.agents[id - 1]!.entitled());
    if (serving && this.#outages.length > 0) {
      const server = writable.find((id) => world.agents[id - 1]!.entitled())!;
      this.#outages = this.#outages.filter((o) => {
        if (o.node === server) return true; // still (or again) the same node: not handed over yet
        const took = now - o.since;
        if (o.kind === "switchover") this.stats.switchoverGapsMs.push(took);
        else this.stats.machineFailoverMs.push(took);
        return false;
      });
    }
    if (now >= world.healedAt) this.#outages = [];
    if (serving) {
      if (this.#lastWritableAt >= 0 && now < world.healedAt) {
        this.stats.longestGapMs = Math.max(this.stats.longestGapMs, now - this.#lastWritableAt);
      }
      this.#lastWritableAt = now;
      if (now >= world.healedAt && this.stats.recoveryMs < 0) {
        this.stats.recoveryMs = now - world.healedAt;
      }
    } else if (now >= world.healedAt + LIVENESS_BOUND_MS && this.stats.recoveryMs < 0) {
      this.#fail(`liveness: no writable primary ${LIVENESS_BOUND_MS} ms after every fault healed`);
    }
  }
}
