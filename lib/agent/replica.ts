/**
 * The replica: the one place that turns the pure Raft core's output into I/O,
 * as etcd's raftNode does. It owns the core, the node's durable storage (the
 * write-ahead log on its own disk), the replicated state machine in memory,
 * the ticker, the Ready loop, snapshots and the leadership handover, and
 * reports back through {@link ReplicaEvents}; nothing else touches the core.
 *
 * Inputs (ticks, peer messages, proposals, reports) are queued as closures and
 * stepped into the core between Readies, so the core sees strict
 * ready()/advance() alternation; proposals made while one Ready is being
 * persisted go out together in the next one (that is the batching).
 *
 * For each Ready, in order: send what may go before persistence (the leader's
 * appends, thesis §10.2.1), make the Ready durable (one fdatasync), send the
 * rest, install a snapshot from the leader, apply the committed entries to the
 * state machine (in memory: microseconds each), answer the proposals and
 * ReadIndex requests waiting on them, and call advance().
 *
 * A write to the log that fails is not retried (after a failed fdatasync what
 * reached the disk is unknown): the replica stops and reports it, and the
 * agent exits so that a restart reopens the log and checks it.
 *
 * @module
 */

import { poll } from "../async.ts";
import {
  type ConfChange,
  type Entry,
  type Message,
  type NodeId,
  NONE,
  NotLeaderError,
  type PersistentState,
  type RaftConfig,
  RaftNode,
  type ReadState,
  type Ready,
  type Snapshot,
  type SoftState,
  type Status,
} from "../raft/mod.ts";
import { type ApplyResult, StateMachine } from "../state/mod.ts";
import type { RaftStorage } from "../storage/mod.ts";
import type { TickTiming } from "./settings.ts";

/** What the replica reports to the node around it (etcd's raftReadyHandler). */
export interface ReplicaEvents {
  /** The role or the known leader changed. */
  softStateChanged(previous: SoftState, next: SoftState, term: number): void;
  /** Entries reached this node's log (conf changes among them carry peer addresses). */
  logAppended(entries: readonly Entry[]): void;
  /** A snapshot from the leader replaced the state machine. */
  snapshotInstalled(snapshot: Snapshot): void;
  /** Committed entries were applied here, results in order. */
  entriesApplied(entries: readonly Entry[], results: readonly ApplyResult[]): void;
  /** This node took a snapshot and compacted its log. */
  snapshotTaken(index: number, bytes: number): void;
  /** Taking a snapshot failed (the next applied entries try again). */
  snapshotFailed(error: unknown): void;
  /** Writing the log failed: the replica has stopped. */
  storageFailed(error: unknown): void;
}

/** A proposal lost because another leader's entry took its index. */
export class ProposalLostError extends Error {
  override name = "ProposalLostError";
}

/** The replica is stopping: pending proposals and reads are abandoned. */
export class ReplicaStoppedError extends Error {
  override name = "ReplicaStoppedError";
}

/** Options of {@link Replica.open}. */
export interface ReplicaOptions {
  /** the core's configuration (timing in ticks, randomness); see {@link raftConfig} */
  config: RaftConfig;
  storage: RaftStorage;
  /** hand messages to the transport (never throws) */
  send: (messages: readonly Message[]) => void;
  events: ReplicaEvents;
  /** milliseconds per tick */
  tickMs: number;
}

/** Counters for pgraft_log_get_stats(). */
export interface ReplicaStats {
  entriesAppended: number;
  appendBatches: number;
  entriesApplied: number;
  proposals: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  lastSnapshotIndex: number;
  lastSnapshotAt: Date | null;
  /** durations of recent persists, ms, oldest first (at most PERSIST_SAMPLES_MAX) */
  persistMs: number[];
}

/** Persist durations kept for percentiles. */
const PERSIST_SAMPLES_MAX = 1024;

/** Inputs stepped per batch before checking for a Ready (bounded so ticks are never starved). */
const INPUTS_PER_CYCLE_MAX = 10_000;

/** A proposal waiting for its entry to be applied. */
interface ProposalWaiter {
  term: number;
  resolve: (result: ApplyResult) => void;
  reject: (error: Error) => void;
}

/** A caller waiting for the state machine to reach an index. */
interface AppliedWaiter {
  index: number;
  resolve: () => void;
}

/**
 * The core's configuration from tick timing.
 *
 * @param id this node
 * @param timing ticks and batching
 * @param failoverEnabled failover_enabled
 */
export function raftConfig(id: NodeId, timing: TickTiming, failoverEnabled: boolean): RaftConfig {
  return {
    id,
    heartbeatTicks: timing.heartbeatTicks,
    electionTicks: timing.electionTicks,
    electionJitterTicks: timing.electionJitterTicks,
    appendBatchSize: timing.appendBatchSize,
    maxInflight: timing.maxInflight,
    snapshotThreshold: timing.snapshotThreshold,
    failoverEnabled,
    // The agent's only randomness: election jitter. The core stays deterministic for the simulator.
    randomInt: (n: number) => Math.floor(Math.random() * n),
  };
}

/** Drives one RaftNode with its storage, its state machine and the transport. */
export class Replica {
  readonly stats: ReplicaStats = {
    entriesAppended: 0,
    appendBatches: 0,
    entriesApplied: 0,
    proposals: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    lastSnapshotIndex: 0,
    lastSnapshotAt: null,
    persistMs: [],
  };
  #node: RaftNode;
  #state: StateMachine;
  #config: RaftConfig;
  readonly #storage: RaftStorage;
  readonly #send: (messages: readonly Message[]) => void;
  readonly #events: ReplicaEvents;
  #tickMs: number;
  #ticker: ReturnType<typeof setInterval> | undefined;

  // The Ready loop.
  #inputs: Array<() => void> = [];
  #looping = false;
  #loopAgain = false;
  #stopped = false;
  #idleWaiters: Array<() => void> = [];
  /** inputs stepped whose Ready is not handled yet (see {@link receive}) */
  #handledWaiters: Array<() => void> = [];
  /** term and vote as last made durable (a Ready that only moves the commit index writes nothing) */
  #durableVote: { term: number; vote: NodeId };
  #softState: SoftState;

  // Waiters.
  #proposals = new Map<number, ProposalWaiter>();
  #reads = new Map<string, { resolve: (index: number) => void; reject: (e: Error) => void }>();
  #readSeq = 0;
  #appliedWaiters: AppliedWaiter[] = [];

  /** entry data sizes, for the bytes a follower has not acknowledged */
  #entrySizes = new EntrySizes();
  #snapshotting = false;

  private constructor(
    options: ReplicaOptions,
    node: RaftNode,
    state: StateMachine,
    entries: readonly Entry[],
  ) {
    this.#config = options.config;
    this.#storage = options.storage;
    this.#send = options.send;
    this.#events = options.events;
    this.#tickMs = options.tickMs;
    this.#node = node;
    this.#state = state;
    const status = node.status();
    this.#softState = { role: status.role, leaderId: status.leaderId };
    this.#durableVote = { term: status.term, vote: status.vote };
    this.#entrySizes.record(entries);
  }

  /**
   * Load the node's durable state: the state machine is restored from the
   * latest snapshot, and the committed entries after it are applied again
   * through the Ready loop once it runs (each exactly once per process life).
   * The ticker starts with {@link start}.
   *
   * @returns the replica and the entries it loaded (for the address book)
   */
  static async open(options: ReplicaOptions): Promise<{ replica: Replica; entries: Entry[] }> {
    const loaded = await options.storage.load();
    const state = loaded.snapshot ? StateMachine.restore(loaded.snapshot.data) : new StateMachine();
    const node = new RaftNode(options.config, {
      hardState: loaded.hardState,
      snapshot: loaded.snapshot,
      entries: loaded.entries,
      applied: state.lastApplied,
    });
    const replica = new Replica(options, node, state, loaded.entries);
    return { replica, entries: loaded.entries };
  }

  // ---- views ---------------------------------------------------------------

  /** The role and leader as of the last Ready. */
  get softState(): SoftState {
    return this.#softState;
  }

  /** The replicated state machine (replaced when a snapshot from the leader is installed). */
  get state(): StateMachine {
    return this.#state;
  }

  /** Index the state machine here has applied up to. */
  get appliedIndex(): number {
    return this.#state.lastApplied;
  }

  /** The core's status (term, indexes, membership, the leader's progress). */
  status(): Status {
    return this.#node.status();
  }

  /** Bytes of entry data after `matchIndex` up to `lastIndex` (a follower's unacknowledged log). */
  bytesAfter(matchIndex: number, lastIndex: number): number {
    return this.#entrySizes.bytesBetween(matchIndex + 1, lastIndex);
  }

  // ---- the ticker ------------------------------------------------------------

  /** Start ticking. Late timers are caught up, never more than an election timeout at once. */
  start(): void {
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    let last = performance.now();
    this.#ticker = setInterval(() => {
      const now = performance.now();
      const electionTicks = this.#config.electionTicks;
      const due = Math.min(Math.floor((now - last) / this.#tickMs), electionTicks);
      if (due <= 0) return;
      last += due * this.#tickMs;
      if (now - last > this.#tickMs * electionTicks) last = now;
      this.#input(() => {
        for (let i = 0; i < due; i++) this.#node.tick();
      });
    }, this.#tickMs);
  }

  /** New timing or failover setting (pgraft_set_config); restarts the ticker when the tick changed. */
  retime(timing: TickTiming, failoverEnabled: boolean): void {
    const tickChanged = timing.tickMs !== this.#tickMs;
    this.#config = { ...this.#config, ...raftConfig(this.#config.id, timing, failoverEnabled) };
    this.#tickMs = timing.tickMs;
    this.#input(() => {
      this.#node.setTiming(timing);
      this.#node.setFailoverEnabled(failoverEnabled);
    });
    if (tickChanged && this.#ticker !== undefined) this.start();
  }

  // ---- inputs ----------------------------------------------------------------

  /**
   * Messages from peers.
   *
   * @returns resolves once the Ready they caused has been handled — made
   *   durable and its messages handed to `send` — so a caller can answer the
   *   sender with the replies (or at once when they caused none)
   */
  receive(messages: readonly Message[]): Promise<void> {
    return new Promise((resolve) => {
      if (this.#stopped) return resolve();
      this.#input(() => {
        for (const m of messages) this.#node.step(m);
        this.#handledWaiters.push(resolve);
      });
    });
  }

  /**
   * The leader this follower should probe now (it has missed heartbeats), or
   * NONE; see {@link reportLeaderGone}.
   */
  leaderToProbe(): NodeId {
    return this.#stopped ? NONE : this.#node.leaderToProbe();
  }

  /**
   * A probe found `leader`'s agent gone (connection refused) or not leading
   * our term: evidence, so the follower pre-votes at once instead of waiting
   * out an election timeout. Not for PostgreSQL high availability, where the
   * old leader's lease must run out first.
   */
  reportLeaderGone(leader: NodeId): void {
    this.#input(() => this.#node.reportLeaderGone(leader));
  }

  /** The transport could not reach `peer`. */
  reportUnreachable(peer: NodeId): void {
    this.#input(() => this.#node.reportUnreachable(peer));
  }

  /** A snapshot sent to `peer` arrived (ok) or failed. */
  reportSnapshot(peer: NodeId, ok: boolean): void {
    this.#input(() => this.#node.reportSnapshot(peer, ok));
  }

  /**
   * Propose a state machine command (leader only).
   *
   * @returns the entry's apply result, once committed and applied here
   * @throws NotLeaderError, ProposalRejectedError, ProposalLostError, ReplicaStoppedError
   */
  propose(data: Uint8Array): Promise<ApplyResult> {
    return this.#proposeWith((node) => node.propose(data));
  }

  /**
   * Propose a membership change (leader only, one at a time).
   *
   * @returns once applied here
   * @throws NotLeaderError, ConfChangeError, ProposalLostError, ReplicaStoppedError
   */
  proposeConfChange(change: ConfChange): Promise<ApplyResult> {
    return this.#proposeWith((node) => node.proposeConfChange(change));
  }

  /** Ask the core to hand leadership to `target` (thesis §3.10); does not wait for it. */
  transferLeadership(target: NodeId): Promise<void> {
    return this.#call((node) => node.transferLeadership(target));
  }

  /** Start an election now (a lone founder wins at once). */
  campaign(): Promise<void> {
    return this.#call((node) => node.campaign());
  }

  /**
   * Linearizable read barrier on the leader (ReadIndex, thesis §6.4).
   *
   * @returns the read index, once applied here
   * @throws NotLeaderError, ReplicaStoppedError
   */
  readBarrier(): Promise<number> {
    return this.confirmLeadership(`r${++this.#readSeq}`).then(async (index) => {
      await this.waitApplied(index);
      return index;
    });
  }

  /**
   * A ReadIndex round (thesis §6.4): resolves with the read index once a
   * quorum has confirmed that this node still leads, without waiting for it
   * to be applied (lib/ha's lease rounds, and {@link readBarrier}).
   *
   * @param context the round's context, unique among rounds in flight
   * @throws NotLeaderError, ReplicaStoppedError
   */
  confirmLeadership(context: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.#reads.set(context, { resolve, reject });
      this.#input(() => {
        try {
          this.#node.readIndex(context);
        } catch (error) {
          this.#reads.delete(context);
          reject(error);
        }
      });
    });
  }

  /** Resolves once the state machine here has applied `index`. */
  waitApplied(index: number): Promise<void> {
    if (this.appliedIndex >= index) return Promise.resolve();
    return new Promise((resolve) => this.#appliedWaiters.push({ index, resolve }));
  }

  /**
   * Make this node a brand-new cluster (pgraft_init()): persist the bootstrap
   * state and rebuild the core from it. The node must have no Raft state yet;
   * the caller campaigns next.
   */
  async bootstrap(state: PersistentState): Promise<void> {
    const status = this.#node.status();
    if (status.term !== 0 || status.lastIndex !== 0) {
      throw new Error(`node ${this.#config.id} already has Raft state (term ${status.term})`);
    }
    await this.#storage.save({
      snapshot: state.snapshot,
      entries: state.entries,
      hardState: state.hardState,
    });
    await this.#call(() => {
      this.#node = new RaftNode(this.#config, state);
      this.#durableVote = { term: state.hardState.term, vote: state.hardState.vote };
      this.#entrySizes.record(state.entries);
    });
  }

  /**
   * A leader hands leadership to its most caught-up live voter and waits
   * (bounded) until it no longer leads.
   *
   * @returns the target, or null when this node does not lead or has no other voter
   */
  async handOver(timeoutMs: number): Promise<NodeId | null> {
    const st = this.#node.status();
    if (st.role !== "leader") return null;
    // Only a voter heard from within the last two heartbeats is alive enough to
    // take over (when the whole cluster stops, the others may be going too).
    const aliveTicks = 2 * this.#config.heartbeatTicks;
    const best = st.progress
      .filter((p) =>
        !p.isLearner && st.membership.voters.includes(p.id) && p.lastHeardTicks <= aliveTicks
      )
      .sort((a, b) => b.matchIndex - a.matchIndex)[0];
    if (!best) return null;
    await this.transferLeadership(best.id);
    await poll(() => this.#softState.role !== "leader", {
      timeoutMs,
      intervalMs: 5,
      what: `node ${best.id} to take over`,
    });
    return best.id;
  }

  /** Stop ticking and taking inputs; pending proposals and reads are rejected. */
  stop(): void {
    this.#stopped = true;
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    this.#ticker = undefined;
    this.#inputs = [];
    for (const resolve of this.#handledWaiters.splice(0)) resolve();
    const error = new ReplicaStoppedError("the agent is stopping");
    for (const waiter of this.#proposals.values()) waiter.reject(error);
    this.#proposals.clear();
    this.#failReads(error);
  }

  /** Resolves when the Ready loop has nothing left to do. */
  whenIdle(): Promise<void> {
    if (!this.#looping && !this.#snapshotting) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  // ---- the Ready loop ----------------------------------------------------------

  #input(fn: () => void): void {
    if (this.#stopped) return;
    this.#inputs.push(fn);
    if (this.#looping) {
      this.#loopAgain = true;
      return;
    }
    this.#looping = true;
    queueMicrotask(() => this.#loop());
  }

  #call<T>(fn: (node: RaftNode) => T): Promise<T> {
    return new Promise((resolve, reject) => {
      if (this.#stopped) reject(new ReplicaStoppedError("the agent is stopping"));
      this.#input(() => {
        try {
          resolve(fn(this.#node));
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  #proposeWith(fn: (node: RaftNode) => { index: number; term: number }): Promise<ApplyResult> {
    this.stats.proposals++;
    return new Promise((resolve, reject) => {
      if (this.#stopped) reject(new ReplicaStoppedError("the agent is stopping"));
      this.#input(() => {
        try {
          const { index, term } = fn(this.#node);
          this.#proposals.set(index, { term, resolve, reject });
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#loopAgain = false;
        this.#stepInputs();
        while (!this.#stopped && this.#node.hasReady()) {
          const stepped = this.#handledWaiters.splice(0);
          await this.#handle(this.#node.ready());
          for (const resolve of stepped) resolve();
          this.#stepInputs();
        }
        for (const resolve of this.#handledWaiters.splice(0)) resolve();
      } while (this.#loopAgain && !this.#stopped);
    } catch (error) {
      // Only a failed write of the log ends up here (an assertion would have crashed).
      this.stop();
      this.#events.storageFailed(error);
    } finally {
      this.#looping = false;
      if (this.#inputs.length > 0 && !this.#stopped) {
        this.#looping = true;
        queueMicrotask(() => this.#loop());
      } else this.#wakeIdle();
    }
  }

  #stepInputs(): void {
    let stepped = 0;
    while (this.#inputs.length > 0 && stepped < INPUTS_PER_CYCLE_MAX) {
      const batch = this.#inputs;
      this.#inputs = [];
      for (const fn of batch) {
        fn();
        stepped++;
      }
    }
  }

  async #handle(rd: Ready): Promise<void> {
    if (rd.softState) {
      const previous = this.#softState;
      this.#softState = rd.softState;
      if (previous.role === "leader" && rd.softState.role !== "leader") {
        this.#failReads(new NotLeaderError(rd.softState.leaderId));
      }
      this.#events.softStateChanged(previous, rd.softState, this.#node.status().term);
    }
    if (rd.entries.length > 0) this.#events.logAppended(rd.entries);
    if (rd.messagesBeforePersist.length > 0) this.#send(rd.messagesBeforePersist);
    await this.#persist(rd);
    if (rd.messages.length > 0) this.#send(rd.messages);
    if (rd.snapshot) this.#install(rd.snapshot);
    if (rd.committedEntries.length > 0) this.#apply(rd.committedEntries);
    this.#resolveReads(rd.readStates);
    this.#node.advance(rd);
    this.#resolveApplied();
    this.#maybeSnapshot();
  }

  /**
   * Make the Ready durable with one write and one fdatasync. The commit index
   * need not be durable (Raft recovers it): a Ready that only moves it writes
   * nothing.
   */
  async #persist(rd: Ready): Promise<void> {
    const hs = rd.hardState;
    const voteChanged = hs !== null &&
      (hs.term !== this.#durableVote.term || hs.vote !== this.#durableVote.vote);
    if (!rd.snapshot && rd.entries.length === 0 && !voteChanged) return;
    const started = performance.now();
    await this.#storage.save({ snapshot: rd.snapshot, entries: rd.entries, hardState: hs });
    if (hs) this.#durableVote = { term: hs.term, vote: hs.vote };
    const samples = this.stats.persistMs;
    samples.push(performance.now() - started);
    if (samples.length > PERSIST_SAMPLES_MAX) samples.shift();
    if (rd.snapshot) this.#entrySizes.forgetUpTo(rd.snapshot.meta.index);
    if (rd.entries.length > 0) {
      this.stats.entriesAppended += rd.entries.length;
      this.stats.appendBatches++;
      this.#entrySizes.record(rd.entries);
    }
  }

  /** A snapshot from the leader, now durable: it replaces the state machine. */
  #install(snapshot: Snapshot): void {
    this.#state = StateMachine.restore(snapshot.data);
    this.stats.snapshotsInstalled++;
    this.#recordClusterId();
    this.#events.snapshotInstalled(snapshot);
  }

  /** Apply committed entries in order and answer the proposals waiting on them. */
  #apply(entries: readonly Entry[]): void {
    const results: ApplyResult[] = [];
    for (const entry of entries) {
      const result = this.#state.apply(entry);
      results.push(result);
      const waiter = this.#proposals.get(entry.index);
      if (!waiter) continue;
      this.#proposals.delete(entry.index);
      if (waiter.term === entry.term) waiter.resolve(result);
      else {
        waiter.reject(
          new ProposalLostError(
            `the proposal at index ${entry.index} was replaced by another leader's entry (term ${entry.term})`,
          ),
        );
      }
    }
    this.stats.entriesApplied += entries.length;
    this.#recordClusterId();
    this.#events.entriesApplied(entries, results);
  }

  /** The storage directory records the cluster id once the state machine knows it. */
  #recordClusterId(): void {
    const clusterId = this.#state.clusterId;
    if (clusterId === null || this.#storage.identity.clusterId === clusterId) return;
    this.#storage.setClusterId(clusterId).catch((error) => {
      if (this.#stopped) return;
      this.stop();
      this.#events.storageFailed(error);
    });
  }

  #resolveReads(states: readonly ReadState[]): void {
    for (const state of states) {
      const read = this.#reads.get(state.context);
      if (!read) continue;
      this.#reads.delete(state.context);
      read.resolve(state.index);
    }
  }

  #failReads(error: Error): void {
    for (const read of this.#reads.values()) read.reject(error);
    this.#reads.clear();
  }

  #resolveApplied(): void {
    if (this.#appliedWaiters.length === 0) return;
    const applied = this.appliedIndex;
    const waiting: AppliedWaiter[] = [];
    for (const w of this.#appliedWaiters) {
      if (applied >= w.index) w.resolve();
      else waiting.push(w);
    }
    this.#appliedWaiters = waiting;
  }

  #wakeIdle(): void {
    if (this.#looping || this.#snapshotting) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  // ---- snapshots ---------------------------------------------------------------

  /**
   * Once enough entries are applied since the last snapshot, take one of the
   * state machine and compact the log; the snapshot file is written beside
   * the loop.
   */
  #maybeSnapshot(): void {
    if (this.#snapshotting || this.#stopped || !this.#node.snapshotDue()) return;
    const index = this.#state.lastApplied;
    if (index <= this.#node.status().snapshotIndex) return;
    const data = this.#state.snapshot();
    const snapshot = this.#node.createSnapshot(index, data);
    this.#snapshotting = true;
    this.#storage.saveSnapshot(snapshot).then(() => {
      this.#entrySizes.forgetUpTo(index);
      this.stats.snapshotsTaken++;
      this.stats.lastSnapshotIndex = index;
      this.stats.lastSnapshotAt = new Date();
      this.#events.snapshotTaken(index, data.length);
    }, (error) => {
      if (!this.#stopped) this.#events.snapshotFailed(error);
    }).finally(() => {
      this.#snapshotting = false;
      this.#wakeIdle();
    });
  }
}

/**
 * The data sizes of the log's entries after the snapshot, by index: what
 * `replication_lag_bytes` adds up. Entries arrive contiguously; an append at
 * an index already held replaces everything from there (a conflict).
 */
class EntrySizes {
  /** the index of #sizes[0] */
  #first = 1;
  #sizes: number[] = [];

  /** Entries reached the log (contiguous; from entries[0].index on, earlier sizes are replaced). */
  record(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    if (first < this.#first || first > this.#first + this.#sizes.length) {
      this.#first = first;
      this.#sizes = [];
    } else {
      this.#sizes.length = first - this.#first;
    }
    for (const e of entries) this.#sizes.push(e.data.length);
  }

  /** The log was compacted up to `index`. */
  forgetUpTo(index: number): void {
    const drop = index + 1 - this.#first;
    if (drop <= 0) return;
    this.#sizes = drop >= this.#sizes.length ? [] : this.#sizes.slice(drop);
    this.#first = index + 1;
  }

  /** Bytes of the entries from `lo` to `hi` that are known. */
  bytesBetween(lo: number, hi: number): number {
    let bytes = 0;
    const end = Math.min(hi, this.#first + this.#sizes.length - 1);
    for (let i = Math.max(lo, this.#first); i <= end; i++) bytes += this.#sizes[i - this.#first]!;
    return bytes;
  }
}
