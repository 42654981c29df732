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
import {
  CodecError,
  decodeMessages,
  encodeMessages,
  type Envelope,
  type MembersView,
} from "./codec.ts";
import { HEADER_CLUSTER, HEADER_FROM, HEADER_SENDER } from "./gate.ts";
import { describeTransportMetrics, type Metrics, TRANSPORT_METRICS as M } from "./metrics.ts";
import {
  HEADER_SNAPSHOT_ID,
  HEADER_SNAPSHOT_OFFSET,
  HEADER_SNAPSHOT_TOTAL,
} from "./snapshot_assembler.ts";

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
/**
 * Most bytes in one request, as estimated from the entry data plus a fixed
 * allowance per message and entry (a single larger message still goes alone).
 */
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
  /** the registry the client counts in (labelled with the peer's id) */
  metrics: Metrics;
  /** sent as the sender so a new node can answer a leader it does not know yet */
  selfAddress?: { address: string; port: number };
  /**
   * the leader's view of the members, sent with every request that carries a
   * heartbeat (null: none, e.g. this node does not lead)
   */
  view?: () => MembersView | null;
  /** a send failed (network error, timeout, non-2xx) or messages were dropped */
  onUnreachable: (peer: number) => void;
  /**
   * a snapshot_request is done with: ok when the peer accepted the last chunk
   * of its transfer; not ok when a chunk failed, or when a newer snapshot
   * replaced it in the queue before it was sent
   */
  onSnapshotResult: (peer: number, ok: boolean) => void;
  /**
   * the peer answered a batch with messages of its own in the response body
   * (its replies, e.g. append responses once its log is durable): one HTTP
   * exchange per replication round instead of a request each way
   */
  onReply?: (messages: Message[]) => void;
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
   * message requests in flight at once, 1..4 (the snapshot lane and RPCs are
   * not counted); above 1 requests may arrive out of order
   * @default 1
   */
  maxInflightRequests?: number;
}

/** What {@link PeerClient.probe} learned. */
export type ProbeResult =
  | { kind: "refused" }
  | { kind: "answered"; role: string; term: number }
  | { kind: "unknown" };

/**
 * Whether a failed fetch was refused at connect: nothing listened on the port.
 * Deno reports it as a TypeError whose cause's message carries the OS's words.
 */
export function isConnectionRefused(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 4; depth++) {
    if (e instanceof Deno.errors.ConnectionRefused || /connection refused/i.test(e.message)) {
      return true;
    }
    e = e.cause;
  }
  return false;
}

/** An RPC the peer answered with an error status. */
export class RpcError extends Error {
  /** "RpcError" */
  override name = "RpcError";
  /** the HTTP status */
  readonly status: number;
  /** the error code the peer gave, if any */
  readonly code?: string;

  /**
   * Make the error for a peer's answer.
   *
   * @param message the peer's `error`, or `HTTP <status>`
   * @param status the HTTP status
   * @param code the peer's `code`, if any
   */
  constructor(message: string, status: number, code?: string) {
    super(message);
    this.status = status;
    if (code !== undefined) this.code = code;
  }
}

class TimeoutError extends Error {
  override name = "TimeoutError";
}

/** Why a request failed: the `reason` label of `transport_request_errors_total`. */
type Failure = "network" | "timeout" | "status";

const encoder = new TextEncoder();

/** Sends messages and RPCs to one peer. */
export class PeerClient {
  /** as given; the fields below are the ones read often or validated */
  readonly #options: PeerClientOptions;
  readonly #peerId: number;
  readonly #metrics: Metrics;
  readonly #baseUrl: string;
  readonly #peerLabel: Record<string, string>;
  readonly #requestTimeoutMs: number;
  readonly #snapshotTimeoutMs: number;
  readonly #snapshotChunkBytes: number;
  readonly #maxQueuedMessages: number;
  readonly #maxInflightRequests: number;
  readonly #httpClient: Deno.HttpClient;
  #queue: Message[] = [];
  #snapshots: Message[] = [];
  #inflightRequests = 0;
  #snapshotInflight = false;
  #backoffMs = 0;
  #backoffTimer: ReturnType<typeof setTimeout> | null = null;
  #closed = false;
  /** one per request in flight; {@link close} aborts them */
  readonly #controllers = new Set<AbortController>();
  /** the work in flight (message batches, snapshots, RPCs) that {@link close} waits for */
  readonly #pending = new Set<Promise<unknown>>();

  /**
   * Make a client; nothing is sent before {@link send} or {@link rpc}.
   *
   * @param options the peer, its limits and the callbacks
   * @throws {RangeError} for a bad peer id, URL or limit
   * @throws {Error} naming the file when `tls.caFile` cannot be read
   */
  constructor(options: PeerClientOptions) {
    for (const [key, id] of [["nodeId", options.nodeId], ["peerId", options.peerId]] as const) {
      if (!Number.isInteger(id) || id < 1 || id > NODE_ID_MAX) {
        throw new RangeError(`${key}: expected a node id in 1..${NODE_ID_MAX}, got ${id}`);
      }
    }
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      throw new RangeError(`baseUrl: not a URL: ${JSON.stringify(options.baseUrl)}`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new RangeError(
        `baseUrl: expected http:// or https://, got ${JSON.stringify(options.baseUrl)}`,
      );
    }
    this.#options = options;
    this.#peerId = options.peerId;
    this.#metrics = options.metrics;
    let base = options.baseUrl.replace(/\/+$/, "");
    if (options.tls && url.protocol === "http:") base = `https:${base.slice("http:".length)}`;
    this.#baseUrl = base;
    this.#peerLabel = { peer: String(options.peerId) };
    this.#requestTimeoutMs = positiveOption(
      options.requestTimeoutMs,
      REQUEST_TIMEOUT_MS_DEFAULT,
      "requestTimeoutMs",
    );
    this.#snapshotTimeoutMs = positiveOption(
      options.snapshotTimeoutMs,
      SNAPSHOT_TIMEOUT_MS_DEFAULT,
      "snapshotTimeoutMs",
    );
    this.#maxQueuedMessages = positiveOption(
      options.maxQueuedMessages,
      MAX_QUEUED_MESSAGES_DEFAULT,
      "maxQueuedMessages",
    );
    this.#maxInflightRequests = positiveOption(
      options.maxInflightRequests,
      1,
      "maxInflightRequests",
    );
    if (this.#maxInflightRequests > 4) {
      throw new RangeError(`maxInflightRequests: expected 1..4, got ${this.#maxInflightRequests}`);
    }
    this.#snapshotChunkBytes = positiveOption(
      options.snapshotChunkBytes,
      SNAPSHOT_CHUNK_BYTES_DEFAULT,
      "snapshotChunkBytes",
    );
    describeTransportMetrics(options.metrics);
    const caFile = options.tls?.caFile ?? null;
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
    this.#httpClient = Deno.createHttpClient(caCerts ? { caCerts } : {});
  }

  /** The peer's base URL as used (`https://` with `tls`). */
  get baseUrl(): string {
    return this.#baseUrl;
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
          this.#metrics.inc(M.messagesDropped, {
            ...this.#peerLabel,
            reason: "snapshot_superseded",
          });
          this.#later(() => this.#options.onSnapshotResult(this.#peerId, false));
        }
      } else {
        this.#queue.push(m);
      }
    }
    const excess = this.#queue.length - this.#maxQueuedMessages;
    if (excess > 0) {
      this.#queue.splice(0, excess);
      this.#metrics.inc(
        M.messagesDropped,
        { ...this.#peerLabel, reason: "queue_full" },
        excess,
      );
      this.#later(() => this.#options.onUnreachable(this.#peerId));
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
   * @throws {Error} on a network error, a timeout, an answer that is not
   *   JSON, or after {@link close}
   */
  async rpc(name: string, body: unknown, timeoutMs: number): Promise<unknown> {
    if (this.#closed) throw new Error(`client to node ${this.#peerId} is closed`);
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
          throw new Error(`rpc ${name} to node ${this.#peerId}: the answer is not JSON`);
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
      this.#metrics.inc(M.rpcCalls, { name, outcome: "ok" });
      return result;
    } catch (error) {
      this.#metrics.inc(M.rpcCalls, { name, outcome: "error" });
      if (error instanceof RpcError) throw error;
      if (controller.signal.aborted && controller.signal.reason instanceof TimeoutError) {
        throw new Error(
          `rpc ${name} to node ${this.#peerId} timed out after ${timeoutMs} ms`,
        );
      }
      if (this.#closed) {
        throw new Error(`client to node ${this.#peerId} was closed during rpc ${name}`);
      }
      const reason = (error as Error).message;
      throw new Error(`rpc ${name} to node ${this.#peerId} at ${this.#baseUrl} failed: ${reason}`, {
        cause: error,
      });
    } finally {
      clearTimeout(timer);
      this.#controllers.delete(controller);
      this.#pending.delete(work);
    }
  }

  /** Abort in-flight requests, drop the queue and release the connection pool. Idempotent. */
  /**
   * Ask the peer's agent whether it is there and what it is (`GET /health`):
   * "refused" when nothing listens on its port (its process is gone or
   * restarting — evidence, unlike a timeout, which says nothing), else what it
   * answered, or "unknown".
   *
   * @param timeoutMs how long to wait for the answer
   */
  async probe(timeoutMs: number): Promise<ProbeResult> {
    if (this.#closed) return { kind: "unknown" };
    try {
      const res = await fetch(`${this.#baseUrl}/health`, {
        signal: AbortSignal.timeout(timeoutMs),
        client: this.#httpClient,
      });
      const body = await res.json() as { role?: unknown; term?: unknown };
      if (typeof body.role !== "string" || typeof body.term !== "number") {
        return { kind: "unknown" };
      }
      return { kind: "answered", role: body.role, term: body.term };
    } catch (error) {
      return isConnectionRefused(error) ? { kind: "refused" } : { kind: "unknown" };
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#snapshots = [];
    if (this.#backoffTimer !== null) clearTimeout(this.#backoffTimer);
    this.#backoffTimer = null;
    for (const controller of this.#controllers) controller.abort();
    await Promise.allSettled([...this.#pending]);
    this.#metrics.set(M.queueMessages, 0, this.#peerLabel);
    this.#httpClient.close();
  }

  /**
   * Start what the limits allow, unless closed or backing off: batches from
   * the queue up to the in-flight limit, and the next snapshot when none is
   * in flight.
   */
  #pump(): void {
    if (this.#closed || this.#backoffTimer !== null) {
      this.#metrics.set(M.queueMessages, this.queuedMessages, this.#peerLabel);
      return;
    }
    while (this.#inflightRequests < this.#maxInflightRequests && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, batchLength(this.#queue));
      this.#inflightRequests++;
      this.#track(
        this.#postMessages(batch).finally(() => {
          this.#inflightRequests--;
          this.#pump();
        }),
      );
    }
    if (!this.#snapshotInflight && this.#snapshots.length > 0) {
      const snapshot = this.#snapshots.shift()!;
      this.#snapshotInflight = true;
      this.#track(
        this.#postSnapshot(snapshot).finally(() => {
          this.#snapshotInflight = false;
          this.#pump();
        }),
      );
    }
    this.#metrics.set(M.queueMessages, this.queuedMessages, this.#peerLabel);
  }

  /** Keep `work` until it settles, so that {@link close} can wait for it. */
  #track(work: Promise<void>): void {
    this.#pending.add(work);
    work.finally(() => this.#pending.delete(work));
  }

  /** Send one batch to `POST /raft/messages`; when that fails, drop it and back off. */
  async #postMessages(batch: Message[]): Promise<void> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new TimeoutError()), this.#requestTimeoutMs);
    this.#controllers.add(controller);
    const body = this.#encode(batch);
    const started = performance.now();
    let failure: Failure | null = null;
    let replies: Message[] = [];
    try {
      const res = await this.#fetch(
        "/raft/messages",
        { "Content-Type": "application/octet-stream" },
        body,
        controller.signal,
      );
      // Read the body whatever the status, so the connection goes back to the pool.
      const answer = new Uint8Array(await res.arrayBuffer());
      if (!res.ok) failure = "status";
      else if (res.status === 200 && answer.length > 0) replies = this.#decodeReply(answer);
    } catch {
      failure = controller.signal.reason instanceof TimeoutError ? "timeout" : "network";
    } finally {
      clearTimeout(timer);
      this.#controllers.delete(controller);
    }
    if (this.#closed) return;
    if (replies.length > 0) this.#options.onReply?.(replies);
    this.#metrics.inc(M.requests, this.#peerLabel);
    this.#metrics.observe(
      M.requestDuration,
      (performance.now() - started) / 1000,
      this.#peerLabel,
    );
    if (failure === null) {
      this.#backoffMs = 0;
      this.#metrics.inc(M.bytesSent, undefined, body.length);
      for (const m of batch) this.#metrics.inc(M.messagesSent, { type: m.type });
    } else {
      this.#failed(failure, batch.length);
    }
  }

  /**
   * Send one snapshot_request as chunks of one encoded envelope to
   * `POST /raft/snapshot`, in order, each waiting for the previous answer and
   * none after a failure; then report the outcome to `onSnapshotResult`.
   */
  async #postSnapshot(message: Message): Promise<void> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new TimeoutError()), this.#snapshotTimeoutMs);
    this.#controllers.add(controller);
    const body = this.#encode([message]);
    const id = crypto.randomUUID();
    let failure: Failure | null = null;
    const chunkBytes = this.#snapshotChunkBytes;
    let sent = 0;
    try {
      for (let offset = 0; offset < body.length && failure === null; offset += chunkBytes) {
        const chunk = body.subarray(offset, Math.min(body.length, offset + chunkBytes));
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
        this.#metrics.inc(M.requests, this.#peerLabel);
        this.#metrics.observe(
          M.requestDuration,
          (performance.now() - started) / 1000,
          this.#peerLabel,
        );
        if (!res.ok) failure = "status";
        else {
          sent += chunk.length;
          this.#metrics.inc(M.snapshotChunksSent, this.#peerLabel);
        }
      }
    } catch {
      failure = controller.signal.reason instanceof TimeoutError ? "timeout" : "network";
    } finally {
      clearTimeout(timer);
      this.#controllers.delete(controller);
    }
    if (this.#closed) return;
    this.#metrics.inc(M.bytesSent, undefined, sent);
    if (failure === null) {
      this.#backoffMs = 0;
      this.#metrics.inc(M.messagesSent, { type: message.type });
    } else {
      this.#failed(failure, 1);
    }
    this.#options.onSnapshotResult(this.#peerId, failure === null);
  }

  /**
   * The peer's replies in a response body: checked like any request body (they
   * must come from the peer, addressed to this node); a bad one is dropped and
   * counted, as Raft retransmits.
   */
  #decodeReply(body: Uint8Array): Message[] {
    try {
      const envelope = decodeMessages(body, this.#options.nodeId);
      if (envelope.from !== this.#peerId) throw new CodecError(`from: expected ${this.#peerId}`);
      for (const m of envelope.messages) this.#metrics.inc(M.messagesReceived, { type: m.type });
      this.#metrics.inc(M.bytesReceived, undefined, body.length);
      return envelope.messages;
    } catch {
      this.#metrics.inc(M.messagesDropped, { ...this.#peerLabel, reason: "bad_reply" });
      return [];
    }
  }

  /** The request body for `batch`: the envelope in the binary wire format. */
  #encode(batch: Message[]): Uint8Array<ArrayBuffer> {
    const envelope: Envelope = {
      clusterId: this.#options.clusterId(),
      from: this.#options.nodeId,
      sender: this.#options.selfAddress ?? null,
      messages: batch,
    };
    if (this.#options.view && batch.some((m) => m.type === "heartbeat_request")) {
      const view = this.#options.view();
      if (view) envelope.view = view;
    }
    return encodeMessages(envelope) as Uint8Array<ArrayBuffer>;
  }

  /** Count a failed request and the messages it drops, back off, and report the peer unreachable. */
  #failed(failure: Failure, dropped: number): void {
    this.#metrics.inc(M.requestErrors, { ...this.#peerLabel, reason: failure });
    this.#metrics.inc(
      M.messagesDropped,
      { ...this.#peerLabel, reason: "request_failed" },
      dropped,
    );
    this.#startBackoff();
    this.#options.onUnreachable(this.#peerId);
  }

  /** POST `body` to `path` on the peer with the common headers, signed when there is a secret. */
  async #fetch(
    path: string,
    extra: Record<string, string>,
    body: Uint8Array,
    signal: AbortSignal,
  ): Promise<Response> {
    const headers = { ...this.#headers(), ...extra };
    const secret = this.#options.authSecret;
    if (secret !== null) {
      const timestamp = String(Date.now());
      headers[HEADER_NONCE] = nonce();
      headers[HEADER_TIMESTAMP] = timestamp;
      headers[HEADER_SIGNATURE] = await signRequest(secret, {
        method: "POST",
        path: new URL(`${this.#baseUrl}${path}`).pathname,
        timestamp,
        from: String(this.#options.nodeId),
        body,
        headers: Object.entries(headers),
      });
    }
    return await fetch(`${this.#baseUrl}${path}`, {
      method: "POST",
      headers,
      body: body as Uint8Array<ArrayBuffer>,
      signal,
      client: this.#httpClient,
    });
  }

  /** Pause the queue: the pause doubles with each failure, within the bounds, until a success. */
  #startBackoff(): void {
    this.#backoffMs = Math.min(BACKOFF_MS_MAX, Math.max(BACKOFF_MS_MIN, this.#backoffMs * 2));
    if (this.#backoffTimer !== null) return;
    this.#backoffTimer = setTimeout(() => {
      this.#backoffTimer = null;
      this.#pump();
    }, this.#backoffMs);
  }

  /** The headers every request carries: the sender's node id, cluster id and address. */
  #headers(): Record<string, string> {
    const headers: Record<string, string> = { [HEADER_FROM]: String(this.#options.nodeId) };
    const clusterId = this.#options.clusterId();
    if (clusterId !== null) headers[HEADER_CLUSTER] = clusterId;
    if (this.#options.selfAddress) {
      const { address, port } = this.#options.selfAddress;
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
