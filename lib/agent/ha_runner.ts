/**
 * High availability in the agent (`pgraft.manage_postgres = on`): the loop
 * that asks the HA controller (lib/ha) what to do with this node's
 * PostgreSQL server and has the supervisor (lib/postgres) do it — as the HA
 * simulator's agent does (tests/sim/ha/agent.ts), with real servers, clocks
 * and peers.
 *
 * - Every {@link DECISION_INTERVAL_MS_DEFAULT} ms, and at once when something
 *   changes, it gathers {@link HaInputs} and carries out the decision. A
 *   server operation runs one at a time; an immediate fence never waits
 *   behind another.
 * - The server is observed beside it (every {@link OBSERVE_INTERVAL_MS} ms and
 *   after each operation): a slow or hung server never delays a decision.
 * - While it leads, a lease round (a ReadIndex heartbeat, lib/ha/lease.ts)
 *   goes out every heartbeat interval; a new leader decides nothing until its
 *   first round is back (bounded by a heartbeat interval), so that a
 *   primary it already runs (`pgraft_init()`) is not fenced for want of a
 *   lease it is about to get.
 * - While its server is the primary, the {@link Watchdog} is told how long
 *   the server may go on: what is left of the lease minus an immediate
 *   stop. An agent that dies or is paused cannot fence; the watchdog does.
 * - Members report to the leader (RPC `ha`, ./ha_messages.ts): their final
 *   positions when asked during a failover, and a status every
 *   {@link STATUS_REPORT_MS} ms (role, WAL position, address), from which the
 *   leader records members' PostgreSQL addresses in the log.
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { PgraftSettings } from "../config/mod.ts";
import {
  applicationName,
  decide,
  type Decision,
  DECISION_INTERVAL_MS_DEFAULT,
  FENCE_IMMEDIATE_MS_MAX,
  fencingBudgetMs,
  type HaAction,
  type HaInputs,
  isEntitled,
  LeaseTracker,
  type LocalServer,
  type MemberReport,
  type PrimaryRecordView,
  type ServerObservation,
  voteWithholdMs,
} from "../ha/mod.ts";
import { type NodeId, NONE, type Status } from "../raft/mod.ts";
import { encodeCommand } from "../state/mod.ts";
import type { PrimaryTarget } from "../postgres/replication.ts";
import type { Observation, Supervisor } from "../postgres/supervisor.ts";
import type { HealthServer } from "../api/mod.ts";
import { healthServer, type MemberServer, pgRole, serverObservation } from "./ha_observation.ts";
import { isServerAction, ServerOperations } from "./ha_server.ts";
import {
  FORWARDED_EVENTS_MAX,
  type ForwardedEvent,
  type HaMessage,
  parseHaMessage,
  type ServerSummary,
} from "./ha_messages.ts";
import type { Logger } from "./log.ts";
import type { Peers } from "./peers.ts";
import type { Replica } from "./replica.ts";
import { timingFor } from "./settings.ts";

/** How often the server is observed at least. */
export const OBSERVE_INTERVAL_MS = 100;

/** An observation older than this says nothing to a load balancer. */
const HEALTH_STALE_MS = 2_000;

/** How often a member tells the leader about its server. */
export const STATUS_REPORT_MS = 500;

/** A leader asks the same members for their positions again after this long without answers. */
const COLLECT_RESEND_MS = 200;

/** Time an HA RPC may take. */
const RPC_TIMEOUT_MS = 1_000;

/** The watchdog stops the server this long before the lease ends, beyond an immediate stop. */
const WATCHDOG_MARGIN_MS = 50;

/** What the runner needs from the agent. */
export interface HaRunnerOptions {
  nodeId: NodeId;
  supervisor: Supervisor;
  replica: Replica;
  peers: Peers;
  /** the effective settings now */
  settings: () => PgraftSettings;
  /** where the other members reach this node's server */
  pgAddress: { host: string; port: number };
  log: Logger;
  event: (type: string, fields?: { nodeId?: NodeId; detail?: string }) => void;
  /** the server started or stopped being a running primary (the agent publishes to it) */
  writableChanged: (writable: boolean) => void;
  /**
   * events this node recorded that no link has written (its server is a
   * standby): taken to forward them to the leader, given back if that fails
   */
  pendingEvents: {
    take: (max: number) => ForwardedEvent[];
    giveBack: (events: ForwardedEvent[]) => void;
  };
  /** a member's forwarded events, on the leader: written with this node's own */
  memberEvents: (events: ForwardedEvent[]) => void;
}

/** A member's server as the leader last heard of it. */
export interface MemberServerStatus extends ServerSummary {
  nodeId: NodeId;
  /** when it was heard (performance.now()) */
  atMs: number;
}

/** A switchover the operator asked for, until its target leads or it is abandoned. */
interface Switchover {
  target: NodeId;
  requestedAtMs: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** Runs high availability for one node. */
export class HaRunner {
  readonly #o: HaRunnerOptions;
  #lease: LeaseTracker;
  #stopped = false;
  #timer: ReturnType<typeof setInterval> | undefined;
  #statusTimer: ReturnType<typeof setInterval> | undefined;
  #kicked = false;

  // ---- the server
  #observation: Observation | null = null;
  /** when the observation in #observation was started (performance.now()) */
  #observedAtMs = -Infinity;
  /** decisions wait for an observation started after this (an operation just ended) */
  #observeAfterMs = -Infinity;
  #local: ServerObservation | null = null;
  #localSinceMs = 0;
  #observeWake: (() => void) | null = null;
  /** asked to observe again while an observation was under way */
  #observeAgain = false;
  #observing: Promise<void> | null = null;
  readonly #server: ServerOperations;
  #writable = false;

  // ---- leadership
  /** decisions wait until the state machine has applied what was committed at start */
  #replayedBy = 0;
  #leaderTerm = 0;
  #leaderSinceMs = 0;
  #termStartIndex = 0;
  #leaseConfirmed = false;
  #nextRoundMs = 0;
  #transferring = false;
  #proposed: PrimaryRecordView | null = null;
  #proposing = new Set<string>();
  #members = new Map<NodeId, MemberReport>();
  #memberStatus = new Map<NodeId, MemberServerStatus>();
  #lastCollectMs = -Infinity;
  #switchover: Switchover | null = null;

  // ---- as a member
  #reportRequest: HaInputs["reportRequest"] = null;
  #frozenForTerm = 0;
  #reporting = false;
  #sendingStatus = false;

  // ---- what was said
  #lastDecision = "";
  #problemSaid = "";

  constructor(options: HaRunnerOptions) {
    this.#o = options;
    this.#server = new ServerOperations({
      ...options,
      target: (nodeId) => this.#target(nodeId),
      ended: () => {
        // Its outcome is known once the server is observed again.
        this.#observeAfterMs = performance.now();
        this.#observeSoon();
      },
    });
    this.#lease = this.#newLease();
    this.#replayedBy = options.replica.status().commitIndex;
  }

  // ---- what the agent reads -----------------------------------------------------------

  /** The supervisor's latest observation of the server (null before the first). */
  get observation(): Observation | null {
    return this.#observation;
  }

  /** The server runs as the primary and this node is entitled to it (leader with a lease). */
  get entitledPrimary(): boolean {
    const local = this.#local;
    if (local === null || local.state !== "primary") return false;
    const inputs = this.#gather(performance.now(), local);
    return inputs !== null && isEntitled(inputs) && inputs.primary?.nodeId === this.#o.nodeId;
  }

  /**
   * This node's server for the load balancers' health checks (lib/api
   * health.ts): `unknown` when it has not been observed for a while.
   */
  health(): HealthServer {
    const fresh = performance.now() - this.#observedAtMs <= HEALTH_STALE_MS;
    return healthServer(fresh ? this.#observation : null);
  }

  /** This node's server for the status. */
  summary(): ServerSummary {
    const seen = this.#observation;
    return {
      role: pgRole(seen, this.#local),
      lsn: seen?.lsn ?? null,
      timeline: seen?.timeline ?? null,
      host: this.#o.pgAddress.host,
      port: this.#o.pgAddress.port,
    };
  }

  /** Every member's server as this node knows it: its own, and (leading) what members reported. */
  memberServers(): Map<NodeId, MemberServerStatus> {
    const servers = new Map(this.#memberStatus);
    servers.set(this.#o.nodeId, {
      nodeId: this.#o.nodeId,
      atMs: performance.now(),
      ...this.summary(),
    });
    return servers;
  }

  // ---- running ------------------------------------------------------------------------

  /** Start observing and deciding. */
  start(): void {
    this.#observing = this.#observeLoop();
    this.#timer = setInterval(() => this.#tick(), DECISION_INTERVAL_MS_DEFAULT);
    this.#statusTimer = setInterval(() => this.#sendStatus(), STATUS_REPORT_MS);
  }

  /** Something changed: decide at once (soon after the current task). */
  kick(): void {
    if (this.#kicked || this.#stopped) return;
    this.#kicked = true;
    setTimeout(() => {
      this.#kicked = false;
      this.#tick();
    }, 0);
  }

  /**
   * Stop deciding, and stop the server: a server without its agent would be
   * unguarded. With `handOver`, a primary this node leads is first handed to
   * another voter by a switchover (bounded).
   */
  async stop(options: { handOver: boolean }): Promise<void> {
    this.#server.stopping();
    if (options.handOver && !this.#stopped) await this.#handOverPrimary();
    this.#stopped = true;
    clearInterval(this.#timer);
    clearInterval(this.#statusTimer);
    this.#observeWake?.();
    await this.#observing?.catch(() => {});
    const pending = this.#switchover;
    this.#switchover = null;
    pending?.reject(new Error("the agent is stopping"));
    await this.#server.shutdown();
  }

  /**
   * The operator's `pgraft_transfer_leadership(target)` on the leader: a
   * switchover (lib/ha controller rule 7). Resolves once `target` leads.
   *
   * @throws Error when this node does not lead, or the switchover is abandoned (why)
   */
  requestSwitchover(target: NodeId): Promise<void> {
    if (this.#leaderTerm === 0) {
      return Promise.reject(new Error(`node ${this.#o.nodeId} is not the leader`));
    }
    this.#switchover?.reject(new Error(`replaced by a switchover to node ${target}`));
    return new Promise((resolve, reject) => {
      this.#switchover = { target, requestedAtMs: performance.now(), resolve, reject };
      this.#o.log.info("switchover requested", { target });
      this.kick();
    });
  }

  /** The RPC `ha` from a peer. */
  receive(body: unknown): Promise<{ ok: true }> {
    const m = parseHaMessage(body);
    this.#received(m, performance.now());
    return Promise.resolve({ ok: true });
  }

  #received(m: HaMessage, now: number): void {
    switch (m.kind) {
      case "report_request": {
        if (m.freeze) this.#frozenForTerm = Math.max(this.#frozenForTerm, m.term);
        const current = this.#reportRequest;
        if (current === null || m.term >= current.term) {
          this.#reportRequest = { leader: m.leader, term: m.term, freeze: m.freeze };
        }
        this.kick();
        return;
      }
      case "report":
        if (this.#leaderTerm === 0) return;
        this.#members.set(m.nodeId, {
          nodeId: m.nodeId,
          term: m.term,
          server: m.server,
          frozen: m.frozen,
          receivedAtMs: now,
        });
        this.kick();
        return;
      case "status":
        if (this.#leaderTerm === 0) {
          // Not the leader (any more): the member forwards its events again to the one it finds.
          if (m.events.length > 0) throw new RangeError(`node ${this.#o.nodeId} does not lead`);
          return;
        }
        this.#memberStatus.set(m.nodeId, { nodeId: m.nodeId, atMs: now, ...m.server });
        if (m.events.length > 0) this.#o.memberEvents(m.events);
        return;
    }
  }

  // ---- observing ----------------------------------------------------------------------

  async #observeLoop(): Promise<void> {
    while (!this.#stopped) {
      try {
        // A clone or a rewind rewrites the data directory: what it looks like
        // meanwhile (half copied) says nothing; the operation's end is observed.
        const op = this.#server.inProgress?.op;
        if (op !== "clone" && op !== "rewind") {
          const startedMs = performance.now();
          const primary = this.#recordedPrimaryTarget();
          const seen = await this.#o.supervisor.observe(primary ? { primary } : {});
          this.#observed(seen, startedMs);
        }
      } catch (error) {
        this.#o.log.debug("observing PostgreSQL failed", { error: String(error) });
      }
      if (this.#stopped) return;
      if (this.#observeAgain) {
        this.#observeAgain = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, OBSERVE_INTERVAL_MS);
        this.#observeWake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#observeWake = null;
    }
  }

  /**
   * Observe again now (after an operation): at once when the loop sleeps,
   * right after the observation under way otherwise (that one may have
   * started before the operation ended).
   */
  #observeSoon(): void {
    if (this.#observeWake) this.#observeWake();
    else this.#observeAgain = true;
  }

  #observed(seen: Observation, startedMs: number): void {
    const local = serverObservation(seen, this.#memberAddresses());
    const before = this.#local;
    const waited = this.#observedAtMs < this.#observeAfterMs && startedMs >= this.#observeAfterMs;
    this.#observation = seen;
    this.#observedAtMs = startedMs;
    if (waited) this.kick();
    this.#local = local;
    if (before === null || before.state !== local.state) {
      this.#localSinceMs = performance.now();
      this.#o.log.info("PostgreSQL server state", {
        state: local.state,
        ...(seen.timeline !== null ? { timeline: seen.timeline } : {}),
        ...(seen.lsn !== null ? { lsn: seen.lsn } : {}),
      });
      this.kick();
    }
    const writable = local.state === "primary";
    if (writable !== this.#writable) {
      this.#writable = writable;
      this.#o.writableChanged(writable);
    }
  }

  // ---- deciding -----------------------------------------------------------------------

  #tick(): void {
    if (this.#stopped) return;
    const now = performance.now();
    const status = this.#o.replica.status();
    this.#syncRole(status, now);
    this.#leaseRound(status, now);
    this.#o.supervisor.systemIdentifier = this.#o.replica.state.postgresSystem;
    // After a restart the primary record is known once the log is replayed.
    if (this.#o.replica.appliedIndex < this.#replayedBy) return;
    const local = this.#local;
    // Not observed yet, or not since the last operation ended: its outcome is not known.
    if (local === null || this.#observedAtMs < this.#observeAfterMs) return;
    if (this.#leaderTerm !== 0 && !this.#leaseConfirmed) {
      // A new leader confirms its leadership before it decides (see the module doc).
      if (now - this.#leaderSinceMs < this.#o.settings().heartbeatIntervalMs) return;
    }
    const inputs = this.#gather(now, local);
    if (inputs === null) return;
    this.#recordFacts(inputs);
    let decision: Decision;
    try {
      decision = decide(inputs);
    } catch (error) {
      // An assertion in the controller is a bug: say it loudly, decide nothing.
      this.#o.log.error("the HA controller failed", { error: String(error) });
      throw error;
    }
    this.#say(decision);
    this.#execute(decision.action, now);
    // The watchdog stops the primary before the lease ends, an immediate stop included.
    const remaining = this.#lease.remainingMs(now) ?? -Infinity;
    this.#server.guard(
      inputs.raft.role === "leader" &&
        (inputs.server.state === "primary" || inputs.inProgress?.op === "promote"),
      inputs.server.state === "primary",
      remaining - FENCE_IMMEDIATE_MS_MAX - WATCHDOG_MARGIN_MS,
    );
  }

  #gather(now: number, local: ServerObservation): HaInputs | null {
    const status = this.#o.replica.status();
    const state = this.#o.replica.state;
    const settings = this.#o.settings();
    const self = this.#o.nodeId;
    const leader = status.role === "leader" && this.#leaderTerm === status.term;
    const record = state.primary();
    const membership = status.membership;
    // A node that has any Raft state has joined a cluster (its log says so
    // before its state machine has replayed it); one that has none never did.
    const inCluster = !status.removed && (status.term > 0 || status.lastIndex > 0);
    if (status.role === "leader" && !leader) return null; // syncRole runs first
    const server: LocalServer = {
      ...local,
      sinceMs: this.#localSinceMs,
      synchronousStandbyNames: this.#observation?.synchronousStandbyNames ?? "",
    };
    return {
      nowMs: now,
      self,
      inCluster,
      raft: {
        role: status.role,
        term: status.term,
        leaderId: status.leaderId,
        voters: membership.voters,
        transferTarget: status.transferTarget,
        caughtUp: !leader || this.#o.replica.appliedIndex >= this.#termStartIndex,
      },
      leaseRemainingMs: leader ? this.#lease.remainingMs(now) : null,
      fencingBudgetMs: fencingBudgetMs(),
      primary: record === null ? null : { nodeId: record.nodeId, timeline: record.timeline },
      proposedPrimary: leader ? this.#proposed : null,
      failoverEnabled: settings.failoverEnabled,
      synchronous: settings.synchronousReplication,
      recloneAllowed: settings.allowReclone,
      server,
      inProgress: this.#server.inProgress,
      members: leader ? [...this.#members.values()] : [],
      reportRequest: this.#reportRequest,
      frozenForTerm: this.#frozenForTerm,
      switchover: leader && this.#switchover !== null
        ? { target: this.#switchover.target, requestedAtMs: this.#switchover.requestedAtMs }
        : null,
    };
  }

  /** Follow the Raft role: the lease tracker, and what a leader keeps only for its term. */
  #syncRole(status: Status, now: number): void {
    if (status.role === "leader") {
      if (this.#leaderTerm !== status.term) {
        // The timing may have changed since the last term: the lease follows it.
        this.#lease = this.#newLease();
        this.#lease.becameLeader(status.term, now);
        this.#leaderTerm = status.term;
        this.#leaderSinceMs = now;
        this.#termStartIndex = status.lastIndex;
        this.#leaseConfirmed = false;
        this.#nextRoundMs = now;
        this.#members.clear();
        this.#memberStatus.clear();
        this.#proposed = null;
        this.#transferring = false;
      }
      if (this.#transferring && status.transferTarget === NONE) {
        this.#transferring = false;
        this.#lease.transferEnded(now);
      }
    } else if (this.#leaderTerm !== 0) {
      this.#leaderTerm = 0;
      this.#lease.lost();
      this.#members.clear();
      this.#memberStatus.clear();
      this.#proposed = null;
      this.#transferring = false;
      const switchover = this.#switchover;
      this.#switchover = null;
      if (switchover !== null) {
        if (status.leaderId === switchover.target) switchover.resolve();
        else {
          switchover.reject(
            new Error(`this node lost the leadership before node ${switchover.target} took it`),
          );
        }
      }
    }
    const proposed = this.#proposed;
    const record = this.#o.replica.state.primary();
    if (proposed && record?.nodeId === proposed.nodeId && record.timeline === proposed.timeline) {
      this.#proposed = null;
    }
  }

  /** While leading, a lease round every heartbeat interval. */
  #leaseRound(status: Status, now: number): void {
    if (this.#leaderTerm === 0 || status.role !== "leader" || now < this.#nextRoundMs) return;
    this.#nextRoundMs = now + this.#o.settings().heartbeatIntervalMs;
    const context = this.#lease.startRound(now);
    const term = this.#leaderTerm;
    this.#o.replica.confirmLeadership(context).then(() => {
      if (this.#leaderTerm !== term) return;
      this.#lease.confirmed(context);
      if (!this.#leaseConfirmed) {
        this.#leaseConfirmed = true;
        this.kick();
      }
    }, () => {});
  }

  /**
   * The leader records what the log must know: the database system of the
   * first primary, and each member's PostgreSQL address.
   */
  #recordFacts(inputs: HaInputs): void {
    if (inputs.raft.role !== "leader" || !inputs.raft.caughtUp) return;
    const state = this.#o.replica.state;
    const dir = this.#observation?.dataDirectory;
    if (
      state.postgresSystem === null && inputs.server.state === "primary" &&
      dir?.kind === "unrecorded"
    ) {
      this.#proposeOnce("postgres_system", {
        op: "postgres_system",
        systemIdentifier: dir.systemIdentifier,
      });
    }
    const members = new Map(state.members().map((m) => [m.nodeId, m]));
    for (const server of this.memberServers().values()) {
      const member = members.get(server.nodeId);
      if (!member || (member.pgHost === server.host && member.pgPort === server.port)) continue;
      this.#proposeOnce(`member_postgres:${server.nodeId}`, {
        op: "member_postgres",
        nodeId: server.nodeId,
        host: server.host,
        port: server.port,
      });
    }
  }

  #proposeOnce(key: string, command: Parameters<typeof encodeCommand>[0]): void {
    if (this.#proposing.has(key)) return;
    this.#proposing.add(key);
    this.#o.replica.propose(encodeCommand(command)).then((result) => {
      if (!result.ok) {
        this.#o.log.warn("the log refused an HA record", { op: command.op, ...result.problem });
      }
    }, () => {}).finally(() => this.#proposing.delete(key));
  }

  /** Log a decision when it changes (waiting is not news). */
  #say(decision: Decision): void {
    const summary = `${decision.action.type}: ${decision.reason}`;
    if (decision.action.type === "wait" || summary === this.#lastDecision) {
      if (decision.action.type === "wait") this.#lastDecision = "";
      return;
    }
    this.#lastDecision = summary;
    this.#o.log.info(`HA: ${decision.reason}`, { action: decision.action });
  }

  // ---- acting -------------------------------------------------------------------------

  #execute(action: HaAction, now: number): void {
    if (action.type !== "problem") this.#problemSaid = "";
    switch (action.type) {
      case "wait":
        return;
      case "problem": {
        const said = `${action.event}: ${action.detail}`;
        if (said === this.#problemSaid) return;
        this.#problemSaid = said;
        this.#o.event(action.event, { detail: action.detail });
        this.#o.log.warn(action.detail, { event: action.event });
        return;
      }
      case "report_lsn":
        this.#sendReport(action.to);
        return;
      case "collect_lsns":
        if (now - this.#lastCollectMs < COLLECT_RESEND_MS) return;
        this.#lastCollectMs = now;
        for (const to of action.from) {
          this.#rpc(to, {
            kind: "report_request",
            leader: this.#o.nodeId,
            term: action.term,
            freeze: action.freeze,
          });
        }
        return;
      case "transfer_leadership":
        this.#lease.transferStarted(now);
        this.#transferring = true;
        this.#o.replica.transferLeadership(action.to).catch((error) =>
          this.#o.log.warn("leadership transfer failed", { to: action.to, error: String(error) })
        );
        return;
      case "propose_primary": {
        const record = { nodeId: action.nodeId, timeline: action.timeline };
        this.#proposed = record;
        this.#o.replica.propose(
          encodeCommand({ op: "set_primary", nodeId: action.nodeId, timeline: action.timeline }),
        ).then((result) => {
          if (!result.ok) this.#o.log.warn("set_primary refused", { ...result.problem });
        }, (error) => {
          this.#o.log.info("set_primary was not committed", { error: String(error) });
          if (this.#proposed === record) this.#proposed = null;
        }).finally(() => this.kick());
        return;
      }
      case "abandon_switchover": {
        const switchover = this.#switchover;
        this.#switchover = null;
        const detail = `switchover to node ${action.target} abandoned: the controller gave up`;
        this.#o.event("command_failed", { detail });
        switchover?.reject(new Error(detail));
        return;
      }
      default:
        assert(isServerAction(action), `unhandled HA action ${action.type}`);
        this.#server.run(action);
    }
  }

  // ---- talking to the others ------------------------------------------------------------

  #sendReport(to: NodeId): void {
    const local = this.#local;
    const request = this.#reportRequest;
    if (this.#reporting || local === null || request === null) return;
    this.#reporting = true;
    const seen = this.#observation;
    const frozen = seen !== null && !seen.streaming &&
      (local.state !== "standby" || local.upstream === null);
    const term = this.#o.replica.status().term;
    this.#rpc(to, { kind: "report", nodeId: this.#o.nodeId, term, server: local, frozen })
      .then((ok) => {
        if (ok && this.#reportRequest === request) this.#reportRequest = null;
      })
      .finally(() => (this.#reporting = false));
  }

  #sendStatus(): void {
    const status = this.#o.replica.status();
    const leader = status.leaderId;
    if (this.#stopped || leader === NONE || leader === this.#o.nodeId || this.#sendingStatus) {
      return;
    }
    this.#sendingStatus = true;
    const events = this.#writable ? [] : this.#o.pendingEvents.take(FORWARDED_EVENTS_MAX);
    this.#rpc(leader, {
      kind: "status",
      nodeId: this.#o.nodeId,
      term: status.term,
      server: this.summary(),
      events,
    }).then((taken) => {
      if (!taken && events.length > 0) this.#o.pendingEvents.giveBack(events);
    }).finally(() => (this.#sendingStatus = false));
  }

  /** Send an HA message; resolves with whether it was taken. */
  async #rpc(to: NodeId, message: HaMessage): Promise<boolean> {
    const client = this.#o.peers.client(to);
    if (!client) return false;
    try {
      await client.rpc("ha", message, RPC_TIMEOUT_MS);
      return true;
    } catch (error) {
      this.#o.log.debug("HA message not delivered", {
        to,
        kind: message.kind,
        error: String(error),
      });
      return false;
    }
  }

  // ---- helpers ------------------------------------------------------------------------

  /** A switchover before stopping: hand the primary to a streaming voter, bounded. */
  async #handOverPrimary(): Promise<void> {
    if (this.#leaderTerm === 0 || this.#local?.state !== "primary") return;
    const voters = this.#o.replica.status().membership.voters;
    const target = [...this.#memberStatus.values()]
      .filter((s) => s.role === "standby" && voters.includes(s.nodeId))
      .sort((a, b) => (b.lsn ?? "").localeCompare(a.lsn ?? ""))[0];
    if (!target) return;
    this.#o.log.info("handing the primary over before stopping", { target: target.nodeId });
    await this.requestSwitchover(target.nodeId).catch((error) =>
      this.#o.log.warn("the switchover before stopping failed", { error: String(error) })
    );
  }

  /** The members' PostgreSQL addresses, as the log records them. */
  #memberAddresses(): MemberServer[] {
    const out: MemberServer[] = [];
    for (const m of this.#o.replica.state.members()) {
      if (m.pgHost !== null && m.pgPort !== null) {
        out.push({ nodeId: m.nodeId, host: m.pgHost, port: m.pgPort });
      }
    }
    return out;
  }

  /** How this node's standby reaches member `nodeId`'s server (null: address not known yet). */
  #target(nodeId: NodeId): PrimaryTarget | null {
    const member = this.#memberAddresses().find((m) => m.nodeId === nodeId);
    if (!member) {
      this.#o.log.debug("waiting for a member's PostgreSQL address", { node: nodeId });
      return null;
    }
    return {
      host: member.host,
      port: member.port,
      user: this.#o.settings().replicationUser,
      applicationName: applicationName(this.#o.nodeId),
    };
  }

  /** The recorded primary's server, when it is another node's (to detect divergence from it). */
  #recordedPrimaryTarget(): PrimaryTarget | null {
    const record = this.#o.replica.state.primary();
    if (record === null || record.nodeId === NONE || record.nodeId === this.#o.nodeId) return null;
    return this.#target(record.nodeId);
  }

  #newLease(): LeaseTracker {
    const timing = timingFor(this.#o.settings());
    return new LeaseTracker({ withholdMs: voteWithholdMs(timing.electionTicks, timing.tickMs) });
  }
}
