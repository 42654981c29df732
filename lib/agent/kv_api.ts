/**
 * The replicated key-value store over HTTP, on the agent's port:
 *
 * - `PUT /v1/kv/{key}` (body = value): acknowledged once committed and applied
 *   on the leader; a follower answers 307 with the leader's URL.
 * - `GET /v1/kv/{key}`: linearizable by default (ReadIndex through the leader;
 *   a follower asks the leader for the read index, waits until it has applied
 *   it, then reads its own copy); `?consistency=local` reads the local copy.
 * - `DELETE /v1/kv/{key}`, `GET /v1/kv?prefix=&limit=`.
 *
 * @module
 */

import type { Context, Hono } from "hono";
import { NotLeaderError } from "../raft/mod.ts";
import { encodeCommand, type KvPair } from "../storage/mod.ts";
import { type Agent, peerBaseUrl } from "./agent.ts";
import { KV_KEY_BYTES_MAX, KV_VALUE_BYTES_MAX } from "./commands.ts";
import { AgentStoppingError, ProposalLostError } from "./driver.ts";

/** Keys returned by one list request at most. */
export const KV_LIST_LIMIT_MAX = 10_000;

function json(c: Context, status: number, body: unknown): Response {
  return c.newResponse(JSON.stringify(body), status as 200, { "content-type": "application/json" });
}

function pairJson(p: KvPair) {
  return { key: p.key, value: new TextDecoder().decode(p.value), revision: p.revision };
}

/** Mount the KV routes on the agent's app. `authorize` answers null when the client may proceed. */
export function mountKvApi(
  app: Hono,
  agent: Agent,
  authorize: (c: Context) => Promise<Response | null>,
): void {
  const leaderUrl = (path: string): string | null => {
    const leader = agent.driver.softState.leaderId;
    const addr = leader ? agent.peerAddress(leader) : undefined;
    if (!addr) return null;
    return peerBaseUrl(addr, agent.tlsEnabled) + path;
  };

  const notLeader = (c: Context): Response => {
    const url = leaderUrl(new URL(c.req.url).pathname + new URL(c.req.url).search);
    if (!url) {
      return json(c, 503, { error: "no leader is known", retry: true });
    }
    return c.newResponse(null, 307, { location: url });
  };

  const keyOf = (c: Context): string | Response => {
    const raw = c.req.path.slice("/v1/kv/".length);
    let key: string;
    try {
      key = decodeURIComponent(raw);
    } catch {
      return json(c, 400, { error: "the key is not valid percent-encoding" });
    }
    if (key.length === 0) return json(c, 400, { error: "empty key" });
    // PostgreSQL text cannot hold NUL: such a key could never be applied.
    if (key.includes("\0")) return json(c, 400, { error: "the key contains a NUL character" });
    if (new TextEncoder().encode(key).length > KV_KEY_BYTES_MAX) {
      return json(c, 414, { error: `key longer than ${KV_KEY_BYTES_MAX} bytes` });
    }
    return key;
  };

  const failure = (c: Context, error: unknown): Response => {
    if (error instanceof NotLeaderError) return notLeader(c);
    if (error instanceof ProposalLostError) {
      return json(c, 503, { error: error.message, retry: true, outcome: "not applied" });
    }
    if (error instanceof AgentStoppingError) {
      return json(c, 503, { error: error.message, retry: true });
    }
    return json(c, 503, { error: (error as Error).message, retry: true, outcome: "unknown" });
  };

  /** Linearizable read barrier: on the leader ReadIndex; on a follower the leader's read index. */
  const readBarrier = async (): Promise<void> => {
    if (agent.driver.softState.role === "leader") {
      await agent.driver.readBarrier();
      return;
    }
    const leader = agent.driver.softState.leaderId;
    const client = leader ? agent.peerClient(leader) : null;
    if (!client) throw new NotLeaderError(leader);
    const reply = await client.rpc("read_index", {}, 2 * agent.settings.electionTimeoutMs) as {
      index?: number;
      error?: string;
    };
    if (typeof reply.index !== "number") {
      throw new Error(reply.error ?? "malformed read_index reply");
    }
    await agent.driver.waitApplied(reply.index);
  };

  // The list route first: "/v1/kv/*" also matches "/v1/kv".
  app.get("/v1/kv", async (c) => {
    const denied = await authorize(c);
    if (denied) return denied;
    const prefix = c.req.query("prefix") ?? "";
    const limit = Number(c.req.query("limit") ?? "1000");
    if (!Number.isInteger(limit) || limit < 1 || limit > KV_LIST_LIMIT_MAX) {
      return json(c, 400, { error: `limit must be 1..${KV_LIST_LIMIT_MAX}` });
    }
    const consistency = c.req.query("consistency") ?? "linearizable";
    try {
      if (consistency === "linearizable") await readBarrier();
      const pairs = await agent.storage.kvList(prefix, limit);
      return json(c, 200, { prefix, items: pairs.map(pairJson) });
    } catch (error) {
      return failure(c, error);
    }
  });

  app.put("/v1/kv/*", async (c) => {
    const denied = await authorize(c);
    if (denied) return denied;
    const key = keyOf(c);
    if (key instanceof Response) return key;
    const length = Number(c.req.header("content-length") ?? "0");
    if (length > KV_VALUE_BYTES_MAX) {
      return json(c, 413, { error: `value larger than ${KV_VALUE_BYTES_MAX} bytes` });
    }
    const value = new Uint8Array(await c.req.arrayBuffer());
    if (value.length > KV_VALUE_BYTES_MAX) {
      return json(c, 413, { error: `value larger than ${KV_VALUE_BYTES_MAX} bytes` });
    }
    if (agent.driver.softState.role !== "leader") return notLeader(c);
    try {
      const result = await agent.propose(encodeCommand({ op: "kv_put", key, value }));
      return json(c, 200, { key, revision: result.revision ?? result.index, index: result.index });
    } catch (error) {
      return failure(c, error);
    }
  });

  app.delete("/v1/kv/*", async (c) => {
    const denied = await authorize(c);
    if (denied) return denied;
    const key = keyOf(c);
    if (key instanceof Response) return key;
    if (agent.driver.softState.role !== "leader") return notLeader(c);
    try {
      const result = await agent.propose(encodeCommand({ op: "kv_delete", key }));
      return json(c, 200, { key, deleted: result.existed ?? false, index: result.index });
    } catch (error) {
      return failure(c, error);
    }
  });

  app.get("/v1/kv/*", async (c) => {
    const denied = await authorize(c);
    if (denied) return denied;
    const key = keyOf(c);
    if (key instanceof Response) return key;
    const consistency = c.req.query("consistency") ?? "linearizable";
    if (consistency !== "local" && consistency !== "linearizable") {
      return json(c, 400, { error: `consistency must be "linearizable" or "local"` });
    }
    try {
      if (consistency === "linearizable") await readBarrier();
      const pair = await agent.storage.kvGet(key);
      if (!pair) return json(c, 404, { error: "key not found", key });
      if (c.req.header("accept")?.includes("application/json")) return json(c, 200, pairJson(pair));
      return c.newResponse(new Uint8Array(pair.value), 200, {
        "content-type": "application/octet-stream",
        "x-pgraft-revision": String(pair.revision),
      });
    } catch (error) {
      return failure(c, error);
    }
  });
}

/** The leader's side of a follower's linearizable read: a ReadIndex, answered once applied here. */
export async function readIndexRpc(agent: Agent): Promise<{ index: number } | { error: string }> {
  try {
    return { index: await agent.driver.readBarrier() };
  } catch (error) {
    return { error: (error as Error).message };
  }
}
