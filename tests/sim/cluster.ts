/**
 * The deterministic cluster simulation: RaftNodes on a fake network with a
 * fake disk, driven tick by tick by one seed, with the safety checker run
 * after every step. {@link runSeed} is the entry point.
 *
 * @module
 */

import {
  bootstrapState,
  ConfChangeError,
  emptyState,
  type Message,
  type NodeId,
  NONE,
  NotLeaderError,
  type PersistentState,
  type PlantedBugs,
  ProposalRejectedError,
  RaftNode,
  type Ready,
  type Role,
  type Snapshot,
  type Status,
  type Timing,
} from "../../lib/raft/mod.ts";
import { chainHash, entryKey, SafetyChecker, Violation } from "./checker.ts";
import { CorruptRecordError, decodeStateMachine, Disk, encodeStateMachine } from "./disk.ts";
import {
  FailoverMeter,
  type FailoverSample,
  type Hearing,
  hearing,
  StickinessWatch,
} from "./failover.ts";
import { type Envelope, Network } from "./network.ts";
import { deriveSeed, Rng } from "./rng.ts";
import {
  chooseScenario,
  type CrashPoint,
  type CrashTrigger,
  type ProfileName,
  type Scenario,
} from "./scenario.ts";
import { type EventDetail, Trace } from "./trace.ts";

const ENCODER = new TextEncoder();

/** Readies handled in a row for one node before we call it a livelock. */
const READY_LOOP_MAX = 10_000;
/** Nodes a run may add beyond the founders. */
const ADDED_NODES_MAX = 3;
/**
 * Nodes a run may lose for good to bit flips. One keeps a majority of every
 * membership a run reaches: the simulated operator never takes the voters
 * below 3, and while a node is lost it removes no voter but that one.
 */
const FAILED_NODES_MAX = 1;

/** What the transport tells the node after a Ready was handled. */
type TransportReport =
  | { kind: "unreachable"; peer: NodeId }
  | { kind: "refused"; peer: NodeId; lie: boolean }
  | { kind: "snapshot"; peer: NodeId; ok: boolean };

/** One simulated server. */
class SimNode {
  readonly id: NodeId;
  readonly rate: number;
  readonly disk: Disk;
  /** null while crashed */
  raft: RaftNode | null = null;
  incarnation = 0;
  tickCredit = 0;
  /** tick at which a crashed node comes back */
  restartAt = 0;
  armed: { point: CrashPoint; trigger: CrashTrigger } | null = null;
  removed = false;
  /** refused to start from a corrupt disk: down for good */
  failed = false;
  /** what the last status showed */
  commit = 0;
  role: Role = "follower";
  term = 0;
  lastIndex = 0;
  leaderId: NodeId = NONE;
  voters: NodeId[] = [];
  learners: NodeId[] = [];
  /** transport reports queued while a Ready is handled */
  reports: TransportReport[] = [];
  /** logical ticks counted (all incarnations) */
  ticks = 0;
  /**
   * the last leader message a core of this node took: from whom, in which
   * term, at which tick of ours, in which incarnation (kept across crashes)
   */
  heard: { leader: NodeId; term: number; at: number; incarnation: number } | null = null;
  /** ticks until the next probe of a leader whose heartbeats the core missed */
  probeDueIn = 0;
  /** tick from which a restarted node's agent listens (refusals modelled) */
  listenAt = 0;
  /** tick this node's last term of leadership began */
  leaderSince = 0;

  constructor(id: NodeId, rate: number, state: PersistentState) {
    this.id = id;
    this.rate = rate;
    this.disk = new Disk(state);
  }

  get up(): boolean {
    return this.raft !== null;
  }
}

/** Bugs planted in the driver (what lib/agent/replica.ts does around the core). */
export interface DriverBugs {
  /**
   * send a Ready's `messages` (acknowledgements, votes) once its record is
   * written, before it is synced: a crash in between may lose what they promise
   */
  ackBeforeSync?: boolean;
}

/** Options of one run. */
export interface RunOptions {
  /** founding members (3 or 5); default: chosen by the seed */
  nodes?: number;
  /** force a profile; default: chosen by the seed */
  profile?: ProfileName;
  /** ticks of faults before healing; default: chosen by the seed (300–500) */
  faultTicks?: number;
  /** bugs planted in the core (tests only) */
  plantedBugs?: PlantedBugs;
  /** bugs planted in the simulator's driver, the agent's part (tests only) */
  driverBugs?: DriverBugs;
  /**
   * torn saves, bit flips and crashes between a write and its sync; false
   * runs a seed exactly as before the disk was modelled. @default true
   */
  diskFaults?: boolean;
  /**
   * refused connections: a down or restarting node's agent refuses them
   * (sometimes a live one too, a lie), the sender learns it at once, and
   * followers probe a leader whose heartbeats they missed and report its
   * refusal, or its answer that it no longer leads, to the core
   * (`reportLeaderGone`); false runs a seed exactly as before they were
   * modelled (messages to a down node are lost, the `leader_crash` profile
   * only when asked for). @default true
   */
  refusals?: boolean;
  /**
   * the simulated operator also removes healthy voters, the leader included,
   * while a node is lost for good (a bit flip). This found a removed leader
   * that would not campaign while its removal was uncommitted, leaving the
   * cluster leaderless for good (seed 1285, thesis §4.2.2); false gives the
   * cautious operator that replaces a lost node before removing any other.
   * @default true
   */
  removeVotersWhileLost?: boolean;
  /** print every event as it happens (replaying one seed verbosely) */
  print?: (line: string) => void;
  /** hash every event into `stats.digest` (determinism tests) */
  digest?: boolean;
}

/** Figures of one run. */
export interface RunStats {
  seed: number;
  profile: ProfileName;
  nodes: number;
  /** simulated ticks */
  ticks: number;
  /** terms that had a leader */
  elections: number;
  /** entries committed */
  committed: number;
  /** client proposals applied by the last leader's state machine... counted cluster-wide */
  proposals: number;
  delivered: number;
  crashes: number;
  /** crashes that found a save written but unsynced, and kept it whole */
  tornSavesKept: number;
  /** crashes that found a save written but unsynced, and cut it off */
  tornSavesLost: number;
  /** records corrupted by a bit flip */
  bitFlips: number;
  /** restarts refused because of a corrupt record */
  refusedStarts: number;
  /** nodes that refused to start, removed and replaced by a new node */
  replacedNodes: number;
  events: number;
  /** hash of every event (only with `digest` or `print`) */
  digest: number;
  /** failovers timed after a steady cluster's leader crashed */
  failovers: FailoverSample[];
  /** probes of a leader whose heartbeats a follower missed */
  probes: number;
  /** refused connections reported to a follower's core (probes and messages to its leader) */
  refusals: number;
  /** refusals the core acted on (it forgot its leader and pre-voted) */
  refusalsActed: number;
  /** of those, lies: the refusing node was up and listening */
  liesActed: number;
  /** probes answered "not leader of your term" (a restarted leader) that the core acted on */
  answersActed: number;
  /**
   * elections won with a grant from a voter that had heard a leader, still
   * up and leading, within an election timeout but forgot it on a refusal (a
   * lie: that leader was alive); transfers left out
   */
  electionsByLie: number;
  /**
   * elections won with a grant from a voter that still followed a leader,
   * up and leading, it had heard within an election timeout (transfers left
   * out): leader stickiness (thesis §4.2.3) must make it 0
   */
  electionsDespiteStickiness: number;
  /**
   * elections won with a grant from a voter that had heard a leader, still
   * up and leading, fewer than electionTicks of its own ticks earlier, before
   * its core restarted (transfers left out): the hold after a start
   * (lib/raft/vote_hold.ts) must make it 0
   */
  electionsDespiteRestartHold: number;
}

/** The outcome of one run. */
export interface RunResult {
  violation: Violation | null;
  stats: RunStats;
  /** the last events before the violation, formatted (empty when none) */
  trace: string[];
}

/** A liveness proposal made after healing. */
interface LiveProposal {
  key: string;
  index: number;
  term: number;
  leader: NodeId;
}

/** A whole simulated cluster for one seed. */
export class Simulation {
  readonly seed: number;
  readonly scenario: Scenario;
  readonly checker = new SafetyChecker();
  readonly trace: Trace;
  readonly #rng: Rng;
  readonly #net: Network;
  readonly #nodes = new Map<NodeId, SimNode>();
  readonly #plantedBugs: PlantedBugs | undefined;
  readonly #driverBugs: DriverBugs;
  readonly #removeVotersWhileLost: boolean;
  /** draws the disk's faults, apart from the rest so they leave other draws alone */
  readonly #diskRng: Rng;
  /** draws when restarted agents listen, apart from the rest */
  readonly #refusalRng: Rng;
  readonly #failover = new FailoverMeter();
  readonly #stickiness = new StickinessWatch();
  /** the voter a vote request is being stepped into, and how it stood before */
  #answering: { voter: NodeId; how: Hearing } | null = null;
  /** terms whose candidates campaigned with a leadership transfer */
  readonly #transferTerms = new Set<number>();
  #probes = 0;
  #refusals = 0;
  #refusalsActed = 0;
  #liesActed = 0;
  #answersActed = 0;
  #electionsByLie = 0;
  #electionsDespiteStickiness = 0;
  #electionsDespiteRestartHold = 0;
  #timing: Timing;
  #failoverEnabled = true;
  #now = 0;
  #proposals = 0;
  #reads = 0;
  #nextId: NodeId;
  #delivered = 0;
  #crashes = 0;
  #tornSavesKept = 0;
  #tornSavesLost = 0;
  #bitFlips = 0;
  #refusedStarts = 0;
  #replacedNodes = 0;
  /** replacements for failed nodes removed from the membership, yet to be added */
  #replacementsDue = 0;
  #lagging: { node: NodeId; until: number } | null = null;
  #lagPauseUntil = 0;
  #healedAt = -1;
  #backlogAtHeal = 0;
  #live: LiveProposal[] = [];
  #done = false;

  constructor(seed: number, options: RunOptions = {}) {
    this.seed = seed;
    this.#rng = new Rng(deriveSeed(seed, 0));
    this.scenario = chooseScenario(this.#rng, options, {
      disk: options.diskFaults !== false ? new Rng(deriveSeed(seed, 3)) : undefined,
      refusals: options.refusals !== false ? new Rng(deriveSeed(seed, 5)) : undefined,
    });
    this.#plantedBugs = options.plantedBugs;
    this.#driverBugs = options.driverBugs ?? {};
    this.#removeVotersWhileLost = options.removeVotersWhileLost !== false;
    this.#diskRng = new Rng(deriveSeed(seed, 4));
    this.#refusalRng = new Rng(deriveSeed(seed, 6));
    this.trace = new Trace({ digest: options.digest, print: options.print });
    this.#net = new Network(new Rng(deriveSeed(seed, 1)));
    const s = this.scenario;
    this.#net.conditions = {
      lossRate: s.lossRate,
      duplicateRate: s.duplicateRate,
      delayMinTicks: s.delayMinTicks,
      delayMaxTicks: s.delayMaxTicks,
      refuseRate: s.refuseRate,
    };
    this.#timing = {
      heartbeatTicks: s.heartbeatTicks,
      electionTicks: s.electionTicks,
      electionJitterTicks: s.electionJitterTicks,
      appendBatchSize: s.appendBatchSize,
      snapshotThreshold: s.snapshotThreshold,
      maxInflight: s.maxInflight,
    };
    const founders: { id: NodeId; context: string }[] = [];
    for (let id = 1; id <= s.nodes; id++) founders.push({ id, context: `n${id}` });
    this.#nextId = s.nodes + 1;
    for (const f of founders) {
      this.#nodes.set(f.id, new SimNode(f.id, this.#rateOf(f.id), bootstrapState(founders)));
    }
  }

  /** Run the seed to the end; returns the violation found, if any. */
  run(): RunResult {
    let violation: Violation | null = null;
    try {
      this.#event("start", 0, this.#describeScenario());
      for (const node of this.#nodes.values()) this.#restart(node);
      if (this.#rng.chance(0.5)) {
        const first = this.#rng.pick([...this.#nodes.values()]);
        this.#api(first, "campaign", (raft) => raft.campaign());
      }
      const s = this.scenario;
      while (!this.#done) {
        if (this.#now === s.faultTicks) this.#heal();
        if (this.#now < s.faultTicks) this.#injectFaults();
        this.#restartDueNodes();
        this.#tickNodes();
        this.#deliverDue();
        if (this.#healedAt >= 0) this.#checkLiveness();
        this.#now++;
      }
    } catch (e) {
      if (!(e instanceof Violation)) throw e;
      violation = e;
      this.#event("VIOLATION", 0, e.message);
    }
    return {
      violation,
      stats: this.stats(),
      trace: violation ? this.trace.lines() : [],
    };
  }

  /** Figures so far. */
  stats(): RunStats {
    let proposals = 0;
    for (const n of this.#nodes.values()) proposals = Math.max(proposals, n.disk.sm.proposals);
    return {
      seed: this.seed,
      profile: this.scenario.profile,
      nodes: this.scenario.nodes,
      ticks: this.#now,
      elections: this.checker.elections,
      committed: this.checker.committedIndex,
      proposals,
      delivered: this.#delivered,
      crashes: this.#crashes,
      tornSavesKept: this.#tornSavesKept,
      tornSavesLost: this.#tornSavesLost,
      bitFlips: this.#bitFlips,
      refusedStarts: this.#refusedStarts,
      replacedNodes: this.#replacedNodes,
      events: this.trace.count,
      digest: this.trace.digest,
      failovers: [...this.#failover.samples],
      probes: this.#probes,
      refusals: this.#refusals,
      refusalsActed: this.#refusalsActed,
      liesActed: this.#liesActed,
      answersActed: this.#answersActed,
      electionsByLie: this.#electionsByLie,
      electionsDespiteStickiness: this.#electionsDespiteStickiness,
      electionsDespiteRestartHold: this.#electionsDespiteRestartHold,
    };
  }

  #describeScenario(): string {
    const s = this.scenario;
    return `seed=${this.seed} profile=${s.profile} nodes=${s.nodes} hb=${s.heartbeatTicks} ` +
      `election=${s.electionTicks}+${s.electionJitterTicks} batch=${s.appendBatchSize} ` +
      `inflight=${s.maxInflight} snapshotThreshold=${s.snapshotThreshold} faults=${s.faultTicks} ` +
      `loss=${s.lossRate} dup=${s.duplicateRate} delay=${s.delayMinTicks}..${s.delayMaxTicks}` +
      (s.diskFaults
        ? ` unsyncedKept=${s.pUnsyncedKept} bitFlip=${s.pBitFlip} replace=${s.pReplaceFailed}`
        : "") +
      (s.refusals ? ` refuseRate=${s.refuseRate} restartDeaf=0..${s.restartDeafTicksMax}` : "");
  }

  #rateOf(id: NodeId): number {
    return this.scenario.tickRates[id - 1] ?? 1;
  }

  #event(kind: string, node: NodeId, detail: EventDetail = null): void {
    this.trace.add(this.#now, kind, node, detail);
  }

  // ---- the loop ------------------------------------------------------------

  #liveNodes(): SimNode[] {
    const out: SimNode[] = [];
    for (const n of this.#nodes.values()) if (n.up && !n.removed) out.push(n);
    return out;
  }

  #tickNodes(): void {
    const nodes = this.#rng.shuffle(this.#liveNodes());
    for (const node of nodes) {
      node.tickCredit += node.rate;
      while (node.tickCredit >= 1 && node.up) {
        node.tickCredit -= 1;
        node.ticks++;
        this.#api(node, "tick", (raft) => raft.tick(), true);
        if (this.scenario.refusals) this.#probeLeader(node);
      }
    }
  }

  #deliverDue(): void {
    for (let round = 0; round < 100; round++) {
      const due = this.#net.takeDue(this.#now);
      if (due.length === 0) return;
      for (const envelope of due) this.#deliver(envelope);
    }
    throw new Violation("core exception", "messages kept arriving within one tick");
  }

  #deliver(envelope: Envelope): void {
    const m = envelope.message;
    const target = this.#nodes.get(m.to);
    const sender = this.#nodes.get(m.from);
    const senderSame = sender !== undefined && sender.up &&
      sender.incarnation === envelope.senderIncarnation && !envelope.duplicate;
    const reportSnapshot = (ok: boolean) => {
      if (m.type === "snapshot_request" && senderSame) {
        this.#api(
          sender,
          `reportSnapshot(${m.to}, ${ok})`,
          (raft) => raft.reportSnapshot(m.to, ok),
        );
      }
    };
    // The transport of the sender sees a refused connection or a cut link.
    const unreachable = (why: string) => {
      this.#event(`drop(${why})`, m.to, m);
      if (senderSame) {
        this.#api(
          sender,
          `reportUnreachable(${m.to})`,
          (raft) => raft.reportUnreachable(m.to),
          true,
        );
      }
      reportSnapshot(false);
    };
    if (target === undefined || !target.up || target.removed) {
      unreachable("down");
      return;
    }
    if (!this.#net.isListening(m.to)) {
      unreachable("restarting");
      return;
    }
    if (this.#net.isBlocked(m.from, m.to)) {
      unreachable("partition");
      return;
    }
    this.#delivered++;
    this.#event(envelope.duplicate ? "deliver(dup)" : "deliver", m.to, m);
    if (m.type === "vote_request" && !m.transfer) {
      this.#answering = {
        voter: m.to,
        how: hearing(target, this.#nodes, this.#timing.electionTicks),
      };
    }
    try {
      this.#api(target, "step", (raft) => raft.step(m), true);
    } finally {
      this.#answering = null;
    }
    const fromLeader = m.type === "append_request" || m.type === "heartbeat_request" ||
      m.type === "snapshot_request";
    // (The step may have crashed the target: what it showed before is stale then.)
    if (fromLeader && target.up && target.leaderId === m.from && target.term === m.term) {
      target.heard = {
        leader: m.from,
        term: m.term,
        at: target.ticks,
        incarnation: target.incarnation,
      };
    }
    reportSnapshot(true);
  }

  // ---- failure detection (what the agent's prober does) ------------------------

  /**
   * After a tick: the agent probes the leader whose heartbeats the core
   * missed, at once and then every heartbeat interval. A refused connection
   * is evidence the leader is gone, and so is an answer that it does not lead
   * the prober's term (its agent restarted). A cut link answers nothing.
   */
  #probeLeader(node: SimNode): void {
    const raft = node.raft;
    if (raft === null) return;
    const leader = raft.leaderToProbe();
    if (leader === NONE) {
      node.probeDueIn = 0;
      return;
    }
    if (node.probeDueIn > 0) {
      node.probeDueIn--;
      return;
    }
    node.probeDueIn = this.#timing.heartbeatTicks - 1;
    this.#probes++;
    const target = this.#nodes.get(leader);
    const outcome = target !== undefined ? this.#net.connect(node.id, leader) : "refused";
    if (outcome === "timeout") return;
    const lie = outcome === "refused" && target !== undefined && target.up &&
      this.#net.isListening(leader);
    if (outcome === "accepted" && target!.role === "leader" && target!.term === node.term) return;
    this.#event(
      outcome === "refused" ? "probe refused" : "probe answered",
      node.id,
      outcome === "refused"
        ? `n${leader}${lie ? " (a lie)" : ""}`
        : `n${leader} is ${target!.role} in term ${target!.term}`,
    );
    let acted = false;
    this.#api(node, "reportLeaderGone", (raft) => {
      acted = raft.reportLeaderGone(leader);
    }, true);
    if (outcome === "refused") this.#countRefusal(node, leader, lie, acted);
    else if (acted) this.#answersActed++;
  }

  #countRefusal(node: SimNode, leader: NodeId, lie: boolean, acted: boolean): void {
    this.#refusals++;
    if (!acted) return;
    this.#refusalsActed++;
    if (lie) this.#liesActed++;
    this.#event("forgets its leader", node.id, `n${leader} refused${lie ? " (a lie)" : ""}`);
  }

  /**
   * A leader was elected: time the failover under way, and judge the grants
   * it won with (transfers aside): one from a voter that still followed a
   * live leader breaks leader stickiness; one from a voter that heard a live
   * leader before it restarted, within an election timeout of its ticks,
   * breaks the hold after a start; one from a voter a lie made forget a live
   * leader it heard is an election by a lie (see failover.ts).
   */
  #leaderElected(node: SimNode, term: number): void {
    node.leaderSince = this.#now;
    const sample = this.#failover.elected(this.#now, term, this.#timing);
    if (sample !== null) this.#event("failover", node.id, `${sample.ticks} ticks`);
    const how = this.#stickiness.elected(node.id, term);
    if (this.#transferTerms.has(term)) return;
    if (how === "follows") {
      this.#electionsDespiteStickiness++;
      this.#event("DEPOSED", node.id, "a voter that followed a live leader elected it");
    } else if (how === "restarted") {
      this.#electionsDespiteRestartHold++;
      this.#event("DEPOSED", node.id, "a voter that heard a live leader before it restarted");
    } else if (how === "forgot") {
      this.#electionsByLie++;
      this.#event("deposed by a lie", node.id, "a voter that forgot a live leader elected it");
    }
  }

  /**
   * Whether the cluster around leader `node` is steady: failover on, no
   * partition, every other voter up and listening.
   */
  #steady(node: SimNode): boolean {
    if (!this.#failoverEnabled || this.#net.partitioned || this.#lagging !== null) return false;
    return node.voters.every((id) => {
      const n = this.#nodes.get(id);
      return n !== undefined && (n === node ||
        (n.up && !n.removed && !n.failed && this.#net.isListening(id)));
    });
  }

  /** `leader_crash`: crash the leader of a steady cluster, in office for an election timeout. */
  #crashSteadyLeader(): void {
    const leader = this.#leader();
    if (leader === undefined || this.#failover.watching || !this.#steady(leader)) return;
    if (this.#now - leader.leaderSince < this.#timing.electionTicks) return;
    const following = leader.voters.every((id) =>
      id === leader.id || this.#nodes.get(id)?.leaderId === leader.id
    );
    if (following) this.#crash(leader, "crash leader");
  }

  /**
   * Call the core on `node`, then handle its Readies and check every property.
   * Errors other than the documented API errors are core bugs.
   */
  #api(node: SimNode, what: string, call: (raft: RaftNode) => void, quiet = false): boolean {
    const raft = node.raft;
    if (raft === null) return false;
    try {
      call(raft);
    } catch (e) {
      if (
        e instanceof NotLeaderError || e instanceof ProposalRejectedError ||
        e instanceof ConfChangeError
      ) {
        this.#event(`${what} refused`, node.id, `${e.name}: ${e.message}`);
        this.#afterStep(node);
        return false;
      }
      throw this.#coreException(node, what, e);
    }
    if (!quiet) this.#event(what, node.id);
    this.#afterStep(node);
    return true;
  }

  #coreException(node: SimNode, what: string, e: unknown): Violation {
    if (e instanceof Violation) return e;
    const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    const stack = e instanceof Error && e.stack ? `\n${e.stack}` : "";
    return new Violation("core exception", `${what} on n${node.id} threw ${text}${stack}`);
  }

  #afterStep(node: SimNode): void {
    try {
      this.#handleReadies(node);
      if (node.raft !== null) this.#observe(node, node.raft.status());
    } catch (e) {
      throw this.#coreException(node, "ready handling", e);
    }
  }

  // ---- Ready handling (what the agent does) -----------------------------------

  #handleReadies(node: SimNode): void {
    for (let k = 0; k < READY_LOOP_MAX; k++) {
      const raft = node.raft;
      if (raft === null || !raft.hasReady()) return;
      const rd = raft.ready();
      this.#event("ready", node.id, rd);
      const disk = node.disk;
      const votes = rd.hardState !== null && rd.hardState.vote !== NONE &&
        (rd.hardState.vote !== disk.hardState.vote || rd.hardState.term !== disk.hardState.term);
      // A leader committing entries of earlier terms: Figure 8's dangerous moment.
      const commits = node.role === "leader" &&
        rd.committedEntries.some((e) => e.term < node.term);
      const elected = rd.softState !== null && rd.softState.role === "leader";
      const trigger = node.armed?.trigger;
      const s = this.scenario;
      const armed = trigger === "any" || (trigger === "vote" && votes) ||
          (trigger === "commit" && commits) || (trigger === "elected" && elected)
        ? node.armed!.point
        : this.#healedAt < 0 && (
            (elected && this.#rng.chance(s.pCrashOnElected)) ||
            (commits && this.#rng.chance(s.pCrashOnCommit))
          )
        ? "before_persist"
        : null;
      // One record holds what the Ready makes durable (a Ready may hold nothing to save).
      const saves = rd.hardState !== null || rd.entries.length > 0 || rd.snapshot !== null;
      if (armed === "before_persist" && (saves || commits || elected)) {
        // Sending runs in parallel with the write: some early messages made it out.
        for (const m of rd.messagesBeforePersist) {
          if (this.#rng.chance(0.5)) this.#send(node, m);
        }
        this.#crash(node, "crash before persisting");
        return;
      }
      for (const m of rd.messagesBeforePersist) this.#send(node, m);
      // The save: written (it reached the OS), then synced (fdatasync returned).
      if (saves) this.#write(node, rd);
      const ackBeforeSync = this.#driverBugs.ackBeforeSync === true;
      if (ackBeforeSync) {
        // Planted driver bug: what must wait for the sync leaves before it.
        for (const m of rd.messages) this.#send(node, m);
      }
      if (armed === "before_sync" && saves) {
        this.#crash(node, "crash after writing, before syncing");
        return;
      }
      if (saves) disk.sync();
      if (armed === "after_persist" && rd.messages.length > 0) {
        this.#crash(node, "crash after persisting, before sending");
        return;
      }
      if (!ackBeforeSync) {
        for (const m of rd.messages) this.#send(node, m);
      }
      if (armed === "before_apply" && rd.committedEntries.length > 0) {
        this.#crash(node, "crash after persisting and sending, before applying");
        return;
      }
      this.#apply(node, rd);
      raft.advance(rd);
      this.#maybeSnapshot(node, raft);
      const reports = node.reports;
      node.reports = [];
      for (const r of reports) {
        if (r.kind === "snapshot") raft.reportSnapshot(r.peer, r.ok);
        else raft.reportUnreachable(r.peer);
        // A follower's message to its leader refused: as a refused probe.
        if (r.kind === "refused" && node.leaderId === r.peer) {
          this.#countRefusal(node, r.peer, r.lie, raft.reportLeaderGone(r.peer));
        }
      }
    }
    throw new Violation("core exception", `n${node.id} produced Readies without end`);
  }

  #send(node: SimNode, m: Message): void {
    if (m.from !== node.id) {
      throw new Violation("core exception", `n${node.id} sent a message from n${m.from}`);
    }
    if (m.type === "vote_response" && m.granted && !m.preVote) {
      this.checker.observeVoteGranted(m.from, m.term, m.to);
    }
    if (m.type === "vote_response" && m.granted && this.#answering?.voter === m.from) {
      this.#stickiness.granted(m.to, m.term, this.#answering.how);
    }
    if (m.type === "vote_request" && m.transfer && !m.preVote) this.#transferTerms.add(m.term);
    const target = this.#nodes.get(m.to);
    const lie = target !== undefined && target.up && this.#net.isListening(m.to);
    const outcome = target !== undefined ? this.#net.send(m, this.#now, node.incarnation) : "lost";
    if (outcome !== "queued") {
      this.#event(`drop(${outcome})`, node.id, m);
      // A transport notices a cut link and a refusal (not a silently lost message).
      if (outcome === "blocked") node.reports.push({ kind: "unreachable", peer: m.to });
      if (outcome === "refused") node.reports.push({ kind: "refused", peer: m.to, lie });
      if (m.type === "snapshot_request") {
        node.reports.push({ kind: "snapshot", peer: m.to, ok: false });
      }
    }
  }

  /** Write the Ready's record (snapshot, entries, hard state), checking the storage contract. */
  #write(node: SimNode, rd: Ready): void {
    const disk = node.disk;
    disk.beginRecord();
    if (rd.snapshot !== null) this.#installSnapshot(node, rd.snapshot);
    if (rd.entries.length > 0) this.#persistEntries(node, rd);
    if (rd.hardState !== null) {
      const hs = rd.hardState;
      const old = disk.hardState;
      if (hs.term < old.term) {
        throw new Violation(
          "storage contract",
          `n${node.id} persists term ${hs.term} after term ${old.term}`,
        );
      }
      if (hs.term === old.term && old.vote !== NONE && hs.vote !== old.vote) {
        throw new Violation(
          "vote safety",
          `n${node.id} changes its term ${hs.term} vote from n${old.vote} to n${hs.vote}`,
        );
      }
      if (hs.commit < old.commit) {
        throw new Violation(
          "commit index",
          `n${node.id} persists commit ${hs.commit} after ${old.commit}`,
        );
      }
      disk.writeHardState(hs);
    }
  }

  #installSnapshot(node: SimNode, snapshot: Snapshot): void {
    const disk = node.disk;
    const index = snapshot.meta.index;
    if (index <= disk.sm.applied) {
      throw new Violation(
        "state machine safety",
        `n${node.id} is told to install snapshot ${index} with ${disk.sm.applied} applied`,
      );
    }
    const sm = decodeStateMachine(snapshot.data);
    const want = this.checker.committedHash(index);
    if (sm.applied !== index || want === undefined || sm.hash !== want) {
      throw new Violation(
        "state machine safety",
        `n${node.id} installs snapshot ${index}:t${snapshot.meta.term} whose state ` +
          `(applied ${sm.applied}, hash ${sm.hash}) is not the committed prefix (hash ${want})`,
      );
    }
    // The snapshot and the state machine it holds become durable together.
    disk.writeSnapshot(snapshot, sm);
    this.#event("install snapshot", node.id, `${index}:t${snapshot.meta.term}`);
  }

  #persistEntries(node: SimNode, rd: Ready): void {
    const disk = node.disk;
    const entries = rd.entries;
    const first = entries[0]!.index;
    if (first <= disk.snapshotIndex || first > disk.lastIndex + 1) {
      throw new Violation(
        "storage contract",
        `n${node.id} appends at ${first} to a log holding ${
          disk.snapshotIndex + 1
        }..${disk.lastIndex}`,
      );
    }
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k]!;
      if (e.index !== first + k || e.term < 1) {
        throw new Violation(
          "storage contract",
          `n${node.id} Ready.entries not contiguous at ${e.index}:t${e.term}`,
        );
      }
    }
    const stillLeader = node.role === "leader" &&
      (rd.hardState === null || rd.hardState.term === node.term);
    if (stillLeader && first <= disk.lastIndex) {
      throw new Violation(
        "leader append-only",
        `leader n${node.id} of term ${node.term} overwrites its log from ${first} ` +
          `(last ${disk.lastIndex}) with ${entryKey(entries[0]!)}`,
      );
    }
    const prevTerm = disk.termAt(first - 1);
    if (prevTerm === undefined) {
      throw new Violation("storage contract", `n${node.id} has no term at ${first - 1}`);
    }
    this.checker.observeAppend(node.id, entries, prevTerm);
    disk.writeEntries(entries);
  }

  #apply(node: SimNode, rd: Ready): void {
    const disk = node.disk;
    for (const e of rd.committedEntries) {
      if (e.index <= disk.sm.applied) {
        throw new Violation(
          "applied once",
          `n${node.id} applies index ${e.index} again (applied ${disk.sm.applied})`,
        );
      }
      if (e.index !== disk.sm.applied + 1) {
        throw new Violation(
          "state machine safety",
          `n${node.id} applies index ${e.index} after ${disk.sm.applied}`,
        );
      }
      const own = disk.entryAt(e.index);
      const key = entryKey(e);
      if (own !== undefined && entryKey(own) !== key) {
        throw new Violation(
          "state machine safety",
          `n${node.id} applies ${key} at ${e.index} but its log holds ${entryKey(own)}`,
        );
      }
      this.checker.observeApply(node.id, e);
      disk.apply({
        applied: e.index,
        hash: chainHash(disk.sm.hash, key),
        proposals: disk.sm.proposals + (e.type === "normal" && e.data.length > 0 ? 1 : 0),
      });
    }
    for (const r of rd.readStates) this.checker.observeReadState(node.id, r.context, r.index);
  }

  #maybeSnapshot(node: SimNode, raft: RaftNode): void {
    const disk = node.disk;
    if (!raft.snapshotDue() || disk.sm.applied <= disk.snapshotIndex) return;
    const index = disk.sm.applied;
    const term = disk.termAt(index);
    const snapshot = raft.createSnapshot(index, encodeStateMachine(disk.sm));
    if (snapshot.meta.index !== index || snapshot.meta.term !== term) {
      throw new Violation(
        "storage contract",
        `n${node.id} createSnapshot(${index}) returned ${snapshot.meta.index}:t${snapshot.meta.term}, ` +
          `the log has term ${term}`,
      );
    }
    disk.compact(snapshot);
    this.#event("snapshot", node.id, `${index}:t${snapshot.meta.term}`);
  }

  // ---- checks after every step --------------------------------------------------

  #observe(node: SimNode, st: Status): void {
    if (st.commitIndex < node.commit) {
      throw new Violation(
        "commit index",
        `n${node.id} commitIndex went from ${node.commit} to ${st.commitIndex}`,
      );
    }
    if (st.commitIndex > st.lastIndex) {
      throw new Violation(
        "commit index",
        `n${node.id} commitIndex ${st.commitIndex} beyond its lastIndex ${st.lastIndex}`,
      );
    }
    if (st.role === "leader") {
      if (node.role === "leader" && node.term === st.term && st.lastIndex < node.lastIndex) {
        throw new Violation(
          "leader append-only",
          `leader n${node.id} of term ${st.term}: lastIndex went from ${node.lastIndex} to ${st.lastIndex}`,
        );
      }
      if (this.checker.observeLeader(node.id, st.term)) {
        this.#event("elected", node.id, `term ${st.term} last=${st.lastIndex}:t${st.lastTerm}`);
        this.checker.checkLeaderCompleteness(node.id, st.term, node.disk);
        this.#leaderElected(node, st.term);
      }
      this.checker.observeLeaderCommit(node.id, st.term, st.commitIndex, node.disk);
    }
    node.commit = st.commitIndex;
    node.role = st.role;
    node.term = st.term;
    node.lastIndex = st.lastIndex;
    node.leaderId = st.leaderId;
    node.voters = st.membership.voters;
    node.learners = st.membership.learners;
    if (st.removed && !node.removed) {
      node.removed = true;
      this.#event("removed", node.id);
    }
  }

  // ---- crashes -------------------------------------------------------------------

  #crash(node: SimNode, why: string, downTicks?: number): void {
    if (!node.up) return;
    // Any crash spoils a failover being timed; a steady cluster's leader starts one.
    this.#failover.disturbed();
    if (node.role === "leader" && this.#steady(node)) {
      this.#failover.leaderCrashed(this.#now, node.term);
    }
    if (this.scenario.refusals) this.#net.setListening(node.id, false);
    node.raft = null;
    node.armed = null;
    node.reports = [];
    node.probeDueIn = 0;
    node.restartAt = this.#now +
      (downTicks ??
        this.#rng.range(
          this.scenario.profile === "vote_crash" ? 0 : 1,
          this.scenario.downTicksMax,
        ));
    this.#crashes++;
    const disk = node.disk;
    const s = this.scenario;
    const torn = disk.unsynced ? disk.crash(this.#diskRng.chance(s.pUnsyncedKept)) : "none";
    if (torn === "kept") this.#tornSavesKept++;
    if (torn === "lost") this.#tornSavesLost++;
    const tornText = torn === "kept"
      ? "; the unsynced save reached the disk whole"
      : torn === "lost"
      ? "; the unsynced save is torn and cut off"
      : "";
    this.#event(why, node.id, `restart at t=${node.restartAt}${tornText}`);
    if (this.#failedNodes() < FAILED_NODES_MAX && this.#diskRng.chance(s.pBitFlip)) {
      const record = disk.flipBit(this.#diskRng);
      if (record !== null) {
        this.#bitFlips++;
        this.#event("bit flip", node.id, `${record} corrupted while down`);
      }
    }
  }

  /** Nodes lost for good, replaced or not: refused to start, or will at their next restart. */
  #failedNodes(): number {
    let count = 0;
    for (const n of this.#nodes.values()) if (n.failed || n.disk.corrupt !== null) count++;
    return count;
  }

  /** Nodes lost for good and still in the cluster (not yet removed by the operator). */
  #lostNodes(): NodeId[] {
    const out: NodeId[] = [];
    for (const n of this.#nodes.values()) {
      if ((n.failed || n.disk.corrupt !== null) && !n.removed) out.push(n.id);
    }
    return out;
  }

  #restart(node: SimNode): void {
    let state: PersistentState;
    try {
      state = node.disk.open();
    } catch (e) {
      if (!(e instanceof CorruptRecordError)) throw e;
      // As the agent does: it never votes, acknowledges or serves from a corrupt record.
      node.failed = true;
      this.#refusedStarts++;
      this.#event("refuse to start", node.id, `${e.message}: down for good`);
      return;
    }
    node.incarnation++;
    const random = new Rng(deriveSeed(this.seed, 2, node.id, node.incarnation));
    try {
      node.raft = new RaftNode({
        id: node.id,
        ...this.#timing,
        failoverEnabled: this.#failoverEnabled,
        randomInt: (n) => random.int(n),
        plantedBugs: this.#plantedBugs,
      }, state);
    } catch (e) {
      throw this.#coreException(node, "restart", e);
    }
    node.commit = state.hardState.commit;
    node.role = "follower";
    node.term = state.hardState.term;
    node.lastIndex = 0;
    node.tickCredit = 0;
    if (this.scenario.refusals) {
      // The agent listens a little after it starts: until then it refuses (a lie of sorts).
      node.listenAt = this.#now + this.#refusalRng.range(0, this.scenario.restartDeafTicksMax);
      this.#net.setListening(node.id, node.listenAt <= this.#now);
    }
    this.#event(
      node.incarnation === 1 ? "boot" : "restart",
      node.id,
      `term=${state.hardState.term} vote=${state.hardState.vote} commit=${state.hardState.commit} ` +
        `snapshot=${node.disk.snapshotIndex} last=${node.disk.lastIndex} applied=${state.applied}`,
    );
    this.#afterStep(node);
  }

  #restartDueNodes(): void {
    for (const node of this.#nodes.values()) {
      if (!node.up && !node.removed && !node.failed && node.restartAt <= this.#now) {
        this.#restart(node);
      }
      if (node.up && node.listenAt <= this.#now && !this.#net.isListening(node.id)) {
        this.#net.setListening(node.id, true);
        this.#event("listening", node.id);
      }
    }
  }

  // ---- faults and client activity --------------------------------------------------

  /** The leader of the highest term among live nodes, if any. */
  #leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.#nodes.values()) {
      if (n.up && !n.removed && n.role === "leader" && (best === undefined || n.term > best.term)) {
        best = n;
      }
    }
    return best;
  }

  #injectFaults(): void {
    const s = this.scenario;
    const rng = this.#rng;
    const live = this.#liveNodes();
    if (live.length === 0) return;
    if (rng.chance(s.pPropose)) {
      const target = rng.chance(0.9) ? this.#leader() ?? rng.pick(live) : rng.pick(live);
      this.#propose(target);
    }
    if (rng.chance(s.pCrash)) this.#crash(rng.pick(live), "crash");
    if (rng.chance(s.pCrashLeader)) {
      const leader = this.#leader();
      if (leader) this.#crash(leader, "crash leader");
    }
    if (rng.chance(s.pCrashSteadyLeader)) this.#crashSteadyLeader();
    if (rng.chance(s.pArmCrash)) {
      const node = rng.pick(live);
      node.armed = { point: rng.pick(s.armPoints), trigger: rng.pick(s.armTriggers) };
      this.#event("arm crash", node.id, `${node.armed.point} on ${node.armed.trigger}`);
    }
    if (!this.#net.partitioned && rng.chance(s.pPartition)) this.#partition();
    else if (this.#net.partitioned && this.#lagging === null && rng.chance(s.pHeal)) {
      this.#net.heal();
      this.#event("heal partition", 0);
    }
    if (s.lagTicks > 0) this.#lag();
    if (rng.chance(s.pAddNode)) this.#addNode();
    if (rng.chance(s.pRemoveNode)) this.#removeNode();
    if (rng.chance(s.pTransfer)) {
      const leader = this.#leader();
      if (leader) {
        const target = rng.pick(leader.voters.length > 0 ? leader.voters : [leader.id]);
        this.#api(
          leader,
          `transferLeadership(${target})`,
          (raft) => raft.transferLeadership(target),
        );
      }
    }
    if (rng.chance(s.pFailoverPause)) this.#setFailover(!this.#failoverEnabled);
    if (rng.chance(s.pReadIndex)) {
      const leader = this.#leader();
      if (leader) {
        const context = `r${++this.#reads}`;
        this.checker.observeReadStart(context);
        this.#api(leader, `readIndex(${context})`, (raft) => raft.readIndex(context));
      }
    }
    if (rng.chance(s.pRetune)) this.#retune();
    if (s.pReplaceFailed > 0 && this.#diskRng.chance(s.pReplaceFailed)) this.#replaceFailed();
  }

  /**
   * An operator replaces a node that refused to start: its id is removed from
   * the membership, then a new node (new id, empty disk) joins as a learner.
   * The lost node never rejoins as the same voter: it lost what it promised.
   */
  #replaceFailed(): void {
    if (this.#replacementsDue > 0) {
      if (this.#addNode()) {
        this.#replacementsDue--;
        this.#replacedNodes++;
      }
      return;
    }
    let failed: SimNode | undefined;
    for (const n of this.#nodes.values()) if (n.failed && !n.removed) failed = n;
    const leader = this.#leader();
    if (failed === undefined || leader === undefined) return;
    const id = failed.id;
    if (leader.voters.includes(id) || leader.learners.includes(id)) {
      this.#api(
        leader,
        `proposeConfChange(remove_node ${id}) (replacing a failed node)`,
        (raft) => raft.proposeConfChange({ kind: "remove_node", nodeId: id, context: "" }),
      );
      return;
    }
    failed.removed = true;
    this.#replacementsDue++;
    this.#event("removed (failed)", id, `n${leader.id}'s membership no longer holds it`);
  }

  #propose(node: SimNode): boolean {
    const payload = `s${this.seed}-${++this.#proposals}`;
    return this.#api(node, `propose ${payload}`, (raft) => raft.propose(ENCODER.encode(payload)));
  }

  #partition(): void {
    this.#failover.disturbed();
    const rng = this.#rng;
    const ids = rng.shuffle([...this.#nodes.values()].filter((n) => !n.removed).map((n) => n.id));
    if (ids.length < 2) return;
    const kind = rng.pick(["split", "one-way", "isolate leader", "bridge"] as const);
    const net = this.#net;
    if (kind === "split") {
      const cut = rng.range(1, ids.length - 1);
      net.blockBetween(ids.slice(0, cut), ids.slice(cut));
      this.#event("partition split", 0, `${ids.slice(0, cut)} | ${ids.slice(cut)}`);
    } else if (kind === "one-way") {
      const from = ids[0]!;
      const to = ids.slice(1, rng.range(2, ids.length));
      for (const t of to) net.block(from, t);
      this.#event("partition one-way", 0, `${from} ↛ ${to}`);
    } else if (kind === "isolate leader") {
      const leader = this.#leader()?.id ?? ids[0]!;
      net.blockBetween([leader], ids.filter((id) => id !== leader));
      this.#event("partition isolate", leader);
    } else {
      if (ids.length < 3) return;
      const bridge = ids[0]!;
      const rest = ids.slice(1);
      const cut = rng.range(1, rest.length - 1);
      net.blockBetween(rest.slice(0, cut), rest.slice(cut));
      this.#event("partition bridge", bridge, `${rest.slice(0, cut)} | ${rest.slice(cut)}`);
    }
  }

  /** `lagging`: cut one node off for a while; when it returns, take the leader away. */
  #lag(): void {
    const lag = this.#lagging;
    if (lag === null) {
      if (this.#now < this.#lagPauseUntil) return;
      const leader = this.#leader();
      const others = this.#liveNodes().filter((n) => n !== leader);
      if (leader === undefined || others.length === 0) return;
      const node = this.#rng.pick(others);
      const ids = [...this.#nodes.keys()].filter((id) => id !== node.id);
      this.#net.heal();
      this.#net.blockBetween([node.id], ids);
      this.#lagging = { node: node.id, until: this.#now + this.scenario.lagTicks };
      this.#failover.disturbed();
      this.#event("lag start", node.id, `until t=${this.#lagging.until}`);
    } else if (this.#now >= lag.until) {
      this.#net.heal();
      this.#lagging = null;
      this.#event("lag end", lag.node);
      const leader = this.#leader();
      if (leader) {
        if (this.#rng.chance(0.5)) this.#crash(leader, "crash leader");
        else {
          const ids = [...this.#nodes.keys()].filter((id) => id !== leader.id);
          this.#net.blockBetween([leader.id], ids);
          this.#event("partition isolate", leader.id);
        }
      }
      // Stay whole for a while before the next lag.
      this.#lagPauseUntil = this.#now + this.#rng.range(20, 60);
    }
  }

  /** Add a new node as a learner (through the leader); returns whether it was proposed. */
  #addNode(): boolean {
    const leader = this.#leader();
    if (!leader || this.#nextId > this.scenario.nodes + ADDED_NODES_MAX) return false;
    const id = this.#nextId;
    const ok = this.#api(
      leader,
      `proposeConfChange(add_learner ${id})`,
      (raft) => raft.proposeConfChange({ kind: "add_learner", nodeId: id, context: `n${id}` }),
    );
    if (!ok) return false;
    this.#nextId++;
    const node = new SimNode(id, this.#rateOf(id), emptyState());
    this.#nodes.set(id, node);
    this.#restart(node);
    return true;
  }

  #removeNode(): void {
    const leader = this.#leader();
    if (!leader) return;
    // The cautious operator removes no other voter while a node is lost for
    // good (it replaces the lost one first): see RunOptions.removeVotersWhileLost.
    const lost = this.#removeVotersWhileLost ? [] : this.#lostNodes();
    const voters = lost.length === 0
      ? leader.voters
      : leader.voters.filter((id) => lost.includes(id));
    const candidates = leader.voters.length > 3 ? [...voters, ...leader.learners] : [
      ...leader.learners,
    ];
    if (candidates.length === 0) return;
    // Removing the leader itself is the interesting case: favour it.
    const id = leader.voters.length > 3 && lost.length === 0 && this.#rng.chance(0.3)
      ? leader.id
      : this.#rng.pick(candidates);
    this.#api(
      leader,
      `proposeConfChange(remove_node ${id})`,
      (raft) => raft.proposeConfChange({ kind: "remove_node", nodeId: id, context: "" }),
    );
  }

  #setFailover(enabled: boolean): void {
    this.#failover.disturbed();
    this.#failoverEnabled = enabled;
    this.#event(enabled ? "failover on" : "failover off", 0);
    for (const node of this.#liveNodes()) {
      this.#api(node, `setFailoverEnabled(${enabled})`, (raft) => raft.setFailoverEnabled(enabled));
    }
  }

  #retune(): void {
    const rng = this.#rng;
    this.#timing = {
      ...this.#timing,
      appendBatchSize: rng.pick([1, 2, 4, 16, 64]),
      maxInflight: rng.pick([1, 2, 4, 16]),
      snapshotThreshold: rng.pick([20, 30, 50, 100000]),
    };
    const t = this.#timing;
    this.#event(
      "retune",
      0,
      `batch=${t.appendBatchSize} inflight=${t.maxInflight} snap=${t.snapshotThreshold}`,
    );
    for (const node of this.#liveNodes()) {
      this.#api(node, "setTiming", (raft) => raft.setTiming(t));
    }
  }

  // ---- healing and liveness ---------------------------------------------------------

  #heal(): void {
    this.#failover.disturbed();
    this.#healedAt = this.#now;
    this.#net.heal();
    this.#lagging = null;
    this.#net.conditions = { lossRate: 0, duplicateRate: 0, delayMinTicks: 1, delayMaxTicks: 2 };
    let last = 0;
    let applied = Infinity;
    for (const n of this.#nodes.values()) {
      if (n.removed || n.failed) continue;
      last = Math.max(last, n.disk.lastIndex);
      applied = Math.min(applied, n.disk.sm.applied);
    }
    this.#backlogAtHeal = Math.max(0, last - applied);
    const lost = this.#lostNodes();
    this.#event(
      "HEAL",
      0,
      "no partition, no loss, every node up, failover on" +
        (lost.length > 0 ? ` (but ${lost.map((id) => `n${id}`)} cannot start: corrupt disk)` : ""),
    );
    for (const node of this.#nodes.values()) {
      node.armed = null;
      if (!node.up && !node.removed && !node.failed) this.#restart(node);
    }
    if (!this.#failoverEnabled) this.#setFailover(true);
  }

  /**
   * Ticks after healing within which a proposal must be applied everywhere:
   * 10 election timeouts of the slowest node, plus time to ship the backlog
   * (entries some node holds beyond what the least advanced node applied) at
   * one batch per round trip.
   */
  livenessBoundTicks(): number {
    const s = this.scenario;
    let slowest = 1;
    for (const n of this.#nodes.values()) slowest = Math.max(slowest, 1 / n.rate);
    const roundTripTicks = 2 * this.#net.conditions.delayMaxTicks + 1;
    const batches = Math.ceil(this.#backlogAtHeal / Math.max(1, this.#timing.appendBatchSize));
    return Math.ceil(10 * (s.electionTicks + s.electionJitterTicks) * slowest) +
      batches * roundTripTicks;
  }

  #checkLiveness(): void {
    const leader = this.#leader();
    if (leader !== undefined) {
      const pending = this.#live.some((p) =>
        p.leader === leader.id && p.term === leader.term &&
        (this.checker.committedKey(p.index) ?? p.key) === p.key
      );
      if (!pending) {
        const payload = `s${this.seed}-live${this.#live.length + 1}`;
        const raft = leader.raft!;
        try {
          const at = raft.propose(ENCODER.encode(payload));
          this.#live.push({
            key: `${at.term}/n/${payload}`,
            index: at.index,
            term: at.term,
            leader: leader.id,
          });
          this.#event("propose (liveness)", leader.id, `${payload} at ${at.index}:t${at.term}`);
        } catch (e) {
          if (!(e instanceof NotLeaderError || e instanceof ProposalRejectedError)) {
            throw this.#coreException(leader, "propose", e);
          }
          this.#event("propose (liveness) refused", leader.id, String(e));
        }
        this.#afterStep(leader);
      }
      const members = [...leader.voters, ...leader.learners];
      for (const p of this.#live) {
        if (this.checker.committedKey(p.index) !== p.key) continue;
        const all = members.every((id) => {
          const n = this.#nodes.get(id);
          // A node down for good (corrupt disk) is not waited for: a majority is left.
          return n === undefined || n.removed || n.failed || n.disk.sm.applied >= p.index;
        });
        if (all) {
          this.#event("liveness ok", leader.id, `${p.key} applied by ${members}`);
          this.#done = true;
          return;
        }
      }
    }
    if (this.#now - this.#healedAt > this.livenessBoundTicks()) {
      const states = [...this.#nodes.values()].map((n) =>
        `n${n.id}:${n.up ? n.role : n.failed ? "failed" : "down"}${n.removed ? "(removed)" : ""} ` +
        `t${n.term} ` +
        `commit=${n.commit} applied=${n.disk.sm.applied} last=${n.disk.lastIndex}`
      );
      const leaderNow = this.#leader();
      const progress = leaderNow?.raft?.status().progress.map((p) =>
        `n${p.id}:${p.state} match=${p.matchIndex} next=${p.nextIndex} inflight=${p.inflight}`
      ).join(", ") ?? "no leader";
      throw new Violation(
        "liveness",
        `no proposal applied on every member ${this.livenessBoundTicks()} ticks after healing ` +
          `(backlog ${this.#backlogAtHeal}) ` +
          `(healed at t=${this.#healedAt}); ${states.join("; ")}; leader progress: ${progress}`,
      );
    }
  }
}

/**
 * Run one seed.
 *
 * @param seed determines everything about the run
 * @param options overrides and planted bugs
 * @returns the violation (null when every property held) and figures
 * @example
 * ```ts
 * const { violation } = runSeed(1);
 * console.assert(violation === null);
 * ```
 */
export function runSeed(seed: number, options: RunOptions = {}): RunResult {
  return new Simulation(seed, options).run();
}
