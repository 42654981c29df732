/**
 * The pgraft agent: one per PostgreSQL server. It wires the pure Raft core to
 * its storage (the node's own PostgreSQL), the HTTP peer transport and the SQL
 * control surface, and owns every timer.
 *
 * @module
 */

import postgres from "postgres";
import type { LoadedConfig, PgraftSettings } from "../config/mod.ts";
import {
  type AppendRequest,
  bootstrapState,
  type ConfChange,
  type Entry,
  type Message,
  NONE,
  NotLeaderError,
  RaftNode,
  type SoftState,
  type Status,
} from "../raft/mod.ts";
import {
  type AppliedState,
  type ApplyItem,
  type ApplyResult,
  encodeCommand,
  PgStorage,
  type RaftStorage,
} from "../storage/mod.ts";
import {
  authorized,
  createPeerApp,
  isLoopback,
  Metrics,
  type PeerAppOptions,
  PeerClient,
  PeerServer,
  registerRpc,
} from "../transport/mod.ts";
import { mountKvApi, readIndexRpc } from "./kv_api.ts";
import { ControlDb, type MemberStatusRow, type StatusSnapshot } from "../control/control_db.ts";
import type { PgConnectionOptions } from "../control/connection.ts";
import { migrate } from "../control/migrations.ts";
import { Driver, type DriverHooks } from "./driver.ts";
import { type LogFormat, Logger } from "./log.ts";
import { effectiveConfigRows, effectiveSettings, type Timing, timingFor } from "./settings.ts";
import { CommandExecutor } from "./commands.ts";
import { VERSION } from "../version.ts";
import type { Context, Hono } from "hono";

/** Options for {@link Agent.start}. */
export interface AgentOptions {
  config: LoadedConfig;
  connection: PgConnectionOptions;
  logFormat?: LogFormat;
  /** where log lines go. @default stderr */
  logWrite?: (line: string) => void;
}

/** A peer's address as the agent knows it. */
export interface PeerAddress {
  address: string;
  port: number;
}

/** Samples kept for persist latency percentiles. */
const PERSIST_SAMPLES_MAX = 1024;

/** The running agent. */
export class Agent {
  readonly config: LoadedConfig;
  readonly log: Logger;
  readonly nodeId: number;
  readonly metrics = new Metrics();
  readonly startedAt = new Date();
  #connection: PgConnectionOptions;
  #storage!: RaftStorage;
  #control!: ControlDb;
  #driver!: Driver;
  #server!: PeerServer;
  #app!: Hono;
  #clients = new Map<number, PeerClient>();
  #addresses = new Map<number, PeerAddress>();
  #applied!: AppliedState;
  #settings!: PgraftSettings;
  #timing!: Timing;
  #tickTimer: ReturnType<typeof setInterval> | undefined;
  #publishTimer: ReturnType<typeof setInterval> | undefined;
  #commands!: CommandExecutor;
  #storageOk = true;
  /** the leader that last told this node to campaign at once (a transfer), and when */
  #handoverFrom: { from: number; at: number } | null = null;
  #stopping = false;
  #stopped: Promise<void> | null = null;
  #lastContactFrom = new Map<number, number>();
  #leaderSince: Date | null = null;
  #noLeaderSince: Date | null = new Date();
  #publishDirty = true;
  #publishing: Promise<void> | null = null;
  #entryBytes = new Map<number, number>();
  #stats = {
    entriesAppended: 0,
    entriesCommitted: 0,
    entriesApplied: 0,
    proposals: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    lastSnapshotIndex: 0,
    lastSnapshotAt: null as Date | null,
    appendBatches: 0,
    appendedInBatches: 0,
    rpcSent: 0,
    rpcReceived: 0,
    rpcErrors: 0,
    rpcRejected: 0,
    persistMs: [] as number[],
  };

  private constructor(options: AgentOptions) {
    this.config = options.config;
    this.nodeId = options.config.settings.nodeId;
    this.#connection = options.connection;
    this.log = new Logger({
      format: options.logFormat,
      write: options.logWrite,
      context: () => {
        const s = this.#driver?.softState;
        return {
          node: this.nodeId,
          term: this.#driver ? this.#driver.node.status().term : 0,
          role: s?.role ?? "starting",
        };
      },
    });
  }

  /** Connect, migrate, load the Raft state, start the peer server and the timers. */
  static async start(options: AgentOptions): Promise<Agent> {
    const agent = new Agent(options);
    try {
      await agent.#start();
    } catch (error) {
      await agent.#shutdown().catch(() => {});
      throw error;
    }
    return agent;
  }

  async #start(): Promise<void> {
    const conn = this.#connection;
    this.#control = new ControlDb(() =>
      postgres({
        ...conn,
        max: 2,
        onnotice: () => {},
        connect_timeout: 5,
        idle_timeout: 0,
        connection: { application_name: "pgraft agent control" },
      })
    );
    await migrate(this.#control.sql);
    this.#storage = await PgStorage.open({ connection: conn });
    const state = await this.#storage.load();
    this.#applied = await this.#storage.appliedState();
    this.#refreshSettings();
    this.#addresses.set(this.nodeId, {
      address: this.config.settings.address,
      port: this.config.settings.port,
    });
    for (const m of this.#applied.members) this.#addresses.set(m.nodeId, m);
    for (const entry of state.entries) this.#learnAddresses(entry);
    for (const entry of state.entries) this.#entryBytes.set(entry.index, entry.data.length);

    const node = new RaftNode(this.#raftConfig(), state);
    this.#driver = new Driver(node, this.#storage, this.#hooks());
    this.#commands = new CommandExecutor(this);

    const peerOptions: PeerAppOptions = {
      nodeId: this.nodeId,
      clusterId: () => this.#applied.clusterId,
      authSecret: this.config.settings.authSecret,
      metrics: this.metrics,
      onMessages: (_clusterId, messages, sender) => {
        // A node that has not yet replicated the membership learns where its
        // leader is from the request itself (the log's address wins later).
        if (sender.address && sender.port && !this.#addresses.has(sender.nodeId)) {
          this.#addresses.set(sender.nodeId, { address: sender.address, port: sender.port });
        }
        this.#receive(messages);
      },
      status: () => this.httpStatus(),
      health: () => this.#health(),
    };
    this.#app = createPeerApp(peerOptions);
    registerRpc(this.#app, peerOptions, "command", (body) => this.#commands.executeForwarded(body));
    registerRpc(this.#app, peerOptions, "read_index", () => readIndexRpc(this));
    mountKvApi(this.#app, this, (c) => Promise.resolve(this.#authorizeClient(c)));
    if (!this.config.settings.authSecret) {
      this.log.warn("no pgraft.auth_secret: only loopback peers and clients are accepted");
    }
    const { tlsCertFile, tlsKeyFile } = this.config.settings;
    this.#server = new PeerServer(this.#app, {
      hostname: this.config.settings.listenAddress,
      port: this.config.settings.port,
      ...(tlsCertFile && tlsKeyFile ? { tls: { certFile: tlsCertFile, keyFile: tlsKeyFile } } : {}),
    });
    await this.#server.start();

    await this.#control.publishConfig(
      effectiveConfigRows(this.config, this.#applied.settings),
    );
    await this.#control.listen(() => this.#commands.poll());
    this.#startTicking();
    this.#publishTimer = setInterval(() => this.#publishSoon(), this.#settings.heartbeatIntervalMs);
    this.log.info("agent started", {
      address: this.config.settings.address,
      port: this.#server.port,
      clusterId: this.#applied.clusterId,
      lastIndex: node.status().lastIndex,
      version: VERSION,
    });
    this.#commands.poll();
    await this.publishNow();
  }

  /**
   * Clients of the KV API: with a secret, `Authorization: Bearer <secret>` (or
   * the derived token, see clientToken); without one, loopback clients only.
   */
  #authorizeClient(c: Context): Response | null {
    const secret = this.config.settings.authSecret;
    if (secret) {
      const header = c.req.header("authorization") ?? null;
      if (authorized(header, secret) || sameText(header ?? "", `Bearer ${secret}`)) return null;
      return c.json({ error: "missing or bad bearer token" }, 401);
    }
    const env = c.env as { remoteAddr?: { hostname?: string } } | undefined;
    if (isLoopback(env?.remoteAddr?.hostname ?? null)) return null;
    return c.json({ error: "no pgraft.auth_secret is set: only loopback clients are served" }, 403);
  }

  /** Whether the peer port serves TLS (pgraft.tls_cert_file is set); peers are then reached over https. */
  get tlsEnabled(): boolean {
    return this.config.settings.tlsCertFile !== null;
  }

  /** The Hono app serving peers (the KV API mounts its routes here). */
  get app(): Hono {
    return this.#app;
  }

  get driver(): Driver {
    return this.#driver;
  }

  get settings(): PgraftSettings {
    return this.#settings;
  }

  get applied(): AppliedState {
    return this.#applied;
  }

  get control(): ControlDb {
    return this.#control;
  }

  get storage(): RaftStorage {
    return this.#storage;
  }

  get timing(): Timing {
    return this.#timing;
  }

  /** The actual HTTP port (useful when the configured port was 0). */
  get port(): number {
    return this.#server.port;
  }

  /** Address of a peer (members, conf changes seen in the log, senders). */
  peerAddress(id: number): PeerAddress | undefined {
    return this.#addresses.get(id);
  }

  #raftConfig() {
    const t = this.#timing;
    return {
      id: this.nodeId,
      heartbeatTicks: t.heartbeatTicks,
      electionTicks: t.electionTicks,
      electionJitterTicks: t.electionJitterTicks,
      appendBatchSize: t.appendBatchSize,
      maxInflight: t.maxInflight,
      snapshotThreshold: t.snapshotThreshold,
      failoverEnabled: this.#settings.failoverEnabled,
      randomInt: (n: number) => Math.floor(Math.random() * n),
    };
  }

  #refreshSettings(): void {
    const before = this.#settings;
    this.#settings = effectiveSettings(this.config, this.#applied.settings, (name, error) => {
      this.log.warn("ignoring an invalid cluster setting", { name, error: error.message });
    });
    const timing = timingFor(this.#settings);
    const changedTick = this.#timing && timing.tickMs !== this.#timing.tickMs;
    this.#timing = timing;
    if (!before || !this.#driver) return;
    this.#driver.input(() => {
      this.#driver.node.setTiming(timing);
      this.#driver.node.setFailoverEnabled(this.#settings.failoverEnabled);
    });
    if (changedTick) this.#startTicking();
    if (before.heartbeatIntervalMs !== this.#settings.heartbeatIntervalMs && this.#publishTimer) {
      clearInterval(this.#publishTimer);
      this.#publishTimer = setInterval(
        () => this.#publishSoon(),
        this.#settings.heartbeatIntervalMs,
      );
    }
    if (before.failoverEnabled !== this.#settings.failoverEnabled) {
      this.event(this.#settings.failoverEnabled ? "failover_resumed" : "failover_paused", {
        detail: this.#settings.failoverEnabled
          ? "followers start elections again when the leader is silent"
          : "followers do not start elections while they know a leader",
      });
    }
  }

  #startTicking(): void {
    if (this.#tickTimer !== undefined) clearInterval(this.#tickTimer);
    let last = performance.now();
    this.#tickTimer = setInterval(() => {
      const now = performance.now();
      // Catch up on late timers, but never more than an election timeout at once.
      const due = Math.min(
        Math.floor((now - last) / this.#timing.tickMs),
        this.#timing.electionTicks,
      );
      if (due <= 0) return;
      last += due * this.#timing.tickMs;
      if (now - last > this.#timing.tickMs * this.#timing.electionTicks) last = now;
      if (!this.#storageOk) return; // a node that cannot persist does not lead or campaign
      this.#driver.input(() => {
        for (let i = 0; i < due; i++) this.#driver.node.tick();
      });
    }, this.#timing.tickMs);
  }

  #receive(messages: Message[]): void {
    this.#stats.rpcReceived += messages.length;
    const now = performance.now();
    for (const m of messages) {
      this.#lastContactFrom.set(m.from, now);
      if (m.type === "timeout_now") this.#handoverFrom = { from: m.from, at: now };
    }
    if (this.#stopping && !this.#driver) return;
    this.#driver.input(() => {
      for (const m of messages) this.#driver.node.step(m);
    });
  }

  #send(messages: Message[]): void {
    if (!this.#storageOk) return;
    const byPeer = new Map<number, Message[]>();
    for (const m of messages) {
      let list = byPeer.get(m.to);
      if (!list) byPeer.set(m.to, list = []);
      list.push(m);
    }
    for (const [to, list] of byPeer) {
      const client = this.#client(to);
      if (!client) {
        this.#stats.rpcErrors += list.length;
        this.#driver.input(() => this.#driver.node.reportUnreachable(to));
        continue;
      }
      this.#stats.rpcSent += list.length;
      client.send(list);
    }
  }

  #client(id: number): PeerClient | null {
    const existing = this.#clients.get(id);
    if (existing) return existing;
    const addr = this.#addresses.get(id);
    if (!addr) return null;
    const client = new PeerClient({
      nodeId: this.nodeId,
      peerId: id,
      baseUrl: peerBaseUrl(addr, this.tlsEnabled),
      ...(this.tlsEnabled ? { tls: { caFile: this.config.settings.tlsCaFile } } : {}),
      clusterId: () => this.#applied.clusterId,
      authSecret: this.config.settings.authSecret,
      metrics: this.metrics,
      selfAddress: { address: this.config.settings.address, port: this.config.settings.port },
      onUnreachable: (peer) => {
        this.#stats.rpcErrors++;
        this.#driver.input(() => this.#driver.node.reportUnreachable(peer));
      },
      onSnapshotResult: (peer, ok) =>
        this.#driver.input(() => this.#driver.node.reportSnapshot(peer, ok)),
    });
    this.#clients.set(id, client);
    return client;
  }

  /** A client to a member's agent (for forwarding commands). */
  peerClient(id: number): PeerClient | null {
    return this.#client(id);
  }

  #learnAddresses(entry: Entry): void {
    if (entry.type !== "conf_change") return;
    const item = toConfChange(entry);
    if (!item || item.kind === "remove_node") return;
    const addr = parseContext(item.context);
    if (!addr) return;
    const known = this.#addresses.get(item.nodeId);
    if (known && known.address === addr.address && known.port === addr.port) return;
    this.#addresses.set(item.nodeId, addr);
    const client = this.#clients.get(item.nodeId);
    if (client) {
      this.#clients.delete(item.nodeId);
      client.close().catch(() => {});
    }
  }

  #hooks(): DriverHooks {
    return {
      send: (messages) => this.#send(messages),
      persisted: (entries, snapshotInstalled) => {
        if (entries.length > 0) {
          this.#stats.entriesAppended += entries.length;
          this.#stats.appendBatches++;
          this.#stats.appendedInBatches += entries.length;
          const first = entries[0]!.index;
          for (const index of [...this.#entryBytes.keys()]) {
            if (index >= first) this.#entryBytes.delete(index);
          }
          for (const e of entries) {
            this.#entryBytes.set(e.index, e.data.length);
            this.#learnAddresses(e);
          }
        }
        if (snapshotInstalled) {
          this.#stats.snapshotsInstalled++;
          this.#afterStateMachineChange().catch((error) =>
            this.log.error("cannot reload the applied state", { error: String(error) })
          );
        }
      },
      applied: (items, results) => this.#onApplied(items, results),
      softStateChanged: (previous, next) => this.#onSoftState(previous, next),
      storageHealth: (ok, error) => this.#setStorageOk(ok, error),
      cycled: () => {
        this.#maybeSnapshot();
        this.#publishDirty = true;
      },
      persistTimed: (ms) => {
        const samples = this.#stats.persistMs;
        samples.push(ms);
        if (samples.length > PERSIST_SAMPLES_MAX) samples.shift();
      },
    };
  }

  #setStorageOk(ok: boolean, error: unknown): void {
    if (this.#storageOk === ok) return;
    this.#storageOk = ok;
    if (ok) {
      this.log.info("PostgreSQL is reachable again");
      this.event("storage_recovered", { detail: "PostgreSQL is reachable again" });
    } else {
      this.log.error(
        "PostgreSQL is unavailable: this node stops voting, acknowledging and leading",
        {
          error: String(error),
        },
      );
      this.event("storage_unavailable", { detail: String(error) });
    }
  }

  #onApplied(items: ApplyItem[], results: ApplyResult[]): void {
    this.#stats.entriesApplied += results.filter((r) => r.applied).length;
    this.#stats.entriesCommitted += items.length;
    let reload = false;
    for (const item of items) {
      const c = item.command;
      switch (c.op) {
        case "conf_change": {
          reload = true;
          const addr = parseContext(c.change.context);
          const where = addr ? `${addr.address}:${addr.port}` : "";
          const type = c.change.kind === "add_learner"
            ? "node_added"
            : c.change.kind === "add_voter"
            ? "node_promoted"
            : "node_removed";
          this.event(type, {
            nodeId: c.change.nodeId,
            detail: `${c.change.kind} node ${c.change.nodeId} ${where} at index ${item.index}`
              .trim(),
          });
          if (c.change.kind === "remove_node") {
            const client = this.#clients.get(c.change.nodeId);
            this.#clients.delete(c.change.nodeId);
            client?.close().catch(() => {});
            if (c.change.nodeId === this.nodeId) {
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
    if (reload) {
      // Keep the in-memory view (members, settings, cluster id) in step with the tables.
      this.#afterStateMachineChange().catch((error) =>
        this.log.error("cannot reload the applied state", { error: String(error) })
      );
    }
  }

  #reloading: Promise<void> = Promise.resolve();

  /** Reload the applied state; resolves once done (waiters of commands rely on it). */
  #afterStateMachineChange(): Promise<void> {
    this.#reloading = this.#reloading.then(async () => {
      this.#applied = await this.#storage.appliedState();
      for (const m of this.#applied.members) this.#addresses.set(m.nodeId, m);
      this.#refreshSettings();
      this.#publishDirty = true;
      await this.#control.publishConfig(
        effectiveConfigRows(this.config, this.#applied.settings),
      ).catch(() => {});
    });
    return this.#reloading;
  }

  /** Resolves when the in-memory applied state reflects everything applied so far. */
  appliedStateSettled(): Promise<void> {
    return this.#reloading;
  }

  #onSoftState(previous: SoftState, next: SoftState): void {
    const term = this.#driver.node.status().term;
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
      this.#driver.failReads(new NotLeaderError(next.leaderId));
      if (next.leaderId !== NONE && this.#commands.transferTarget === next.leaderId) {
        this.event("leadership_transferred", {
          nodeId: next.leaderId,
          detail: `leadership moved from node ${this.nodeId} to node ${next.leaderId}`,
        });
      }
    }
    this.#publishSoon(true);
  }

  #snapshotting = false;

  #maybeSnapshot(): void {
    if (this.#snapshotting || !this.#driver.node.snapshotDue()) return;
    this.#snapshotting = true;
    (async () => {
      const { index, data } = await this.#storage.snapshotData();
      // A snapshot installed from the leader meanwhile may already cover `index`.
      const snapshot = await this.#driver.call((node) =>
        index > node.status().snapshotIndex ? node.createSnapshot(index, data) : null
      );
      if (!snapshot) return;
      await this.#storage.saveSnapshot(snapshot);
      for (const i of [...this.#entryBytes.keys()]) if (i <= index) this.#entryBytes.delete(i);
      this.#stats.snapshotsTaken++;
      this.#stats.lastSnapshotIndex = index;
      this.#stats.lastSnapshotAt = new Date();
      this.event("snapshot_taken", { detail: `snapshot at index ${index} (${data.length} bytes)` });
    })().catch((error) => this.log.warn("snapshot failed", { error: String(error) }))
      .finally(() => (this.#snapshotting = false));
  }

  /** Record an event (written to pgraft.events with the next status publish). */
  event(type: string, fields: { nodeId?: number; detail?: string } = {}): void {
    const term = this.#driver ? this.#driver.node.status().term : null;
    this.#control.recordEvent({
      at: new Date(),
      type,
      term,
      nodeId: fields.nodeId ?? this.nodeId,
      detail: fields.detail ?? "",
    });
    this.log.info(`event ${type}`, {
      detail: fields.detail ?? "",
      subject: fields.nodeId ?? this.nodeId,
    });
    this.#publishSoon(true);
  }

  #publishSoon(force = false): void {
    if (force) this.#publishDirty = true;
    if (this.#publishing || this.#stopping) return;
    this.#publishing = this.publishNow().finally(() => (this.#publishing = null));
  }

  /** Publish the status and events now (resolves once written, or failed). */
  async publishNow(): Promise<void> {
    try {
      await this.#control.flushEvents();
      await this.#control.publish(this.statusSnapshot());
      if (!this.#storageOk) this.#setStorageOk(true, null);
    } catch (error) {
      this.#setStorageOk(false, error);
    }
  }

  /** What the read functions show. */
  statusSnapshot(): StatusSnapshot {
    const st = this.#driver.node.status();
    const s = this.#settings;
    const now = performance.now();
    const nowDate = new Date();
    const voters = new Set(st.membership.voters);
    const learners = new Set(st.membership.learners);
    const electionMs = s.electionTimeoutMs;
    const progress = new Map(st.progress.map((p) => [p.id, p]));
    const contactAge = (id: number) => {
      const at = this.#lastContactFrom.get(id);
      return at === undefined ? null : now - at;
    };
    const ids = new Set<number>([
      ...voters,
      ...learners,
      ...this.#applied.members.map((m) => m.nodeId),
    ]);
    const members: MemberStatusRow[] = [];
    for (const id of [...ids].sort((a, b) => a - b)) {
      const addr = this.#addresses.get(id) ?? { address: "", port: 0 };
      const isVoter = voters.has(id);
      let state: string;
      let matchIndex: number | null = null;
      let nextIndex: number | null = null;
      let commitIndex: number | null = null;
      let lastContactAt: Date | null = null;
      if (id === this.nodeId) {
        state = selfState(st);
        matchIndex = st.lastIndex;
        nextIndex = st.lastIndex + 1;
        commitIndex = st.commitIndex;
        lastContactAt = st.role === "leader" ? nowDate : null;
      } else if (st.role === "leader") {
        const p = progress.get(id);
        const age = contactAge(id);
        lastContactAt = age === null ? null : new Date(nowDate.getTime() - age);
        matchIndex = p?.matchIndex ?? null;
        nextIndex = p?.nextIndex ?? null;
        commitIndex = p ? Math.min(p.matchIndex, st.commitIndex) : null;
        state = age === null || age > electionMs
          ? "unreachable"
          : learners.has(id)
          ? "learner"
          : "follower";
      } else {
        const age = contactAge(id);
        if (id === st.leaderId) {
          state = "leader";
          lastContactAt = age === null ? null : new Date(nowDate.getTime() - age);
        } else state = learners.has(id) ? "learner" : voters.has(id) ? "follower" : "unknown";
      }
      members.push({
        nodeId: id,
        address: addr.address,
        port: addr.port,
        state,
        isVoter,
        matchIndex,
        nextIndex,
        commitIndex,
        lastContactAt,
        lagEntries: matchIndex === null ? null : Math.max(0, st.lastIndex - matchIndex),
        lagBytes: matchIndex === null ? null : this.#bytesAfter(matchIndex, st.lastIndex),
      });
    }
    const samples = [...this.#stats.persistMs].sort((a, b) => a - b);
    const pct = (q: number) =>
      samples.length ? samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]! : 0;
    return {
      node: {
        nodeId: this.nodeId,
        address: this.config.settings.address,
        port: this.#server?.port ?? this.config.settings.port,
        role: selfState(st),
        term: st.term,
        leaderId: st.leaderId === NONE ? null : st.leaderId,
        commitIndex: st.commitIndex,
        lastApplied: this.#driver.appliedIndex,
        firstIndex: st.firstIndex,
        lastIndex: st.lastIndex,
        snapshotIndex: st.snapshotIndex,
        quorumMet: this.#quorumMet(st, now),
        electionsTriggered: st.electionsStarted,
        failoverEnabled: st.failoverEnabled,
        clusterId: this.#applied.clusterId,
        clusterName: s.clusterName,
        storageOk: this.#storageOk,
        heartbeatIntervalMs: s.heartbeatIntervalMs,
        electionTimeoutMs: s.electionTimeoutMs,
        noLeaderSince: this.#noLeaderSince,
        leaderSince: this.#leaderSince,
        agentPid: Deno.pid,
        agentStartedAt: this.startedAt,
        agentVersion: VERSION,
        staleAfterMs: Math.max(1000, 5 * s.heartbeatIntervalMs),
      },
      members,
      stats: {
        entriesAppended: this.#stats.entriesAppended,
        entriesCommitted: this.#stats.entriesCommitted,
        entriesApplied: this.#stats.entriesApplied,
        proposals: this.#stats.proposals,
        snapshotsTaken: this.#stats.snapshotsTaken,
        snapshotsInstalled: this.#stats.snapshotsInstalled,
        lastSnapshotIndex: Math.max(this.#stats.lastSnapshotIndex, st.snapshotIndex),
        lastSnapshotAt: this.#stats.lastSnapshotAt,
        snapshotThreshold: s.snapshotThreshold,
        rpcSent: this.#stats.rpcSent,
        rpcReceived: this.#stats.rpcReceived,
        rpcErrors: this.#stats.rpcErrors,
        rpcRejected: this.#stats.rpcRejected,
        appendBatches: this.#stats.appendBatches,
        avgAppendBatch: this.#stats.appendBatches
          ? Math.round(100 * this.#stats.appendedInBatches / this.#stats.appendBatches) / 100
          : 0,
        persistP50Ms: Math.round(pct(0.5) * 1000) / 1000,
        persistP99Ms: Math.round(pct(0.99) * 1000) / 1000,
      },
    };
  }

  #bytesAfter(match: number, last: number): number {
    let bytes = 0;
    for (let i = match + 1; i <= last; i++) bytes += this.#entryBytes.get(i) ?? 0;
    return bytes;
  }

  #quorumMet(st: Status, now: number): boolean {
    if (!this.#storageOk) return false;
    const voters = st.membership.voters;
    if (voters.length === 0) return false;
    const need = Math.floor(voters.length / 2) + 1;
    const electionMs = this.#settings.electionTimeoutMs;
    if (st.role === "leader") {
      let alive = 0;
      for (const id of voters) {
        if (id === this.nodeId) alive++;
        else {
          const at = this.#lastContactFrom.get(id);
          if (at !== undefined && now - at <= electionMs) alive++;
        }
      }
      return alive >= need;
    }
    // A follower that hears from a leader knows a quorum stands behind it (check-quorum).
    if (st.leaderId === NONE) return false;
    const at = this.#lastContactFrom.get(st.leaderId);
    return at !== undefined && now - at <= electionMs;
  }

  #health(): { ok: boolean; detail: string } {
    if (!this.#storageOk) return { ok: false, detail: "PostgreSQL unavailable" };
    const st = this.#driver.node.status();
    return { ok: true, detail: `${st.role} term ${st.term} leader ${st.leaderId}` };
  }

  /** GET /status. */
  httpStatus(): unknown {
    const snap = this.statusSnapshot();
    return {
      node: snap.node.nodeId,
      role: snap.node.role,
      term: snap.node.term,
      leader: snap.node.leaderId,
      commitIndex: snap.node.commitIndex,
      appliedIndex: snap.node.lastApplied,
      lastIndex: snap.node.lastIndex,
      clusterId: snap.node.clusterId,
      clusterName: snap.node.clusterName,
      quorumMet: snap.node.quorumMet,
      failoverEnabled: snap.node.failoverEnabled,
      storageOk: snap.node.storageOk,
      version: VERSION,
      peers: snap.members.map((m) => ({
        id: m.nodeId,
        address: m.address,
        port: m.port,
        state: m.state,
        voter: m.isVoter,
        match: m.matchIndex,
        next: m.nextIndex,
        lagEntries: m.lagEntries,
      })),
    };
  }

  // ---- bootstrap -----------------------------------------------------------

  /**
   * `pgraft_init()`: make this node a one-member cluster and its leader. The
   * node must have no Raft state yet.
   */
  async initCluster(): Promise<{ clusterId: string }> {
    const st = this.#driver.node.status();
    if (st.term !== 0 || st.lastIndex !== 0 || this.#applied.clusterId !== null) {
      throw new Error(
        `node ${this.nodeId} already has Raft state (term ${st.term}); it cannot bootstrap a cluster`,
      );
    }
    const self = { address: this.config.settings.address, port: this.config.settings.port };
    const state = bootstrapState([{ id: this.nodeId, context: JSON.stringify(self) }]);
    await this.#storage.persist({
      snapshot: null,
      entries: state.entries,
      hardState: state.hardState,
    });
    // Swap in a core built from the bootstrapped state, then campaign.
    this.#driver.stop();
    const node = new RaftNode(this.#raftConfig(), state);
    this.#driver = new Driver(node, this.#storage, this.#hooks());
    for (const e of state.entries) this.#entryBytes.set(e.index, e.data.length);
    await this.#driver.call((n) => n.campaign());
    await this.waitFor(
      () => this.#driver.softState.role === "leader",
      5_000,
      "this node to become leader",
    );
    const clusterId = crypto.randomUUID();
    const result = this.#driver.propose(
      encodeCommand({ op: "init_cluster", clusterId, clusterName: this.#settings.clusterName }),
    );
    await result;
    await this.appliedStateSettled();
    return { clusterId };
  }

  /** Wait until `predicate` holds (checked after every Ready and every 10 ms), bounded. */
  async waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Propose a conf change and wait until it is applied here. */
  proposeConfChange(change: ConfChange): Promise<ApplyResult> {
    this.#stats.proposals++;
    return this.#driver.proposeWith((node) => node.proposeConfChange(change));
  }

  /** Propose a state machine command and wait until it is applied here. */
  propose(data: Uint8Array): Promise<ApplyResult> {
    this.#stats.proposals++;
    return this.#driver.propose(data);
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
    const st = this.#driver.node.status();
    if (st.role !== "leader") return;
    const candidates = st.progress
      .filter((p) => !p.isLearner && st.membership.voters.includes(p.id))
      .sort((a, b) => b.matchIndex - a.matchIndex);
    const target = candidates[0];
    if (!target) return;
    this.log.info("handing leadership over before stopping", { target: target.id });
    await this.#driver.call((node) => node.transferLeadership(target.id));
    await this.waitFor(
      () => this.#driver.softState.role !== "leader",
      2 * this.#settings.electionTimeoutMs,
      `node ${target.id} to take over`,
    );
    this.event("leadership_transferred", {
      nodeId: target.id,
      detail: `node ${this.nodeId} handed leadership to node ${target.id} before stopping`,
    });
    await this.publishNow();
  }

  async #shutdown(): Promise<void> {
    this.#stopping = true;
    if (this.#tickTimer !== undefined) clearInterval(this.#tickTimer);
    if (this.#publishTimer !== undefined) clearInterval(this.#publishTimer);
    this.#commands?.stop();
    this.#driver?.stop();
    await this.#driver?.whenIdle();
    await this.#publishing?.catch(() => {});
    await this.#server?.shutdown().catch(() => {});
    await Promise.all([...this.#clients.values()].map((c) => c.close().catch(() => {})));
    this.#clients.clear();
    await this.#control?.flushEvents().catch(() => {});
    await this.#control?.close().catch(() => {});
    await this.#storage?.close().catch(() => {});
    this.log.info("agent stopped");
  }
}

function selfState(st: Status): string {
  if (st.removed) return "removed";
  if (st.membership.learners.includes(st.id)) return "learner";
  if (!st.membership.voters.includes(st.id) && st.role !== "leader") {
    return st.term === 0 && st.lastIndex === 0 ? "waiting" : "follower";
  }
  return st.role === "pre_candidate" ? "candidate" : st.role;
}

function toConfChange(entry: Entry): ConfChange | null {
  try {
    return JSON.parse(new TextDecoder().decode(entry.data)) as ConfChange;
  } catch {
    return null;
  }
}

/** Parse a conf change context: {"address": string, "port": number}. */
export function parseContext(context: string): PeerAddress | null {
  try {
    const value = JSON.parse(context) as { address?: unknown; port?: unknown };
    if (typeof value.address !== "string" || typeof value.port !== "number") return null;
    return { address: value.address, port: value.port };
  } catch {
    return null;
  }
}

/** The base URL of a peer's agent (https when this cluster uses TLS). */
export function peerBaseUrl(addr: PeerAddress, tls = false): string {
  const host = addr.address.includes(":") && !addr.address.startsWith("[")
    ? `[${addr.address}]`
    : addr.address;
  return `${tls ? "https" : "http"}://${host}:${addr.port}`;
}

export type { AppendRequest };

/** Compare two strings in time independent of where they differ (for secrets). */
function sameText(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}
