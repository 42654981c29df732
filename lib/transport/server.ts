/**
 * The peer HTTP server: a Hono app with
 * - `POST /raft/messages` (an encoded {@link Envelope}; 204 when accepted),
 * - `POST /rpc/<name>` (JSON in and out, see {@link registerRpc}),
 * - `GET /health` (200 when healthy, else 503), `GET /status` (JSON) and
 *   `GET /metrics` (Prometheus text),
 * and {@link PeerServer}, which serves it with `Deno.serve`.
 *
 * Every request but `GET /health` passes the same gate, in this order:
 * authentication (401 without the right bearer token when a secret is set; 403
 * for a non-loopback peer when none is), the sender headers (400), the cluster id
 * (409 when both sides know theirs and they differ), the body size (413), the
 * body itself (400 with the {@link CodecError} message). A rejected request never
 * reaches `onMessages` or an RPC handler.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import type { Message } from "../raft/types.ts";
import { NODE_ID_MAX } from "../raft/types.ts";
import { authorized, isLoopback } from "./auth.ts";
import { CodecError, decodeMessages } from "./codec.ts";
import { describeTransportMetrics, type Metrics, TRANSPORT_METRICS as M } from "./metrics.ts";

/** Header with the sender's cluster id (absent or empty: it has none yet). */
export const HEADER_CLUSTER = "X-Pgraft-Cluster";
/** Header with the sender's node id. */
export const HEADER_FROM = "X-Pgraft-From";
/** Header with the sender's advertised `host:port`. */
export const HEADER_SENDER = "X-Pgraft-Sender";
/** Default largest request body: 64 MiB. */
export const MAX_BODY_BYTES_DEFAULT = 64 * 1024 * 1024;

/** Who sent a batch of messages. */
export interface MessageSender {
  nodeId: number;
  /** the advertised address, null when the sender gave none */
  address: string | null;
  port: number | null;
}

/** What {@link createPeerApp} needs from the agent. */
export interface PeerAppOptions {
  /** this node's id: messages must be addressed to it */
  nodeId: number;
  /** this node's cluster id; null = not in a cluster yet, accept any */
  clusterId: () => string | null;
  /** the shared secret; null: only loopback peers are accepted */
  authSecret: string | null;
  metrics: Metrics;
  /** accepted messages, in the order the sender sent them */
  onMessages: (clusterId: string | null, messages: Message[], sender: MessageSender) => void;
  /** the body of `GET /status` */
  status: () => unknown;
  /** the body of `GET /health`: 200 when `ok`, else 503 */
  health: () => { ok: boolean } & Record<string, unknown>;
  /**
   * largest request body; larger ones get 413
   * @default MAX_BODY_BYTES_DEFAULT
   */
  maxBodyBytes?: number;
}

/** Why the gate turned a request away: the `code` of the JSON error and a metric label. */
type RejectReason = "unauthorized" | "forbidden" | "bad_request" | "cluster_mismatch" | "too_large";

class Rejection extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 409 | 413,
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Build the peer app.
 *
 * @param options callbacks into the agent
 * @returns a Hono app; add RPCs with {@link registerRpc}
 */
export function createPeerApp(options: PeerAppOptions): Hono {
  describeTransportMetrics(options.metrics);
  const app = new Hono();
  app.onError((error, c) => {
    options.metrics.inc(M.serverErrors, { path: c.req.routePath || c.req.path });
    return c.json({ error: `internal error: ${error.message}`, code: "internal" }, 500);
  });

  app.get("/health", (c) => {
    const health = options.health();
    return c.json(health, health.ok ? 200 : 503);
  });

  app.get("/status", (c) => {
    return guarded(c, options, "status", () => Promise.resolve(c.json(options.status() ?? null)));
  });

  app.get("/metrics", (c) => {
    return guarded(c, options, "metrics", () => {
      return Promise.resolve(c.body(options.metrics.render(), 200, {
        "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
      }));
    });
  });

  app.post("/raft/messages", (c) => {
    return guarded(c, options, "raft", async (gate) => {
      const body = await readBody(c.req.raw, options.maxBodyBytes ?? MAX_BODY_BYTES_DEFAULT);
      const envelope = decode(body, options.nodeId);
      if (envelope.from !== gate.from) {
        throw new Rejection(
          400,
          "bad_request",
          `from: ${envelope.from} differs from ${HEADER_FROM} ${gate.from}`,
        );
      }
      checkCluster(envelope.clusterId, options.clusterId());
      options.metrics.inc(M.bytesReceived, undefined, body.length);
      for (const m of envelope.messages) options.metrics.inc(M.messagesReceived, { type: m.type });
      const sender = envelope.sender ?? gate.sender;
      options.onMessages(envelope.clusterId, envelope.messages, {
        nodeId: envelope.from,
        address: sender?.address ?? null,
        port: sender?.port ?? null,
      });
      return c.body(null, 204);
    });
  });
  return app;
}

/**
 * Serve `POST /rpc/<name>`: the JSON body goes to `handler`, its result comes
 * back as JSON (200). The request passes the same gate as `/raft/messages`.
 * When the handler throws, the reply is `{ error: message, code? }` with the
 * error's own `status` (400..599) if it has one, else 400 for an error with a
 * string `code` or a `TypeError`/`RangeError`/`SyntaxError`, else 500.
 *
 * @param app the app from {@link createPeerApp}
 * @param options the same options (auth, cluster, metrics, body limit)
 * @param name the RPC name: letters, digits, `_` and `-`
 * @param handler what to do with the body
 */
export function registerRpc(
  app: Hono,
  options: PeerAppOptions,
  name: string,
  handler: (body: unknown) => Promise<unknown>,
): void {
  if (!/^[A-Za-z0-9_-]+$/.test(name)) {
    throw new RangeError(`invalid RPC name ${JSON.stringify(name)}`);
  }
  describeTransportMetrics(options.metrics);
  app.post(`/rpc/${name}`, (c) => {
    return guarded(c, options, `rpc_${name}`, async () => {
      const body = await readBody(c.req.raw, options.maxBodyBytes ?? MAX_BODY_BYTES_DEFAULT);
      let parsed: unknown;
      try {
        parsed = body.length === 0
          ? null
          : JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
      } catch (error) {
        throw new Rejection(
          400,
          "bad_request",
          `body: not valid JSON (${(error as Error).message})`,
        );
      }
      options.metrics.inc(M.bytesReceived, undefined, body.length);
      let result: unknown;
      try {
        result = await handler(parsed);
      } catch (error) {
        const { status, code } = rpcErrorStatus(error);
        options.metrics.inc(M.rpcHandled, { name, outcome: "error" });
        const reply: { error: string; code?: string } = {
          error: error instanceof Error ? error.message : String(error),
        };
        if (code !== undefined) reply.code = code;
        return c.json(reply, status);
      }
      options.metrics.inc(M.rpcHandled, { name, outcome: "ok" });
      return c.json(result === undefined ? null : result as object, 200);
    });
  });
}

// deno-lint-ignore no-explicit-any
type AnyStatus = any;

function rpcErrorStatus(error: unknown): { status: AnyStatus; code: string | undefined } {
  const e = (typeof error === "object" && error !== null ? error : {}) as {
    status?: unknown;
    code?: unknown;
  };
  const code = typeof e.code === "string" ? e.code : undefined;
  if (
    typeof e.status === "number" && Number.isInteger(e.status) && e.status >= 400 && e.status <= 599
  ) {
    return { status: e.status, code };
  }
  if (code !== undefined) return { status: 400, code };
  if (error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError) {
    return { status: 400, code };
  }
  return { status: 500, code };
}

interface Gate {
  from: number;
  clusterId: string | null;
  sender: { address: string; port: number } | null;
}

/**
 * Run `inner` if the request passes the gate; map rejections to their status.
 * `GET` endpoints (status, metrics) need only authentication and, when the
 * headers are present, a matching cluster id.
 */
async function guarded(
  c: Context,
  options: PeerAppOptions,
  what: string,
  inner: (gate: Gate) => Promise<Response>,
): Promise<Response> {
  try {
    const gate = checkRequest(c, options, c.req.method === "POST");
    return await inner(gate);
  } catch (error) {
    if (error instanceof Rejection) {
      options.metrics.inc(M.rejected, { endpoint: what, reason: error.reason });
      return c.json({ error: error.message, code: error.reason }, error.status);
    }
    throw error;
  }
}

function checkRequest(c: Context, options: PeerAppOptions, requireFrom: boolean): Gate {
  const req = c.req.raw;
  if (options.authSecret !== null) {
    if (!authorized(req.headers.get("Authorization"), options.authSecret)) {
      throw new Rejection(401, "unauthorized", "missing or wrong bearer token");
    }
  } else {
    const remote = remoteHostname(c);
    if (!isLoopback(remote)) {
      throw new Rejection(
        403,
        "forbidden",
        `no pgraft.auth_secret is set: only loopback peers are accepted, not ${
          remote ?? "an unknown address"
        }`,
      );
    }
  }
  const fromHeader = req.headers.get(HEADER_FROM);
  let from = 0;
  if (fromHeader !== null || requireFrom) {
    if (
      fromHeader === null || !/^\d{1,10}$/.test(fromHeader) || Number(fromHeader) < 1 ||
      Number(fromHeader) > NODE_ID_MAX
    ) {
      throw new Rejection(
        400,
        "bad_request",
        `${HEADER_FROM}: expected a node id in 1..${NODE_ID_MAX}`,
      );
    }
    from = Number(fromHeader);
  }
  const clusterHeader = req.headers.get(HEADER_CLUSTER);
  const clusterId = clusterHeader === null || clusterHeader === "" ? null : clusterHeader;
  checkCluster(clusterId, options.clusterId());
  const senderHeader = req.headers.get(HEADER_SENDER);
  const sender = senderHeader === null || senderHeader === "" ? null : parseHostPort(senderHeader);
  return { from, clusterId, sender };
}

function checkCluster(theirs: string | null, ours: string | null): void {
  if (theirs !== null && ours !== null && theirs !== ours) {
    throw new Rejection(
      409,
      "cluster_mismatch",
      `cluster id ${theirs} is not this node's cluster ${ours}`,
    );
  }
}

/**
 * Parse `host:port` or `[v6]:port`.
 *
 * @throws {Rejection} 400 when malformed
 */
function parseHostPort(text: string): { address: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:\s]+|[0-9a-fA-F:]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535 || text.length > 300) {
    throw new Rejection(
      400,
      "bad_request",
      `${HEADER_SENDER}: expected host:port, got ${JSON.stringify(text.slice(0, 80))}`,
    );
  }
  return { address: (match[1] ?? match[2])!, port };
}

function remoteHostname(c: Context): string | null {
  const env = c.env as { remoteAddr?: { hostname?: unknown } } | undefined;
  const hostname = env?.remoteAddr?.hostname;
  return typeof hostname === "string" ? hostname : null;
}

function decode(body: Uint8Array, nodeId: number) {
  try {
    return decodeMessages(body, nodeId);
  } catch (error) {
    if (error instanceof CodecError) throw new Rejection(400, "bad_request", error.message);
    throw error;
  }
}

/**
 * Read a request body of at most `maxBytes`.
 *
 * @throws {Rejection} 413 when the body (declared or actual) is larger
 */
async function readBody(req: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = req.headers.get("Content-Length");
  if (declared !== null && Number(declared) > maxBytes) {
    await req.body?.cancel().catch(() => {});
    throw new Rejection(
      413,
      "too_large",
      `body of ${declared} bytes exceeds the limit of ${maxBytes}`,
    );
  }
  if (req.body === null) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new Rejection(413, "too_large", `body exceeds the limit of ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Serves a Hono app with `Deno.serve`, passing the remote address for the loopback rule. */
export class PeerServer {
  #app: Hono;
  #hostname: string;
  #requestedPort: number;
  #server: Deno.HttpServer<Deno.NetAddr> | null = null;

  /**
   * @param app the app to serve
   * @param options where to listen; port 0 picks a free port
   */
  constructor(app: Hono, options: { hostname: string; port: number }) {
    this.#app = app;
    this.#hostname = options.hostname;
    this.#requestedPort = options.port;
  }

  /**
   * Start listening.
   *
   * @throws {Error} naming the address when it cannot listen (e.g. in use)
   */
  start(): Promise<void> {
    if (this.#server !== null) throw new Error("PeerServer already started");
    try {
      this.#server = Deno.serve({
        hostname: this.#hostname,
        port: this.#requestedPort,
        onListen: () => {},
      }, (req, info) => this.#app.fetch(req, info));
    } catch (error) {
      throw new Error(
        `cannot listen on ${this.#hostname}:${this.#requestedPort}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    return Promise.resolve();
  }

  /** The port listened on (the actual one when 0 was asked); the requested port before start. */
  get port(): number {
    return this.#server?.addr.port ?? this.#requestedPort;
  }

  /** Same as {@link stop} (the name `Deno.HttpServer` uses). */
  shutdown(): Promise<void> {
    return this.stop();
  }

  /** Stop listening and wait for in-flight requests to finish. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    await server.shutdown();
  }
}
