/**
 * The simulated network: messages are delayed by a whole number of ticks,
 * lost, duplicated and reordered at random, and directed links can be cut to
 * build partitions (symmetric, one-way, a bridge node between two halves).
 *
 * A connection to a node whose agent does not listen (crashed, or restarting
 * and not listening yet) is refused, and the sender learns it at once: that
 * is evidence, distinct from loss and from a cut link (where the sender hears
 * nothing). Refusals sometimes lie: with `refuseRate` a listening node's
 * connection is refused too.
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
export type SendOutcome = "queued" | "lost" | "blocked" | "refused";

/**
 * What a connection attempt ({@link Network.connect}) met: a listener, a
 * refusal (nothing listens, or a lie), or silence (a cut link).
 */
export type ConnectOutcome = "accepted" | "refused" | "timeout";

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
  /** probability a connection to a listening node is refused anyway (a lie); default 0 */
  refuseRate?: number;
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
  /** nodes whose agent does not listen: connections to them are refused */
  readonly #deaf = new Set<NodeId>();
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

  /** Whether `id`'s agent accepts connections. */
  isListening(id: NodeId): boolean {
    return this.#deaf.size === 0 || !this.#deaf.has(id);
  }

  /** `id`'s agent starts (true) or stops (false) accepting connections. */
  setListening(id: NodeId, listening: boolean): void {
    if (listening) this.#deaf.delete(id);
    else this.#deaf.add(id);
  }

  /**
   * Open a connection from → to (a probe): silence across a link cut either
   * way (the handshake needs both), refused when nothing listens or, with
   * `refuseRate`, when something does (a lie).
   */
  connect(from: NodeId, to: NodeId): ConnectOutcome {
    if (this.isBlocked(from, to) || this.isBlocked(to, from)) return "timeout";
    return this.#refuses(to) ? "refused" : "accepted";
  }

  /** Restore every link. */
  heal(): void {
    this.#blocked.clear();
  }

  /** Queue a message (or lose it), at tick `now`. */
  send(message: Message, now: number, senderIncarnation: number): SendOutcome {
    if (this.isBlocked(message.from, message.to)) return "blocked";
    if (this.#refuses(message.to)) return "refused";
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

  #refuses(to: NodeId): boolean {
    return !this.isListening(to) || this.#rng.chance(this.conditions.refuseRate ?? 0);
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
