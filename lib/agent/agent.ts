/**
 * The pgraft agent, one per PostgreSQL server: the composition root. It
 * builds the parts, wires them, owns the timers that are not the replica's,
 * and turns what happens into events and log lines:
 *
 * - {@link Replica}: the Raft core, its storage and the Ready loop;
 * - {@link Peers}: addresses and clients of the other agents;
 * - {@link Ops}: every write operation once, for HTTP and SQL alike;
 * - the peer app (lib/transport) with the key-value API (lib/api) mounted;
 * - the publisher and the SQL command queue (lib/postgres).
 *
 * @module
 */

import postgres from "postgres";
import type { LoadedConfig } from "../config/mod.ts";
import { type Cluster, kvApi } from "../api/mod.ts";
import { type Entry, type Message, type NodeId, NONE, type SoftState } from "../raft/mod.ts";
import { decodeConfChange } from "../raft/mod.ts";
import { parseMemberContext } from "../state/limits.ts";
import { type ApplyItem, type ApplyResult, PgStorage } from "../storage/mod.ts";
import {
  createPeerApp,
  Metrics,
  type PeerAppOptions,
  PeerServer,
  registerRpc,
  TRANSPORT_METRICS,
} from "../transport/mod.ts";
import type { PgConnectionOptions } from "../postgres/connection.ts";
import { ControlPool } from "../postgres/control_pool.ts";
import { CommandQueue, type CommandRow } from "../postgres/command_queue.ts";
import { migrate } from "../postgres/migrations.ts";
import { Publisher, type StatusSnapshot } from "../postgres/publisher.ts";
import { VERSION } from "../version.ts";
import { AppliedView } from "./applied_view.ts";
import { type LogFormat, Logger } from "./log.ts";
import { Ops } from "./ops.ts";
import { Peers } from "./peers.ts";
import { raftConfig, Replica, type ReplicaEvents } from "./replica.ts";
import { effectiveConfigRows, timingFor } from "./settings.ts";
import { httpStatus, statusSnapshot, type StatusSource } from "./status.ts";

/** Options for {@link Agent.start}. */
export interface AgentOptions {
  config: LoadedConfig;
  connection: PgConnectionOptions;
  logFormat?: LogFormat;
  /** where log lines go. @default stderr */
  logWrite?: (line: string) => void;
}

/** The running agent. */
export class Agent {
  readonly config: LoadedConfig;
  readonly log: Logger;
  readonly nodeId: NodeId;
  readonly metrics = new Metrics();
  readonly startedAt = new Date();
  #pool!: ControlPool;
  #publisher!: Publisher;
  #commands!: CommandQueue;
  #storage!: PgStorage;
  #view!: AppliedView;
  #peers!: Peers;
  #replica!: Replica;
  #ops!: Ops;
  #server!: PeerServer;
  #publishTimer: ReturnType<typeof setInterval> | undefined;
  #publishing: Promise<void> | null = null;
  /** the leader that last told this node to campaign at once (a transfer), and when */
  #handoverFrom: { from: NodeId; at: number } | null = null;
  #leaderSince: Date | null = null;
  #noLeaderSince: Date | null = new Date();
  #stopping = false;
  #stopped: Promise<void> | null = null;

  private constructor(options: AgentOptions) {
    this.config = options.config;
    this.nodeId = options.config.settings.nodeId;
    this.log = new Logger({
      format: options.logFormat,
      write: options.logWrite,
      context: () => ({
        node: this.nodeId,
        term: this.#replica ? this.#replica.status().term : 0,
        role: this.#replica?.softState.role ?? "starting",
      }),
    });
  }

  /** Connect, migrate, load the Raft state, start the peer server and the timers. */
  static async start(options: AgentOptions): Promise<Agent> {
    const agent = new Agent(options);
    try {
      await agent.#start(options.connection);
    } catch (error) {
      await agent.#shutdown().catch(() => {});
      throw error;
    }
    return agent;
  }

  /** The actual HTTP port (useful when the configured port was 0). */
  get port(): number {
    return this.#server.port;
  }

  async #start(connection: PgConnectionOptions): Promise<void> {
    const file = this.config.settings;
    this.#pool = new ControlPool(() =>
      postgres({
        ...connection,
        max: 2,
        onnotice: () => {},
        connect_timeout: 5,
        idle_timeout: 0,
        connection: { application_name: "pgraft agent control" },
      })
    );
    this.#publisher = new Publisher(this.#pool);
    await migrate(this.#pool.sql);
    this.#storage = await PgStorage.open({ connection });
    this.#view = await AppliedView.load(this.#storage, this.config, (name, error) => {
      this.log.warn("ignoring an invalid cluster setting", { name, error: error.message });
    });
    const settings = this.#view.settings;
    this.#peers = new Peers({
      nodeId: this.nodeId,
      self: { address: file.address, port: file.port },
      clusterId: () => this.#view.state.clusterId,
      authSecret: file.authSecret,
      tls: file.tlsCertFile !== null ? { caFile: file.tlsCaFile } : null,
      metrics: this.metrics,
      onUnreachable: (peer) => this.#replica.reportUnreachable(peer),
      onSnapshotResult: (peer, ok) => this.#replica.reportSnapshot(peer, ok),
    });
    for (const m of this.#view.state.members) this.#peers.learn(m.nodeId, m);
    const timing = timingFor(settings);
    const { replica, entries } = await Replica.open({
      config: raftConfig(this.nodeId, timing, settings.failoverEnabled),
      tickMs: timing.tickMs,
      storage: this.#storage,
      send: (messages) => this.#peers.send(messages),
      events: this.#replicaEvents(),
    });
    this.#replica = replica;
    this.#learnAddresses(entries);
    this.#ops = new Ops({
      nodeId: this.nodeId,
      self: { address: file.address, port: file.port },
      replica,
      peers: this.#peers,
      view: this.#view,
      electionTimeoutMs: () => this.#view.settings.electionTimeoutMs,
      clusterName: () => this.#view.settings.clusterName,
    });
    this.#view.onSettings((before, after) => this.#settingsChanged(before, after));
    this.#server = await this.#serve();
    this.#commands = new CommandQueue(this.#pool, this.#publisher, {
      execute: (kind, args) => this.#ops.execute(kind, args),
      status: () => this.#status(),
      failed: (row, message) => this.#commandFailed(row, message),
      done: (row) => this.log.info("command done", { command: row.commandId, kind: row.kind }),
      trouble: (what, error) => this.log.warn(what, { error: String(error) }),
    });
    await this.#publisher.publishConfig(
      effectiveConfigRows(this.config, this.#view.state.settings),
    );
    await this.#commands.start();
    replica.start();
    this.#startPublishing(settings.heartbeatIntervalMs);
    this.log.info("agent started", {
      address: file.address,
      port: this.#server.port,
      clusterId: this.#view.state.clusterId,
      lastIndex: replica.status().lastIndex,
      version: VERSION,
    });
    await this.publishNow();
  }

  /** The peer app with the RPCs and the key-value API, served on pgraft.port. */
  async #serve(): Promise<PeerServer> {
    const file = this.config.settings;
    const peerOptions: PeerAppOptions = {
      nodeId: this.nodeId,
      clusterId: () => this.#view.state.clusterId,
      authSecret: file.authSecret,
      metrics: this.metrics,
      onMessages: (_clusterId, messages, sender) => {
        // A node that has not replicated the membership yet learns where its
        // leader is from the request itself (the log's address wins later).
        if (sender.address && sender.port) {
          this.#peers.learn(sender.nodeId, { address: sender.address, port: sender.port }, true);
        }
        this.#receive(messages);
      },
      status: () => httpStatus(this.#status()),
      health: () => this.#health(),
    };
    const app = createPeerApp(peerOptions);
    registerRpc(app, peerOptions, "command", (body) => this.#ops.executeForwarded(body));
    registerRpc(app, peerOptions, "read_index", () => this.#ops.readIndexForPeer());
    app.route("/v1/kv", kvApi(this.#cluster(), { authSecret: file.authSecret }));
    if (!file.authSecret) {
      this.log.warn("no pgraft.auth_secret: only loopback peers and clients are accepted");
    }
    const { tlsCertFile, tlsKeyFile } = file;
    const server = new PeerServer(app, {
      hostname: file.listenAddress,
      port: file.port,
      ...(tlsCertFile && tlsKeyFile ? { tls: { certFile: tlsCertFile, keyFile: tlsKeyFile } } : {}),
    });
    await server.start();
    return server;
  }

  /** The node as the key-value API sees it. */
  #cluster(): Cluster {
    const ops = () => this.#ops;
    return {
      leaderUrl: () => {
        const leader = this.#replica.softState.leaderId;
        return leader === NONE ? null : this.#peers.baseUrl(leader);
      },
      kvPut: (key, value) => ops().kvPut(key, value),
      kvDelete: (key) => ops().kvDelete(key),
      linearizableRead: () => ops().linearizableRead(),
      kvGet: (key) => ops().kvGet(key),
      kvList: (prefix, limit) => ops().kvList(prefix, limit),
    };
  }

  #receive(messages: Message[]): void {
    this.#peers.received(messages);
    for (const m of messages) {
      if (m.type === "timeout_now") this.#handoverFrom = { from: m.from, at: performance.now() };
    }
    this.#replica.receive(messages);
  }

  /** Learn member addresses from conf change entries as they reach the log. */
  #learnAddresses(entries: readonly Entry[]): void {
    for (const entry of entries) {
      if (entry.type !== "conf_change") continue;
      const change = decodeConfChange(entry.data);
      if (change.kind === "remove_node" || change.context === "") continue;
      const addr = parseMemberContext(change.context);
      if (addr) this.#peers.learn(change.nodeId, addr);
    }
  }

  // ---- what the replica reports ------------------------------------------------

  #replicaEvents(): ReplicaEvents {
    return {
      softStateChanged: (previous, next, term) => this.#softStateChanged(previous, next, term),
      entriesPersisted: (entries) => this.#learnAddresses(entries),
      snapshotInstalled: () => this.#reloadView(),
      entriesApplied: (items, results) => this.#applied(items, results),
      storageHealthChanged: (ok, error) => {
        if (ok) {
          this.log.info("PostgreSQL is reachable again");
          this.event("storage_recovered", { detail: "PostgreSQL is reachable again" });
        } else {
          this.log.error(
            "PostgreSQL is unavailable: this node stops voting, acknowledging and leading",
            { error: String(error) },
          );
          this.event("storage_unavailable", { detail: String(error) });
        }
      },
      snapshotTaken: (index, bytes) =>
        this.event("snapshot_taken", { detail: `snapshot at index ${index} (${bytes} bytes)` }),
      snapshotFailed: (error) => this.log.warn("snapshot failed", { error: String(error) }),
    };
  }

  #softStateChanged(previous: SoftState, next: SoftState, term: number): void {
    if (next.role === "candidate" && previous.role !== "candidate") {
      this.event("election_started", { detail: `node ${this.nodeId} campaigns in term ${term}` });
    }
    if (next.leaderId !== previous.leaderId) {
      if (next.leaderId !== NONE) {
        this.#leaderSince = new Date();
        this.#noLeaderSince = null;
        this.event("leader_elected", {
          nodeId: next.leaderId,
          detail: `node ${next.leaderId} leads term ${term}`,
        });
        this.log.info("leader known", { leader: next.leaderId });
        const handover = this.#handoverFrom;
        this.#handoverFrom = null;
        if (
          next.leaderId === this.nodeId && handover &&
          performance.now() - handover.at < 2 * this.#view.settings.electionTimeoutMs
        ) {
          this.event("leadership_transferred", {
            nodeId: this.nodeId,
            detail: `node ${handover.from} handed leadership to node ${this.nodeId} (term ${term})`,
          });
        }
      } else {
        this.#leaderSince = null;
        this.#noLeaderSince = new Date();
      }
    }
    if (previous.role === "leader" && next.role !== "leader") {
      this.event("stepped_down", {
        detail: `node ${this.nodeId} is no longer leader (term ${term})`,
      });
      if (next.leaderId !== NONE && this.#ops?.transferTarget === next.leaderId) {
        this.event("leadership_transferred", {
          nodeId: next.leaderId,
          detail: `leadership moved from node ${this.nodeId} to node ${next.leaderId}`,
        });
      }
    }
    this.#publishSoon();
  }

  #applied(items: readonly ApplyItem[], _results: readonly ApplyResult[]): void {
    let reload = false;
    for (const item of items) {
      const c = item.command;
      switch (c.op) {
        case "conf_change": {
          reload = true;
          const { kind, nodeId, context } = c.change;
          const addr = context === "" ? null : parseMemberContext(context);
          const where = addr ? ` ${addr.address}:${addr.port}` : "";
          const type = kind === "add_learner"
            ? "node_added"
            : kind === "add_voter"
            ? "node_promoted"
            : "node_removed";
          this.event(type, {
            nodeId,
            detail: `${kind} node ${nodeId}${where} at index ${item.index}`,
          });
          if (kind === "remove_node") {
            this.#peers.forget(nodeId);
            if (nodeId === this.nodeId) {
              this.log.warn("this node was removed from the cluster; it no longer takes part");
            }
          }
          break;
        }
        case "set_config":
          reload = true;
          this.event("config_changed", { detail: `${c.name} = ${c.value} (index ${item.index})` });
          break;
        case "init_cluster":
          reload = true;
          this.event("cluster_initialized", {
            detail: `cluster ${c.clusterId} (${c.clusterName})`,
          });
          break;
        default:
          break;
      }
    }
    if (reload) this.#reloadView();
  }

  /** Keep the applied view (members, settings, cluster id) in step with what was applied. */
  #reloadView(): void {
    this.#view.reload().then(async () => {
      for (const m of this.#view.state.members) this.#peers.learn(m.nodeId, m);
      await this.#publisher.publishConfig(
        effectiveConfigRows(this.config, this.#view.state.settings),
      ).catch(() => {});
    }).catch((error) =>
      this.log.error("cannot reload the applied state", { error: String(error) })
    );
  }

  #settingsChanged(
    before: LoadedConfig["settings"],
    after: LoadedConfig["settings"],
  ): void {
    this.#replica.retime(timingFor(after), after.failoverEnabled);
    if (before.heartbeatIntervalMs !== after.heartbeatIntervalMs) {
      this.#startPublishing(after.heartbeatIntervalMs);
    }
    if (before.failoverEnabled !== after.failoverEnabled) {
      this.event(after.failoverEnabled ? "failover_resumed" : "failover_paused", {
        detail: after.failoverEnabled
          ? "followers start elections again when the leader is silent"
          : "followers do not start elections while they know a leader",
      });
    }
  }

  #commandFailed(row: CommandRow, message: string): void {
    this.event("command_failed", { detail: `${row.kind} ${JSON.stringify(row.args)}: ${message}` });
    this.log.warn("command failed", { command: row.commandId, kind: row.kind, error: message });
  }

  // ---- status and events ----------------------------------------------------------

  #status(): StatusSnapshot {
    const source: StatusSource = {
      nodeId: this.nodeId,
      replica: this.#replica,
      peers: this.#peers,
      applied: this.#view.state,
      settings: this.#view.settings,
      port: this.#server?.port ?? this.config.settings.port,
      leaderSince: this.#leaderSince,
      noLeaderSince: this.#noLeaderSince,
      startedAt: this.startedAt,
      rpcRejected: this.metrics.total(TRANSPORT_METRICS.rejected),
    };
    return statusSnapshot(source);
  }

  #health(): { ok: boolean; detail: string } {
    if (!this.#replica.storageOk) return { ok: false, detail: "PostgreSQL unavailable" };
    const st = this.#replica.status();
    return { ok: true, detail: `${st.role} term ${st.term} leader ${st.leaderId}` };
  }

  /** Record an event (written to pgraft.events with the next publish) and log it. */
  event(type: string, fields: { nodeId?: NodeId; detail?: string } = {}): void {
    this.#publisher.recordEvent({
      at: new Date(),
      type,
      term: this.#replica ? this.#replica.status().term : null,
      nodeId: fields.nodeId ?? this.nodeId,
      detail: fields.detail ?? "",
    });
    this.log.info(`event ${type}`, {
      detail: fields.detail ?? "",
      subject: fields.nodeId ?? this.nodeId,
    });
    this.#publishSoon();
  }

  #startPublishing(intervalMs: number): void {
    if (this.#publishTimer !== undefined) clearInterval(this.#publishTimer);
    this.#publishTimer = setInterval(() => this.#publishSoon(), intervalMs);
  }

  #publishSoon(): void {
    if (this.#publishing || this.#stopping || !this.#replica) return;
    this.#publishing = this.publishNow().finally(() => (this.#publishing = null));
  }

  /**
   * Publish the events and status now (resolves once written, or failed). The
   * publisher shares this node's PostgreSQL with the storage: a failure marks
   * storage unavailable, a success available again.
   */
  async publishNow(): Promise<void> {
    try {
      await this.#publisher.flushEvents();
      await this.#publisher.publish(this.#status());
      this.#replica.reportStorageHealth(true, null);
    } catch (error) {
      this.#replica.reportStorageHealth(false, error);
    }
  }

  // ---- shutdown ------------------------------------------------------------

  /**
   * Stop the agent. A leader first hands leadership to the most caught-up
   * voter (bounded by two election timeouts), so clients see no election timeout.
   */
  stop(options: { handOver?: boolean } = {}): Promise<void> {
    this.#stopped ??= (async () => {
      if (options.handOver ?? true) {
        await this.#handOver().catch((error) =>
          this.log.warn("leadership handover failed", { error: String(error) })
        );
      }
      await this.#shutdown();
    })();
    return this.#stopped;
  }

  async #handOver(): Promise<void> {
    if (this.#replica?.softState.role !== "leader") return;
    this.log.info("handing leadership over before stopping");
    const target = await this.#replica.handOver(2 * this.#view.settings.electionTimeoutMs);
    if (target === null) return;
    this.event("leadership_transferred", {
      nodeId: target,
      detail: `node ${this.nodeId} handed leadership to node ${target} before stopping`,
    });
    await this.publishNow();
  }

  async #shutdown(): Promise<void> {
    this.#stopping = true;
    if (this.#publishTimer !== undefined) clearInterval(this.#publishTimer);
    this.#commands?.stop();
    this.#replica?.stop();
    await this.#replica?.whenIdle();
    await this.#publishing?.catch(() => {});
    await this.#server?.shutdown().catch(() => {});
    await this.#peers?.closeAll();
    await this.#publisher?.flushEvents().catch(() => {});
    await this.#pool?.close().catch(() => {});
    await this.#storage?.close().catch(() => {});
    this.log.info("agent stopped");
  }
}
