/**
 * The peer HTTP server: a Hono app with
 * - `POST /raft/messages` (an encoded {@link Envelope}; 204 when accepted),
 * - `POST /raft/snapshot` (one chunk of an encoded envelope holding one
 *   `snapshot_request`, see {@link HEADER_SNAPSHOT_ID}; 202 for a chunk, 204
 *   once the last one completed the snapshot),
 * - `POST /rpc/<name>` (JSON in and out, see {@link registerRpc}),
 * - `GET /health` (200 when healthy, else 503), `GET /status` (JSON) and
 *   `GET /metrics` (Prometheus text),
 * and {@link PeerServer}, which serves it with `Deno.serve` (optionally TLS)
 * and shuts down gracefully.
 *
 * Every request but `GET /health` passes the same gate, in this order:
 * - with a secret, a `POST` must be signed (see `auth.ts`): 401 `unauthorized`
 *   without `X-Pgraft-Signature`/`X-Pgraft-Timestamp`, 401 `stale` for a
 *   timestamp outside the clock-skew window, 413 `too_large` for a body over
 *   the limit, 401 `unauthorized` for a wrong signature, 401 `replay` for a
 *   signature already seen; a `GET` needs the bearer token (401);
 * - without a secret, 403 `forbidden` for a non-loopback peer;
 * - the sender headers (400), the cluster id (409 when both sides know theirs
 *   and they differ), the body size (413), the body itself (400 with the
 *   {@link CodecError} message).
 *
 * A rejected request never reaches `onMessages` or an RPC handler, and is
 * counted in `pgraft_transport_requests_rejected_total{endpoint,reason}`.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import type { Message } from "../raft/types.ts";
import { NODE_ID_MAX } from "../raft/types.ts";
import {
  authorized,
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  isLoopback,
  MAX_CLOCK_SKEW_MS_DEFAULT,
  REPLAY_CACHE_SIZE_DEFAULT,
  ReplayGuard,
  verifyRequest,
} from "./auth.ts";
import { CodecError, decodeMessages, type Envelope } from "./codec.ts";
import { describeTransportMetrics, type Metrics, TRANSPORT_METRICS as M } from "./metrics.ts";

/** Header with the sender's cluster id (absent or empty: it has none yet). */
export const HEADER_CLUSTER = "X-Pgraft-Cluster";
/** Header with the sender's node id. */
export const HEADER_FROM = "X-Pgraft-From";
/** Header with the sender's advertised `host:port`. */
export const HEADER_SENDER = "X-Pgraft-Sender";
/** Default largest request body: 64 MiB. */
export const MAX_BODY_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Header naming a snapshot transfer (1..64 of `A-Za-z0-9_-`), the same on each of its chunks. */
export const HEADER_SNAPSHOT_ID = "X-Pgraft-Snapshot-Id";
/** Header with the byte offset of a chunk in the encoded snapshot envelope. */
export const HEADER_SNAPSHOT_OFFSET = "X-Pgraft-Snapshot-Offset";
/** Header with the size in bytes of the whole encoded snapshot envelope. */
export const HEADER_SNAPSHOT_TOTAL = "X-Pgraft-Snapshot-Total";
/** Default largest snapshot (encoded envelope) received, and bound of the reassembly memory: 1 GiB. */
export const MAX_SNAPSHOT_BYTES_DEFAULT = 1024 * 1024 * 1024;
/** Default time an incomplete snapshot transfer is kept without a new chunk. */
export const SNAPSHOT_TRANSFER_TIMEOUT_MS_DEFAULT = 30_000;

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

/** Why the gate turned a request away: the `code` of the JSON error and a metric label. */
type RejectReason =
  | "unauthorized"
  | "stale"
  | "replay"
  | "forbidden"
  | "bad_request"
  | "cluster_mismatch"
  | "too_large"
  | "snapshot_out_of_order";

class Rejection extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 409 | 413,
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message);
  }
}

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
 * Build the peer app.
 *
 * @param options callbacks into the agent
 * @returns a Hono app; add RPCs with {@link registerRpc}
 */
export function createPeerApp(options: PeerAppOptions): Hono {
  describeTransportMetrics(options.metrics);
  const app = new Hono();
  const state = appState(app, options);
  app.onError((error, c) => {
    options.metrics.inc(M.serverErrors, { path: c.req.routePath || c.req.path });
    return c.json({ error: `internal error: ${error.message}`, code: "internal" }, 500);
  });

  app.get("/health", (c) => {
    const health = options.health();
    return c.json(health, health.ok ? 200 : 503);
  });

  app.get("/status", (c) => {
    return guarded(
      c,
      options,
      state,
      "status",
      () => Promise.resolve(c.json(options.status() ?? null)),
    );
  });

  app.get("/metrics", (c) => {
    return guarded(c, options, state, "metrics", () => {
      return Promise.resolve(c.body(options.metrics.render(), 200, {
        "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
      }));
    });
  });

  app.post("/raft/messages", (c) => {
    return guarded(c, options, state, "raft", (gate) => {
      const envelope = decode(gate.body, options.nodeId, false);
      deliver(options, gate, envelope, gate.body.length);
      return Promise.resolve(c.body(null, 204));
    });
  });

  app.post("/raft/snapshot", (c) => {
    return guarded(c, options, state, "snapshot", (gate) => {
      const chunk = parseChunkHeaders(c.req.raw.headers);
      const now = (options.now ?? Date.now)();
      const complete = state.snapshots.accept(gate.from, chunk, gate.body, now);
      options.metrics.inc(M.snapshotChunksReceived);
      if (complete === null) {
        options.metrics.inc(M.bytesReceived, undefined, gate.body.length);
        return Promise.resolve(c.body(null, 202));
      }
      const envelope = decode(complete, options.nodeId, true);
      if (envelope.messages.length !== 1 || envelope.messages[0]!.type !== "snapshot_request") {
        throw new Rejection(
          400,
          "bad_request",
          "messages: a snapshot transfer must carry exactly one snapshot_request",
        );
      }
      deliver(options, gate, envelope, gate.body.length);
      return Promise.resolve(c.body(null, 204));
    });
  });
  return app;
}

function deliver(options: PeerAppOptions, gate: Gate, envelope: Envelope, bytes: number): void {
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
  options.onMessages(envelope.clusterId, envelope.messages, {
    nodeId: envelope.from,
    address: sender?.address ?? null,
    port: sender?.port ?? null,
  });
}

/**
 * Serve `POST /rpc/<name>`: the JSON body goes to `handler`, its result comes
 * back as JSON (200). The request passes the same gate as `/raft/messages`.
 * When the handler throws, the reply is `{ error: message, code? }` with the
 * error's own `status` (400..599) if it has one, else 400 for an error with a
 * string `code` or a `TypeError`/`RangeError`/`SyntaxError`, else 500.
 *
 * @param app the app from {@link createPeerApp}
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
  app.post(`/rpc/${name}`, (c) => {
    return guarded(c, options, state, `rpc_${name}`, async ({ body }) => {
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
  /** the request body (empty for a `GET`) */
  body: Uint8Array;
}

/**
 * Run `inner` if the request passes the gate; map rejections to their status.
 * `GET` endpoints (status, metrics) need only authentication and, when the
 * headers are present, a matching cluster id.
 */
async function guarded(
  c: Context,
  options: PeerAppOptions,
  state: AppState,
  what: string,
  inner: (gate: Gate) => Promise<Response>,
): Promise<Response> {
  try {
    const gate = await checkRequest(c, options, state, c.req.method === "POST");
    return await inner(gate);
  } catch (error) {
    if (error instanceof Rejection) {
      options.metrics.inc(M.rejected, { endpoint: what, reason: error.reason });
      return c.json({ error: error.message, code: error.reason }, error.status);
    }
    throw error;
  }
}

async function checkRequest(
  c: Context,
  options: PeerAppOptions,
  state: AppState,
  post: boolean,
): Promise<Gate> {
  const req = c.req.raw;
  const now = (options.now ?? Date.now)();
  state.snapshots.sweep(now);
  const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES_DEFAULT;
  const fromHeader = req.headers.get(HEADER_FROM);
  let body: Uint8Array | null = null;
  if (options.authSecret !== null && post) {
    const signature = req.headers.get(HEADER_SIGNATURE);
    const timestampHeader = req.headers.get(HEADER_TIMESTAMP);
    if (signature === null || timestampHeader === null) {
      await req.body?.cancel().catch(() => {});
      throw new Rejection(
        401,
        "unauthorized",
        `missing ${HEADER_SIGNATURE} or ${HEADER_TIMESTAMP}: peer requests must be signed`,
      );
    }
    if (!/^\d{1,15}$/.test(timestampHeader)) {
      await req.body?.cancel().catch(() => {});
      throw new Rejection(401, "unauthorized", `${HEADER_TIMESTAMP}: expected ms since the epoch`);
    }
    const timestamp = Number(timestampHeader);
    const skew = options.maxClockSkewMs ?? MAX_CLOCK_SKEW_MS_DEFAULT;
    if (Math.abs(now - timestamp) > skew) {
      await req.body?.cancel().catch(() => {});
      throw new Rejection(
        401,
        "stale",
        `${HEADER_TIMESTAMP} ${timestamp} is ${now - timestamp} ms from this node's clock ` +
          `(allowed: ±${skew} ms); check the clocks`,
      );
    }
    const from = parseFrom(fromHeader, true);
    body = await readBody(req, maxBodyBytes);
    const ok = await verifyRequest(options.authSecret, {
      method: req.method,
      path: new URL(req.url).pathname,
      timestamp: timestampHeader,
      from: fromHeader!,
      body,
      headers: req.headers,
    }, signature);
    if (!ok) throw new Rejection(401, "unauthorized", `${HEADER_SIGNATURE}: wrong signature`);
    if (!state.replay.admit(signature, from, timestamp, now)) {
      throw new Rejection(401, "replay", "this request was already received (replay)");
    }
  } else if (options.authSecret !== null) {
    if (!authorized(req.headers.get("Authorization"), options.authSecret)) {
      throw new Rejection(401, "unauthorized", "missing or wrong bearer token");
    }
  } else {
    const remote = remoteHostname(c);
    if (!isLoopback(remote)) {
      await req.body?.cancel().catch(() => {});
      throw new Rejection(
        403,
        "forbidden",
        `no pgraft.auth_secret is set: only loopback peers are accepted, not ${
          remote ?? "an unknown address"
        }`,
      );
    }
  }
  const from = parseFrom(fromHeader, post);
  const clusterHeader = req.headers.get(HEADER_CLUSTER);
  const clusterId = clusterHeader === null || clusterHeader === "" ? null : clusterHeader;
  checkCluster(clusterId, options.clusterId());
  const senderHeader = req.headers.get(HEADER_SENDER);
  const sender = senderHeader === null || senderHeader === "" ? null : parseHostPort(senderHeader);
  if (body === null) body = post ? await readBody(req, maxBodyBytes) : new Uint8Array(0);
  return { from, clusterId, sender, body };
}

/** The sender's node id from `X-Pgraft-From`; 0 when absent and not required. */
function parseFrom(header: string | null, required: boolean): number {
  if (header === null && !required) return 0;
  if (
    header === null || !/^\d{1,10}$/.test(header) || Number(header) < 1 ||
    Number(header) > NODE_ID_MAX
  ) {
    throw new Rejection(
      400,
      "bad_request",
      `${HEADER_FROM}: expected a node id in 1..${NODE_ID_MAX}`,
    );
  }
  return Number(header);
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

function decode(body: Uint8Array, nodeId: number, adopt: boolean): Envelope {
  try {
    return decodeMessages(body, nodeId, { adopt });
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

// ---------------------------------------------------------------------------
// snapshot transfers

interface ChunkHeaders {
  id: string;
  offset: number;
  total: number;
}

function parseChunkHeaders(headers: Headers): ChunkHeaders {
  const id = headers.get(HEADER_SNAPSHOT_ID);
  if (id === null || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    throw new Rejection(400, "bad_request", `${HEADER_SNAPSHOT_ID}: expected 1..64 of A-Za-z0-9_-`);
  }
  const number = (name: string, min: number): number => {
    const text = headers.get(name);
    if (text === null || !/^\d{1,15}$/.test(text) || Number(text) < min) {
      throw new Rejection(400, "bad_request", `${name}: expected an integer >= ${min}`);
    }
    return Number(text);
  };
  return {
    id,
    offset: number(HEADER_SNAPSHOT_OFFSET, 0),
    total: number(HEADER_SNAPSHOT_TOTAL, 1),
  };
}

interface Transfer {
  id: string;
  total: number;
  received: number;
  /** grows with the chunks received, up to `total` */
  buffer: ArrayBuffer;
  lastActivity: number;
}

/**
 * Reassembles snapshot transfers: at most one per sender (a newer one
 * replaces it), chunks in order, the memory reserved by incomplete transfers
 * at most `maxBytes` in all (the least recently active ones are dropped to
 * make room), a transfer without a chunk for `timeoutMs` dropped.
 */
class SnapshotAssembler {
  readonly #transfers = new Map<number, Transfer>();

  constructor(
    readonly maxBytes: number,
    readonly timeoutMs: number,
    readonly metrics: Metrics,
  ) {}

  /** Drop transfers idle for longer than the timeout. */
  sweep(now: number): void {
    for (const [from, t] of this.#transfers) {
      if (now - t.lastActivity > this.timeoutMs) this.#drop(from, "timeout");
    }
  }

  /**
   * Add one chunk.
   *
   * @returns the whole encoded envelope when this chunk completed it, else null
   * @throws {Rejection} 413 when the total is over the limit, 409 for a chunk
   *   out of order or of an unknown transfer, 400 for an inconsistent one
   */
  accept(from: number, chunk: ChunkHeaders, data: Uint8Array, now: number): Uint8Array | null {
    let t = this.#transfers.get(from);
    if (chunk.total > this.maxBytes) {
      if (t?.id === chunk.id) this.#drop(from, "rejected");
      throw new Rejection(
        413,
        "too_large",
        `snapshot of ${chunk.total} bytes exceeds the limit of ${this.maxBytes}`,
      );
    }
    if (data.length === 0 || chunk.offset + data.length > chunk.total) {
      throw new Rejection(
        400,
        "bad_request",
        `snapshot chunk of ${data.length} bytes at ${chunk.offset} does not fit in ${chunk.total}`,
      );
    }
    if (t !== undefined && t.id !== chunk.id) {
      if (chunk.offset !== 0) throw this.#unknown(chunk);
      this.#drop(from, "superseded");
      t = undefined;
    }
    if (t === undefined) {
      if (chunk.offset !== 0) throw this.#unknown(chunk);
      this.#makeRoom(chunk.total);
      t = {
        id: chunk.id,
        total: chunk.total,
        received: 0,
        buffer: new ArrayBuffer(0, { maxByteLength: chunk.total }),
        lastActivity: now,
      };
      this.#transfers.set(from, t);
    } else if (t.total !== chunk.total || t.received !== chunk.offset) {
      this.#drop(from, "rejected");
      throw new Rejection(
        409,
        "snapshot_out_of_order",
        `snapshot transfer ${chunk.id}: expected offset ${t.received} of ${t.total}, ` +
          `got ${chunk.offset} of ${chunk.total}; start again at offset 0`,
      );
    }
    t.buffer.resize(chunk.offset + data.length);
    new Uint8Array(t.buffer).set(data, chunk.offset);
    t.received += data.length;
    t.lastActivity = now;
    // most recently active last, so #makeRoom drops the idlest first
    this.#transfers.delete(from);
    if (t.received < t.total) {
      this.#transfers.set(from, t);
      return null;
    }
    // a fixed-length buffer for the storage layer (moved, not copied)
    return new Uint8Array(t.buffer.transferToFixedLength());
  }

  #unknown(chunk: ChunkHeaders): Rejection {
    return new Rejection(
      409,
      "snapshot_out_of_order",
      `snapshot transfer ${chunk.id} is unknown (expired or superseded); start again at offset 0`,
    );
  }

  #makeRoom(bytes: number): void {
    let reserved = bytes;
    for (const t of this.#transfers.values()) reserved += t.total;
    for (const [from, t] of this.#transfers) {
      if (reserved <= this.maxBytes) break;
      reserved -= t.total;
      this.#drop(from, "evicted");
    }
  }

  #drop(from: number, reason: "timeout" | "superseded" | "evicted" | "rejected"): void {
    if (this.#transfers.delete(from)) this.metrics.inc(M.snapshotTransfersDropped, { reason });
  }
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
