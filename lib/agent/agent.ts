/**
 * The pgraft agent, one per PostgreSQL server: the composition root. It
 * builds the parts, wires them, owns the timers that are not the replica's,
 * and turns what happens into events and log lines:
 *
 * - {@link Replica}: the Raft core, its write-ahead log on this node's disk
 *   (`pgraft.data_dir`), the replicated state machine in memory, the Ready loop;
 * - {@link Peers}: addresses and clients of the other agents;
 * - {@link Ops}: every write operation once, for HTTP and SQL alike;
 * - the peer app (lib/transport) with the key-value API (lib/api) mounted;
 * - the link to this node's PostgreSQL (lib/postgres): the publisher and the
 *   SQL command queue, started in the background — consensus never waits for it;
 * - with `pgraft.manage_postgres`, the {@link HaRunner}: the agent runs its
 *   server, the leader's as the primary; the link then runs only while the
 *   server is a writable primary (a standby is read-only: what the primary's
 *   agent publishes reaches it by streaming replication).
 *
 * @module
 */

import { type Cluster, healthApi, kvApi } from "../api/mod.ts";
import { dirname } from "node:path";
import { deadline } from "../async.ts";
import {
  ELECTION_HEARTBEAT_RATIO_MIN,
  type LoadedConfig,
  type PgraftSettings,
} from "../config/mod.ts";
import {
  decodeConfChange,
  type Entry,
  type Message,
  type NodeId,
  NONE,
  type SoftState,
} from "../raft/mod.ts";
import {
  type ApplyResult,
  decodeCommand,
  KV_KEY_BYTES_MAX,
  KV_VALUE_BYTES_MAX,
  MEMBER_ADDRESS_CHARS_MAX,
  MEMBER_ADDRESS_PATTERN,
  MEMBER_PORT_MAX,
  parseMemberContext,
} from "../state/mod.ts";
import { WalStorage } from "../storage/mod.ts";
import {
  createPeerApp,
  type MembersView,
  Metrics,
  type PeerAppOptions,
  PeerServer,
  registerRpc,
  TRANSPORT_METRICS,
} from "../transport/mod.ts";
import type { PgConnectionOptions } from "../postgres/connection.ts";
import { type CommandRow } from "../postgres/command_queue.ts";
import { PostgresLink } from "../postgres/link.ts";
import { EVENTS_BUFFERED_MAX } from "../postgres/publisher.ts";
import { missingSupervisorPrograms } from "../postgres/programs.ts";
import { pgBinariesIn } from "../postgres/server.ts";
import type { EventRow, StatusSnapshot } from "../postgres/status_rows.ts";
import { Supervisor } from "../postgres/supervisor.ts";
import { VERSION } from "../version.ts";
import { HaRunner } from "./ha_runner.ts";
import { type LogFormat, Logger } from "./log.ts";
import { Ops } from "./ops.ts";
import { Peers } from "./peers.ts";
import { raftConfig, Replica, type ReplicaEvents } from "./replica.ts";
import { effectiveConfigRows, effectiveSettings, timingFor } from "./settings.ts";
import { httpStatus, membersView, statusSnapshot } from "./status.ts";

/** Events about a node's own PostgreSQL server, which a standby forwards to the leader. */
const SERVER_EVENTS = /^(postgres_|rewind_failed$)/;

/** Longest a peer's request waits for this node's replies before answering without them. */
const REPLY_WAIT_MS = 250;

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
  /** resolves with the reason when the agent had to stop on its own (its log failed, a foreign PostgreSQL) */
  readonly failed: Promise<Error>;
  #fail: (error: Error) => void = () => {};
  #settings: PgraftSettings;
  #storage!: WalStorage;
  #peers!: Peers;
  #replica!: Replica;
  #ops!: Ops;
  #connection!: PgConnectionOptions;
  /** the link to this node's PostgreSQL; with manage_postgres only while it is a writable primary */
  #link: PostgresLink | null = null;
  /** high availability, with manage_postgres */
  #ha: HaRunner | null = null;
  /** events recorded while no link runs, handed to the next one */
  #pendingEvents: EventRow[] = [];
  #server!: PeerServer;
  #statusTimer: ReturnType<typeof setInterval> | undefined;
  #probeTimer: ReturnType<typeof setInterval> | undefined;
  #probing = false;
  /** the leader that last told this node to campaign at once (a transfer), and when */
  #handoverFrom: { from: NodeId; at: number } | null = null;
  /** the last view of the members a leader's heartbeats brought */
  #receivedView: { from: NodeId; at: number; view: MembersView } | null = null;
  #leaderSince: Date | null = null;
  #noLeaderSince: Date | null = new Date();
  #stopped: Promise<void> | null = null;
  /** the stop hands leadership (with manage_postgres: the primary) over first */
  #handingOver = false;

  private constructor(options: AgentOptions) {
    this.config = options.config;
    this.nodeId = options.config.settings.nodeId;
    this.#settings = options.config.settings;
    this.failed = new Promise((resolve) => (this.#fail = resolve));
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

  /** Open the Raft log, start the peer server and the timers; PostgreSQL is reached in the background. */
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
    this.#storage = await WalStorage.open(file.dataDir, { nodeId: this.nodeId });
    const { recovery } = this.#storage;
    if (
      recovery.tornBytes > 0 || recovery.brokenSnapshots.length > 0 ||
      recovery.staleSnapshots.length > 0
    ) {
      this.log.warn("the Raft log was repaired on open", { ...recovery });
    }
    this.#peers = new Peers({
      nodeId: this.nodeId,
      self: { address: file.address, port: file.port },
      clusterId: () => this.#clusterId(),
      authSecret: file.authSecret,
      tls: file.tlsCertFile !== null ? { caFile: file.tlsCaFile } : null,
      metrics: this.metrics,
      onUnreachable: (peer) => this.#replica.reportUnreachable(peer),
      onSnapshotResult: (peer, ok) => this.#replica.reportSnapshot(peer, ok),
      view: () => membersView({ nodeId: this.nodeId, replica: this.#replica, peers: this.#peers }),
      onReply: (messages) => {
        this.#receive(messages);
      },
    });
    const timing = timingFor(this.#settings);
    const { replica, entries } = await Replica.open({
      config: raftConfig(this.nodeId, timing, this.#settings.failoverEnabled),
      tickMs: timing.tickMs,
      storage: this.#storage,
      send: (messages) => this.#peers.send(messages),
      events: this.#replicaEvents(),
    });
    this.#replica = replica;
    this.#refreshSettings();
    this.#learnMembers();
    this.#learnAddresses(entries);
    this.#ops = new Ops({
      nodeId: this.nodeId,
      self: { address: file.address, port: file.port },
      replica,
      peers: this.#peers,
      settings: () => this.#settings,
      switchover: file.managePostgres ? (target) => this.#ha!.requestSwitchover(target) : undefined,
    });
    this.#connection = connection;
    if (file.managePostgres) this.#ha = await this.#createHa(connection);
    this.#server = await this.#serve();
    replica.start();
    this.#startStatusTimer(this.#settings.heartbeatIntervalMs);
    this.log.info("agent started", {
      address: file.address,
      port: this.#server.port,
      dataDir: file.dataDir,
      clusterId: this.#clusterId(),
      lastIndex: replica.status().lastIndex,
      version: VERSION,
      managePostgres: file.managePostgres,
    });
    if (this.#ha) {
      this.#ha.start();
      return;
    }
    if (!await this.#startLink()) {
      this.log.warn("PostgreSQL cannot be reached yet; consensus runs meanwhile, retrying", {
        host: connection.host,
        port: connection.port,
      });
    }
  }

  /**
   * Start the link to this node's PostgreSQL (in the background).
   *
   * @returns whether the first attempt to connect worked
   */
  #startLink(): Promise<boolean> {
    if (this.#link !== null) return Promise.resolve(true);
    const link = new PostgresLink(this.#connection, this.#linkSource());
    this.#link = link;
    for (const event of this.#pendingEvents.splice(0)) link.publisher.recordEvent(event);
    return link.start().firstAttempt;
  }

  async #stopLink(): Promise<void> {
    const link = this.#link;
    this.#link = null;
    await link?.stop();
  }

  /** The HA runner and the supervisor of this node's server (manage_postgres). */
  async #createHa(connection: PgConnectionOptions): Promise<HaRunner> {
    const file = this.config.settings;
    const configFile = this.config.files[0]!;
    const supervisor = await Supervisor.create({
      dataDir: this.config.connection.dataDirectory ?? dirname(configFile),
      configFile,
      connection,
      systemIdentifier: this.#replica.state.postgresSystem,
      ...(file.pgBinDir ? { bins: await pgBinariesIn(file.pgBinDir) } : {}),
    });
    if (connection.port === undefined) {
      throw new Error("manage_postgres needs the server's port in the configuration file");
    }
    const missing = await missingSupervisorPrograms(supervisor.bins);
    if (missing) throw new Error(missing);
    return new HaRunner({
      nodeId: this.nodeId,
      supervisor,
      replica: this.#replica,
      peers: this.#peers,
      settings: () => this.#settings,
      pgAddress: { host: file.address, port: connection.port },
      log: this.log,
      event: (type, fields) => this.event(type, fields),
      pendingEvents: {
        // Only what happened to this node's own server: the cluster's events
        // (elections, members) the primary's agent records itself.
        take: (max) =>
          this.#pendingEvents.splice(0, max).filter((e) => SERVER_EVENTS.test(e.type))
            .map((e) => ({ ...e, at: e.at.toISOString() })),
        giveBack: (events) =>
          this.#pendingEvents.unshift(...events.map((e) => ({ ...e, at: new Date(e.at) }))),
      },
      memberEvents: (events) => {
        for (const e of events) this.#recordEventRow({ ...e, at: new Date(e.at) });
      },
      writableChanged: (writable) => {
        if (writable) {
          this.#startLink();
          return;
        }
        this.#stopLink().catch((error) =>
          this.log.warn("stopping the PostgreSQL link failed", { error: String(error) })
        );
      },
    });
  }

  /** The cluster this node belongs to: recorded in its data directory, else learned from the log. */
  #clusterId(): string | null {
    return this.#storage.identity.clusterId ?? this.#replica?.state.clusterId ?? null;
  }

  /** The peer app with the RPCs and the key-value API, served on pgraft.port. */
  async #serve(): Promise<PeerServer> {
    const file = this.config.settings;
    const peerOptions: PeerAppOptions = {
      nodeId: this.nodeId,
      clusterId: () => this.#clusterId(),
      authSecret: file.authSecret,
      metrics: this.metrics,
      onMessages: (_clusterId, messages, sender) => {
        // A node that has not replicated the membership yet learns where its
        // leader is from the request itself (the log's address wins later).
        if (sender.address && sender.port) {
          this.#peers.learn(sender.nodeId, { address: sender.address, port: sender.port }, true);
        }
        if (sender.view) {
          this.#receivedView = { from: sender.nodeId, at: performance.now(), view: sender.view };
        }
        if (!sender.answers) {
          this.#receive(messages);
          return;
        }
        return this.#answer(sender.nodeId, messages);
      },
      status: () => httpStatus(this.#status()),
      // Peers probe it when they miss heartbeats (see #probeLeader): role and term.
      health: () => {
        const st = this.#replica.status();
        return {
          ok: true,
          role: st.role,
          term: st.term,
          leader: st.leaderId,
          detail: `${st.role} term ${st.term} leader ${st.leaderId}`,
        };
      },
    };
    const app = createPeerApp(peerOptions);
    registerRpc(app, peerOptions, "command", (body) => this.#ops.executeForwarded(body));
    registerRpc(app, peerOptions, "read_index", () => this.#ops.readIndexForPeer());
    registerRpc(app, peerOptions, "ha", (body) => {
      if (!this.#ha) throw new RangeError(`node ${this.nodeId} does not manage PostgreSQL`);
      return this.#ha.receive(body);
    });
    app.route("/v1/kv", kvApi(this.#cluster(), { authSecret: file.authSecret }));
    const ha = this.#ha;
    if (ha) {
      app.route(
        "/",
        healthApi({
          nodeId: this.nodeId,
          server: () => ha.health(),
          entitledPrimary: () => ha.entitledPrimary,
        }),
      );
    }
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
    return {
      leaderUrl: () => {
        const leader = this.#replica.softState.leaderId;
        return leader === NONE ? null : this.#peers.baseUrl(leader);
      },
      kvPut: (key, value) => this.#ops.kvPut(key, value),
      kvDelete: (key) => this.#ops.kvDelete(key),
      linearizableRead: () => this.#ops.linearizableRead(),
      kvGet: (key) => this.#ops.kvGet(key),
      kvList: (prefix, limit) => this.#ops.kvList(prefix, limit),
    };
  }

  /** Messages from a peer; resolves once the Ready they caused is handled. */
  #receive(messages: Message[]): Promise<void> {
    this.#peers.received(messages);
    for (const m of messages) {
      if (m.type === "timeout_now") this.#handoverFrom = { from: m.from, at: performance.now() };
    }
    return this.#replica.receive(messages);
  }

  /**
   * Handle a peer's request and answer it with this node's replies: what the
   * Ready it caused sends to that peer (a follower's acknowledgement once its
   * log is durable, a vote) goes back in the response body — one HTTP
   * exchange per replication round. Bounded: what comes later goes the usual way.
   */
  async #answer(from: NodeId, messages: Message[]): Promise<Message[]> {
    const slot = this.#peers.openReply(from);
    try {
      await deadline(this.#receive(messages), REPLY_WAIT_MS, "the replies").catch(() => {});
    } finally {
      this.#peers.closeReply(slot);
    }
    return slot.messages;
  }

  /** Learn member addresses from conf change entries as they reach the log. */
  #learnAddresses(entries: readonly Entry[]): void {
    for (const entry of entries) {
      if (entry.type !== "conf_change") continue;
      const change = decodeConfChange(entry.data);
      if (change.kind === "remove_node" || change.context === "") continue;
      try {
        const addr = parseMemberContext(change.context);
        if (addr) this.#peers.learn(change.nodeId, addr);
      } catch {
        // A context a current proposer never writes: the applied members still have the address.
      }
    }
  }

  /** Learn the applied members' addresses. */
  #learnMembers(): void {
    for (const m of this.#replica.state.members()) {
      if (m.address !== "") this.#peers.learn(m.nodeId, m);
    }
  }

  /** The effective settings: the file's, overlaid with the cluster's from the state machine. */
  #refreshSettings(): void {
    const before = this.#settings;
    const after = effectiveSettings(this.config, this.#replica.state.settings(), (name, error) => {
      this.log.warn("ignoring an invalid cluster setting", { name, error: error.message });
    });
    this.#settings = after;
    this.#replica.retime(timingFor(after), after.failoverEnabled);
    if (before.heartbeatIntervalMs !== after.heartbeatIntervalMs) {
      this.#startStatusTimer(after.heartbeatIntervalMs);
    }
    if (before.failoverEnabled !== after.failoverEnabled) {
      this.event(after.failoverEnabled ? "failover_resumed" : "failover_paused", {
        detail: after.failoverEnabled
          ? "followers start elections again when the leader is silent"
          : "followers do not start elections while they know a leader",
      });
    }
    this.#link?.publisher.configChanged();
  }

  // ---- what the replica reports ------------------------------------------------

  #replicaEvents(): ReplicaEvents {
    return {
      softStateChanged: (previous, next, term) => this.#softStateChanged(previous, next, term),
      logAppended: (entries) => this.#learnAddresses(entries),
      snapshotInstalled: (snapshot) => {
        this.#refreshSettings();
        this.#learnMembers();
        this.event("snapshot_installed", { detail: `snapshot at index ${snapshot.meta.index}` });
      },
      entriesApplied: (entries, results) => this.#applied(entries, results),
      snapshotTaken: (index, bytes) =>
        this.event("snapshot_taken", { detail: `snapshot at index ${index} (${bytes} bytes)` }),
      snapshotFailed: (error) => this.log.warn("snapshot failed", { error: String(error) }),
      storageFailed: (error) =>
        this.#fatal(
          new Error(`cannot write the Raft log in ${this.config.settings.dataDir}`, {
            cause: error,
          }),
        ),
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
        const handover = this.#handoverFrom;
        this.#handoverFrom = null;
        if (
          next.leaderId === this.nodeId && handover &&
          performance.now() - handover.at < 2 * this.#settings.electionTimeoutMs
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
    this.#link?.publisher.statusChanged();
  }

  /** Events for what was applied, and the node's view kept in step with the state machine. */
  #applied(entries: readonly Entry[], results: readonly ApplyResult[]): void {
    let settingsChanged = false;
    let membersChanged = false;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      const result = results[i]!;
      if (!result.ok || result.op === "kv_put" || result.op === "kv_delete") continue;
      if (entry.type === "conf_change") {
        membersChanged = true;
        this.#confChangeApplied(entry);
        continue;
      }
      const c = decodeCommand(entry.data);
      if (c.op === "set_config") {
        settingsChanged = true;
        this.event("config_changed", { detail: `${c.name} = ${c.value} (index ${entry.index})` });
      } else if (c.op === "init_cluster") {
        settingsChanged = true;
        this.event("cluster_initialized", { detail: `cluster ${c.clusterId} (${c.clusterName})` });
      }
    }
    if (settingsChanged) this.#refreshSettings();
    if (membersChanged) this.#learnMembers();
    this.#link?.publisher.kick();
  }

  #confChangeApplied(entry: Entry): void {
    const { kind, nodeId, context } = decodeConfChange(entry.data);
    let where = "";
    try {
      const addr = parseMemberContext(context);
      if (addr) where = ` ${addr.address}:${addr.port}`;
    } catch {
      // shown without an address
    }
    const type = kind === "add_learner"
      ? "node_added"
      : kind === "add_voter"
      ? "node_promoted"
      : "node_removed";
    this.event(type, { nodeId, detail: `${kind} node ${nodeId}${where} at index ${entry.index}` });
    if (kind === "remove_node") {
      this.#peers.forget(nodeId);
      if (nodeId === this.nodeId) {
        this.log.warn("this node was removed from the cluster; it no longer takes part");
      }
    }
  }

  // ---- the PostgreSQL side ------------------------------------------------------

  #linkSource() {
    return {
      state: () => this.#replica.state,
      status: () => this.#status(),
      config: () => effectiveConfigRows(this.config, this.#replica.state.settings()),
      limits: () => ({
        kv_key_bytes_max: String(KV_KEY_BYTES_MAX),
        kv_value_bytes_max: String(KV_VALUE_BYTES_MAX),
        member_address_pattern: MEMBER_ADDRESS_PATTERN.source,
        member_address_chars_max: String(MEMBER_ADDRESS_CHARS_MAX),
        member_port_max: String(MEMBER_PORT_MAX),
        election_heartbeat_ratio_min: String(ELECTION_HEARTBEAT_RATIO_MIN),
      }),
      trouble: (what: string, error: unknown) =>
        this.log.warn(`${what}; consensus goes on, retrying`, { error: String(error) }),
      recovered: () => this.log.info("PostgreSQL is writable again; the published copy catches up"),
      clusterId: () => this.#clusterId(),
      connected: () => this.log.info("connected to PostgreSQL: publishing and taking commands"),
      foreignCluster: (theirs: string, ours: string) =>
        this.#fatal(
          new Error(
            `this node's PostgreSQL holds the published copy of cluster ${theirs}, but its ` +
              `Raft log (${this.config.settings.dataDir}) belongs to cluster ${ours}; ` +
              `check pgraft.data_dir and the connection settings`,
          ),
        ),
      execute: (kind: CommandRow["kind"], args: Record<string, unknown>) =>
        this.#ops.execute(kind, args),
      failed: (row: CommandRow, message: string) => {
        this.event("command_failed", {
          detail: `${row.kind} ${JSON.stringify(row.args)}: ${message}`,
        });
        this.log.warn("command failed", { command: row.commandId, kind: row.kind, error: message });
      },
      done: (row: CommandRow) =>
        this.log.info("command done", { command: row.commandId, kind: row.kind }),
    };
  }

  // ---- status and events ----------------------------------------------------------

  #status(): StatusSnapshot {
    return statusSnapshot({
      nodeId: this.nodeId,
      replica: this.#replica,
      peers: this.#peers,
      state: this.#replica.state,
      settings: this.#settings,
      port: this.#server?.port ?? this.config.settings.port,
      leaderSince: this.#leaderSince,
      noLeaderSince: this.#noLeaderSince,
      startedAt: this.startedAt,
      rpcRejected: this.metrics.total(TRANSPORT_METRICS.rejected),
      leaderView: this.#leaderView(),
      servers: this.#ha?.memberServers() ?? null,
    });
  }

  /** The leader's view of the members: this node's own when it leads, else its leader's while fresh. */
  #leaderView(): { view: MembersView; ageMs: number } | null {
    const own = membersView({ nodeId: this.nodeId, replica: this.#replica, peers: this.#peers });
    if (own) return { view: own, ageMs: 0 };
    const got = this.#receivedView;
    if (got === null || got.from !== this.#replica.softState.leaderId) return null;
    const ageMs = performance.now() - got.at;
    return ageMs <= this.#settings.electionTimeoutMs ? { view: got.view, ageMs } : null;
  }

  /** Record an event (written to pgraft.events with the next publish) and log it. */
  event(type: string, fields: { nodeId?: NodeId; detail?: string } = {}): void {
    const row: EventRow = {
      at: new Date(),
      type,
      term: this.#replica ? this.#replica.status().term : null,
      nodeId: fields.nodeId ?? this.nodeId,
      detail: fields.detail ?? "",
    };
    this.#recordEventRow(row);
    this.log.info(`event ${type}`, {
      detail: fields.detail ?? "",
      subject: fields.nodeId ?? this.nodeId,
    });
  }

  /** Write an event with the next publish, or keep it (bounded) while no link runs. */
  #recordEventRow(row: EventRow): void {
    if (this.#link) this.#link.publisher.recordEvent(row);
    else if (this.#pendingEvents.push(row) > EVENTS_BUFFERED_MAX) this.#pendingEvents.shift();
  }

  /**
   * The status goes out every heartbeat interval (its ages and contacts move
   * with time); four times as often, a follower that misses its leader's
   * heartbeats probes it.
   */
  #startStatusTimer(intervalMs: number): void {
    if (this.#statusTimer !== undefined) clearInterval(this.#statusTimer);
    if (this.#probeTimer !== undefined) clearInterval(this.#probeTimer);
    this.#statusTimer = setInterval(() => this.#link?.publisher.statusChanged(), intervalMs);
    this.#probeTimer = setInterval(
      () => this.#probeLeader(intervalMs),
      Math.max(5, intervalMs / 4),
    );
  }

  /**
   * A follower that has missed its leader's heartbeats asks it (GET /health):
   * a refused connection, or an answer that it does not lead this term, is
   * evidence that it is gone — a timeout is not — and the follower pre-votes
   * at once (DESIGN.md "Targets": failover after the leader's process dies).
   */
  #probeLeader(timeoutMs: number): void {
    // With manage_postgres a refused connection is not enough: the old
    // primary's lease must run out first (lib/ha/lease.ts), so followers wait
    // out the election timeout.
    if (this.#probing || this.#ha) return;
    const leader = this.#replica.leaderToProbe();
    const client = leader === NONE ? null : this.#peers.client(leader);
    if (!client) return;
    this.#probing = true;
    const term = this.#replica.status().term;
    client.probe(timeoutMs).then((found) => {
      const gone = found.kind === "refused" ||
        (found.kind === "answered" && (found.role !== "leader" || found.term !== term));
      if (!gone) return;
      this.log.info("the leader is gone: campaigning without waiting out the election timeout", {
        leader,
        evidence: found.kind === "refused" ? "connection refused" : `answered ${found.role}`,
      });
      this.#replica.reportLeaderGone(leader);
    }).finally(() => (this.#probing = false));
  }

  // ---- shutdown ------------------------------------------------------------

  /**
   * Stop the agent. A leader first hands leadership to the most caught-up
   * voter (bounded by two election timeouts), so clients see no election timeout.
   */
  stop(options: { handOver?: boolean } = {}): Promise<void> {
    this.#stopped ??= (async () => {
      this.#handingOver = options.handOver ?? true;
      if (this.#handingOver) {
        await this.#handOver().catch((error) =>
          this.log.warn("leadership handover failed", { error: String(error) })
        );
      }
      await this.#shutdown();
    })();
    return this.#stopped;
  }

  /** Something the agent cannot go on with: say it, stop, and let the caller exit. */
  #fatal(error: Error): void {
    const cause = error.cause === undefined ? {} : { cause: String(error.cause) };
    this.log.error(error.message, cause);
    this.stop({ handOver: false }).finally(() => this.#fail(error));
  }

  async #handOver(): Promise<void> {
    if (this.#ha) return; // the HA runner hands the primary over (a switchover) as it stops
    if (this.#replica?.softState.role !== "leader") return;
    this.log.info("handing leadership over before stopping");
    const target = await this.#replica.handOver(2 * this.#settings.electionTimeoutMs);
    if (target === null) return;
    this.event("leadership_transferred", {
      nodeId: target,
      detail: `node ${this.nodeId} handed leadership to node ${target} before stopping`,
    });
  }

  async #shutdown(): Promise<void> {
    if (this.#statusTimer !== undefined) clearInterval(this.#statusTimer);
    if (this.#probeTimer !== undefined) clearInterval(this.#probeTimer);
    await this.#ha?.stop({ handOver: this.#handingOver });
    this.#replica?.stop();
    await this.#replica?.whenIdle();
    this.#link?.publisher.statusChanged();
    await this.#stopLink();
    await this.#server?.shutdown().catch(() => {});
    await this.#peers?.closeAll();
    await this.#storage?.close().catch(() => {});
    this.log.info("agent stopped");
  }
}
