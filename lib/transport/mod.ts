/**
 * The peer transport: Raft messages and RPCs between pgraft agents over HTTP.
 *
 * - {@link createPeerApp} / {@link registerRpc} / {@link PeerServer}: the Hono
 *   server side (`POST /raft/messages`, `POST /raft/snapshot`,
 *   `POST /rpc/<name>`, `GET /health`, `GET /status`, `GET /metrics`), with
 *   signed requests (timestamps, replay refusal), cluster checks, body limits,
 *   chunked snapshot reassembly, optional TLS and graceful shutdown;
 * - {@link PeerClient}: one ordered, batching, bounded send queue per peer,
 *   signing its requests and sending snapshots in chunks;
 * - {@link encodeMessages} / {@link decodeMessages}: the wire format, validated
 *   field by field;
 * - {@link Metrics}: a Prometheus registry.
 *
 * @module
 */

export {
  authorized,
  canonicalRequest,
  clientToken,
  HEADER_NONCE,
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  isLoopback,
  MAX_CLOCK_SKEW_MS_DEFAULT,
  REPLAY_CACHE_SIZE_DEFAULT,
  ReplayGuard,
  type SignedParts,
  signRequest,
  verifyRequest,
} from "./auth.ts";
export {
  CodecError,
  decodeMessages,
  encodeMessages,
  encodeMessagesJson,
  type Envelope,
  MESSAGE_TYPES,
} from "./codec.ts";
export {
  DEFAULT_BUCKETS_SECONDS,
  describeTransportMetrics,
  Metrics,
  type MetricType,
  TRANSPORT_METRICS,
} from "./metrics.ts";
export {
  createPeerApp,
  HEADER_CLUSTER,
  HEADER_FROM,
  HEADER_SENDER,
  HEADER_SNAPSHOT_ID,
  HEADER_SNAPSHOT_OFFSET,
  HEADER_SNAPSHOT_TOTAL,
  MAX_BODY_BYTES_DEFAULT,
  MAX_SNAPSHOT_BYTES_DEFAULT,
  type MessageSender,
  type PeerAppOptions,
  PeerServer,
  type PeerServerOptions,
  registerRpc,
  SNAPSHOT_TRANSFER_TIMEOUT_MS_DEFAULT,
} from "./server.ts";
export {
  MAX_QUEUED_MESSAGES_DEFAULT,
  PeerClient,
  type PeerClientOptions,
  REQUEST_TIMEOUT_MS_DEFAULT,
  RpcError,
  SNAPSHOT_CHUNK_BYTES_DEFAULT,
  SNAPSHOT_TIMEOUT_MS_DEFAULT,
} from "./client.ts";
