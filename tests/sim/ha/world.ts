/**
 * The HA simulator's world: real time in milliseconds, one agent and one
 * PostgreSQL server per node, a network with delays and partitions (agent
 * traffic and PostgreSQL traffic cut separately), clocks of bounded drift,
 * a client writing to every server that accepts writes, and the checks.
 *
 * @module
 */

import { bootstrapState, type Message, type NodeId } from "../../../lib/raft/mod.ts";
import { encodeCommand, encodeMemberContext } from "../../../lib/state/mod.ts";
import { fencingBudgetMs, type PrimaryRecordView } from "../../../lib/ha/mod.ts";
import { deriveSeed, Rng } from "../rng.ts";
import { type AgentConfig, type HaMessage, type Inbound, SimAgent } from "./agent.ts";
import { HaChecker } from "./checker.ts";
import { PgServer, type ServerWorld, type WalRecord } from "./pg.ts";
import {
  CLIENT_WRITE_CHANCE,
  DECISION_INTERVAL_MS,
  NETWORK_DELAY,
  NETWORK_DELAY_SLOW,
  NETWORK_SLOW_CHANCE,
  PG_DURATIONS,
} from "./timing.ts";

/** Bugs the HA simulator can plant; each must be caught (ha_sim_test.ts). */
export type PlantedBug =
  /** the controller promotes without freezing and comparing the standbys */
  | "promote_without_collecting"
  /** no fencing budget: the leader fences only once its lease is over */
  | "fence_too_late"
  /** the lease tracker assumes clocks do not drift */
  | "lease_without_drift_margin"
  /** the controller promotes once the record is proposed, before it commits */
  | "promote_before_commit"
  /** lease = W × (1 − d): the margin on one side only */
  | "one_sided_drift_margin"
  /** a restarted agent's Raft core votes at once (the core's `noVoteHoldAfterRestart`) */
  | "no_vote_hold_after_restart";

/** One run's configuration, all drawn from the seed unless given. */
export interface WorldOptions {
  seed: number;
  nodes?: number;
  synchronous?: boolean;
  /** real ms of faults before everything heals */
  faultMs?: number;
  /** each clock's rate is within 1 ± this; default 0.05 ("mixed"), 0.1 ("lease") */
  maxClockDrift?: number;
  bugs?: readonly PlantedBug[];
  /**
   * "mixed" (default): every kind of fault. "lease": clocks at the ends of
   * their drift range and faults aimed at the leader lease (the leader cut
   * off, one of its links cut, followers restarting at once, the leader
   * paused).
   */
  profile?: "mixed" | "lease";
}

interface Envelope {
  from: NodeId;
  to: NodeId;
  item: Inbound;
}

const INITIAL_WAL_RECORDS = 5;

function linkKey(a: NodeId, b: NodeId): string {
  return a < b ? `${a}-${b}` : `${b}-${a}`;
}

/** The whole simulated cluster. */
export class World implements ServerWorld {
  readonly seed: number;
  readonly rng: Rng;
  readonly nodeCount: number;
  readonly synchronous: boolean;
  readonly maxClockDrift: number;
  readonly faultMs: number;
  readonly bugs: ReadonlySet<PlantedBug>;
  readonly profile: "mixed" | "lease";
  readonly agents: SimAgent[] = [];
  readonly servers: PgServer[] = [];
  readonly checker: HaChecker;
  readonly settings: { failoverEnabled: boolean; recloneAllowed: boolean; synchronous: boolean };
  healedAt = Infinity;
  #now = 0;
  #nextRecord = 1;
  #queue = new Map<number, Envelope[]>();
  #agentCuts = new Map<string, number>();
  #pgCuts = new Map<string, number>();
  #trace: string[] = [];
  #events: { at: number; run: () => void }[] = [];
  #nextEvent = 0;

  constructor(options: WorldOptions) {
    this.seed = options.seed;
    this.rng = new Rng(deriveSeed(options.seed, 0x4a11));
    const rng = this.rng;
    this.nodeCount = options.nodes ?? (rng.chance(0.5) ? 3 : 5);
    this.synchronous = options.synchronous ?? rng.chance(0.75);
    this.maxClockDrift = options.maxClockDrift ?? (options.profile === "lease" ? 0.1 : 0.05);
    this.faultMs = options.faultMs ?? 20_000;
    this.bugs = new Set(options.bugs ?? []);
    this.profile = options.profile ?? "mixed";
    this.settings = { failoverEnabled: true, recloneAllowed: false, synchronous: this.synchronous };
    this.checker = new HaChecker(this);

    const voters = Array.from({ length: this.nodeCount }, (_, k) => k + 1);
    const config: AgentConfig = {
      voters,
      trackerDrift: this.bugs.has("lease_without_drift_margin") ? 0 : this.maxClockDrift,
      oneSidedDriftMargin: this.bugs.has("one_sided_drift_margin"),
      fencingBudgetMs: this.bugs.has("fence_too_late") ? 0 : fencingBudgetMs({
        decisionIntervalMs: DECISION_INTERVAL_MS,
        stopMsMax: PG_DURATIONS.stopImmediate.max,
      }),
      raftBugs: { noVoteHoldAfterRestart: this.bugs.has("no_vote_hold_after_restart") },
      controllerBugs: {
        promoteWithoutCollecting: this.bugs.has("promote_without_collecting"),
        promoteBeforeRecordCommitted: this.bugs.has("promote_before_commit"),
      },
    };

    // Node 1's server was initialized by the operator; the others are copies or empty.
    const initial: WalRecord[] = [];
    for (let k = 0; k < INITIAL_WAL_RECORDS; k++) {
      initial.push({ id: this.nextRecordId(), timeline: 1 });
    }
    this.checker.initialCommits(initial);
    const foreign = this.nodeCount >= 5 && rng.chance(0.15) ? rng.range(2, this.nodeCount) : 0;
    for (const id of voters) {
      const data = id === foreign ? "foreign" : id === 1 || rng.chance(0.6) ? "ok" : "empty";
      const server = new PgServer(id, this, data);
      if (data === "ok") server.wal = initial.slice();
      this.servers.push(server);
    }

    // Raft: every founder starts from the same log, which records node 1 as primary.
    const founders = voters.map((id) => ({
      id,
      context: encodeMemberContext({ address: `10.0.0.${id}`, port: 7000 }),
    }));
    for (const id of voters) {
      const state = bootstrapState(founders);
      const index = state.entries.length + 1;
      state.entries.push({
        index,
        term: 1,
        type: "normal",
        data: encodeCommand({ op: "set_primary", nodeId: 1, timeline: 1 }),
      });
      state.hardState = { ...state.hardState, commit: index };
      const d = this.maxClockDrift;
      const extreme = this.profile === "lease" || rng.chance(0.5);
      const rate = extreme ? (rng.chance(0.5) ? 1 - d : 1 + d) : 1 - d + 2 * d * rng.float();
      const clock = { rate, offset: rng.range(0, 100_000) };
      this.agents.push(new SimAgent(id, this, config, clock, state));
    }
    for (const agent of this.agents) agent.start();
  }

  // ---- ServerWorld / AgentWorld -----------------------------------------------------------

  now(): number {
    return this.#now;
  }

  server(id: NodeId): PgServer {
    return this.servers[id - 1]!;
  }

  serverIds(): readonly NodeId[] {
    return this.servers.map((s) => s.id);
  }

  nextRecordId(): number {
    return this.#nextRecord++;
  }

  pgLinkUp(a: NodeId, b: NodeId): boolean {
    return a === b || (this.#pgCuts.get(linkKey(a, b)) ?? 0) === 0;
  }

  agentLinkUp(a: NodeId, b: NodeId): boolean {
    return a === b || (this.#agentCuts.get(linkKey(a, b)) ?? 0) === 0;
  }

  acknowledged(server: PgServer, record: WalRecord, position: number): void {
    this.checker.acknowledged(server, record, position);
  }

  cleanStopStarted(server: PgServer): void {
    if (this.#now < this.healedAt) this.checker.outage("switchover", server.id);
  }

  promoted(server: PgServer, _timeline: number): void {
    this.checker.promoted(server);
  }

  applied(_node: NodeId, record: PrimaryRecordView, index: number): void {
    this.checker.applied(record, index);
  }

  promoteIssued(node: NodeId, timeline: number): void {
    this.checker.promoteIssued(node, timeline);
  }

  sendRaft(m: Message): void {
    this.#send(m.from, m.to, { kind: "raft", message: m });
  }

  sendHa(from: NodeId, to: NodeId, message: HaMessage): void {
    this.#send(from, to, { kind: "ha", from, message });
  }

  trace(line: string): void {
    this.#trace.push(`${this.#now} ${line}`);
    if (this.#trace.length > 120) this.#trace.shift();
  }

  traceLines(): readonly string[] {
    return this.#trace;
  }

  #send(from: NodeId, to: NodeId, item: Inbound): void {
    if (!this.agentLinkUp(from, to)) return;
    const slow = this.rng.chance(NETWORK_SLOW_CHANCE);
    const delay = slow
      ? this.rng.range(NETWORK_DELAY_SLOW.min, NETWORK_DELAY_SLOW.max)
      : this.rng.range(NETWORK_DELAY.min, NETWORK_DELAY.max);
    const at = this.#now + delay;
    const bucket = this.#queue.get(at);
    if (bucket) bucket.push({ from, to, item });
    else this.#queue.set(at, [{ from, to, item }]);
  }

  // ---- faults (scenario.ts schedules them) ----------------------------------------------------

  /** Schedule `run` at real time `at` (events must be added in time order per caller; sorted here). */
  at(at: number, run: () => void): void {
    this.#events.push({ at, run });
    this.#events.sort((a, b) => a.at - b.at);
  }

  cut(a: NodeId, b: NodeId, pgToo: boolean, delta: 1 | -1): void {
    if (this.#now >= this.healedAt || a === b) return;
    const key = linkKey(a, b);
    this.#agentCuts.set(key, Math.max(0, (this.#agentCuts.get(key) ?? 0) + delta));
    if (pgToo) this.#pgCuts.set(key, Math.max(0, (this.#pgCuts.get(key) ?? 0) + delta));
  }

  setFailoverEnabled(enabled: boolean): void {
    if (this.#now >= this.healedAt && !enabled) return;
    this.settings.failoverEnabled = enabled;
    for (const agent of this.agents) agent.setFailoverEnabled(enabled);
    this.trace(`operator: failover_enabled = ${enabled}`);
  }

  /** The node whose agent leads (the first, if several), or 0. */
  leaderNode(): NodeId {
    return this.agents.find((a) => a.status !== "down" && a.isLeader())?.id ?? 0;
  }

  /** The node whose server is a running primary (the first, if several), or 0. */
  primaryNode(): NodeId {
    return this.servers.find((s) => s.acceptsWrites())?.id ?? 0;
  }

  heal(): void {
    this.healedAt = this.#now;
    this.#agentCuts.clear();
    this.#pgCuts.clear();
    this.setFailoverEnabled(true);
    this.settings.recloneAllowed = true;
    for (const agent of this.agents) {
      if (agent.status === "paused") agent.resume(this.rng.chance(0.5));
      if (agent.status === "down") agent.start();
    }
    this.trace("every fault healed");
  }

  // ---- time ---------------------------------------------------------------------------------------

  /** One real millisecond. */
  step(): void {
    this.#now++;
    const now = this.#now;
    while (this.#nextEvent < this.#events.length && this.#events[this.#nextEvent]!.at <= now) {
      this.#events[this.#nextEvent++]!.run();
    }
    const bucket = this.#queue.get(now);
    if (bucket) {
      this.#queue.delete(now);
      for (const e of bucket) {
        if (this.agentLinkUp(e.from, e.to)) this.agents[e.to - 1]!.deliver(e.item);
      }
    }
    const n = this.agents.length;
    const first = now % n;
    for (let k = 0; k < n; k++) this.agents[(first + k) % n]!.step();
    for (const server of this.servers) server.step();
    for (const server of this.servers) {
      if (server.acceptsWrites() && this.rng.chance(CLIENT_WRITE_CHANCE)) server.write();
    }
    this.checker.step();
  }
}
