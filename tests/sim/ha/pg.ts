/**
 * A simulated PostgreSQL server: its data directory (WAL records, each with a
 * unique id and the timeline it was written on), its state, the operations
 * the supervisor runs on it (each takes time), and streaming replication.
 *
 * WAL is a list of records; the LSN is the list's length. Every record has a
 * unique id and is copied only as part of a prefix (streaming appends after a
 * matching prefix, a clone or rewind copies a whole prefix), so two servers
 * holding the same id at the same position hold the same history up to it:
 * comparing one position is enough to tell a prefix from a fork. A promotion
 * appends its own record (the end-of-recovery record of the new timeline), so
 * a server that went on past the promotion point on the old timeline has
 * diverged from the new primary.
 *
 * Operations are conservative for the safety checks: a server being stopped
 * accepts writes until the stop ends, a standby being frozen, re-pointed or
 * promoted keeps streaming from its old upstream until the operation ends.
 *
 * @module
 */

import type { NodeId } from "../../../lib/raft/mod.ts";
import type { ServerObservation, ServerOperation, WalState } from "../../../lib/ha/mod.ts";
import { parseSynchronousStandbyNames } from "../../../lib/ha/mod.ts";
import type { Rng } from "../rng.ts";
import { PG_DURATIONS, REWIND_FAILURE_CHANCE, type Span } from "./timing.ts";

/** One WAL record. */
export interface WalRecord {
  id: number;
  timeline: number;
}

/** A commit waiting for its synchronous standbys. */
interface PendingCommit {
  position: number;
  id: number;
}

/** An operation under way and what it needs when it ends. */
interface Operation {
  kind: ServerOperation;
  startedAt: number;
  endsAt: number;
  mode?: "immediate" | "fast";
  timeline?: number;
  node?: NodeId;
  upstream?: NodeId | null;
  value?: string;
}

/** What the world gives a server to act on others (reachability, other servers). */
export interface ServerWorld {
  now(): number;
  rng: Rng;
  server(id: NodeId): PgServer;
  /** every node with a server */
  serverIds(): readonly NodeId[];
  /** PostgreSQL traffic between the two nodes' servers gets through */
  pgLinkUp(a: NodeId, b: NodeId): boolean;
  /** a new unique WAL record id */
  nextRecordId(): number;
  /** a commit was acknowledged to its client */
  acknowledged(server: PgServer, record: WalRecord, position: number): void;
  trace(line: string): void;
  /** a primary began a clean shutdown (a switchover, for the figures) */
  cleanStopStarted(server: PgServer): void;
  /** a promotion completed (for the checks) */
  promoted(server: PgServer, timeline: number): void;
}

function span(rng: Rng, s: Span): number {
  return rng.range(s.min, s.max);
}

/** A simulated server beside one agent. */
export class PgServer {
  readonly id: NodeId;
  /** "foreign": another database system's directory, never touched */
  data: "ok" | "empty" | "foreign";
  wal: WalRecord[] = [];
  state: "stopped" | "starting" | "standby" | "primary" = "stopped";
  clean = true;
  rewindFailed = false;
  upstream: NodeId | null = null;
  /** the WAL receiver streams from `upstream` (after the connection delay) */
  connected = false;
  diverged = false;
  synchronousStandbyNames = "";
  op: Operation | null = null;
  /** real time the server entered its state */
  since = 0;
  #pending: PendingCommit[] = [];
  readonly #world: ServerWorld;

  constructor(id: NodeId, world: ServerWorld, data: "ok" | "empty" | "foreign") {
    this.id = id;
    this.#world = world;
    this.data = data;
  }

  // ---- what the supervisor observes ------------------------------------------------

  walState(): WalState {
    const last = this.wal[this.wal.length - 1];
    const lsn = this.wal.length;
    return { timeline: last?.timeline ?? 1, receivedLsn: lsn, replayedLsn: lsn, flushedLsn: lsn };
  }

  observe(): ServerObservation {
    if (this.data === "foreign") {
      return { state: "refused", detail: "PG_VERSION of another system" };
    }
    if (this.state === "stopped" && this.data === "empty") return { state: "empty" };
    switch (this.state) {
      case "stopped":
        return {
          state: "stopped",
          clean: this.clean,
          rewindFailed: this.rewindFailed,
          wal: this.clean && !this.rewindFailed ? this.walState() : null,
        };
      case "starting":
        return { state: "starting" };
      case "standby":
        if (this.diverged && this.upstream !== null) {
          return { state: "diverged", upstream: this.upstream, wal: this.walState() };
        }
        return { state: "standby", upstream: this.upstream, wal: this.walState() };
      case "primary":
        return { state: "primary", wal: this.walState() };
    }
  }

  /** Streams from no one (for reports). */
  frozen(): boolean {
    return this.state !== "standby" || this.upstream === null || this.diverged;
  }

  /** A running primary: it accepts writes (also while it is being stopped). */
  acceptsWrites(): boolean {
    return this.state === "primary";
  }

  /** The standbys that could acknowledge this primary's commits now. */
  synchronousPeers(): { count: number; streaming: number } {
    const parsed = parseSynchronousStandbyNames(this.synchronousStandbyNames);
    if (parsed === null) {
      throw new Error(`bad synchronous_standby_names ${this.synchronousStandbyNames}`);
    }
    let streaming = 0;
    for (const node of parsed.nodes) if (this.#streamsFromMe(node)) streaming++;
    return { count: parsed.count, streaming };
  }

  /** A primary that can acknowledge a commit now (the e2e prober's "writable"). */
  canAcknowledge(): boolean {
    if (!this.acceptsWrites()) return false;
    const peers = this.synchronousPeers();
    return peers.count === 0 || peers.streaming >= peers.count;
  }

  holds(position: number, id: number): boolean {
    return this.wal[position]?.id === id;
  }

  // ---- operations (the supervisor) ---------------------------------------------------

  #begin(kind: ServerOperation, duration: Span, extra: Partial<Operation> = {}): void {
    const now = this.#world.now();
    this.op = { kind, startedAt: now, endsAt: now + span(this.#world.rng, duration), ...extra };
  }

  #set(state: PgServer["state"]): void {
    this.state = state;
    this.since = this.#world.now();
  }

  start(upstream: NodeId | null): void {
    if (this.op !== null || this.state !== "stopped" || this.data !== "ok") return;
    this.#set("starting");
    this.#begin("start", PG_DURATIONS.start, { upstream });
  }

  fence(mode: "immediate" | "fast"): void {
    if (this.state === "stopped") return;
    const duration = mode === "immediate" ? PG_DURATIONS.stopImmediate : PG_DURATIONS.stopFast;
    if (this.op?.kind === "stop" && (this.op.mode === "immediate" || mode === "fast")) return;
    // An immediate stop preempts anything under way (a promotion, a fast stop, a re-point).
    if (mode === "fast" && this.state === "primary") this.#world.cleanStopStarted(this);
    this.#begin("stop", duration, { mode });
  }

  freeze(): void {
    if (this.op !== null || this.state !== "standby") return;
    this.#begin("freeze", PG_DURATIONS.freeze);
  }

  follow(upstream: NodeId): void {
    if (this.op !== null || this.state !== "standby") return;
    this.#begin("follow", PG_DURATIONS.follow, { upstream });
  }

  promote(timeline: number): void {
    if (this.op !== null || this.state !== "standby" || this.diverged) return;
    this.#begin("promote", PG_DURATIONS.promote, { timeline });
  }

  rewind(source: NodeId): void {
    if (this.op !== null || this.data !== "ok") return;
    if (this.state === "primary" || this.state === "starting") return;
    const running = this.state === "standby";
    const rewind = this.clean && !running ? PG_DURATIONS.rewindClean : PG_DURATIONS.rewindCrashed;
    const stop = running ? PG_DURATIONS.stopFast : { min: 0, max: 0 };
    this.#set("stopped");
    this.connected = false;
    this.#begin("rewind", { min: stop.min + rewind.min, max: stop.max + rewind.max }, {
      node: source,
    });
  }

  clone(source: NodeId): void {
    if (this.op !== null || this.state !== "stopped" || this.data === "foreign") return;
    this.data = "empty";
    this.wal = [];
    this.#begin("clone", PG_DURATIONS.clone, { node: source });
  }

  setSynchronous(value: string): void {
    if (this.op !== null || this.state === "stopped" || this.state === "starting") return;
    this.#begin("set_synchronous", PG_DURATIONS.setSynchronous, { value });
  }

  /** kill -9 of the postmaster (or of the whole machine, with `machine`). */
  crash(machine: boolean): void {
    const op = this.op;
    if (op !== null && machine && op.kind === "clone") this.data = "empty";
    if (op !== null && (op.kind === "rewind" || op.kind === "clone") && !machine) return;
    this.op = null;
    if (this.state !== "stopped") this.#world.trace(`pg ${this.id}: crashed (${this.state})`);
    this.#set("stopped");
    this.clean = false;
    this.connected = false;
    this.diverged = false;
    this.#pending = [];
  }

  // ---- time passing --------------------------------------------------------------------

  /** One real millisecond: end operations that are due, stream, acknowledge. */
  step(): void {
    if (this.op !== null && this.#world.now() >= this.op.endsAt) this.#finish(this.op);
    this.#stream();
    this.#acknowledge();
  }

  /** A client commit on this primary. */
  write(): void {
    if (!this.acceptsWrites()) return;
    const record = { id: this.#world.nextRecordId(), timeline: this.walState().timeline };
    this.wal.push(record);
    this.#pending.push({ position: this.wal.length - 1, id: record.id });
  }

  #finish(op: Operation): void {
    const world = this.#world;
    this.op = null;
    switch (op.kind) {
      case "start":
        this.#set("standby");
        this.upstream = op.upstream ?? null;
        this.connected = this.upstream !== null;
        this.diverged = false;
        return;
      case "stop":
        if (op.mode === "fast") this.#flushToStandbys();
        this.#set("stopped");
        this.clean = op.mode === "fast";
        this.connected = false;
        this.diverged = false;
        this.#pending = [];
        world.trace(`pg ${this.id}: stopped (${op.mode})`);
        return;
      case "freeze":
        this.upstream = null;
        this.connected = false;
        this.diverged = false;
        return;
      case "follow":
        this.upstream = op.upstream ?? null;
        this.connected = this.upstream !== null;
        this.diverged = false;
        return;
      case "promote": {
        if (this.state !== "standby") return;
        const timeline = op.timeline!;
        this.wal.push({ id: world.nextRecordId(), timeline });
        this.#set("primary");
        this.upstream = null;
        this.connected = false;
        this.#pending = [];
        world.trace(`pg ${this.id}: promoted to timeline ${timeline} at lsn ${this.wal.length}`);
        world.promoted(this, timeline);
        return;
      }
      case "rewind": {
        const source = world.server(op.node!);
        const reachable = world.pgLinkUp(this.id, source.id) &&
          (source.state === "standby" || source.state === "primary");
        if (!reachable) {
          world.trace(`pg ${this.id}: rewind from ${source.id} failed (unreachable)`);
          return;
        }
        if (world.rng.chance(REWIND_FAILURE_CHANCE)) {
          this.rewindFailed = true;
          world.trace(`pg ${this.id}: rewind from ${source.id} failed for good`);
          return;
        }
        this.wal = source.wal.slice();
        this.clean = true;
        this.rewindFailed = false;
        world.trace(`pg ${this.id}: rewound from ${source.id} to lsn ${this.wal.length}`);
        return;
      }
      case "clone": {
        const source = world.server(op.node!);
        const reachable = world.pgLinkUp(this.id, source.id) &&
          (source.state === "standby" || source.state === "primary");
        if (!reachable) return;
        this.wal = source.wal.slice();
        this.data = "ok";
        this.clean = true;
        this.rewindFailed = false;
        world.trace(`pg ${this.id}: cloned from ${source.id} (lsn ${this.wal.length})`);
        return;
      }
      case "set_synchronous":
        this.synchronousStandbyNames = op.value ?? "";
        return;
    }
  }

  #streamsFromMe(node: NodeId): boolean {
    if (node === this.id) return false;
    const standby = this.#world.server(node);
    return standby.state === "standby" && standby.upstream === this.id && standby.connected &&
      !standby.diverged && this.#world.pgLinkUp(this.id, node);
  }

  /** Streaming: copy the upstream's WAL after a matching prefix; notice a fork. */
  #stream(): void {
    if (this.state !== "standby" || !this.connected || this.upstream === null || this.diverged) {
      return;
    }
    const source = this.#world.server(this.upstream);
    if (source.state !== "standby" && source.state !== "primary") return;
    if (!this.#world.pgLinkUp(this.id, source.id)) return;
    const common = Math.min(this.wal.length, source.wal.length);
    if (common > 0 && this.wal[common - 1]!.id !== source.wal[common - 1]!.id) {
      this.diverged = true;
      this.#world.trace(`pg ${this.id}: diverged from ${source.id}'s history at lsn ${common}`);
      return;
    }
    if (source.wal.length > this.wal.length && this.#world.rng.chance(0.6)) {
      for (let k = this.wal.length; k < source.wal.length; k++) this.wal.push(source.wal[k]!);
    }
  }

  /** A clean shutdown ends once the connected standbys flushed its last WAL. */
  #flushToStandbys(): void {
    for (const node of this.#world.serverIds()) {
      if (!this.#streamsFromMe(node)) continue;
      const standby = this.#world.server(node);
      const common = Math.min(standby.wal.length, this.wal.length);
      if (common > 0 && standby.wal[common - 1]!.id !== this.wal[common - 1]!.id) continue;
      for (let k = standby.wal.length; k < this.wal.length; k++) standby.wal.push(this.wal[k]!);
    }
  }

  #acknowledge(): void {
    if (this.#pending.length === 0 || this.state !== "primary") return;
    const parsed = parseSynchronousStandbyNames(this.synchronousStandbyNames)!;
    let acked = 0;
    for (const commit of this.#pending) {
      if (parsed.count > 0) {
        let holders = 0;
        for (const node of parsed.nodes) {
          if (
            this.#streamsFromMe(node) && this.#world.server(node).holds(commit.position, commit.id)
          ) {
            holders++;
          }
        }
        if (holders < parsed.count) break;
      }
      acked++;
      this.#world.acknowledged(this, this.wal[commit.position]!, commit.position);
    }
    if (acked > 0) this.#pending.splice(0, acked);
  }
}
