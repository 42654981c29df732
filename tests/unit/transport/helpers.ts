/** Shared fixtures of the transport tests: messages, an in-process app, signed requests. */
import type { Hono } from "hono";
import {
  createPeerApp,
  encodeMessages,
  HEADER_NONCE,
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  type MessageSender,
  Metrics,
  type PeerAppOptions,
  registerRpc,
  signRequest,
} from "../../../lib/transport/mod.ts";
import type { Entry, Message } from "../../../lib/raft/types.ts";

export const CLUSTER = "c0ffee00-0000-4000-8000-000000000001";
export const SECRET = "s3cret";

export function heartbeat(commit: number, from = 1, to = 2): Message {
  return { type: "heartbeat_request", term: 3, from, to, commit, readContext: "" };
}

export function append(entries: number, entryBytes: number, first = 1): Message {
  const list: Entry[] = [];
  for (let i = 0; i < entries; i++) {
    list.push({
      index: first + i,
      term: 3,
      type: "normal",
      data: new Uint8Array(entryBytes).fill(i & 0xff),
    });
  }
  return {
    type: "append_request",
    term: 3,
    from: 1,
    to: 2,
    prevLogIndex: first - 1,
    prevLogTerm: first > 1 ? 3 : 0,
    commit: 0,
    entries: list,
  };
}

export function snapshotRequest(size: number, fill = 7): Message {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + fill) & 0xff;
  return {
    type: "snapshot_request",
    term: 3,
    from: 1,
    to: 2,
    snapshot: {
      meta: { index: 50, term: 3, membership: { voters: [1, 2], learners: [] } },
      data,
    },
  };
}

export function body(
  messages: Message[],
  clusterId: string | null = CLUSTER,
  from = 1,
): Uint8Array<ArrayBuffer> {
  return encodeMessages({ clusterId, from, sender: null, messages }) as Uint8Array<ArrayBuffer>;
}

/** Headers a well-behaved node 1 sends. */
export function peerHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return { "X-Pgraft-From": "1", "X-Pgraft-Cluster": CLUSTER, ...extra };
}

/** The `env` of a request from a loopback peer (for app.request). */
export const LOOPBACK = { remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 40000 } };
/** The `env` of a request from a remote peer. */
export const REMOTE = { remoteAddr: { transport: "tcp", hostname: "10.9.8.7", port: 40000 } };

/**
 * A signed POST: the headers node 1 sends, plus a nonce, timestamp and signature.
 *
 * @param options.timestamp sign as of this time (default now)
 * @param options.secret sign with this secret (default {@link SECRET})
 */
export async function signed(
  path: string,
  data: Uint8Array | string,
  options: { timestamp?: number; secret?: string; headers?: Record<string, string> } = {},
): Promise<RequestInit> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const headers: Record<string, string> = {
    ...(options.headers ?? peerHeaders()),
    [HEADER_NONCE]: crypto.randomUUID().slice(0, 16),
  };
  const timestamp = String(options.timestamp ?? Date.now());
  headers[HEADER_TIMESTAMP] = timestamp;
  headers[HEADER_SIGNATURE] = await signRequest(options.secret ?? SECRET, {
    method: "POST",
    path,
    timestamp,
    from: headers["X-Pgraft-From"] ?? "",
    body: bytes,
    headers: Object.entries(headers),
  });
  return { method: "POST", headers, body: bytes as Uint8Array<ArrayBuffer> };
}

export interface Received {
  clusterId: string | null;
  messages: Message[];
  sender: MessageSender;
}

export interface App {
  app: Hono;
  options: PeerAppOptions;
  received: Received[];
  messages: () => Message[];
  metrics: Metrics;
  rpcCalls: unknown[];
  /** the value of the rejected-requests counter */
  rejected: (endpoint: string, reason: string) => number;
}

/** Node 2's app (no server), with an `echo` RPC that records its calls. */
export function makeApp(overrides: Partial<PeerAppOptions> = {}): App {
  const received: Received[] = [];
  const rpcCalls: unknown[] = [];
  const metrics = new Metrics();
  const options: PeerAppOptions = {
    nodeId: 2,
    clusterId: () => CLUSTER,
    authSecret: SECRET,
    metrics,
    onMessages: (clusterId, messages, sender) => {
      received.push({ clusterId, messages, sender });
    },
    status: () => ({ node: 2 }),
    health: () => ({ ok: true }),
    ...overrides,
  };
  const app = createPeerApp(options);
  registerRpc(app, options, "echo", (b) => {
    rpcCalls.push(b);
    return Promise.resolve({ echoed: b });
  });
  return {
    app,
    options,
    received,
    messages: () => received.flatMap((r) => r.messages),
    metrics,
    rpcCalls,
    rejected: (endpoint, reason) =>
      metrics.value("transport_requests_rejected_total", { endpoint, reason }) ?? 0,
  };
}

export async function until(
  condition: () => boolean,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
