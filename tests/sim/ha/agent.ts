/**
 * A simulated agent: the real Raft core (lib/raft RaftNode) with in-memory
 * durable storage, the real state machine (lib/state) for the primary
 * record, the real lease tracker and the real HA controller (lib/ha), driven
 * by a drifting local clock. It does what lib/agent must do for HA (see the
 * report of issue 14): lease rounds through ReadIndex every heartbeat, a
 * decision at least every DECISION_INTERVAL_MS, the agent's report and
 * freeze messages. Every Raft message goes to the core as it comes: the core
 * itself withholds its vote for an election timeout after it starts
 * (lib/raft/vote_hold.ts), which the leases of the others rest on.
 *
 * @module
 */

import {
  type Entry,
  type Message,
  type NodeId,
  NONE,
  type PersistentState,
  type PlantedBugs,
  RaftNode,
  type Status,
} from "../../../lib/raft/mod.ts";
import { decodeCommand, encodeCommand, StateMachine } from "../../../lib/state/mod.ts";
import {
  decide,
  type HaAction,
  type HaInputs,
  type HaPlantedBugs,
  LeaseTracker,
  type MemberReport,
  type PrimaryRecordView,
  voteWithholdMs,
} from "../../../lib/ha/mod.ts";
import { deriveSeed, Rng } from "../rng.ts";
import type { PgServer } from "./pg.ts";
import { COLLECT_RESEND_MS, DECISION_INTERVAL_MS, LEASE_ROUND_MS, RAFT_TIMING } from "./timing.ts";

/** Agent-to-agent HA messages (the agents' own HTTP in lib/agent). */
export type HaMessage =
  | { type: "report_request"; leader: NodeId; term: number; freeze: boolean }
  | { type: "report"; report: Omit<MemberReport, "receivedAtMs"> };

/** What an agent needs from the world. */
export interface AgentWorld {
  now(): number;
  seed: number;
  server(id: NodeId): PgServer;
  sendRaft(m: Message): void;
  sendHa(from: NodeId, to: NodeId, message: HaMessage): void;
  readonly settings: { failoverEnabled: boolean; recloneAllowed: boolean; synchronous: boolean };
  trace(line: string): void;
  /** a node applied a set_primary entry */
  applied(node: NodeId, record: PrimaryRecordView, index: number): void;
  /** an agent asked its server to promote */
  promoteIssued(node: NodeId, timeline: number): void;
}

/** The agent's settings in the simulator (planted bugs included). */
export interface AgentConfig {
  voters: readonly NodeId[];
  /** the drift bound the lease tracker assumes (planted bug: 0 with drifting clocks) */
  trackerDrift: number;
  /** planted bug: lease = W × (1 − d) instead of W × (1 − d) / (1 + d) */
  oneSidedDriftMargin: boolean;
  fencingBudgetMs: number;
  /** bugs planted in the Raft core (e.g. `noVoteHoldAfterRestart`) */
  raftBugs: PlantedBugs;
  controllerBugs: HaPlantedBugs;
}

/** The vote withholding time of the simulated cores (local ms). */
export const WITHHOLD_MS = voteWithholdMs(RAFT_TIMING.electionTicks, RAFT_TIMING.tickMs);
const INBOX_MAX = 20_000;

export type Inbound = { kind: "raft"; message: Message } | {
  kind: "ha";
  from: NodeId;
  message: HaMessage;
};

/** One simulated agent. */
export class SimAgent {
  readonly id: NodeId;
  readonly #world: AgentWorld;
  readonly #config: AgentConfig;
  readonly #rate: number;
  readonly #offset: number;
  status: "running" | "paused" | "down" = "down";
  /** real time the agent last started or resumed */
  awakeSince = 0;
  #incarnation = 0;
  #durable: PersistentState;
  #raft: RaftNode | null = null;
  #sm = new StateMachine();
  #lease: LeaseTracker;
  #inbox: Inbound[] = [];
  #nextTick = 0;
  #nextDecision = 0;
  #nextRound = 0;
  // what the agent remembers for the controller (volatile)
  #leaderTerm = 0;
  #transferring = false;
  #members = new Map<NodeId, MemberReport>();
  #reportRequest: HaInputs["reportRequest"] = null;
  #frozenForTerm = 0;
  #switchover: HaInputs["switchover"] = null;
  #proposed: PrimaryRecordView | null = null;
  #lastCollect = -Infinity;
  #lastAction = "";
  #lastSignature = "";
  #reportsReceived = 0;
  /** the core's status after the last Ready */
  #status: Status | null = null;
  /** the end (local) of the lease this node held when it was last deposed */
  #deposedLeaseEnd = -Infinity;
  problems = 0;

  constructor(
    id: NodeId,
    world: AgentWorld,
    config: AgentConfig,
    clock: { rate: number; offset: number },
    durable: PersistentState,
  ) {
    this.id = id;
    this.#world = world;
    this.#config = config;
    this.#rate = clock.rate;
    this.#offset = clock.offset;
    this.#durable = durable;
    this.#lease = this.#newLease();
  }

  /** This agent's clock at real time `real` (now by default). */
  local(real = this.#world.now()): number {
    return this.#offset + this.#rate * real;
  }

  // ---- life cycle -------------------------------------------------------------------

  start(): void {
    if (this.status !== "down") return;
    this.#incarnation++;
    const rng = new Rng(deriveSeed(this.#world.seed, this.id, this.#incarnation));
    this.#raft = new RaftNode({
      id: this.id,
      heartbeatTicks: RAFT_TIMING.heartbeatTicks,
      electionTicks: RAFT_TIMING.electionTicks,
      electionJitterTicks: RAFT_TIMING.electionJitterTicks,
      appendBatchSize: RAFT_TIMING.appendBatchSize,
      maxInflight: RAFT_TIMING.maxInflight,
      snapshotThreshold: 1_000_000_000,
      failoverEnabled: this.#world.settings.failoverEnabled,
      randomInt: (n) => rng.int(n),
      plantedBugs: this.#config.raftBugs,
    }, {
      hardState: { ...this.#durable.hardState },
      snapshot: null,
      entries: this.#durable.entries.slice(),
      applied: 0,
    });
    this.#sm = new StateMachine();
    this.#lease = this.#newLease();
    this.#inbox = [];
    this.#leaderTerm = 0;
    this.#transferring = false;
    this.#members.clear();
    this.#reportRequest = null;
    this.#frozenForTerm = 0;
    this.#switchover = null;
    this.#proposed = null;
    this.#lastCollect = -Infinity;
    this.#deposedLeaseEnd = -Infinity;
    const local = this.local();
    this.#nextTick = local + RAFT_TIMING.tickMs;
    this.#nextDecision = local;
    this.#nextRound = local;
    this.status = "running";
    this.awakeSince = this.#world.now();
    this.#world.trace(`agent ${this.id}: started (incarnation ${this.#incarnation})`);
    this.#drain();
  }

  crash(): void {
    if (this.status === "down") return;
    this.status = "down";
    this.#raft = null;
    this.#inbox = [];
    this.#world.trace(`agent ${this.id}: crashed`);
  }

  pause(): void {
    if (this.status !== "running") return;
    this.status = "paused";
    this.#world.trace(`agent ${this.id}: paused`);
  }

  resume(ticksFirst: boolean): void {
    if (this.status !== "paused") return;
    this.status = "running";
    this.awakeSince = this.#world.now();
    this.#world.trace(`agent ${this.id}: resumed`);
    if (ticksFirst) this.#tick();
    const inbox = this.#inbox;
    this.#inbox = [];
    for (const item of inbox) this.#handle(item);
  }

  setFailoverEnabled(enabled: boolean): void {
    this.#raft?.setFailoverEnabled(enabled);
  }

  requestSwitchover(target: NodeId): void {
    if (this.status !== "running" || !this.isLeader()) return;
    this.#switchover = { target, requestedAtMs: this.local() };
    this.#world.trace(`agent ${this.id}: operator asks for a switchover to ${target}`);
  }

  // ---- what the checks read ---------------------------------------------------------------

  isLeader(): boolean {
    return this.status !== "down" && this.#raft !== null && this.#leaderTerm > 0;
  }

  /** Leader with a lease valid on its own clock (paused agents included: their clock runs). */
  entitled(): boolean {
    if (!this.isLeader()) return false;
    const left = this.#lease.remainingMs(this.local());
    return left !== null && left > 0;
  }

  /**
   * Its server may still accept writes: entitled, or deposed (a higher term)
   * within the lease it held — no other node can be elected before that
   * lease ends. A transfer voids the lease at once.
   */
  leaseHolds(): boolean {
    return this.entitled() || (this.status !== "down" && this.local() < this.#deposedLeaseEnd);
  }

  raftStatus(): Status | null {
    return this.#raft?.status() ?? null;
  }

  // ---- inputs ---------------------------------------------------------------------------------

  deliver(item: Inbound): void {
    if (this.status === "down") return;
    if (this.status === "paused") {
      if (this.#inbox.length < INBOX_MAX) this.#inbox.push(item);
      return;
    }
    this.#handle(item);
  }

  /** One real millisecond. */
  step(): void {
    if (this.status !== "running") return;
    this.#tick();
    const local = this.local();
    if (this.isLeader() && local >= this.#nextRound) {
      this.#nextRound = local + LEASE_ROUND_MS;
      this.#raft!.readIndex(this.#lease.startRound(local));
      this.#drain();
    }
    // Ask at least every DECISION_INTERVAL_MS, and at once when something changed.
    const signature = this.#signature();
    if (local >= this.#nextDecision || signature !== this.#lastSignature) {
      this.#nextDecision = local + DECISION_INTERVAL_MS;
      this.#decide();
      this.#lastSignature = this.#signature();
    }
  }

  /** What the decision depends on, besides time (a change asks the controller at once). */
  #signature(): string {
    const server = this.#world.server(this.id);
    const status = this.#status!;
    return [
      server.state,
      server.op?.kind ?? "",
      server.upstream ?? "",
      server.diverged,
      server.data,
      status.role,
      status.term,
      status.leaderId,
      status.transferTarget,
      this.#sm.lastApplied,
      this.#reportsReceived,
      this.#reportRequest?.term ?? "",
      this.#switchover?.target ?? "",
      this.#proposed?.timeline ?? "",
    ].join("|");
  }

  #tick(): void {
    const local = this.local();
    if (local < this.#nextTick) return;
    const tickMs = RAFT_TIMING.tickMs;
    let due = Math.floor((local - this.#nextTick) / tickMs) + 1;
    due = Math.min(due, RAFT_TIMING.electionTicks);
    this.#nextTick += due * tickMs;
    if (local - this.#nextTick > tickMs * RAFT_TIMING.electionTicks) {
      this.#nextTick = local + tickMs;
    }
    for (let k = 0; k < due; k++) this.#raft!.tick();
    this.#drain();
  }

  #handle(item: Inbound): void {
    if (item.kind === "raft") {
      this.#raft!.step(item.message);
      this.#drain();
      return;
    }
    const m = item.message;
    if (m.type === "report_request") {
      if (m.freeze) this.#frozenForTerm = Math.max(this.#frozenForTerm, m.term);
      if (this.#reportRequest === null || m.term >= this.#reportRequest.term) {
        this.#reportRequest = { leader: m.leader, term: m.term, freeze: m.freeze };
      }
    } else if (this.isLeader()) {
      this.#members.set(m.report.nodeId, { ...m.report, receivedAtMs: this.local() });
      this.#reportsReceived++;
    }
  }

  // ---- the Ready loop ---------------------------------------------------------------------------

  #drain(): void {
    const raft = this.#raft!;
    for (let guard = 0; guard < 1000 && raft.hasReady(); guard++) {
      const ready = raft.ready();
      for (const m of ready.messagesBeforePersist) this.#world.sendRaft(m);
      if (ready.snapshot !== null) throw new Error("the HA simulator takes no snapshots");
      if (ready.entries.length > 0) {
        const first = ready.entries[0]!.index;
        this.#durable.entries = this.#durable.entries.slice(0, first - 1);
        for (const e of ready.entries) this.#durable.entries.push(e);
      }
      if (ready.hardState !== null) this.#durable.hardState = { ...ready.hardState };
      for (const m of ready.messages) this.#world.sendRaft(m);
      for (const e of ready.committedEntries) this.#apply(e);
      for (const r of ready.readStates) this.#lease.confirmed(r.context);
      raft.advance(ready);
    }
    this.#syncRole(raft.status());
  }

  #apply(entry: Entry): void {
    this.#sm.apply(entry);
    if (entry.type !== "normal" || entry.data.length === 0) return;
    const command = decodeCommand(entry.data);
    if (command.op !== "set_primary") return;
    const record = { nodeId: command.nodeId, timeline: command.timeline };
    this.#world.applied(this.id, record, entry.index);
    const p = this.#proposed;
    if (p !== null && p.nodeId === record.nodeId && p.timeline === record.timeline) {
      this.#proposed = null;
    }
  }

  #syncRole(status: Status): void {
    this.#status = status;
    const local = this.local();
    if (status.role === "leader") {
      if (this.#leaderTerm !== status.term) {
        this.#lease.becameLeader(status.term, local);
        this.#leaderTerm = status.term;
        this.#members.clear();
        this.#proposed = null;
        this.#transferring = false;
        this.#world.trace(`agent ${this.id}: leader in term ${status.term}`);
      }
      if (this.#transferring && status.transferTarget === NONE) {
        this.#transferring = false;
        this.#lease.transferEnded(local);
      }
    } else if (this.#leaderTerm !== 0) {
      // Deposed by a higher term: no other leader can be elected before the
      // lease ends, so the lease still bounds when its server must stop.
      const left = this.#lease.remainingMs(local) ?? -Infinity;
      this.#deposedLeaseEnd = local + left;
      this.#leaderTerm = 0;
      this.#lease.lost();
      this.#members.clear();
      this.#proposed = null;
      this.#switchover = null;
      this.#transferring = false;
      this.#world.trace(`agent ${this.id}: no longer leader (term ${status.term})`);
    }
  }

  // ---- the HA loop ------------------------------------------------------------------------------

  #gather(): HaInputs {
    const status = this.#raft!.status();
    const server = this.#world.server(this.id);
    const local = this.local();
    const leader = status.role === "leader";
    const record = this.#sm.primary();
    const settings = this.#world.settings;
    return {
      nowMs: local,
      self: this.id,
      inCluster: true,
      raft: {
        role: status.role,
        term: status.term,
        leaderId: status.leaderId,
        voters: status.membership.voters,
        transferTarget: status.transferTarget,
        caughtUp: !leader || this.#sm.lastApplied >= this.#termFirstIndex(status.term),
      },
      leaseRemainingMs: leader ? this.#lease.remainingMs(local) : null,
      fencingBudgetMs: this.#config.fencingBudgetMs,
      primary: record === null ? null : { nodeId: record.nodeId, timeline: record.timeline },
      proposedPrimary: leader ? this.#proposed : null,
      failoverEnabled: settings.failoverEnabled,
      synchronous: settings.synchronous,
      recloneAllowed: settings.recloneAllowed,
      server: {
        ...server.observe(),
        sinceMs: this.local(server.since),
        synchronousStandbyNames: server.synchronousStandbyNames,
      },
      inProgress: server.op === null
        ? null
        : { op: server.op.kind, sinceMs: this.local(server.op.startedAt) },
      members: leader ? [...this.#members.values()] : [],
      reportRequest: this.#reportRequest,
      frozenForTerm: this.#frozenForTerm,
      switchover: leader ? this.#switchover : null,
    };
  }

  /** The index of this node's first log entry of `term` (Infinity when none). */
  #termFirstIndex(term: number): number {
    const entries = this.#durable.entries;
    for (let k = entries.length - 1; k >= 0; k--) {
      const e = entries[k]!;
      if (e.term < term) return k + 2 <= entries.length ? entries[k + 1]!.index : Infinity;
    }
    return entries[0]?.index ?? Infinity;
  }

  #decide(): void {
    const decision = decide(this.#gather(), { plantedBugs: this.#config.controllerBugs });
    const summary = `${decision.action.type}: ${decision.reason}`;
    if (decision.action.type !== "wait" && summary !== this.#lastAction) {
      this.#world.trace(
        `agent ${this.id}: ${JSON.stringify(decision.action)} — ${decision.reason}`,
      );
    }
    this.#lastAction = summary;
    this.#execute(decision.action);
  }

  #execute(action: HaAction): void {
    const server = this.#world.server(this.id);
    const raft = this.#raft!;
    const local = this.local();
    switch (action.type) {
      case "wait":
        return;
      case "start_as_is":
        server.start(null);
        return;
      case "start_standby":
        server.start(action.upstream);
        return;
      case "fence":
        server.fence(action.mode);
        return;
      case "freeze":
        server.freeze();
        return;
      case "report_lsn":
        this.#world.sendHa(this.id, action.to, {
          type: "report",
          report: {
            nodeId: this.id,
            term: raft.status().term,
            server: server.observe(),
            frozen: server.frozen(),
          },
        });
        this.#reportRequest = null;
        return;
      case "collect_lsns":
        if (local - this.#lastCollect < COLLECT_RESEND_MS) return;
        this.#lastCollect = local;
        for (const to of action.from) {
          this.#world.sendHa(this.id, to, {
            type: "report_request",
            leader: this.id,
            term: action.term,
            freeze: action.freeze,
          });
        }
        return;
      case "transfer_leadership":
        this.#lease.transferStarted(local);
        this.#transferring = true;
        try {
          raft.transferLeadership(action.to);
        } catch {
          // not leader any more, or not a voter: the lease tracker hears of the end below
        }
        this.#drain();
        return;
      case "propose_primary":
        try {
          raft.propose(
            encodeCommand({ op: "set_primary", nodeId: action.nodeId, timeline: action.timeline }),
          );
          this.#proposed = { nodeId: action.nodeId, timeline: action.timeline };
        } catch {
          // a transfer is under way, or leadership was lost: the controller asks again
        }
        this.#drain();
        return;
      case "promote":
        this.#world.promoteIssued(this.id, action.timeline);
        server.promote(action.timeline);
        return;
      case "follow":
        server.follow(action.upstream);
        return;
      case "rewind":
        server.rewind(action.source);
        return;
      case "clone":
        server.clone(action.source);
        return;
      case "set_synchronous_standby_names":
        server.setSynchronous(action.value);
        return;
      case "abandon_switchover":
        this.#switchover = null;
        return;
      case "problem":
        this.problems++;
        return;
    }
  }

  #newLease(): LeaseTracker {
    const d = this.#config.trackerDrift;
    if (this.#config.oneSidedDriftMargin) {
      // planted bug: W × (1 − d), as if d bounded the drift between two clocks
      return new LeaseTracker({ withholdMs: WITHHOLD_MS * (1 + d), maxClockDrift: d });
    }
    return new LeaseTracker({ withholdMs: WITHHOLD_MS, maxClockDrift: d });
  }
}
