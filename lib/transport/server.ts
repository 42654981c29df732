/**
 * The peer HTTP server: a Hono app with
 * - `POST /raft/messages` (an encoded {@link Envelope}; 204 when accepted),
 * - `POST /raft/snapshot` (one chunk of an encoded envelope holding one
 *   `snapshot_request`, see `snapshot_assembler.ts`; 202 for a chunk, 204
 *   once the last one completed the snapshot),
 * - `POST /rpc/<name>` (JSON in and out, see {@link registerRpc}),
 * - `GET /health` (200 when healthy, else 503), `GET /status` (JSON) and
 *   `GET /metrics` (Prometheus text),
 * and {@link PeerServer}, which serves it with `Deno.serve` (optionally TLS)
 * and shuts down gracefully.
 *
 * Every route but `GET /health` is behind the gate (`gate.ts`): a request it
 * turns away, or that its handler finds malformed (400 with the
 * {@link CodecError} message, 409 for a cluster id in the body that is not
 * this node's), never reaches `onMessages` or an RPC handler; it becomes a
 * {@link Rejection}, answered `{ error, code }` by the app's one `onError` and
 * counted in `pgraft_transport_requests_rejected_total{endpoint,reason}`.
 *
 * @module
 */

import { Hono, type MiddlewareHandler } from "hono";
import type { Message } from "../raft/types.ts";
import { MAX_CLOCK_SKEW_MS_DEFAULT, REPLAY_CACHE_SIZE_DEFAULT, ReplayGuard } from "./auth.ts";
import {
  CodecError,
  decodeMessages,
  encodeMessages,
  type Envelope,
  type MembersView,
} from "./codec.ts";
import {
  answerRejection,
  checkCluster,
  type CheckedRequest,
  type GateEnv,
  HEADER_FROM,
  MAX_BODY_BYTES_DEFAULT,
  peerGate,
  Rejection,
} from "./gate.ts";
import { describeTransportMetrics, type Metrics, TRANSPORT_METRICS as M } from "./metrics.ts";
import {
  MAX_SNAPSHOT_BYTES_DEFAULT,
  parseChunkHeaders,
  SNAPSHOT_TRANSFER_TIMEOUT_MS_DEFAULT,
  SnapshotAssembler,
} from "./snapshot_assembler.ts";

/** Who sent a batch of messages. */
export interface MessageSender {
  /** the sender's node id (the envelope's `from`) */
  nodeId: number;
  /** the advertised address, null when the sender gave none */
  address: string | null;
  /** the advertised port, null when the sender gave none */
  port: number | null;
  /** the leader's view of the members, when the request carried a heartbeat of a leader */
  view: MembersView | null;
  /** whether replies resolved by `onMessages` go back in the answer (not for snapshot chunks) */
  answers: boolean;
}

/** What {@link createPeerApp} needs from the agent. */
export interface PeerAppOptions {
  /** this node's id: messages must be addressed to it */
  nodeId: number;
  /** this node's cluster id; null = not in a cluster yet, accept any */
  clusterId: () => string | null;
  /** the shared secret; null: only loopback peers are accepted */
  authSecret: string | null;
  /** the registry the server counts in, and the body of `GET /metrics` */
  metrics: Metrics;
  /**
   * accepted messages, in the order the sender sent them; what it resolves
   * with goes back to the sender in the response body (this node's replies to
   * them), else the answer is 204
   */
  onMessages: (
    clusterId: string | null,
    messages: Message[],
    sender: MessageSender,
  ) => void | Promise<Message[]>;
  /** the body of `GET /status` */
  status: () => unknown;
  /** the body of `GET /health`: 200 when `ok`, else 503 */
  health: () => { ok: boolean } & Record<string, unknown>;
  /**
   * largest request body; larger ones get 413
   * @default MAX_BODY_BYTES_DEFAULT
   */
  maxBodyBytes?: number;
  /**
   * largest difference between a signed request's timestamp and this node's
   * clock; beyond it the request gets 401 `stale`
   * @default MAX_CLOCK_SKEW_MS_DEFAULT
   */
  maxClockSkewMs?: number;
  /**
   * signatures remembered to refuse replays
   * @default REPLAY_CACHE_SIZE_DEFAULT
   */
  replayCacheSize?: number;
  /**
   * largest snapshot (encoded envelope) accepted, and bound of the memory held
   * by incomplete transfers; larger ones get 413
   * @default MAX_SNAPSHOT_BYTES_DEFAULT
   */
  maxSnapshotBytes?: number;
  /**
   * an incomplete snapshot transfer without a new chunk for this long is dropped
   * @default SNAPSHOT_TRANSFER_TIMEOUT_MS_DEFAULT
   */
  snapshotTransferTimeoutMs?: number;
  /**
   * the clock, ms since the epoch (for tests)
   * @default Date.now
   */
  now?: () => number;
}

/** The agent process's memory, as `GET /metrics` shows it (Deno.memoryUsage at the request). */
const PROCESS_METRICS: readonly [string, string][] = [
  ["process_resident_memory_bytes", "Resident memory of the agent process, in bytes."],
  ["process_heap_used_bytes", "V8 heap in use, in bytes."],
  ["process_heap_total_bytes", "V8 heap reserved, in bytes."],
  [
    "process_external_memory_bytes",
    "Memory outside the V8 heap held by JavaScript objects, in bytes.",
  ],
];

/** What one app keeps between requests: shared by its routes, whatever options object each got. */
interface AppState {
  replay: ReplayGuard;
  snapshots: SnapshotAssembler;
}

const appStates = new WeakMap<Hono, AppState>();

function appState(app: Hono, options: PeerAppOptions): AppState {
  let state = appStates.get(app);
  if (state === undefined) {
    const skew = options.maxClockSkewMs ?? MAX_CLOCK_SKEW_MS_DEFAULT;
    state = {
      replay: new ReplayGuard(options.replayCacheSize ?? REPLAY_CACHE_SIZE_DEFAULT, skew),
      snapshots: new SnapshotAssembler(
        options.maxSnapshotBytes ?? MAX_SNAPSHOT_BYTES_DEFAULT,
        options.snapshotTransferTimeoutMs ?? SNAPSHOT_TRANSFER_TIMEOUT_MS_DEFAULT,
        options.metrics,
      ),
    };
    appStates.set(app, state);
  }
  return state;
}

/**
 * The middleware in front of a gated route: drop idle snapshot transfers
 * (any peer request does it), then the gate.
 */
function gated(
  state: AppState,
  options: PeerAppOptions,
  endpoint: string,
): MiddlewareHandler<GateEnv> {
  const now = options.now ?? Date.now;
  const gate = peerGate({
    endpoint,
    authSecret: options.authSecret,
    clusterId: options.clusterId,
    metrics: options.metrics,
    replay: state.replay,
    maxBodyBytes: options.maxBodyBytes ?? MAX_BODY_BYTES_DEFAULT,
    maxClockSkewMs: options.maxClockSkewMs ?? MAX_CLOCK_SKEW_MS_DEFAULT,
    now,
  });
  return (c, next) => {
    state.snapshots.sweep(now());
    return gate(c, next);
  };
}

/**
 * Build the peer app.
 *
 * @param options callbacks into the agent
 * @returns a Hono app; add RPCs with {@link registerRpc}
 */
export function createPeerApp(options: PeerAppOptions): Hono {
  describeTransportMetrics(options.metrics);
  for (const [name, help] of PROCESS_METRICS) options.metrics.describe(name, help, "gauge");
  const app = new Hono();
  const state = appState(app, options);
  app.onError((error, c) => {
    if (error instanceof Rejection) return answerRejection(c, error, options.metrics);
    options.metrics.inc(M.serverErrors, { path: c.req.routePath || c.req.path });
    return c.json({ error: `internal error: ${error.message}`, code: "internal" }, 500);
  });

  app.get("/health", (c) => {
    const health = options.health();
    return c.json(health, health.ok ? 200 : 503);
  });

  app.get("/status", gated(state, options, "status"), (c) => c.json(options.status() ?? null));

  app.get("/metrics", gated(state, options, "metrics"), (c) => {
    const memory = Deno.memoryUsage();
    options.metrics.set("process_resident_memory_bytes", memory.rss);
    options.metrics.set("process_heap_used_bytes", memory.heapUsed);
    options.metrics.set("process_heap_total_bytes", memory.heapTotal);
    options.metrics.set("process_external_memory_bytes", memory.external);
    return c.body(options.metrics.render(), 200, {
      "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
    });
  });

  app.post("/raft/messages", gated(state, options, "raft"), async (c) => {
    const gate = c.get("gate");
    const envelope = decode(gate.body, options.nodeId, false);
    const replies = await deliver(options, gate, envelope, gate.body.length, true);
    if (replies.length === 0) return c.body(null, 204);
    for (const m of replies) options.metrics.inc(M.messagesSent, { type: m.type });
    const body = encodeMessages({
      clusterId: options.clusterId(),
      from: options.nodeId,
      sender: null,
      messages: replies,
    }) as Uint8Array<ArrayBuffer>;
    options.metrics.inc(M.bytesSent, undefined, body.length);
    return c.body(body, 200, { "Content-Type": "application/octet-stream" });
  });

  app.post("/raft/snapshot", gated(state, options, "snapshot"), (c) => {
    const gate = c.get("gate");
    const chunk = parseChunkHeaders(c.req.raw.headers);
    const now = (options.now ?? Date.now)();
    const complete = state.snapshots.accept(gate.from, chunk, gate.body, now);
    options.metrics.inc(M.snapshotChunksReceived);
    if (complete === null) {
      options.metrics.inc(M.bytesReceived, undefined, gate.body.length);
      return c.body(null, 202);
    }
    const envelope = decode(complete, options.nodeId, true);
    if (envelope.messages.length !== 1 || envelope.messages[0]!.type !== "snapshot_request") {
      throw new Rejection(
        400,
        "bad_request",
        "messages: a snapshot transfer must carry exactly one snapshot_request",
      );
    }
    // Snapshots travel in their own lane: the follower's answer goes the usual way.
    deliver(options, gate, envelope, gate.body.length, false).catch(() => {});
    return c.body(null, 204);
  });
  return app;
}

/**
 * Hand a decoded envelope to `onMessages`, once it agrees with the headers and
 * this node's cluster; resolves with the replies to send back.
 */
function deliver(
  options: PeerAppOptions,
  gate: CheckedRequest,
  envelope: Envelope,
  bytes: number,
  answers: boolean,
): Promise<Message[]> {
  if (envelope.from !== gate.from) {
    throw new Rejection(
      400,
      "bad_request",
      `from: ${envelope.from} differs from ${HEADER_FROM} ${gate.from}`,
    );
  }
  checkCluster(envelope.clusterId, options.clusterId());
  options.metrics.inc(M.bytesReceived, undefined, bytes);
  for (const m of envelope.messages) options.metrics.inc(M.messagesReceived, { type: m.type });
  const sender = envelope.sender ?? gate.sender;
  const replies = options.onMessages(envelope.clusterId, envelope.messages, {
    nodeId: envelope.from,
    address: sender?.address ?? null,
    port: sender?.port ?? null,
    view: envelope.view ?? null,
    answers,
  });
  return replies ?? Promise.resolve([]);
}

function decode(body: Uint8Array, nodeId: number, adopt: boolean): Envelope {
  try {
    return decodeMessages(body, nodeId, { adopt });
  } catch (error) {
    if (error instanceof CodecError) throw new Rejection(400, "bad_request", error.message);
    throw error;
  }
}

/**
 * Serve `POST /rpc/<name>`: the JSON body goes to `handler`, its result comes
 * back as JSON (200). The request passes the same gate as `/raft/messages`.
 * When the handler throws, the reply is `{ error: message, code? }` with the
 * error's own `status` (400..599) if it has one, else 400 for an error with a
 * string `code` or a `TypeError`/`RangeError`/`SyntaxError`, else 500.
 *
 * @param app the app from {@link createPeerApp} (its `onError` answers the gate's rejections)
 * @param options the same options (auth, cluster, metrics, body limit); the
 *   replay and snapshot state is the app's, shared by all its routes
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
  const state = appState(app, options);
  app.post(`/rpc/${name}`, gated(state, options, `rpc_${name}`), async (c) => {
    const { body } = c.get("gate");
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

// ---------------------------------------------------------------------------
// the server

/** Options of {@link PeerServer}. */
export interface PeerServerOptions {
  /** the address to listen on */
  hostname: string;
  /** the port; 0 picks a free one */
  port: number;
  /** serve HTTPS with this certificate chain and key (PEM files) */
  tls?: { certFile: string; keyFile: string };
}

/**
 * Serves a Hono app with `Deno.serve`, passing the remote address for the
 * loopback rule. {@link stop} is graceful: requests in flight finish, new ones
 * are refused.
 */
export class PeerServer {
  #app: Hono;
  #hostname: string;
  #requestedPort: number;
  #tls: { certFile: string; keyFile: string } | null;
  #server: Deno.HttpServer<Deno.NetAddr> | null = null;
  #stopping = false;
  #inflight = 0;

  /**
   * Make a server; {@link start} listens.
   *
   * @param app the app to serve
   * @param options where to listen, and the TLS certificate if any
   */
  constructor(app: Hono, options: PeerServerOptions) {
    this.#app = app;
    this.#hostname = options.hostname;
    this.#requestedPort = options.port;
    this.#tls = options.tls ?? null;
  }

  /**
   * Start listening.
   *
   * @throws {Error} naming the file when a TLS file cannot be read, or the
   *   address when it cannot listen (e.g. in use)
   */
  start(): Promise<void> {
    if (this.#server !== null) throw new Error("PeerServer already started");
    let tls: { cert: string; key: string } | Record<never, never> = {};
    if (this.#tls !== null) {
      tls = {
        cert: readPem(this.#tls.certFile, "TLS certificate"),
        key: readPem(this.#tls.keyFile, "TLS key"),
      };
    }
    this.#stopping = false;
    try {
      this.#server = Deno.serve({
        hostname: this.#hostname,
        port: this.#requestedPort,
        onListen: () => {},
        ...tls,
      }, async (req, info) => {
        if (this.#stopping) {
          await req.body?.cancel().catch(() => {});
          return Response.json({ error: "shutting down", code: "shutting_down" }, {
            status: 503,
            headers: { Connection: "close" },
          });
        }
        this.#inflight++;
        try {
          return await this.#app.fetch(req, info);
        } finally {
          this.#inflight--;
        }
      });
    } catch (error) {
      throw new Error(
        `cannot listen on ${this.#hostname}:${this.#requestedPort}${this.#tls ? " (TLS)" : ""}: ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
    return Promise.resolve();
  }

  /** The port listened on (the actual one when 0 was asked); the requested port before start. */
  get port(): number {
    return this.#server?.addr.port ?? this.#requestedPort;
  }

  /** `https` when serving TLS, else `http`. */
  get protocol(): "http" | "https" {
    return this.#tls ? "https" : "http";
  }

  /** Requests being handled now. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Same as {@link stop} (the name `Deno.HttpServer` uses). */
  shutdown(): Promise<void> {
    return this.stop();
  }

  /**
   * Stop gracefully: stop accepting connections, answer requests that still
   * arrive on open connections with 503, and wait for those in flight to
   * finish. Idempotent.
   */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    this.#stopping = true;
    await server.shutdown();
  }
}

function readPem(path: string, what: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    throw new Error(`cannot read the ${what} "${path}": ${(error as Error).message}`, {
      cause: error,
    });
  }
}
