/**
 * The Ready driver: the one place that turns the pure core's output into I/O.
 * Inputs (ticks, peer messages, proposals, reports) are queued as closures and
 * stepped into the core between Readies, so the core sees strict
 * ready()/advance() alternation; while one Ready is being persisted, new
 * proposals pile up and go out together in the next one (that is the batching).
 *
 * For each Ready, in order: send what may go before persistence (the leader's
 * appends), persist (retrying while PostgreSQL is unavailable — the node then
 * cannot vote, acknowledge or lead), send the rest, apply committed entries
 * (with last_applied, one transaction), resolve waiters, advance.
 *
 * @module
 */

import { assert } from "../assert.ts";
import {
  decodeConfChange,
  type Entry,
  type Message,
  type RaftNode,
  type ReadState,
  type Ready,
  type SoftState,
} from "../raft/mod.ts";
import {
  type ApplyItem,
  type ApplyResult,
  type Command,
  decodeCommand,
  type RaftStorage,
  StorageUnavailableError,
} from "../storage/mod.ts";

/** What the driver reports back to the agent. */
export interface DriverHooks {
  send(messages: Message[]): void;
  /** Entries were persisted (conf changes among them carry peer addresses). */
  persisted(entries: Entry[], snapshotInstalled: boolean): void;
  /** Entries were applied: results in order. */
  applied(items: ApplyItem[], results: ApplyResult[]): void;
  softStateChanged(previous: SoftState, next: SoftState): void;
  storageHealth(ok: boolean, error: unknown): void;
  /** A Ready was fully handled (a good moment to check waiters and publish status). */
  cycled(): void;
  /** Persist timing in ms (for stats). */
  persistTimed(ms: number, entries: number): void;
}

/** A caller waiting for the state machine to reach an index. */
interface AppliedWaiter {
  index: number;
  resolve: () => void;
}

/** A proposal waiting for its entry to be applied. */
interface ProposalWaiter {
  term: number;
  resolve: (result: ApplyResult) => void;
  reject: (error: Error) => void;
}

/** A proposal lost because another leader's entry took its index. */
export class ProposalLostError extends Error {
  override name = "ProposalLostError";
}

/** The agent is stopping. */
export class AgentStoppingError extends Error {
  override name = "AgentStoppingError";
}

/** Delay between retries of a storage call while PostgreSQL is unavailable, bounded growth. */
const STORAGE_RETRY_MS = [10, 20, 50, 100, 200, 500];

/** Batches of committed entries waiting to be applied before the Raft loop waits for the state machine. */
const APPLY_QUEUE_MAX = 8;

/** Inputs stepped per batch before checking for a Ready (bounded so ticks are never starved). */
const INPUTS_PER_CYCLE_MAX = 10_000;

/** Drives a RaftNode with a storage. */
export class Driver {
  readonly node: RaftNode;
  #storage: RaftStorage;
  #hooks: DriverHooks;
  #inputs: Array<() => void> = [];
  #running = false;
  #again = false;
  #stopped = false;
  #proposals = new Map<number, ProposalWaiter>();
  #reads = new Map<string, { resolve: (index: number) => void; reject: (e: Error) => void }>();
  #appliedWaiters: AppliedWaiter[] = [];
  #softState: SoftState;
  #appliedIndex: number;
  #readSeq = 0;
  #idle: Array<() => void> = [];
  #applyQueue: Entry[][] = [];
  #applying: Promise<void> | null = null;
  #applyDrained: Array<() => void> = [];
  #durableHard: { term: number; vote: number };

  constructor(node: RaftNode, storage: RaftStorage, hooks: DriverHooks) {
    this.node = node;
    this.#storage = storage;
    this.#hooks = hooks;
    const status = node.status();
    this.#softState = { role: status.role, leaderId: status.leaderId };
    this.#appliedIndex = status.appliedIndex;
    this.#durableHard = { term: status.term, vote: status.vote };
  }

  /** Index the state machine has applied up to (on this node). */
  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  get softState(): SoftState {
    return this.#softState;
  }

  /** Queue an input for the core and make sure the loop runs. */
  input(fn: () => void): void {
    if (this.#stopped) return;
    this.#inputs.push(fn);
    this.#kick();
  }

  /** Propose a command; resolves once it is committed and applied here. */
  propose(data: Uint8Array): Promise<ApplyResult> {
    return new Promise((resolve, reject) => {
      this.input(() => {
        try {
          const { index, term } = this.node.propose(data);
          this.#proposals.set(index, { term, resolve, reject });
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  /** Run `fn` against the core between Readies and return its result. */
  call<T>(fn: (node: RaftNode) => T): Promise<T> {
    return new Promise((resolve, reject) => {
      this.input(() => {
        try {
          resolve(fn(this.node));
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  /** Propose a conf change; resolves once applied here. */
  proposeWith(fn: (node: RaftNode) => { index: number; term: number }): Promise<ApplyResult> {
    return new Promise((resolve, reject) => {
      this.input(() => {
        try {
          const { index, term } = fn(this.node);
          this.#proposals.set(index, { term, resolve, reject });
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  /** Linearizable read barrier (ReadIndex): resolves with an index once it is applied here. */
  readBarrier(): Promise<number> {
    const context = `r${++this.#readSeq}`;
    const confirmed = new Promise<number>((resolve, reject) => {
      this.#reads.set(context, { resolve, reject });
      this.input(() => {
        try {
          this.node.readIndex(context);
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

  /** Resolves when the loop has nothing left to do. */
  whenIdle(): Promise<void> {
    if (!this.#running && !this.#applying && this.#inputs.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Stop: no more inputs; pending proposals and reads are rejected. */
  stop(): void {
    this.#stopped = true;
    this.#inputs = [];
    for (const resolve of this.#applyDrained.splice(0)) resolve();
    const error = new AgentStoppingError("the agent is stopping");
    for (const waiter of this.#proposals.values()) waiter.reject(error);
    this.#proposals.clear();
    for (const read of this.#reads.values()) read.reject(error);
    this.#reads.clear();
  }

  #kick(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    queueMicrotask(() => this.#loop());
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#again = false;
        this.#stepInputs();
        while (!this.#stopped && this.node.hasReady()) {
          await this.#handle(this.node.ready());
          this.#stepInputs();
        }
      } while (this.#again && !this.#stopped);
    } finally {
      this.#running = false;
      if (this.#inputs.length > 0 && !this.#stopped) this.#kick();
      else if (!this.#applying) { for (const resolve of this.#idle.splice(0)) resolve(); }
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
      this.#hooks.softStateChanged(previous, rd.softState);
    }
    if (rd.messagesBeforePersist.length > 0) this.#hooks.send(rd.messagesBeforePersist);
    // The commit index need not be durable (Raft recovers it; applied <= commit is
    // restored on load): a Ready that only moves it costs no synchronous write.
    const hs = rd.hardState;
    const voteChanged = hs !== null &&
      (hs.term !== this.#durableHard.term || hs.vote !== this.#durableHard.vote);
    if (rd.snapshot || rd.entries.length > 0 || voteChanged) {
      const started = performance.now();
      await this.#withStorage(() =>
        this.#storage.persist({
          snapshot: rd.snapshot,
          entries: rd.entries,
          hardState: rd.hardState,
        })
      );
      if (hs) this.#durableHard = hs;
      this.#hooks.persistTimed(performance.now() - started, rd.entries.length);
      this.#hooks.persisted(rd.entries, rd.snapshot !== null);
    }
    if (rd.messages.length > 0) this.#hooks.send(rd.messages);
    if (rd.snapshot) {
      // The snapshot replaced the applied state in the same write as it was stored.
      this.#appliedIndex = Math.max(this.#appliedIndex, rd.snapshot.meta.index);
    }
    // Applying runs beside the Raft loop (as in etcd): the next entries are
    // persisted and replicated while these are applied. Bounded, so a slow
    // state machine holds the loop back instead of growing memory.
    if (rd.committedEntries.length > 0) {
      this.#applyQueue.push(rd.committedEntries);
      this.#kickApply();
      while (this.#applyQueue.length > APPLY_QUEUE_MAX && !this.#stopped) {
        await new Promise<void>((resolve) => this.#applyDrained.push(resolve));
      }
    }
    this.#resolveReads(rd.readStates);
    this.node.advance(rd);
    this.#resolveApplied();
    this.#hooks.cycled();
  }

  #kickApply(): void {
    if (this.#applying) return;
    this.#applying = (async () => {
      try {
        while (this.#applyQueue.length > 0 && !this.#stopped) {
          // Everything committed meanwhile goes in one transaction: one fsync for
          // many small commits is what lets throughput grow with clients.
          const batches = this.#applyQueue.length;
          const entries = this.#applyQueue.slice(0, batches).flat();
          await this.#apply(entries);
          this.#applyQueue.splice(0, batches);
          for (const resolve of this.#applyDrained.splice(0)) resolve();
          this.#resolveApplied();
          this.#hooks.cycled();
        }
      } finally {
        this.#applying = null;
        for (const resolve of this.#applyDrained.splice(0)) resolve();
        if (this.#applyQueue.length > 0 && !this.#stopped) this.#kickApply();
        else if (!this.#running) { for (const resolve of this.#idle.splice(0)) resolve(); }
      }
    })();
  }

  async #apply(entries: Entry[]): Promise<void> {
    const items = entries.map(toApplyItem);
    const results = await this.#withStorage(() => this.#storage.apply(items));
    assert(results.length === items.length, "one apply result per item");
    const last = entries[entries.length - 1]!;
    this.#appliedIndex = Math.max(this.#appliedIndex, last.index);
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
    this.#hooks.applied(items, results);
  }

  #resolveReads(states: ReadState[]): void {
    for (const state of states) {
      const read = this.#reads.get(state.context);
      if (!read) continue;
      this.#reads.delete(state.context);
      read.resolve(state.index);
    }
  }

  #resolveApplied(): void {
    if (this.#appliedWaiters.length === 0) return;
    const still: AppliedWaiter[] = [];
    for (const w of this.#appliedWaiters) {
      if (this.#appliedIndex >= w.index) w.resolve();
      else still.push(w);
    }
    this.#appliedWaiters = still;
  }

  /**
   * Lost leadership: reads waiting on a leadership confirmation can no longer
   * be answered by this node.
   */
  failReads(error: Error): void {
    for (const read of this.#reads.values()) read.reject(error);
    this.#reads.clear();
  }

  /** Run a storage call, retrying while PostgreSQL is unavailable (the core waits meanwhile). */
  async #withStorage<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0;; attempt++) {
      try {
        const result = await fn();
        if (attempt > 0) this.#hooks.storageHealth(true, null);
        return result;
      } catch (error) {
        if (!(error instanceof StorageUnavailableError) || this.#stopped) throw error;
        if (attempt === 0) this.#hooks.storageHealth(false, error);
        const delay = STORAGE_RETRY_MS[Math.min(attempt, STORAGE_RETRY_MS.length - 1)]!;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
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
