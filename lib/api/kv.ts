/**
 * The replicated key-value store over HTTP, a Hono sub-app mounted on the
 * agent's port at `/v1/kv`:
 *
 * - `PUT /v1/kv/{key}` (body = value): answered once committed and applied
 *   on the leader; a follower answers 307 with the leader's URL.
 * - `GET /v1/kv/{key}`: linearizable by default (ReadIndex through the
 *   leader); `?consistency=local` reads this node's copy.
 * - `DELETE /v1/kv/{key}`, `GET /v1/kv?prefix=&limit=&consistency=`.
 *
 * Every rule about keys and values comes from lib/state/limits.ts (the SQL
 * functions and the state machine use the same). Errors go through one
 * `onError`: a refused input gets its problem's status, a follower's write a
 * redirect, anything the node cannot do now a 503 with `retry: true`.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { NotLeaderError } from "../raft/mod.ts";
import {
  KV_LIST_LIMIT_MAX,
  kvKeyProblem,
  kvListLimitProblem,
  kvValueProblem,
} from "../state/limits.ts";
import { clientAuth } from "./client_auth.ts";
import { type Cluster, type KvPair, RefusedError, UnavailableError } from "./cluster.ts";

/** Options of {@link kvApi}. */
export interface KvApiOptions {
  /** the cluster's secret: clients present it (or its token) as a bearer token; null: loopback only */
  authSecret: string | null;
}

/** Keys listed when the request names no limit. */
export const KV_LIST_LIMIT_DEFAULT = 1000;

const decoder = new TextDecoder();

function pairJson(p: KvPair) {
  return { key: p.key, value: decoder.decode(p.value), revision: p.revision };
}

/** The key named by the path after `/v1/kv/`, checked. */
function keyOf(c: Context): string {
  const raw = c.req.path.slice(c.req.path.indexOf("/v1/kv/") + "/v1/kv/".length);
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw new HTTPException(400, { message: "the key is not valid percent-encoding" });
  }
  const problem = kvKeyProblem(key);
  if (problem) throw new RefusedError(problem);
  return key;
}

function consistencyOf(c: Context): "linearizable" | "local" {
  const consistency = c.req.query("consistency") ?? "linearizable";
  if (consistency !== "local" && consistency !== "linearizable") {
    throw new HTTPException(400, { message: `consistency must be "linearizable" or "local"` });
  }
  return consistency;
}

/** The answer to an error: the one place errors become responses. */
function answer(error: Error, c: Context, cluster: Cluster): Response {
  if (error instanceof NotLeaderError) {
    const base = cluster.leaderUrl();
    if (base === null) return c.json({ error: "no leader is known", retry: true }, 503);
    const url = new URL(c.req.url);
    return c.newResponse(null, 307, { location: base + url.pathname + url.search });
  }
  if (error instanceof RefusedError) return c.json({ error: error.message }, error.problem.status);
  if (error instanceof HTTPException) {
    return error.res ?? c.json({ error: error.message }, error.status);
  }
  if (error instanceof UnavailableError) {
    return c.json({ error: error.message, retry: true, outcome: error.outcome }, 503);
  }
  return c.json({ error: error.message, retry: true, outcome: "unknown" }, 503);
}

/**
 * The key-value API as a Hono app; mount it with `app.route("/v1/kv", kvApi(...))`.
 *
 * @param cluster the node
 * @param options client authentication
 */
export function kvApi(cluster: Cluster, options: KvApiOptions): Hono {
  const app = new Hono();
  app.use("*", clientAuth(options.authSecret));
  app.onError((error, c) => answer(error, c, cluster));

  app.get("/", async (c) => {
    const prefix = c.req.query("prefix") ?? "";
    const limit = Number(c.req.query("limit") ?? String(KV_LIST_LIMIT_DEFAULT));
    const problem = kvListLimitProblem(limit);
    if (problem) throw new HTTPException(400, { message: `limit must be 1..${KV_LIST_LIMIT_MAX}` });
    if (consistencyOf(c) === "linearizable") await cluster.linearizableRead();
    const pairs = await cluster.kvList(prefix, limit);
    return c.json({ prefix, items: pairs.map(pairJson) });
  });

  app.put("/*", async (c) => {
    const key = keyOf(c);
    const declared = kvValueProblem(Number(c.req.header("content-length") ?? "0"));
    if (declared) throw new RefusedError(declared);
    const value = new Uint8Array(await c.req.arrayBuffer());
    const problem = kvValueProblem(value.length);
    if (problem) throw new RefusedError(problem);
    const result = await cluster.kvPut(key, value);
    return c.json({ key, revision: result.revision, index: result.index });
  });

  app.delete("/*", async (c) => {
    const key = keyOf(c);
    const result = await cluster.kvDelete(key);
    return c.json({ key, deleted: result.existed, index: result.index });
  });

  app.get("/*", async (c) => {
    const key = keyOf(c);
    if (consistencyOf(c) === "linearizable") await cluster.linearizableRead();
    const pair = await cluster.kvGet(key);
    if (!pair) return c.json({ error: "key not found", key }, 404);
    if (c.req.header("accept")?.includes("application/json")) return c.json(pairJson(pair));
    return c.newResponse(new Uint8Array(pair.value), 200, {
      "content-type": "application/octet-stream",
      "x-pgraft-revision": String(pair.revision),
    });
  });
  return app;
}
