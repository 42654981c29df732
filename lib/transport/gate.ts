/**
 * The gate in front of every peer endpoint but `GET /health`: authentication
 * and validation as Hono middleware ({@link peerGate}). A request that passes
 * finds what was checked in `c.get("gate")` ({@link CheckedRequest}); one that
 * does not becomes a {@link Rejection}, which the app's one `onError` turns
 * into `{ error, code }` with the rejection's status and counts in
 * `pgraft_transport_requests_rejected_total{endpoint,reason}`.
 *
 * The checks, in this order:
 * - with a secret, a `POST` must be signed (see `auth.ts`): 401 `unauthorized`
 *   without `X-Pgraft-Signature`/`X-Pgraft-Timestamp` or with a timestamp that
 *   is not a number, 401 `stale` for a timestamp outside the clock-skew
 *   window, 400 for a bad `X-Pgraft-From`, 413 `too_large` for a body over the
 *   limit, 401 `unauthorized` for a wrong signature, 401 `replay` for a
 *   signature already seen; any other request needs the bearer token (401,
 *   see {@link authorized});
 * - without a secret, 403 `forbidden` for a non-loopback peer;
 * - the sender headers (400), the cluster id (409 when both sides know theirs
 *   and they differ), the body size (413).
 *
 * @module
 */

import type { Context, MiddlewareHandler } from "hono";
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import { NODE_ID_MAX } from "../raft/types.ts";
import {
  authorized,
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  isLoopback,
  type ReplayGuard,
  verifyRequest,
} from "./auth.ts";
import { type Metrics, TRANSPORT_METRICS as M } from "./metrics.ts";

/** Header with the sender's cluster id (absent or empty: it has none yet). */
export const HEADER_CLUSTER = "X-Pgraft-Cluster";
/** Header with the sender's node id. */
export const HEADER_FROM = "X-Pgraft-From";
/** Header with the sender's advertised `host:port`. */
export const HEADER_SENDER = "X-Pgraft-Sender";
/** Default largest request body: 64 MiB. */
export const MAX_BODY_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Longest `X-Pgraft-Sender` accepted. */
const SENDER_HEADER_LENGTH_MAX = 300;

/** Why a request was turned away: the `code` of the JSON error and the metric's `reason` label. */
export type RejectReason =
  | "unauthorized"
  | "stale"
  | "replay"
  | "forbidden"
  | "bad_request"
  | "cluster_mismatch"
  | "too_large"
  | "snapshot_out_of_order";

/**
 * A peer request turned away with a 4xx. Thrown by the gate and by the
 * handlers behind it; the app's `onError` answers `{ error: message, code:
 * reason }` (see {@link getResponse}) and counts it.
 */
export class Rejection extends HTTPException {
  /** "Rejection" */
  override name = "Rejection";
  /** the error code, and the metric's `reason` label */
  readonly reason: RejectReason;

  /**
   * Turn a request away.
   *
   * @param status the HTTP status
   * @param reason the error code
   * @param message what was wrong, for the peer's log
   */
  constructor(status: 400 | 401 | 403 | 409 | 413, reason: RejectReason, message: string) {
    super(status, { message });
    this.reason = reason;
  }

  /** The answer: `{ error, code }` as JSON, with the status. */
  override getResponse(): Response {
    return Response.json({ error: this.message, code: this.reason }, { status: this.status });
  }
}

/** What the gate checked, for the handler behind it: `c.get("gate")`. */
export interface CheckedRequest {
  /** the sender's node id from `X-Pgraft-From` (0 for a `GET` without it) */
  from: number;
  /** the sender's cluster id from `X-Pgraft-Cluster`, null when it has none */
  clusterId: string | null;
  /** the sender's advertised address from `X-Pgraft-Sender`, null when absent */
  sender: { address: string; port: number } | null;
  /** the request body, read within the limit (empty for a `GET`) */
  body: Uint8Array;
}

/** The context variables the gate sets (`Env` of a gated route). */
export type GateEnv = {
  Variables: {
    /** the route's name in the rejection metric, set first */
    endpoint: string;
    /** the registry the route counts in, set first */
    metrics: Metrics;
    /** what the gate checked, set once the request passed */
    gate: CheckedRequest;
  };
};

/** What {@link peerGate} checks against; read when the gate is made. */
export interface GateOptions {
  /** the route's name in the rejection metric, e.g. `raft`, `rpc_command` */
  endpoint: string;
  /** the shared secret; null: only loopback peers are accepted */
  authSecret: string | null;
  /** this node's cluster id; null = not in a cluster yet, accept any */
  clusterId: () => string | null;
  /** the registry rejections are counted in */
  metrics: Metrics;
  /** the signatures already seen (one per app, shared by its routes) */
  replay: ReplayGuard;
  /** largest request body; larger ones get 413 */
  maxBodyBytes: number;
  /** largest difference between a signed request's timestamp and {@link now} */
  maxClockSkewMs: number;
  /** the clock, ms since the epoch */
  now: () => number;
}

/**
 * The gate as middleware: check the request (see the module's documentation),
 * then set `c.get("gate")` and run the handler, or throw a {@link Rejection}.
 *
 * @param options what to check against
 * @returns the middleware, for one route
 * @example
 * ```ts
 * app.post("/raft/messages", peerGate(options), (c) => {
 *   const { from, body } = c.get("gate");
 *   // ...
 * });
 * ```
 */
export function peerGate(options: GateOptions): MiddlewareHandler<GateEnv> {
  return createMiddleware<GateEnv>(async (c, next) => {
    c.set("endpoint", options.endpoint);
    c.set("metrics", options.metrics);
    const req = c.req.raw;
    const post = req.method === "POST";
    let body: Uint8Array | null = null;
    if (options.authSecret === null) await checkLoopback(c);
    else if (post) body = await checkSignature(req, options.authSecret, options);
    else if (!authorized(req.headers.get("Authorization"), options.authSecret)) {
      throw new Rejection(401, "unauthorized", "missing or wrong bearer token");
    }
    const from = parseFrom(req.headers.get(HEADER_FROM), post);
    const clusterHeader = req.headers.get(HEADER_CLUSTER);
    const clusterId = clusterHeader === null || clusterHeader === "" ? null : clusterHeader;
    checkCluster(clusterId, options.clusterId());
    const senderHeader = req.headers.get(HEADER_SENDER);
    const sender = senderHeader === null || senderHeader === ""
      ? null
      : parseHostPort(senderHeader);
    body ??= post ? await readBody(req, options.maxBodyBytes) : new Uint8Array(0);
    c.set("gate", { from, clusterId, sender, body });
    await next();
  });
}

/**
 * What the app's `onError` does with a {@link Rejection}: count it in
 * `pgraft_transport_requests_rejected_total{endpoint,reason}`, under the
 * endpoint and in the registry of the route's gate, and answer it.
 *
 * @param c the request's context
 * @param rejection what was thrown
 * @param metrics the registry when no gate ran (it always does before a rejection)
 * @returns the `{ error, code }` answer with the rejection's status
 */
export function answerRejection(c: Context, rejection: Rejection, metrics: Metrics): Response {
  // absent only outside a gated route
  const gate = c as Context<{ Variables: Partial<GateEnv["Variables"]> }>;
  const endpoint = gate.var.endpoint ?? c.req.routePath;
  (gate.var.metrics ?? metrics).inc(M.rejected, { endpoint, reason: rejection.reason });
  return rejection.getResponse();
}

/**
 * Refuse a sender whose cluster id differs from this node's, when both know theirs.
 *
 * @param theirs the sender's cluster id, null when it has none
 * @param ours this node's, null when it has none
 * @throws {Rejection} 409 `cluster_mismatch`
 */
export function checkCluster(theirs: string | null, ours: string | null): void {
  if (theirs !== null && ours !== null && theirs !== ours) {
    throw new Rejection(
      409,
      "cluster_mismatch",
      `cluster id ${theirs} is not this node's cluster ${ours}`,
    );
  }
}

/**
 * Check a signed `POST`: signature and timestamp present, timestamp in the
 * window, signature right for the body read (within the limit), not a replay.
 *
 * @returns the body, read to check the signature
 */
async function checkSignature(
  req: Request,
  authSecret: string,
  options: GateOptions,
): Promise<Uint8Array> {
  const now = options.now();
  const signature = req.headers.get(HEADER_SIGNATURE);
  const timestampHeader = req.headers.get(HEADER_TIMESTAMP);
  if (signature === null || timestampHeader === null) {
    await discardBody(req);
    throw new Rejection(
      401,
      "unauthorized",
      `missing ${HEADER_SIGNATURE} or ${HEADER_TIMESTAMP}: peer requests must be signed`,
    );
  }
  if (!/^\d{1,15}$/.test(timestampHeader)) {
    await discardBody(req);
    throw new Rejection(401, "unauthorized", `${HEADER_TIMESTAMP}: expected ms since the epoch`);
  }
  const timestamp = Number(timestampHeader);
  const skew = options.maxClockSkewMs;
  if (Math.abs(now - timestamp) > skew) {
    await discardBody(req);
    throw new Rejection(
      401,
      "stale",
      `${HEADER_TIMESTAMP} ${timestamp} is ${now - timestamp} ms from this node's clock ` +
        `(allowed: ±${skew} ms); check the clocks`,
    );
  }
  const fromHeader = req.headers.get(HEADER_FROM);
  const from = parseFrom(fromHeader, true);
  const body = await readBody(req, options.maxBodyBytes);
  const ok = await verifyRequest(authSecret, {
    method: req.method,
    path: new URL(req.url).pathname,
    timestamp: timestampHeader,
    from: fromHeader!,
    body,
    headers: req.headers,
  }, signature);
  if (!ok) throw new Rejection(401, "unauthorized", `${HEADER_SIGNATURE}: wrong signature`);
  if (!options.replay.admit(signature, from, timestamp, now)) {
    throw new Rejection(401, "replay", "this request was already received (replay)");
  }
  return body;
}

/** Without a secret: refuse a peer that is not on this host. */
async function checkLoopback(c: Context): Promise<void> {
  const remote = remoteHostname(c);
  if (isLoopback(remote)) return;
  await discardBody(c.req.raw);
  throw new Rejection(
    403,
    "forbidden",
    `no pgraft.auth_secret is set: only loopback peers are accepted, not ${
      remote ?? "an unknown address"
    }`,
  );
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

/**
 * Parse `host:port` or `[v6]:port`.
 *
 * @throws {Rejection} 400 when malformed
 */
function parseHostPort(text: string): { address: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:\s]+|[0-9a-fA-F:]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535 || text.length > SENDER_HEADER_LENGTH_MAX) {
    throw new Rejection(
      400,
      "bad_request",
      `${HEADER_SENDER}: expected host:port, got ${JSON.stringify(text.slice(0, 80))}`,
    );
  }
  return { address: (match[1] ?? match[2])!, port };
}

/** The peer's address, as `Deno.serve` passes it (`app.fetch(req, info)`); null when unknown. */
function remoteHostname(c: Context): string | null {
  const env = c.env as { remoteAddr?: { hostname?: unknown } } | undefined;
  const hostname = env?.remoteAddr?.hostname;
  return typeof hostname === "string" ? hostname : null;
}

/** Drop a body that will not be read, so the connection can be reused. */
async function discardBody(req: Request): Promise<void> {
  await req.body?.cancel().catch(() => {});
}

/**
 * Read a request body of at most `maxBytes`.
 *
 * @throws {Rejection} 413 when the body (declared or actual) is larger
 */
async function readBody(req: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = req.headers.get("Content-Length");
  if (declared !== null && Number(declared) > maxBytes) {
    await discardBody(req);
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
