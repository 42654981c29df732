/**
 * Every write operation of the node, each written once: validate (with the
 * rules of lib/state/limits.ts and lib/config), encode, propose, and answer
 * once it is applied — as etcd's `raftRequest`. The HTTP API calls the
 * key-value operations directly on the leader; the SQL command queue (and a
 * follower forwarding a command) goes through {@link Ops.execute}, which runs
 * the same operation on the leader (forwarding it there from a follower) and
 * then waits until its effect is visible on this node.
 *
 * @module
 */

import { deadline, poll, retry, TimeoutError } from "../async.ts";
import {
  bootstrapState,
  type ConfChange,
  ConfChangeError,
  NODE_ID_MAX,
  type NodeId,
  NONE,
  NotLeaderError,
} from "../raft/mod.ts";
import type { PgraftSettings } from "../config/mod.ts";
import {
  type ApplyResult,
  type Command,
  encodeCommand,
  encodeMemberContext,
  kvKeyProblem,
  memberAddressProblem,
  type Problem,
} from "../state/mod.ts";
import { type KvPair, type KvWriteResult, RefusedError, UnavailableError } from "../api/mod.ts";
import type { CommandKind } from "../postgres/command_queue.ts";
import type { Peers } from "./peers.ts";
import { ProposalLostError, type Replica, ReplicaStoppedError } from "./replica.ts";
import { validateClusterSetting } from "./settings.ts";

/** What an operation answers: the log index that makes its effect visible, and a result for SQL. */
export interface OpReply {
  /** log index whose application makes the effect visible (0 when nothing was proposed) */
  index: number;
  result: Record<string, unknown>;
}

/** What {@link Ops} works with. */
export interface OpsDeps {
  nodeId: NodeId;
  /** this node's advertised peer address (bootstrap records it) */
  self: { address: string; port: number };
  replica: Replica;
  peers: Peers;
  /** the effective settings now (the file's, overlaid with the cluster's) */
  settings: () => PgraftSettings;
  /**
   * with manage_postgres: a leadership transfer is a switchover of the
   * PostgreSQL primary (lib/agent/ha_runner.ts); resolves once the target leads
   */
  switchover?: (target: NodeId) => Promise<void>;
}

/** Commands a follower may forward to the leader. */
const FORWARDABLE: ReadonlySet<string> = new Set<CommandKind>([
  "add_node",
  "remove_node",
  "transfer_leadership",
  "set_config",
  "kv_put",
  "kv_delete",
]);

/** How long a membership change may wait for one already in flight to be applied. */
const CONF_CHANGE_RETRY_MS = 10_000;

/** Forwarded request ids remembered to answer a resent request without running it twice. */
const FORWARDED_REMEMBERED_MAX = 1024;

/** A refusal with a message for the operator (HTTP status 400 unless said otherwise). */
function refuse(
  message: string,
  sqlstate = "22023",
  status: Problem["status"] = 400,
): RefusedError {
  return new RefusedError({ status, sqlstate, message, hint: "" });
}

/** Remembers answers to forwarded requests by id, so a resent request runs once. */
export class ForwardedRequests<T> {
  readonly #answers = new Map<string, Promise<T>>();

  /** The answer to request `id`: the first one's, or `run()`'s for a new id (null id: always run). */
  answer(id: string | null, run: () => Promise<T>): Promise<T> {
    const seen = id === null ? undefined : this.#answers.get(id);
    if (seen) return seen;
    const reply = run();
    if (id !== null) {
      this.#answers.set(id, reply);
      if (this.#answers.size > FORWARDED_REMEMBERED_MAX) {
        this.#answers.delete(this.#answers.keys().next().value!);
      }
    }
    return reply;
  }
}

/** The node's operations. */
export class Ops {
  readonly #deps: OpsDeps;
  readonly #forwarded = new ForwardedRequests<OpReply | { error: string }>();
  /** the node a leadership transfer asked by an operator is under way to, or NONE */
  transferTarget: NodeId = NONE;

  constructor(deps: OpsDeps) {
    this.#deps = deps;
  }

  // ---- the operations (leader) ----------------------------------------------------

  /** `PUT /v1/kv/{key}`, `pgraft_kv_put()`. */
  async kvPut(key: string, value: Uint8Array): Promise<KvWriteResult> {
    // The rule apply enforces (key, value, quota), checked here to refuse early.
    const problem = this.#deps.replica.state.kvPutProblem(key, value.length);
    if (problem) throw new RefusedError(problem);
    const result = await this.#propose({ op: "kv_put", key, value });
    return {
      index: result.index,
      revision: result.revision ?? result.index,
      existed: !!result.existed,
    };
  }

  /** `DELETE /v1/kv/{key}`, `pgraft_kv_delete()`. */
  async kvDelete(key: string): Promise<KvWriteResult> {
    const problem = kvKeyProblem(key);
    if (problem) throw new RefusedError(problem);
    const result = await this.#propose({ op: "kv_delete", key });
    return {
      index: result.index,
      revision: result.revision ?? result.index,
      existed: !!result.existed,
    };
  }

  /** `pgraft_add_node()`: the node joins as a learner (promoted once caught up). */
  async addNode(nodeId: NodeId, address: string, port: number): Promise<OpReply> {
    const problem = memberAddressProblem(address, port);
    if (problem) throw new RefusedError(problem);
    const members = this.#deps.replica.state.members();
    const same = members.find((m) => m.nodeId === nodeId);
    if (same) {
      throw refuse(`node ${nodeId} is already a member (${same.address}:${same.port})`, "23505");
    }
    const clash = members.find((m) => m.address === address && m.port === port);
    if (clash) {
      throw refuse(`address ${address}:${port} is already used by node ${clash.nodeId}`, "23505");
    }
    const context = encodeMemberContext({ address, port });
    const result = await this.#confChange({ kind: "add_learner", nodeId, context });
    return { index: result.index, result: { node_id: nodeId, index: result.index } };
  }

  /** `pgraft_remove_node()`. */
  async removeNode(nodeId: NodeId): Promise<OpReply> {
    if (this.#deps.replica.state.member(nodeId) === null) {
      throw refuse(`node ${nodeId} is not a member of the cluster`, "42704");
    }
    const result = await this.#confChange({ kind: "remove_node", nodeId, context: "" });
    return { index: result.index, result: { node_id: nodeId, index: result.index } };
  }

  /** `pgraft_transfer_leadership()`: resolves once the target leads (or the transfer was abandoned). */
  async transferLeadership(target: NodeId): Promise<OpReply> {
    if (target === this.#deps.nodeId) return { index: 0, result: { node_id: target } };
    const voters = this.#deps.replica.status().membership.voters;
    if (!voters.includes(target)) {
      throw refuse(`node ${target} is not a voter: only a voter can lead`, "42704");
    }
    this.transferTarget = target;
    try {
      if (this.#deps.switchover) {
        await this.#deps.switchover(target);
        return { index: 0, result: { node_id: target } };
      }
      await this.#deps.replica.transferLeadership(target);
      await poll(() => this.#deps.replica.softState.leaderId === target, {
        timeoutMs: 2 * this.#electionTimeoutMs(),
        what: `node ${target} to take over leadership (the transfer was abandoned)`,
      });
    } finally {
      this.transferTarget = NONE;
    }
    return { index: 0, result: { node_id: target } };
  }

  /** `pgraft_set_config()`: a cluster-wide setting through the log. */
  async setConfig(name: string, value: string): Promise<OpReply> {
    let canonical: string;
    try {
      canonical = validateClusterSetting(name, value, this.#deps.settings());
    } catch (error) {
      throw refuse((error as Error).message);
    }
    const result = await this.#propose({ op: "set_config", name, value: canonical });
    return { index: result.index, result: { name, value: canonical, index: result.index } };
  }

  /**
   * `pgraft_init()`: make this node a one-member cluster and its leader. The
   * node must have no Raft state yet.
   */
  async init(): Promise<OpReply> {
    const { replica, nodeId } = this.#deps;
    const st = replica.status();
    if (st.term !== 0 || st.lastIndex !== 0 || replica.state.clusterId !== null) {
      throw refuse(
        `node ${nodeId} already has Raft state (term ${st.term}); it cannot bootstrap a cluster`,
        "55000",
      );
    }
    await replica.bootstrap(
      bootstrapState([{ id: nodeId, context: encodeMemberContext(this.#deps.self) }]),
    );
    await replica.campaign();
    await poll(() => replica.softState.role === "leader", {
      timeoutMs: 5_000,
      what: "this node to become leader",
    });
    const clusterId = crypto.randomUUID();
    const clusterName = this.#deps.settings().clusterName;
    const result = await this.#propose({ op: "init_cluster", clusterId, clusterName });
    return { index: result.index, result: { clusterId } };
  }

  // ---- reads -------------------------------------------------------------------

  /** Wait until this node's copy holds every write acknowledged before the call (thesis §6.4). */
  async linearizableRead(): Promise<void> {
    const { replica, peers } = this.#deps;
    if (replica.softState.role === "leader") {
      await this.#unavailableOnStop(replica.readBarrier());
      return;
    }
    const leader = replica.softState.leaderId;
    const client = leader === NONE ? null : peers.client(leader);
    if (!client) throw new NotLeaderError(leader);
    const reply = await client.rpc("read_index", {}, 2 * this.#electionTimeoutMs()) as {
      index?: number;
      error?: string;
    };
    if (typeof reply.index !== "number") {
      throw new UnavailableError(reply.error ?? "malformed read_index reply", "unknown");
    }
    await replica.waitApplied(reply.index);
  }

  /** The leader's side of a follower's linearizable read (RPC `read_index`). */
  async readIndexForPeer(): Promise<{ index: number } | { error: string }> {
    try {
      return { index: await this.#deps.replica.readBarrier() };
    } catch (error) {
      return { error: (error as Error).message };
    }
  }

  /** This node's copy of a key. */
  kvGet(key: string): Promise<KvPair | null> {
    return Promise.resolve(this.#deps.replica.state.kvGet(key));
  }

  /** This node's copy of the keys starting with `prefix`, in code point order. */
  kvList(prefix: string, limit: number): Promise<KvPair[]> {
    return Promise.resolve(this.#deps.replica.state.kvList(prefix, limit));
  }

  // ---- commands: the SQL queue and forwarding --------------------------------------

  /**
   * Run a command of the SQL queue: on the leader here, else forwarded to it;
   * resolves once the effect is visible on this node (DESIGN.md: a command
   * counts as finished when its effect is visible).
   */
  async execute(kind: CommandKind, args: Record<string, unknown>): Promise<OpReply> {
    if (kind === "init") return await this.init();
    const leader = await this.#awaitLeader();
    const reply = leader === this.#deps.nodeId
      ? await this.run(kind, args)
      : await this.#forward(leader, kind, args);
    const waitMs = 2 * this.#electionTimeoutMs();
    await deadline(
      this.#deps.replica.waitApplied(reply.index),
      waitMs,
      "the change to be applied on this node",
    );
    if (kind === "transfer_leadership") {
      const target = Number(args.node_id);
      await poll(() => this.#deps.replica.softState.leaderId === target, {
        timeoutMs: waitMs,
        what: `node ${target} to lead`,
      });
    }
    return reply;
  }

  /**
   * A command forwarded by a follower (RPC `command`). The same request may
   * arrive twice (an HTTP client resends a request whose connection broke
   * before the answer): a recent request id gets the first answer instead of
   * running the command again.
   */
  executeForwarded(body: unknown): Promise<OpReply | { error: string }> {
    if (typeof body !== "object" || body === null) {
      return Promise.resolve({ error: "malformed command" });
    }
    const { kind, args, requestId } = body as Record<string, unknown>;
    if (typeof kind !== "string" || !FORWARDABLE.has(kind)) {
      return Promise.resolve({ error: `unknown command kind: ${kind}` });
    }
    if (typeof args !== "object" || args === null) {
      return Promise.resolve({ error: "malformed command arguments" });
    }
    const id = typeof requestId === "string" && requestId.length <= 64 ? requestId : null;
    return this.#forwarded.answer(
      id,
      () =>
        this.run(kind as CommandKind, args as Record<string, unknown>)
          .catch((error) => ({ error: (error as Error).message })),
    );
  }

  /** Run a command on this node, which must lead: parse its arguments, then the operation. */
  async run(kind: CommandKind, args: Record<string, unknown>): Promise<OpReply> {
    if (this.#deps.replica.softState.role !== "leader") {
      throw new NotLeaderError(this.#deps.replica.softState.leaderId);
    }
    switch (kind) {
      case "add_node":
        return await this.addNode(
          nodeIdArg(args),
          stringArg(args, "address"),
          intArg(args, "port", 1, 65535),
        );
      case "remove_node":
        return await this.removeNode(nodeIdArg(args));
      case "transfer_leadership":
        return await this.transferLeadership(nodeIdArg(args));
      case "set_config":
        return await this.setConfig(stringArg(args, "name"), stringArg(args, "value"));
      case "kv_put": {
        const key = stringArg(args, "key");
        const r = await this.kvPut(key, new TextEncoder().encode(stringArg(args, "value", true)));
        return { index: r.index, result: { key, revision: r.revision } };
      }
      case "kv_delete": {
        const key = stringArg(args, "key");
        const r = await this.kvDelete(key);
        return { index: r.index, result: { key, existed: r.existed } };
      }
      default:
        throw refuse(`command ${kind} cannot run on the leader`);
    }
  }

  async #awaitLeader(): Promise<NodeId> {
    try {
      return await poll(
        () =>
          this.#deps.replica.softState.leaderId !== NONE && this.#deps.replica.softState.leaderId,
        { timeoutMs: 2 * this.#electionTimeoutMs(), what: "a leader" },
      );
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
      throw new UnavailableError(
        "no leader is known: a majority of voters must be running and reachable",
        "not applied",
      );
    }
  }

  async #forward(
    leader: NodeId,
    kind: CommandKind,
    args: Record<string, unknown>,
  ): Promise<OpReply> {
    const client = this.#deps.peers.client(leader);
    if (!client) {
      throw new UnavailableError(
        `the address of leader node ${leader} is not known yet`,
        "not applied",
      );
    }
    const reply = await client.rpc(
      "command",
      { kind, args, requestId: crypto.randomUUID() },
      4 * this.#electionTimeoutMs(),
    ) as OpReply | { error: string };
    if ("error" in reply) throw new Error(reply.error);
    if (typeof reply.index !== "number") throw new Error("malformed reply from the leader");
    return reply;
  }

  // ---- proposing ---------------------------------------------------------------

  #electionTimeoutMs(): number {
    return this.#deps.settings().electionTimeoutMs;
  }

  /** Propose a command; resolves with its apply result, or throws why it changed nothing. */
  async #propose(command: Command): Promise<ApplyResult & { ok: true }> {
    const result = await this.#unavailableOnStop(
      this.#deps.replica.propose(encodeCommand(command)),
    );
    if (!result.ok) throw new RefusedError(result.problem);
    return result;
  }

  /** Propose a membership change, waiting (bounded) while another one is still being applied. */
  #confChange(change: ConfChange): Promise<ApplyResult> {
    // Membership changes are never refused at apply: the core checked them when proposed.
    return this.#unavailableOnStop(retry(() => this.#deps.replica.proposeConfChange(change), {
      retryable: (error) =>
        error instanceof ConfChangeError &&
        /pending|not yet|committed an entry/i.test(error.message),
      delaysMs: [20],
      signal: AbortSignal.timeout(CONF_CHANGE_RETRY_MS),
    }));
  }

  /** Map the replica's "could not do it" errors to the API's. */
  async #unavailableOnStop<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (error) {
      if (error instanceof ProposalLostError) {
        throw new UnavailableError(error.message, "not applied", { cause: error });
      }
      if (error instanceof ReplicaStoppedError) {
        throw new UnavailableError(error.message, "unknown", { cause: error });
      }
      if (error instanceof ConfChangeError) throw refuse(error.message, "55000");
      throw error;
    }
  }
}

function intArg(args: Record<string, unknown>, name: string, min: number, max: number): number {
  const value = args[name];
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw refuse(`invalid ${name}: ${JSON.stringify(value)} (expected ${min}..${max})`);
  }
  return value;
}

function nodeIdArg(args: Record<string, unknown>): NodeId {
  return intArg(args, "node_id", 1, NODE_ID_MAX);
}

function stringArg(args: Record<string, unknown>, name: string, allowEmpty = false): string {
  const value = args[name];
  if (typeof value !== "string" || (!allowEmpty && value.length === 0)) {
    throw refuse(`invalid ${name}: ${JSON.stringify(value)} (expected a non-empty string)`);
  }
  return value;
}
