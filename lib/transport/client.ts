/**
 * The peer client: one per peer, an ordered queue of Raft messages sent over
 * keep-alive `fetch` to the peer's `POST /raft/messages`, plus JSON RPCs.
 *
 * Ordering and batching: at most `maxInflightRequests` requests are in flight
 * (default 1, which keeps strict order); everything queued meanwhile goes out
 * in the next request. Snapshots travel in their own lane, one at a time, so a
 * large snapshot never holds up heartbeats; each is encoded once and sent as
 * a sequence of chunks (`POST /raft/snapshot`, {@link SNAPSHOT_CHUNK_BYTES_DEFAULT}
 * each), and `onSnapshotResult` is called after the last chunk's answer (or
 * the first failure). With a secret, every request is signed (see `auth.ts`).
 * With `tls`, requests go over HTTPS. A failed request (network error,
 * timeout, non-2xx) drops its batch — Raft retransmits — calls
 * `onUnreachable`, and pauses the queue for a short, growing backoff. The queue
 * is bounded: when over, the oldest messages are dropped.
 *
 * @module
 */

import type { Message } from "../raft/types.ts";
import { NODE_ID_MAX } from "../raft/types.ts";
import { HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, nonce, signRequest } from "./auth.ts";
import { encodeMessages } from "./codec.ts";
import { describeTransportMetrics, type Metrics, TRANSPORT_METRICS as M } from "./metrics.ts";
import {
  HEADER_CLUSTER,
  HEADER_FROM,
  HEADER_SENDER,
  HEADER_SNAPSHOT_ID,
  HEADER_SNAPSHOT_OFFSET,
  HEADER_SNAPSHOT_TOTAL,
} from "./server.ts";

/** Default time a message request may take. */
export const REQUEST_TIMEOUT_MS_DEFAULT = 5_000;
/** Default size of one snapshot chunk: 1 MiB. */
export const SNAPSHOT_CHUNK_BYTES_DEFAULT = 1024 * 1024;
/** Default time a whole snapshot transfer (all its chunks) may take. */
export const SNAPSHOT_TIMEOUT_MS_DEFAULT = 120_000;
/** Default bound of the send queue, in messages. */
export const MAX_QUEUED_MESSAGES_DEFAULT = 4096;
/** Most messages in one request. */
export const BATCH_MESSAGES_MAX = 1024;
/** Most bytes of entry data in one request (a single larger message still goes alone). */
export const BATCH_BYTES_MAX = 4 * 1024 * 1024;
/** Snapshots waiting behind the one in flight; older ones are dropped. */
export const QUEUED_SNAPSHOTS_MAX = 1;
/** First pause after a failed request; it doubles up to {@link BACKOFF_MS_MAX}. */
export const BACKOFF_MS_MIN = 20;
/** Longest pause after failed requests. */
export const BACKOFF_MS_MAX = 1_000;

/** Options of {@link PeerClient}. */
export interface PeerClientOptions {
  /** this node's id */
  nodeId: number;
  /** the peer's id */
  peerId: number;
  /** the peer's server, `http://host:port` (or `https://`; with `tls`, `http` becomes `https`) */
  baseUrl: string;
  /** this node's cluster id (null before it joined one) */
  clusterId: () => string | null;
  /** the shared secret requests are signed with; null: unsigned (the peer accepts only loopback) */
  authSecret: string | null;
  metrics: Metrics;
  /** sent as the sender so a new node can answer a leader it does not know yet */
  selfAddress?: { address: string; port: number };
  /** a send failed (network error, timeout, non-2xx) or messages were dropped */
  onUnreachable: (peer: number) => void;
  /** a request that carried a snapshot_request finished (ok = the peer accepted it) */
  onSnapshotResult: (peer: number, ok: boolean) => void;
  /**
   * time a message request may take
   * @default REQUEST_TIMEOUT_MS_DEFAULT
   */
  requestTimeoutMs?: number;
  /**
   * time a whole snapshot transfer (all its chunks) may take
   * @default SNAPSHOT_TIMEOUT_MS_DEFAULT
   */
  snapshotTimeoutMs?: number;
  /**
   * size of one snapshot chunk
   * @default SNAPSHOT_CHUNK_BYTES_DEFAULT
   */
  snapshotChunkBytes?: number;
  /**
   * talk HTTPS (an `http://` base URL becomes `https://`); `caFile` is a PEM
   * file of the CA certificates to trust instead of the system's (null: the
   * system's)
   */
  tls?: { caFile: string | null };
  /**
   * bound of the send queue, in messages
   * @default MAX_QUEUED_MESSAGES_DEFAULT
   */
  maxQueuedMessages?: number;
  /**
   * requests in flight at once, 1..4; above 1 requests may arrive out of order
   * @default 1
   */
  maxInflightRequests?: number;
}

/** An RPC the peer answered with an error status. */
export class RpcError extends Error {
  override name = "RpcError";
  /** the HTTP status */
  readonly status: number;
  /** the error code the peer gave, if any */
  readonly code?: string;

  constructor(message: string, status: number, code?: string) {
    super(message);
    this.status = status;
    if (code !== undefined) this.code = code;
  }
}

class TimeoutError extends Error {
  override name = "TimeoutError";
}

type Failure = "network" | "timeout" | "status";

const encoder = new TextEncoder();

/** Sends messages and RPCs to one peer. */
export class PeerClient {
  readonly #o: PeerClientOptions;
  readonly #url: string;
  readonly #peerLabel: Record<string, string>;
  readonly #requestTimeoutMs: number;
  readonly #snapshotTimeoutMs: number;
  readonly #chunkBytes: number;
  readonly #maxQueued: number;
  readonly #maxInflight: number;
  readonly #http: Deno.HttpClient;
  #queue: Message[] = [];
  #snapshots: Message[] = [];
  #inflight = 0;
  #snapshotInflight = false;
  #backoffMs = 0;
  #backoffTimer: ReturnType<typeof setTimeout> | null = null;
  #closed = false;
  readonly #controllers = new Set<AbortController>();
  readonly #pending = new Set<Promise<unknown>>();

  /**
   * @param o the peer and callbacks
   * @throws {RangeError} for a bad peer id, URL or limit
   * @throws {Error} naming the file when `tls.caFile` cannot be read
   */
  constructor(o: PeerClientOptions) {
    for (const [key, id] of [["nodeId", o.nodeId], ["peerId", o.peerId]] as const) {
      if (!Number.isInteger(id) || id < 1 || id > NODE_ID_MAX) {
        throw new RangeError(`${key}: expected a node id in 1..${NODE_ID_MAX}, got ${id}`);
      }
    }
    let url: URL;
    try {
      url = new URL(o.baseUrl);
    } catch {
      throw new RangeError(`baseUrl: not a URL: ${JSON.stringify(o.baseUrl)}`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new RangeError(
        `baseUrl: expected http:// or https://, got ${JSON.stringify(o.baseUrl)}`,
      );
    }
    this.#o = o;
    let base = o.baseUrl.replace(/\/+$/, "");
    if (o.tls && url.protocol === "http:") base = `https:${base.slice("http:".length)}`;
    this.#url = base;
    this.#peerLabel = { peer: String(o.peerId) };
    this.#requestTimeoutMs = positiveOption(
      o.requestTimeoutMs,
      REQUEST_TIMEOUT_MS_DEFAULT,
      "requestTimeoutMs",
    );
    this.#snapshotTimeoutMs = positiveOption(
      o.snapshotTimeoutMs,
      SNAPSHOT_TIMEOUT_MS_DEFAULT,
      "snapshotTimeoutMs",
    );
    this.#maxQueued = positiveOption(
      o.maxQueuedMessages,
      MAX_QUEUED_MESSAGES_DEFAULT,
      "maxQueuedMessages",
    );
    this.#maxInflight = positiveOption(o.maxInflightRequests, 1, "maxInflightRequests");
    if (this.#maxInflight > 4) {
      throw new RangeError(`maxInflightRequests: expected 1..4, got ${this.#maxInflight}`);
    }
    this.#chunkBytes = positiveOption(
      o.snapshotChunkBytes,
      SNAPSHOT_CHUNK_BYTES_DEFAULT,
      "snapshotChunkBytes",
    );
    describeTransportMetrics(o.metrics);
    const caFile = o.tls?.caFile ?? null;
    let caCerts: string[] | undefined;
    if (caFile !== null) {
      try {
        caCerts = [Deno.readTextFileSync(caFile)];
      } catch (error) {
        throw new Error(`cannot read the TLS CA file "${caFile}": ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    this.#http = Deno.createHttpClient(caCerts ? { caCerts } : {});
  }

  /** The peer's base URL as used (`https://` with `tls`). */
  get baseUrl(): string {
    return this.#url;
  }

  /** Messages waiting to be sent (snapshots included). */
  get queuedMessages(): number {
    return this.#queue.length + this.#snapshots.length;
  }

  /**
   * Queue messages for the peer. Never throws; after {@link close} it drops them.
   *
   * @param messages in the order the peer should receive them
   */
  send(messages: Message[]): void {
    if (this.#closed) return;
    for (const m of messages) {
      if (m.type === "snapshot_request") {
        this.#snapshots.push(m);
        if (this.#snapshots.length > QUEUED_SNAPSHOTS_MAX) {
          this.#snapshots.shift();
          this.#o.metrics.inc(M.messagesDropped, {
            ...this.#peerLabel,
            reason: "snapshot_superseded",
          });
          this.#later(() => this.#o.onSnapshotResult(this.#o.peerId, false));
        }
      } else {
        this.#queue.push(m);
      }
    }
    const excess = this.#queue.length - this.#maxQueued;
    if (excess > 0) {
      this.#queue.splice(0, excess);
      this.#o.metrics.inc(M.messagesDropped, { ...this.#peerLabel, reason: "queue_full" }, excess);
      this.#later(() => this.#o.onUnreachable(this.#o.peerId));
    }
    this.#pump();
  }

  /**
   * Call `POST /rpc/<name>` on the peer.
   *
   * @param name the RPC name
   * @param body JSON-serializable request
   * @param timeoutMs how long to wait for the answer
   * @returns the peer's JSON answer
   * @throws {RpcError} when the peer answers with an error status
   * @throws {Error} on a network error, a timeout, or after {@link close}
   */
  async rpc(name: string, body: unknown, timeoutMs: number): Promise<unknown> {
    if (this.#closed) throw new Error(`client to node ${this.#o.peerId} is closed`);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new TimeoutError()), timeoutMs);
    this.#controllers.add(controller);
    const work = (async () => {
      const res = await this.#fetch(
        `/rpc/${encodeURIComponent(name)}`,
        { "Content-Type": "application/json" },
        encoder.encode(JSON.stringify(body ?? null)),
        controller.signal,
      );
      const text = await res.text();
      let parsed: unknown = null;
      try {
        parsed = text === "" ? null : JSON.parse(text);
      } catch {
        if (res.ok) {
          throw new Error(`rpc ${name} to node ${this.#o.peerId}: the answer is not JSON`);
        }
      }
      if (!res.ok) {
        const p = (typeof parsed === "object" && parsed !== null ? parsed : {}) as {
          error?: unknown;
          code?: unknown;
        };
        const message = typeof p.error === "string" ? p.error : `HTTP ${res.status}`;
        throw new RpcError(message, res.status, typeof p.code === "string" ? p.code : undefined);
      }
      return parsed;
    })();
    this.#pending.add(work);
    try {
      const result = await work;
      this.#o.metrics.inc(M.rpcCalls, { name, outcome: "ok" });
      return result;
    } catch (error) {
      this.#o.metrics.inc(M.rpcCalls, { name, outcome: "error" });
      if (error instanceof RpcError) throw error;
      if (controller.signal.aborted && controller.signal.reason instanceof TimeoutError) {
        throw new Error(`rpc ${name} to node ${this.#o.peerId} timed out after ${timeoutMs} ms`);
      }
      if (this.#closed) {
        throw new Error(`client to node ${this.#o.peerId} was closed during rpc ${name}`);
      }
      throw new Error(
        `rpc ${name} to node ${this.#o.peerId} at ${this.#url} failed: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    } finally {
      clearTimeout(timer);
      this.#controllers.delete(controller);
      this.#pending.delete(work);
    }
  }

  /** Abort in-flight requests, drop the queue and release the connection pool. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#snapshots = [];
    if (this.#backoffTimer !== null) clearTimeout(this.#backoffTimer);
    this.#backoffTimer = null;
    for (const controller of this.#controllers) controller.abort();
    await Promise.allSettled([...this.#pending]);
    this.#o.metrics.set(M.queueMessages, 0, this.#peerLabel);
    this.#http.close();
  }

  #pump(): void {
    if (this.#closed || this.#backoffTimer !== null) {
      this.#o.metrics.set(M.queueMessages, this.queuedMessages, this.#peerLabel);
      return;
    }
    while (this.#inflight < this.#maxInflight && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, batchLength(this.#queue));
      this.#inflight++;
      this.#track(
        this.#post(batch).finally(() => {
          this.#inflight--;
          this.#pump();
        }),
      );
    }
    if (!this.#snapshotInflight && this.#snapshots.length > 0) {
      const batch = this.#snapshots.splice(0, 1);
      this.#snapshotInflight = true;
      this.#track(
        this.#postSnapshot(batch[0]!).finally(() => {
          this.#snapshotInflight = false;
          this.#pump();
        }),
      );
    }
    this.#o.metrics.set(M.queueMessages, this.queuedMessages, this.#peerLabel);
  }

  #track(work: Promise<void>): void {
    this.#pending.add(work);
    work.finally(() => this.#pending.delete(work));
  }

  async #post(batch: Message[]): Promise<void> {
    const o = this.#o;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new TimeoutError()), this.#requestTimeoutMs);
    this.#controllers.add(controller);
    const body = this.#encode(batch);
    const started = performance.now();
    let failure: Failure | null = null;
    try {
      const res = await this.#fetch(
        "/raft/messages",
        { "Content-Type": "application/octet-stream" },
        body,
        controller.signal,
      );
      await res.arrayBuffer(); // drain, so the connection goes back to the pool
      if (!res.ok) failure = "status";
    } catch {
      failure = controller.signal.reason instanceof TimeoutError ? "timeout" : "network";
    } finally {
      clearTimeout(timer);
      this.#controllers.delete(controller);
    }
    if (this.#closed) return;
    o.metrics.inc(M.requests, this.#peerLabel);
    o.metrics.observe(M.requestDuration, (performance.now() - started) / 1000, this.#peerLabel);
    if (failure === null) {
      this.#backoffMs = 0;
      o.metrics.inc(M.bytesSent, undefined, body.length);
      for (const m of batch) o.metrics.inc(M.messagesSent, { type: m.type });
    } else {
      this.#failed(failure, batch.length);
    }
  }

  /**
   * Send one snapshot_request as chunks of one encoded envelope to
   * `POST /raft/snapshot`, in order, each waiting for the previous answer.
   */
  async #postSnapshot(message: Message): Promise<void> {
    const o = this.#o;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new TimeoutError()), this.#snapshotTimeoutMs);
    this.#controllers.add(controller);
    const body = this.#encode([message]);
    const id = crypto.randomUUID();
    let failure: Failure | null = null;
    let sent = 0;
    try {
      for (let offset = 0; offset < body.length && failure === null; offset += this.#chunkBytes) {
        const chunk = body.subarray(offset, Math.min(body.length, offset + this.#chunkBytes));
        const started = performance.now();
        const res = await this.#fetch(
          "/raft/snapshot",
          {
            "Content-Type": "application/octet-stream",
            [HEADER_SNAPSHOT_ID]: id,
            [HEADER_SNAPSHOT_OFFSET]: String(offset),
            [HEADER_SNAPSHOT_TOTAL]: String(body.length),
          },
          chunk,
          controller.signal,
        );
        await res.arrayBuffer();
        if (this.#closed) return;
        o.metrics.inc(M.requests, this.#peerLabel);
        o.metrics.observe(
          M.requestDuration,
          (performance.now() - started) / 1000,
          this.#peerLabel,
        );
        if (!res.ok) failure = "status";
        else {
          sent += chunk.length;
          o.metrics.inc(M.snapshotChunksSent, this.#peerLabel);
        }
      }
    } catch {
      failure = controller.signal.reason instanceof TimeoutError ? "timeout" : "network";
    } finally {
      clearTimeout(timer);
      this.#controllers.delete(controller);
    }
    if (this.#closed) return;
    o.metrics.inc(M.bytesSent, undefined, sent);
    if (failure === null) {
      this.#backoffMs = 0;
      o.metrics.inc(M.messagesSent, { type: message.type });
    } else {
      this.#failed(failure, 1);
    }
    o.onSnapshotResult(o.peerId, failure === null);
  }

  #encode(batch: Message[]): Uint8Array<ArrayBuffer> {
    const o = this.#o;
    return encodeMessages({
      clusterId: o.clusterId(),
      from: o.nodeId,
      sender: o.selfAddress ?? null,
      messages: batch,
    }) as Uint8Array<ArrayBuffer>;
  }

  #failed(failure: Failure, dropped: number): void {
    const o = this.#o;
    o.metrics.inc(M.requestErrors, { ...this.#peerLabel, reason: failure });
    o.metrics.inc(M.messagesDropped, { ...this.#peerLabel, reason: "request_failed" }, dropped);
    this.#startBackoff();
    o.onUnreachable(o.peerId);
  }

  /** POST `body` to `path` on the peer with the common headers, signed when there is a secret. */
  async #fetch(
    path: string,
    extra: Record<string, string>,
    body: Uint8Array,
    signal: AbortSignal,
  ): Promise<Response> {
    const headers = { ...this.#headers(), ...extra };
    const secret = this.#o.authSecret;
    if (secret !== null) {
      const timestamp = String(Date.now());
      headers[HEADER_NONCE] = nonce();
      headers[HEADER_TIMESTAMP] = timestamp;
      headers[HEADER_SIGNATURE] = await signRequest(secret, {
        method: "POST",
        path: new URL(`${this.#url}${path}`).pathname,
        timestamp,
        from: String(this.#o.nodeId),
        body,
        headers: Object.entries(headers),
      });
    }
    return await fetch(`${this.#url}${path}`, {
      method: "POST",
      headers,
      body: body as Uint8Array<ArrayBuffer>,
      signal,
      client: this.#http,
    });
  }

  #startBackoff(): void {
    this.#backoffMs = Math.min(BACKOFF_MS_MAX, Math.max(BACKOFF_MS_MIN, this.#backoffMs * 2));
    if (this.#backoffTimer !== null) return;
    this.#backoffTimer = setTimeout(() => {
      this.#backoffTimer = null;
      this.#pump();
    }, this.#backoffMs);
  }

  #headers(): Record<string, string> {
    const o = this.#o;
    const headers: Record<string, string> = { [HEADER_FROM]: String(o.nodeId) };
    const clusterId = o.clusterId();
    if (clusterId !== null) headers[HEADER_CLUSTER] = clusterId;
    if (o.selfAddress) {
      const { address, port } = o.selfAddress;
      headers[HEADER_SENDER] = address.includes(":")
        ? `[${address}]:${port}`
        : `${address}:${port}`;
    }
    return headers;
  }

  /** Run a callback after the current call returns, unless the client closed meanwhile. */
  #later(callback: () => void): void {
    queueMicrotask(() => {
      if (!this.#closed) callback();
    });
  }
}

function positiveOption(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name}: expected a positive integer, got ${value}`);
  }
  return value;
}

/** How many messages from the head of `queue` go in the next request (at least one). */
function batchLength(queue: Message[]): number {
  let bytes = 0;
  let n = 0;
  while (n < queue.length && n < BATCH_MESSAGES_MAX) {
    bytes += approximateBytes(queue[n]!);
    if (n > 0 && bytes > BATCH_BYTES_MAX) break;
    n++;
  }
  return n;
}

function approximateBytes(m: Message): number {
  if (m.type !== "append_request") return 100;
  let bytes = 150;
  for (const e of m.entries) bytes += 50 + e.data.length;
  return bytes;
}
