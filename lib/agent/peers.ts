/**
 * The peers of this node: where each member's agent listens (the address
 * book), one {@link PeerClient} per peer (made on first use, replaced when the
 * address changes), when each last spoke to us, and the message counters.
 *
 * Addresses come from three places, later ones winning: the applied members,
 * conf change entries as they reach the log (a new member is reachable before
 * its addition is applied), and the sender of a request (a node that has not
 * replicated the membership yet learns where its leader is).
 *
 * @module
 */

import type { Message, NodeId } from "../raft/mod.ts";
import { type MembersView, type Metrics, PeerClient } from "../transport/mod.ts";

/** A member's agent address as peers use it. */
export interface PeerAddress {
  address: string;
  port: number;
}

/** What {@link Peers} needs to make clients. */
export interface PeersOptions {
  nodeId: NodeId;
  /** this node's advertised address, sent with every request */
  self: PeerAddress;
  clusterId: () => string | null;
  authSecret: string | null;
  /** reach peers over https, trusting this CA bundle (null: the system's) */
  tls: { caFile: string | null } | null;
  metrics: Metrics;
  /** a peer could not be reached: the core stops pipelining to it */
  onUnreachable: (peer: NodeId) => void;
  /** a snapshot sent to `peer` arrived (ok) or failed */
  onSnapshotResult: (peer: NodeId, ok: boolean) => void;
  /** this node's view of the members when it leads, sent with its heartbeats (else null) */
  view: () => MembersView | null;
  /** a peer answered our messages with its own in the response body */
  onReply: (messages: Message[]) => void;
}

/** Messages to a peer held back to go in the answer to its request (see {@link Peers.openReply}). */
export interface ReplySlot {
  peer: NodeId;
  messages: Message[];
}

/** Counters of peer messages, for pgraft_log_get_stats(). */
export interface PeerCounters {
  sent: number;
  received: number;
  /** messages that could not be handed to a peer or were lost with a failed request */
  errors: number;
}

/**
 * The base URL of a peer's agent (`https` when the cluster uses TLS).
 *
 * @example
 * ```ts
 * peerBaseUrl({ address: "::1", port: 7001 }, false); // "http://[::1]:7001"
 * ```
 */
export function peerBaseUrl(addr: PeerAddress, tls: boolean): string {
  const host = addr.address.includes(":") && !addr.address.startsWith("[")
    ? `[${addr.address}]`
    : addr.address;
  return `${tls ? "https" : "http"}://${host}:${addr.port}`;
}

/** The address book, clients and contact times of one node's peers. */
export class Peers {
  readonly #options: PeersOptions;
  readonly #addresses = new Map<NodeId, PeerAddress>();
  readonly #clients = new Map<NodeId, PeerClient>();
  /** performance.now() of the last message from each peer */
  readonly #lastContact = new Map<NodeId, number>();
  /** open answers to requests, by peer: what this node sends them meanwhile goes there */
  readonly #replySlots = new Map<NodeId, ReplySlot[]>();
  readonly counters: PeerCounters = { sent: 0, received: 0, errors: 0 };

  constructor(options: PeersOptions) {
    this.#options = options;
    this.#addresses.set(options.nodeId, options.self);
  }

  /** Where `id`'s agent listens, if known. */
  address(id: NodeId): PeerAddress | undefined {
    return this.#addresses.get(id);
  }

  /** The base URL of `id`'s agent, or null when its address is unknown. */
  baseUrl(id: NodeId): string | null {
    const addr = this.#addresses.get(id);
    return addr ? peerBaseUrl(addr, this.#options.tls !== null) : null;
  }

  /**
   * Record where `id` listens. A changed address closes the old client; with
   * `ifUnknown`, a known address is kept (a sender's header never overrides the log).
   */
  learn(id: NodeId, addr: PeerAddress, ifUnknown = false): void {
    const known = this.#addresses.get(id);
    if (known && (ifUnknown || (known.address === addr.address && known.port === addr.port))) {
      return;
    }
    this.#addresses.set(id, { address: addr.address, port: addr.port });
    this.#dropClient(id);
  }

  /** A member left: close its client (its address stays for status displays until replaced). */
  forget(id: NodeId): void {
    this.#dropClient(id);
  }

  /** The client to `id`'s agent, or null when its address is unknown. */
  client(id: NodeId): PeerClient | null {
    const existing = this.#clients.get(id);
    if (existing) return existing;
    const addr = this.#addresses.get(id);
    if (!addr) return null;
    const o = this.#options;
    const client = new PeerClient({
      nodeId: o.nodeId,
      peerId: id,
      baseUrl: peerBaseUrl(addr, o.tls !== null),
      ...(o.tls ? { tls: o.tls } : {}),
      clusterId: o.clusterId,
      authSecret: o.authSecret,
      metrics: o.metrics,
      selfAddress: o.self,
      onUnreachable: (peer) => {
        this.counters.errors++;
        o.onUnreachable(peer);
      },
      onSnapshotResult: o.onSnapshotResult,
      view: o.view,
      onReply: (messages) => o.onReply(messages),
    });
    this.#clients.set(id, client);
    return client;
  }

  /**
   * While `peer`'s request is being handled, messages to it are held for the
   * answer (one HTTP exchange per round: a follower's acknowledgements go back
   * in the response to the leader's append). Close it with {@link closeReply}.
   */
  openReply(peer: NodeId): ReplySlot {
    const slot: ReplySlot = { peer, messages: [] };
    let slots = this.#replySlots.get(peer);
    if (!slots) this.#replySlots.set(peer, slots = []);
    slots.push(slot);
    return slot;
  }

  /** The messages held for an answer; later ones go the usual way again. */
  closeReply(slot: ReplySlot): Message[] {
    const slots = this.#replySlots.get(slot.peer);
    const at = slots?.indexOf(slot) ?? -1;
    if (slots && at >= 0) slots.splice(at, 1);
    if (slots && slots.length === 0) this.#replySlots.delete(slot.peer);
    this.counters.sent += slot.messages.length;
    return slot.messages;
  }

  /**
   * Hand messages to their peers: into the answer to a request of theirs being
   * handled, else to their queues; a peer without an address is reported unreachable.
   */
  send(messages: readonly Message[]): void {
    const byPeer = new Map<NodeId, Message[]>();
    for (const m of messages) {
      const slots = this.#replySlots.get(m.to);
      if (slots) {
        slots[slots.length - 1]!.messages.push(m);
        continue;
      }
      let list = byPeer.get(m.to);
      if (!list) byPeer.set(m.to, list = []);
      list.push(m);
    }
    for (const [to, list] of byPeer) {
      const client = this.client(to);
      if (!client) {
        this.counters.errors += list.length;
        this.#options.onUnreachable(to);
        continue;
      }
      this.counters.sent += list.length;
      client.send(list);
    }
  }

  /** Messages arrived: note each sender's contact time. */
  received(messages: readonly Message[]): void {
    this.counters.received += messages.length;
    const now = performance.now();
    for (const m of messages) this.#lastContact.set(m.from, now);
  }

  /** Milliseconds since `id` last sent us a message, or null when never. */
  contactAgeMs(id: NodeId): number | null {
    const at = this.#lastContact.get(id);
    return at === undefined ? null : performance.now() - at;
  }

  /** Close every client. */
  async closeAll(): Promise<void> {
    const clients = [...this.#clients.values()];
    this.#clients.clear();
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
  }

  #dropClient(id: NodeId): void {
    const client = this.#clients.get(id);
    if (!client) return;
    this.#clients.delete(id);
    client.close().catch(() => {});
  }
}
