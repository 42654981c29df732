/**
 * The replica: the one place that turns the pure Raft core's output into I/O,
 * as etcd's raftNode does. It owns the core, the ticker, the Ready loop, the
 * apply stage, the storage retries, snapshots and the leadership handover,
 * and reports back through {@link ReplicaEvents}; nothing else touches the core.
 *
 * Inputs (ticks, peer messages, proposals, reports) are queued as closures and
 * stepped into the core between Readies, so the core sees strict
 * ready()/advance() alternation; proposals made while one Ready is being
 * persisted go out together in the next one (that is the batching).
 *
 * For each Ready, in order: send what may go before persistence (the leader's
 * appends, thesis §10.2.1), persist (retrying while storage is unavailable —
 * the node then does not tick, vote, acknowledge or lead), send the rest,
 * queue the committed entries for the apply stage, answer ReadIndex requests,
 * and call advance(). The apply stage runs beside the loop (the next entries
 * are persisted and replicated while these are applied), bounded so that a
 * slow state machine holds the loop back instead of growing memory.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { poll, retry } from "../async.ts";
import {
  type ConfChange,
  decodeConfChange,
  type Entry,
  type Message,
  type NodeId,
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
import {
  type ApplyItem,
  type ApplyResult,
  type Command,
  decodeCommand,
  type RaftStorage,
  StorageUnavailableError,
} from "../storage/mod.ts";
import type { TickTiming } from "./settings.ts";

/** What the replica reports to the node around it (etcd's raftReadyHandler). */
export interface ReplicaEvents {
  /** The role or the known leader changed. */
  softStateChanged(previous: SoftState, next: SoftState, term: number): void;
  /** Entries are durable here (conf changes among them carry peer addresses). */
  entriesPersisted(entries: readonly Entry[]): void;
  /** A snapshot from the leader replaced the state machine. */
  snapshotInstalled(snapshot: Snapshot): void;
  /** Committed entries were applied here, results in order. */
  entriesApplied(items: readonly ApplyItem[], results: readonly ApplyResult[]): void;
  /** Storage became unavailable (ok = false) or available again. */
  storageHealthChanged(ok: boolean, error: unknown): void;
  /** This node took a snapshot and compacted its log. */
  snapshotTaken(index: number, bytes: number): void;
  /** Taking a snapshot failed (the next applied entries try again). */
  snapshotFailed(error: unknown): void;
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
  entriesCommitted: number;
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

/** Batches of committed entries waiting to be applied before the Ready loop waits for the apply stage. */
const APPLY_QUEUE_MAX = 8;

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

/** Drives one RaftNode with its storage and transport. */
export class Replica {
  readonly stats: ReplicaStats = {
    entriesAppended: 0,
    appendBatches: 0,
    entriesCommitted: 0,
    entriesApplied: 0,
    proposals: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    lastSnapshotIndex: 0,
    lastSnapshotAt: null,
    persistMs: [],
  };
  #node: RaftNode;
  #config: RaftConfig;
  readonly #storage: RaftStorage;
  readonly #send: (messages: readonly Message[]) => void;
  readonly #events: ReplicaEvents;
  #tickMs: number;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #storageOk = true;

  // The Ready loop.
  #inputs: Array<() => void> = [];
  #looping = false;
  #loopAgain = false;
  #stopped = false;
  #idleWaiters: Array<() => void> = [];
  /** term and vote as last made durable (a Ready that only moves the commit index writes nothing) */
  #durableVote: { term: number; vote: NodeId };
  #softState: SoftState;

  // The apply stage.
  #applyQueue: Entry[][] = [];
  #applying: Promise<void> | null = null;
  #applyDrained: Array<() => void> = [];
  #appliedIndex: number;

  // Waiters.
  #proposals = new Map<number, ProposalWaiter>();
  #reads = new Map<string, { resolve: (index: number) => void; reject: (e: Error) => void }>();
  #readSeq = 0;
  #appliedWaiters: AppliedWaiter[] = [];

  /** entry data sizes by index, for the bytes a follower has not acknowledged */
  #entryBytes = new Map<number, number>();
  #snapshotting = false;

  private constructor(options: ReplicaOptions, state: PersistentState) {
    this.#config = options.config;
    this.#storage = options.storage;
    this.#send = options.send;
    this.#events = options.events;
    this.#tickMs = options.tickMs;
    this.#node = new RaftNode(options.config, state);
    const status = this.#node.status();
    this.#softState = { role: status.role, leaderId: status.leaderId };
    this.#appliedIndex = status.appliedIndex;
    this.#durableVote = { term: status.term, vote: status.vote };
    for (const e of state.entries) this.#entryBytes.set(e.index, e.data.length);
  }

  /**
   * Load the node's durable state and build the core from it. The ticker
   * starts with {@link start}.
   *
   * @returns the replica and the entries it loaded (for the address book)
   */
  static async open(options: ReplicaOptions): Promise<{ replica: Replica; entries: Entry[] }> {
    const state = await options.storage.load();
    return { replica: new Replica(options, state), entries: state.entries };
  }

  // ---- views ---------------------------------------------------------------

  /** The role and leader as of the last Ready. */
  get softState(): SoftState {
    return this.#softState;
  }

  /** Index the state machine here has applied up to. */
  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  /** Whether the last storage call succeeded. */
  get storageOk(): boolean {
    return this.#storageOk;
  }

  /** The core's status (term, indexes, membership, the leader's progress). */
  status(): Status {
    return this.#node.status();
  }

  /** Bytes of entry data after `matchIndex` up to the last index (a follower's unacknowledged log). */
  bytesAfter(matchIndex: number, lastIndex: number): number {
    let bytes = 0;
    for (let i = matchIndex + 1; i <= lastIndex; i++) bytes += this.#entryBytes.get(i) ?? 0;
    return bytes;
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
      if (!this.#storageOk) return; // a node that cannot persist does not lead or campaign
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

  /** Messages from peers. */
  receive(messages: readonly Message[]): void {
    this.#input(() => {
      for (const m of messages) this.#node.step(m);
    });
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
   * @returns once the entry is committed and applied here
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
    const context = `r${++this.#readSeq}`;
    const confirmed = new Promise<number>((resolve, reject) => {
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
    return confirmed.then(async (index) => {
      await this.waitApplied(index);
      return index;
    });
  }

  /** Resolves once the state machine here has applied `index`. */
  waitApplied(index: number): Promise<void> {
    if (this.#appliedIndex >= index) return Promise.resolve();
    return new Promise((resolve) => this.#appliedWaiters.push({ index, resolve }));
  }

  /**
   * Make this node a brand-new cluster's state (pgraft_init()): persist the
   * bootstrap state and rebuild the core from it. The node must have no Raft
   * state yet; the caller campaigns next.
   */
  async bootstrap(state: PersistentState): Promise<void> {
    const status = this.#node.status();
    assert(status.term === 0 && status.lastIndex === 0, "bootstrap of a node with Raft state");
    await this.#storage.persist({
      snapshot: null,
      entries: state.entries,
      hardState: state.hardState,
    });
    await this.#call(() => {
      this.#node = new RaftNode(this.#config, state);
      this.#durableVote = { term: state.hardState.term, vote: state.hardState.vote };
      for (const e of state.entries) this.#entryBytes.set(e.index, e.data.length);
    });
  }

  /**
   * A leader hands leadership to its most caught-up voter and waits (bounded)
   * until it no longer leads.
   *
   * @returns the target, or null when this node does not lead or has no other voter
   */
  async handOver(timeoutMs: number): Promise<NodeId | null> {
    const st = this.#node.status();
    if (st.role !== "leader") return null;
    const best = st.progress
      .filter((p) => !p.isLearner && st.membership.voters.includes(p.id))
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

  /** Lost leadership: reads waiting on a leadership confirmation fail. */
  failReads(error: Error): void {
    for (const read of this.#reads.values()) read.reject(error);
    this.#reads.clear();
  }

  /** Stop ticking and taking inputs; pending proposals and reads are rejected. */
  stop(): void {
    this.#stopped = true;
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    this.#ticker = undefined;
    this.#inputs = [];
    for (const resolve of this.#applyDrained.splice(0)) resolve();
    const error = new ReplicaStoppedError("the agent is stopping");
    for (const waiter of this.#proposals.values()) waiter.reject(error);
    this.#proposals.clear();
    this.failReads(error);
  }

  /** Resolves when the Ready loop and the apply stage have nothing left to do. */
  whenIdle(): Promise<void> {
    if (!this.#looping && !this.#applying && this.#inputs.length === 0) return Promise.resolve();
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
          await this.#handle(this.#node.ready());
          this.#stepInputs();
        }
      } while (this.#loopAgain && !this.#stopped);
    } finally {
      this.#looping = false;
      if (this.#inputs.length > 0 && !this.#stopped) {
        this.#looping = true;
        queueMicrotask(() => this.#loop());
      } else if (!this.#applying) this.#wakeIdle();
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
        this.failReads(new NotLeaderError(rd.softState.leaderId));
      }
      this.#events.softStateChanged(previous, rd.softState, this.#node.status().term);
    }
    if (rd.messagesBeforePersist.length > 0 && this.#storageOk) {
      this.#send(rd.messagesBeforePersist);
    }
    await this.#persist(rd);
    if (rd.messages.length > 0 && this.#storageOk) this.#send(rd.messages);
    if (rd.snapshot) {
      // The snapshot replaced the applied state in the same write that stored it.
      this.#appliedIndex = Math.max(this.#appliedIndex, rd.snapshot.meta.index);
      this.stats.snapshotsInstalled++;
      this.#events.snapshotInstalled(rd.snapshot);
    }
    if (rd.committedEntries.length > 0) {
      this.#applyQueue.push(rd.committedEntries);
      this.#kickApply();
      while (this.#applyQueue.length > APPLY_QUEUE_MAX && !this.#stopped) {
        await new Promise<void>((resolve) => this.#applyDrained.push(resolve));
      }
    }
    this.#resolveReads(rd.readStates);
    this.#node.advance(rd);
    this.#resolveApplied();
    this.#maybeSnapshot();
  }

  /**
   * Make the Ready durable. The commit index need not be (Raft recovers it, and
   * applied <= commit is restored on load): a Ready that only moves it writes nothing.
   */
  async #persist(rd: Ready): Promise<void> {
    const hs = rd.hardState;
    const voteChanged = hs !== null &&
      (hs.term !== this.#durableVote.term || hs.vote !== this.#durableVote.vote);
    if (!rd.snapshot && rd.entries.length === 0 && !voteChanged) return;
    const started = performance.now();
    await this.#withStorage(() =>
      this.#storage.persist({ snapshot: rd.snapshot, entries: rd.entries, hardState: hs })
    );
    if (hs) this.#durableVote = { term: hs.term, vote: hs.vote };
    const samples = this.stats.persistMs;
    samples.push(performance.now() - started);
    if (samples.length > PERSIST_SAMPLES_MAX) samples.shift();
    if (rd.snapshot) this.#forgetEntriesUpTo(rd.snapshot.meta.index);
    if (rd.entries.length > 0) {
      this.stats.entriesAppended += rd.entries.length;
      this.stats.appendBatches++;
      const first = rd.entries[0]!.index;
      for (const index of this.#entryBytes.keys()) {
        if (index >= first) this.#entryBytes.delete(index);
      }
      for (const e of rd.entries) this.#entryBytes.set(e.index, e.data.length);
      this.#events.entriesPersisted(rd.entries);
    }
  }

  #kickApply(): void {
    if (this.#applying) return;
    this.#applying = (async () => {
      try {
        while (this.#applyQueue.length > 0 && !this.#stopped) {
          // Everything committed meanwhile goes in one storage call.
          const batches = this.#applyQueue.length;
          await this.#apply(this.#applyQueue.slice(0, batches).flat());
          this.#applyQueue.splice(0, batches);
          for (const resolve of this.#applyDrained.splice(0)) resolve();
          this.#resolveApplied();
          this.#maybeSnapshot();
        }
      } finally {
        this.#applying = null;
        for (const resolve of this.#applyDrained.splice(0)) resolve();
        if (this.#applyQueue.length > 0 && !this.#stopped) this.#kickApply();
        else if (!this.#looping) this.#wakeIdle();
      }
    })();
  }

  async #apply(entries: Entry[]): Promise<void> {
    const items = entries.map(toApplyItem);
    const results = await this.#withStorage(() => this.#storage.apply(items));
    assert(results.length === items.length, "one apply result per item");
    this.#appliedIndex = Math.max(this.#appliedIndex, entries[entries.length - 1]!.index);
    this.stats.entriesCommitted += items.length;
    for (const r of results) if (r.applied) this.stats.entriesApplied++;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      const waiter = this.#proposals.get(entry.index);
      if (!waiter) continue;
      this.#proposals.delete(entry.index);
      if (waiter.term === entry.term) waiter.resolve(results[i]!);
      else {
        waiter.reject(
          new ProposalLostError(
            `the proposal at index ${entry.index} was replaced by another leader's entry (term ${entry.term})`,
          ),
        );
      }
    }
    this.#events.entriesApplied(items, results);
  }

  #resolveReads(states: readonly ReadState[]): void {
    for (const state of states) {
      const read = this.#reads.get(state.context);
      if (!read) continue;
      this.#reads.delete(state.context);
      read.resolve(state.index);
    }
  }

  #resolveApplied(): void {
    if (this.#appliedWaiters.length === 0) return;
    const waiting: AppliedWaiter[] = [];
    for (const w of this.#appliedWaiters) {
      if (this.#appliedIndex >= w.index) w.resolve();
      else waiting.push(w);
    }
    this.#appliedWaiters = waiting;
  }

  #wakeIdle(): void {
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  // ---- snapshots ---------------------------------------------------------------

  /** Take a snapshot once enough entries are applied since the last one (beside the loop). */
  #maybeSnapshot(): void {
    if (this.#snapshotting || this.#stopped || !this.#node.snapshotDue()) return;
    this.#snapshotting = true;
    (async () => {
      const { index, data } = await this.#storage.snapshotData();
      // A snapshot installed from the leader meanwhile may already cover `index`.
      const snapshot = await this.#call((node) =>
        index > node.status().snapshotIndex ? node.createSnapshot(index, data) : null
      );
      if (!snapshot) return;
      await this.#storage.saveSnapshot(snapshot);
      this.#forgetEntriesUpTo(index);
      this.stats.snapshotsTaken++;
      this.stats.lastSnapshotIndex = index;
      this.stats.lastSnapshotAt = new Date();
      this.#events.snapshotTaken(index, data.length);
    })().catch((error) => {
      if (!this.#stopped) this.#events.snapshotFailed(error);
    }).finally(() => (this.#snapshotting = false));
  }

  #forgetEntriesUpTo(index: number): void {
    for (const i of this.#entryBytes.keys()) if (i <= index) this.#entryBytes.delete(i);
  }

  // ---- storage health -------------------------------------------------------------

  /** Run a storage call, retrying while storage is unavailable (the core waits meanwhile). */
  #withStorage<T>(fn: () => Promise<T>): Promise<T> {
    return retry(async () => {
      const result = await fn();
      this.#setStorageOk(true, null);
      return result;
    }, {
      retryable: (error) => error instanceof StorageUnavailableError && !this.#stopped,
      onRetry: (error) => this.#setStorageOk(false, error),
    });
  }

  /**
   * Report storage health seen elsewhere (the status publisher shares this
   * node's PostgreSQL): while unavailable the node does not tick or send.
   */
  reportStorageHealth(ok: boolean, error: unknown): void {
    this.#setStorageOk(ok, error);
  }

  #setStorageOk(ok: boolean, error: unknown): void {
    if (this.#storageOk === ok) return;
    this.#storageOk = ok;
    this.#events.storageHealthChanged(ok, error);
  }
}

/** Translate a committed entry into a state machine command. */
export function toApplyItem(entry: Entry): ApplyItem {
  let command: Command;
  if (entry.type === "conf_change") {
    command = { op: "conf_change", change: decodeConfChange(entry.data) };
  } else if (entry.data.length === 0) command = { op: "noop" };
  else command = decodeCommand(entry.data);
  return { index: entry.index, term: entry.term, command };
}
