/**
 * A tiny synchronous network for unit tests of the Raft core: nodes with
 * durable state kept exactly as a Ready asks, messages delivered on demand,
 * links cut at will. The full randomized simulator lives in tests/sim.
 */

import {
  bootstrapState,
  type Entry,
  type Message,
  type PersistentState,
  type RaftConfig,
  RaftNode,
  type ReadState,
} from "../../../lib/raft/mod.ts";

/** A seeded generator (mulberry32). */
export function seeded(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const r = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return Math.floor(r * n);
  };
}

export interface TestNode {
  id: number;
  node: RaftNode;
  durable: PersistentState;
  applied: Entry[];
  readStates: ReadState[];
  up: boolean;
}

export function config(id: number, extra: Partial<RaftConfig> = {}): RaftConfig {
  return {
    id,
    heartbeatTicks: 1,
    electionTicks: 10,
    electionJitterTicks: 10,
    appendBatchSize: 64,
    maxInflight: 8,
    snapshotThreshold: 1000,
    randomInt: seeded(id * 7919),
    ...extra,
  };
}

/** A cluster whose members 1..n all start from the bootstrap state. */
export class Net {
  nodes = new Map<number, TestNode>();
  queue: Message[] = [];
  /** links that drop messages: "from->to" */
  cut = new Set<string>();
  /** when set, messages are dropped unless this returns true */
  filter: ((m: Message) => boolean) | null = null;
  sent: Message[] = [];

  constructor(n: number, extra: Partial<RaftConfig> = {}) {
    const voters = Array.from({ length: n }, (_, k) => ({ id: k + 1, context: "" }));
    for (const v of voters) this.add(v.id, bootstrapState(voters), extra);
  }

  add(id: number, state: PersistentState, extra: Partial<RaftConfig> = {}): TestNode {
    const t: TestNode = {
      id,
      node: new RaftNode(config(id, extra), structuredClone(state)),
      durable: structuredClone(state),
      applied: [],
      readStates: [],
      up: true,
    };
    this.nodes.set(id, t);
    return t;
  }

  get(id: number): TestNode {
    const t = this.nodes.get(id);
    if (!t) throw new Error(`no node ${id}`);
    return t;
  }

  /** Process every pending Ready of every live node. */
  flush(): void {
    for (let round = 0; round < 100; round++) {
      let any = false;
      for (const t of this.nodes.values()) {
        if (!t.up) continue;
        while (t.node.hasReady()) {
          any = true;
          const rd = t.node.ready();
          this.#post(rd.messagesBeforePersist);
          const d = t.durable;
          if (rd.snapshot) {
            d.snapshot = rd.snapshot;
            d.entries = d.entries.filter((e) => e.index > rd.snapshot!.meta.index);
            d.applied = rd.snapshot.meta.index;
          }
          if (rd.entries.length > 0) {
            const first = rd.entries[0]!.index;
            d.entries = d.entries.filter((e) => e.index < first).concat(rd.entries);
          }
          if (rd.hardState) d.hardState = rd.hardState;
          this.#post(rd.messages);
          for (const e of rd.committedEntries) t.applied.push(e);
          if (rd.committedEntries.length > 0) d.applied = rd.committedEntries.at(-1)!.index;
          t.readStates.push(...rd.readStates);
          t.node.advance(rd);
        }
      }
      if (!any) return;
    }
    throw new Error("flush did not settle");
  }

  #post(messages: Message[]): void {
    for (const m of messages) {
      this.sent.push(m);
      this.queue.push(m);
    }
  }

  /** Deliver queued messages (and what they cause) until the network is quiet. */
  deliverAll(limit = 100_000): void {
    this.flush();
    for (let k = 0; k < limit; k++) {
      const m = this.queue.shift();
      if (!m) return;
      const to = this.nodes.get(m.to);
      if (!to || !to.up || this.cut.has(`${m.from}->${m.to}`)) continue;
      if (!this.nodes.get(m.from)?.up) continue;
      if (this.filter && !this.filter(m)) continue;
      to.node.step(m);
      this.flush();
    }
    throw new Error("network did not settle");
  }

  /** Tick every live node `n` times, delivering after each tick. */
  tick(n = 1, ids?: number[]): void {
    for (let k = 0; k < n; k++) {
      for (const t of this.nodes.values()) {
        if (t.up && (!ids || ids.includes(t.id))) t.node.tick();
      }
      this.deliverAll();
    }
  }

  /** Cut both directions between `a` and every node in `others`. */
  isolate(a: number): void {
    for (const b of this.nodes.keys()) {
      if (b === a) continue;
      this.cut.add(`${a}->${b}`);
      this.cut.add(`${b}->${a}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  crash(id: number): void {
    this.get(id).up = false;
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
  }

  restart(id: number, extra: Partial<RaftConfig> = {}): void {
    const old = this.get(id);
    const state = structuredClone(old.durable);
    const t = this.add(id, state, extra);
    t.applied = old.applied.filter((e) => e.index <= state.applied);
  }

  leaders(): number[] {
    return [...this.nodes.values()].filter((t) => t.up && t.node.status().role === "leader")
      .map((t) => t.id);
  }

  /** Elect `id` by making it campaign. */
  elect(id: number): void {
    this.get(id).node.campaign();
    this.deliverAll();
  }

  /** Tick until some node leads; returns it. */
  waitLeader(maxTicks = 200): number {
    for (let k = 0; k < maxTicks; k++) {
      const l = this.leaders();
      if (l.length === 1) return l[0]!;
      this.tick();
    }
    throw new Error("no leader");
  }
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Payloads a node applied (no-ops and conf changes left out). */
export function appliedPayloads(t: TestNode): string[] {
  return t.applied.filter((e) => e.type === "normal" && e.data.length > 0).map((e) => str(e.data));
}
