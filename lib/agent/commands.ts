/**
 * Executing the commands that the pgraft_* SQL functions enqueue, in order.
 * On the leader a command is proposed through Raft; on a follower it is
 * forwarded to the leader's agent, and then the follower waits until the
 * effect is visible here too (applied locally, or the new leader known), so
 * the next SQL statement on this node sees it. A command counts as finished
 * only when its effect is visible (DESIGN.md, "Control schema and SQL").
 *
 * @module
 */

import { ConfChangeError, NONE, NotLeaderError } from "../raft/mod.ts";
import { encodeCommand } from "../storage/mod.ts";
import type { CommandRow } from "../control/control_db.ts";
import type { Agent } from "./agent.ts";
import { validateClusterSetting } from "./settings.ts";

/** What the leader answers to a forwarded command. */
export interface CommandReply {
  /** log index whose application makes the effect visible (0 when nothing was proposed) */
  index: number;
  result: Record<string, unknown>;
}

/** Kinds of commands a follower may forward to the leader. */
const FORWARDABLE = new Set([
  "add_node",
  "remove_node",
  "transfer_leadership",
  "set_config",
  "kv_put",
  "kv_delete",
]);

/** Keys and values of the key-value store: limits checked before proposing. */
export const KV_KEY_BYTES_MAX = 1024;
export const KV_VALUE_BYTES_MAX = 1024 * 1024;

/** How long a command may wait for a conf change already in flight to be applied. */
const CONF_CHANGE_RETRY_MS = 10_000;

/** A command that cannot be executed, with a message for the operator. */
export class CommandError extends Error {
  override name = "CommandError";
}

/** Runs commands one at a time, oldest first. */
/** Forwarded request ids remembered to answer a resent request without running it twice. */
const FORWARDED_REMEMBERED_MAX = 1024;

/** Delay before retrying a failed read or write of pgraft.commands. */
const COMMAND_RETRY_MS = 50;

/** Attempts to record a command's outcome (about 5 s of retries). */
const COMMAND_RECORD_ATTEMPTS_MAX = 100;

export class CommandExecutor {
  #forwarded = new Map<string, Promise<CommandReply | { error: string }>>();
  #agent: Agent;
  #draining: Promise<void> | null = null;
  #again = false;
  #stopped = false;
  /** node a leadership transfer is under way to, or NONE */
  transferTarget = NONE;

  constructor(agent: Agent) {
    this.#agent = agent;
  }

  /** Ask for the pending commands again (also after a missed notification). */
  poll(): void {
    if (this.#stopped) return;
    if (this.#draining) {
      this.#again = true;
      return;
    }
    this.#draining = this.#drain().finally(() => {
      this.#draining = null;
      if (this.#again) {
        this.#again = false;
        this.poll();
      }
    });
  }

  stop(): void {
    this.#stopped = true;
  }

  async #drain(): Promise<void> {
    const agent = this.#agent;
    let rows: CommandRow[];
    try {
      rows = await agent.control.pendingCommands();
    } catch (error) {
      // A terminated session or a restarting server: try again shortly.
      agent.log.warn("cannot read pgraft.commands", { error: String(error) });
      if (!this.#stopped) setTimeout(() => this.poll(), COMMAND_RETRY_MS);
      return;
    }
    for (const row of rows) {
      if (this.#stopped) return;
      await this.#runOne(row);
    }
    if (rows.length > 0) this.#again = true;
  }

  async #runOne(row: CommandRow): Promise<void> {
    const agent = this.#agent;
    await agent.control.markRunning(row.commandId).catch(() => {});
    let outcome: { ok: true; result: unknown } | { ok: false; error: string };
    try {
      const result = await this.#execute(row.kind, row.args);
      outcome = { ok: true, result };
      agent.log.info("command done", { command: row.commandId, kind: row.kind });
    } catch (error) {
      const message = (error as Error).message;
      outcome = { ok: false, error: message };
      agent.event("command_failed", {
        detail: `${row.kind} ${JSON.stringify(row.args)}: ${message}`,
      });
      agent.log.warn("command failed", { command: row.commandId, kind: row.kind, error: message });
    }
    // The outcome is known: record it, retrying through transient storage errors
    // (running the command again would repeat its effect).
    for (let attempt = 1;; attempt++) {
      try {
        await agent.control.flushEvents().catch(() => {});
        await agent.control.finishCommand(row.commandId, outcome, agent.statusSnapshot());
        return;
      } catch (error) {
        agent.log.warn("cannot record a command's outcome", {
          command: row.commandId,
          attempt,
          error: String(error),
        });
        if (this.#stopped || attempt >= COMMAND_RECORD_ATTEMPTS_MAX) return;
        await new Promise((r) => setTimeout(r, COMMAND_RETRY_MS));
      }
    }
  }

  async #execute(kind: CommandRow["kind"], args: Record<string, unknown>): Promise<unknown> {
    const agent = this.#agent;
    if (kind === "init") return await agent.initCluster();
    const leader = await this.#awaitLeader();
    let reply: CommandReply;
    if (leader === agent.nodeId) reply = await this.executeLocal(kind, args);
    else reply = await this.#forward(leader, kind, args);
    // Make the effect visible on this node before the command counts as finished.
    const wait = 2 * agent.settings.electionTimeoutMs;
    await withTimeout(
      agent.driver.waitApplied(reply.index),
      wait,
      "the change to be applied on this node",
    );
    await agent.appliedStateSettled();
    if (kind === "transfer_leadership") {
      const target = Number(args.node_id);
      await agent.waitFor(
        () => agent.driver.softState.leaderId === target,
        wait,
        `node ${target} to lead`,
      );
    }
    return reply.result;
  }

  async #awaitLeader(): Promise<number> {
    const agent = this.#agent;
    const deadline = Date.now() + 2 * agent.settings.electionTimeoutMs;
    for (;;) {
      const leader = agent.driver.softState.leaderId;
      if (leader !== NONE) return leader;
      if (Date.now() > deadline) {
        throw new CommandError(
          "no leader is known: a majority of voters must be running and reachable",
        );
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async #forward(
    leader: number,
    kind: string,
    args: Record<string, unknown>,
  ): Promise<CommandReply> {
    const client = this.#agent.peerClient(leader);
    if (!client) throw new CommandError(`the address of leader node ${leader} is not known yet`);
    const reply = await client.rpc(
      "command",
      { kind, args, requestId: crypto.randomUUID() },
      4 * this.#agent.settings.electionTimeoutMs,
    ) as
      | CommandReply
      | { error: string };
    if ("error" in reply) throw new CommandError(reply.error);
    if (typeof reply.index !== "number") throw new CommandError("malformed reply from the leader");
    return reply;
  }

  /**
   * A command forwarded by a follower (RPC "command"). The same request may
   * arrive twice (an HTTP client resends a request whose connection broke
   * before the answer): a request id seen recently gets the first answer
   * instead of running the command again.
   */
  executeForwarded(body: unknown): Promise<CommandReply | { error: string }> {
    if (typeof body !== "object" || body === null) {
      return Promise.resolve({ error: "malformed command" });
    }
    const { kind, args, requestId } = body as {
      kind?: unknown;
      args?: unknown;
      requestId?: unknown;
    };
    if (typeof kind !== "string" || !FORWARDABLE.has(kind)) {
      return Promise.resolve({ error: `unknown command kind: ${kind}` });
    }
    if (typeof args !== "object" || args === null) {
      return Promise.resolve({ error: "malformed command arguments" });
    }
    const id = typeof requestId === "string" && requestId.length <= 64 ? requestId : null;
    const seen = id ? this.#forwarded.get(id) : undefined;
    if (seen) return seen;
    const reply = this.executeLocal(kind as CommandRow["kind"], args as Record<string, unknown>)
      .catch((error) => ({ error: (error as Error).message }));
    if (id) {
      this.#forwarded.set(id, reply);
      if (this.#forwarded.size > FORWARDED_REMEMBERED_MAX) {
        this.#forwarded.delete(this.#forwarded.keys().next().value!);
      }
    }
    return reply;
  }

  /** Execute on this node, which must be the leader. */
  async executeLocal(
    kind: CommandRow["kind"],
    args: Record<string, unknown>,
  ): Promise<CommandReply> {
    const agent = this.#agent;
    if (agent.driver.softState.role !== "leader") {
      throw new NotLeaderError(agent.driver.softState.leaderId);
    }
    switch (kind) {
      case "add_node": {
        const nodeId = intArg(args, "node_id", 1, 2147483647);
        const address = stringArg(args, "address");
        const port = intArg(args, "port", 1, 65535);
        const members = agent.applied.members;
        const same = members.find((m) => m.nodeId === nodeId);
        if (same) {
          throw new CommandError(
            `node ${nodeId} is already a member (${same.address}:${same.port})`,
          );
        }
        const clash = members.find((m) => m.address === address && m.port === port);
        if (clash) {
          throw new CommandError(
            `address ${address}:${port} is already used by node ${clash.nodeId}`,
          );
        }
        const result = await this.#confChange({
          kind: "add_learner",
          nodeId,
          context: JSON.stringify({ address, port }),
        });
        return { index: result.index, result: { node_id: nodeId, index: result.index } };
      }
      case "remove_node": {
        const nodeId = intArg(args, "node_id", 1, 2147483647);
        if (!agent.applied.members.some((m) => m.nodeId === nodeId)) {
          throw new CommandError(`node ${nodeId} is not a member of the cluster`);
        }
        const result = await this.#confChange({ kind: "remove_node", nodeId, context: "" });
        return { index: result.index, result: { node_id: nodeId, index: result.index } };
      }
      case "transfer_leadership": {
        const target = intArg(args, "node_id", 1, 2147483647);
        if (target === agent.nodeId) return { index: 0, result: { node_id: target } };
        this.transferTarget = target;
        try {
          await agent.driver.call((node) => node.transferLeadership(target));
          await agent.waitFor(
            () => agent.driver.softState.leaderId === target,
            2 * agent.settings.electionTimeoutMs,
            `node ${target} to take over leadership (the transfer was abandoned)`,
          );
        } finally {
          this.transferTarget = NONE;
        }
        return { index: 0, result: { node_id: target } };
      }
      case "set_config": {
        const name = stringArg(args, "name");
        const value = validateClusterSetting(name, stringArg(args, "value"), agent.settings);
        const result = await agent.propose(encodeCommand({ op: "set_config", name, value }));
        return { index: result.index, result: { name, value, index: result.index } };
      }
      case "kv_put": {
        const key = keyArg(args);
        const value = new TextEncoder().encode(stringArg(args, "value", true));
        if (value.length > KV_VALUE_BYTES_MAX) {
          throw new CommandError(
            `value too large: ${value.length} bytes (at most ${KV_VALUE_BYTES_MAX})`,
          );
        }
        const result = await agent.propose(encodeCommand({ op: "kv_put", key, value }));
        return { index: result.index, result: { key, revision: result.index } };
      }
      case "kv_delete": {
        const key = keyArg(args);
        const result = await agent.propose(encodeCommand({ op: "kv_delete", key }));
        return { index: result.index, result: { key, existed: result.existed ?? false } };
      }
      default:
        throw new CommandError(`command ${kind} cannot run on the leader`);
    }
  }

  /** Propose a conf change, waiting (bounded) while another one is still being applied. */
  async #confChange(change: Parameters<Agent["proposeConfChange"]>[0]) {
    const deadline = Date.now() + CONF_CHANGE_RETRY_MS;
    for (;;) {
      try {
        return await this.#agent.proposeConfChange(change);
      } catch (error) {
        if (!(error instanceof ConfChangeError) || Date.now() > deadline) throw error;
        if (!/pending|not yet|committed an entry/i.test(error.message)) throw error;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}

function intArg(args: Record<string, unknown>, name: string, min: number, max: number): number {
  const value = args[name];
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new CommandError(`invalid ${name}: ${JSON.stringify(value)} (expected ${min}..${max})`);
  }
  return value;
}

function stringArg(args: Record<string, unknown>, name: string, allowEmpty = false): string {
  const value = args[name];
  if (typeof value !== "string" || (!allowEmpty && value.length === 0)) {
    throw new CommandError(
      `invalid ${name}: ${JSON.stringify(value)} (expected a non-empty string)`,
    );
  }
  return value;
}

function keyArg(args: Record<string, unknown>): string {
  const key = stringArg(args, "key");
  const bytes = new TextEncoder().encode(key).length;
  if (bytes > KV_KEY_BYTES_MAX) {
    throw new CommandError(`key too long: ${bytes} bytes (at most ${KV_KEY_BYTES_MAX})`);
  }
  return key;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<T>((_, reject) => {
        timer = setTimeout(
          () => reject(new CommandError(`timed out after ${ms} ms waiting for ${what}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
