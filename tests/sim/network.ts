/**
 * The simulated network: messages are delayed by a whole number of ticks,
 * lost, duplicated and reordered at random, and directed links can be cut to
 * build partitions (symmetric, one-way, a bridge node between two halves).
 *
 * @module
 */

import type { Message, NodeId } from "../../lib/raft/mod.ts";
import type { Rng } from "./rng.ts";

/** A message in flight. */
export interface Envelope {
  message: Message;
  /** tick at which it arrives */
  deliverAt: number;
  /** incarnation of the sender when it sent the message */
  senderIncarnation: number;
  /** true for the extra copy of a duplicated message */
  duplicate: boolean;
}

/** What happened to a message handed to {@link Network.send}. */
export type SendOutcome = "queued" | "lost" | "blocked";

/** Random conditions of every link. */
export interface LinkConditions {
  /** probability a message is lost */
  lossRate: number;
  /** probability a message is delivered twice */
  duplicateRate: number;
  /** smallest delay in ticks (>= 0: 0 means later in the same tick) */
  delayMinTicks: number;
  /** largest delay in ticks */
  delayMaxTicks: number;
}

/** Largest node id the link table can hold. */
const LINK_ID_MAX = 65535;

function linkKey(from: NodeId, to: NodeId): number {
  return from * (LINK_ID_MAX + 1) + to;
}

/** A deterministic lossy network (all randomness from the given generator). */
export class Network {
  conditions: LinkConditions = {
    lossRate: 0,
    duplicateRate: 0,
    delayMinTicks: 1,
    delayMaxTicks: 1,
  };
  readonly #rng: Rng;
  readonly #blocked = new Set<number>();
  readonly #queue = new Map<number, Envelope[]>();
  #inFlight = 0;

  constructor(rng: Rng) {
    this.#rng = rng;
  }

  /** Messages queued and not yet delivered. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Whether messages from `from` to `to` are currently cut. */
  isBlocked(from: NodeId, to: NodeId): boolean {
    return this.#blocked.size > 0 && this.#blocked.has(linkKey(from, to));
  }

  /** Whether any link is cut. */
  get partitioned(): boolean {
    return this.#blocked.size > 0;
  }

  /** Cut the directed link from → to. */
  block(from: NodeId, to: NodeId): void {
    if (from > LINK_ID_MAX || to > LINK_ID_MAX) {
      throw new RangeError(`node id beyond ${LINK_ID_MAX}`);
    }
    this.#blocked.add(linkKey(from, to));
  }

  /** Cut every link between group a and group b, both ways. */
  blockBetween(a: readonly NodeId[], b: readonly NodeId[]): void {
    for (const x of a) {
      for (const y of b) {
        if (x === y) continue;
        this.block(x, y);
        this.block(y, x);
      }
    }
  }

  /** Restore every link. */
  heal(): void {
    this.#blocked.clear();
  }

  /** Queue a message (or lose it), at tick `now`. */
  send(message: Message, now: number, senderIncarnation: number): SendOutcome {
    if (this.isBlocked(message.from, message.to)) return "blocked";
    const c = this.conditions;
    if (this.#rng.chance(c.lossRate)) return "lost";
    this.#enqueue({ message, deliverAt: now + this.#delay(), senderIncarnation, duplicate: false });
    if (this.#rng.chance(c.duplicateRate)) {
      this.#enqueue({
        message,
        deliverAt: now + this.#delay(),
        senderIncarnation,
        duplicate: true,
      });
    }
    return "queued";
  }

  /**
   * Remove and return the messages due at `now`, in random order. Messages
   * queued with delay 0 while these are handled come out of a later call.
   */
  takeDue(now: number): Envelope[] {
    const due = this.#queue.get(now);
    if (due === undefined || due.length === 0) return [];
    this.#queue.delete(now);
    this.#inFlight -= due.length;
    return this.#rng.shuffle(due);
  }

  /** Drop every queued message (used by tests). */
  clear(): void {
    this.#queue.clear();
    this.#inFlight = 0;
  }

  #delay(): number {
    const c = this.conditions;
    return c.delayMinTicks + this.#rng.int(c.delayMaxTicks - c.delayMinTicks + 1);
  }

  #enqueue(envelope: Envelope): void {
    let bucket = this.#queue.get(envelope.deliverAt);
    if (bucket === undefined) {
      bucket = [];
      this.#queue.set(envelope.deliverAt, bucket);
    }
    bucket.push(envelope);
    this.#inFlight++;
  }
}
