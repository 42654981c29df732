/**
 * The peer transport: Raft messages and RPCs between pgraft agents over HTTP.
 *
 * - {@link createPeerApp} / {@link registerRpc} / {@link PeerServer}: the Hono
 *   server side (`POST /raft/messages`, `POST /raft/snapshot`,
 *   `POST /rpc/<name>`, `GET /health`, `GET /status`, `GET /metrics`), with
 *   chunked snapshot reassembly (`snapshot_assembler.ts`), optional TLS and
 *   graceful shutdown; every route but `/health` is behind the gate
 *   (`gate.ts`: signed requests, timestamps, replay refusal, bearer token,
 *   cluster checks, body limits), whose refusals are {@link Rejection}s;
 * - {@link authorized}: the one rule for clients' bearer tokens, and
 *   {@link constantTimeEqual}, the one comparison for secrets;
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
  constantTimeEqual,
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
  type MemberProgress,
  type MembersView,
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
  type CheckedRequest,
  type GateEnv,
  HEADER_CLUSTER,
  HEADER_FROM,
  HEADER_SENDER,
  MAX_BODY_BYTES_DEFAULT,
  Rejection,
  type RejectReason,
} from "./gate.ts";
export {
  HEADER_SNAPSHOT_ID,
  HEADER_SNAPSHOT_OFFSET,
  HEADER_SNAPSHOT_TOTAL,
  MAX_SNAPSHOT_BYTES_DEFAULT,
  SNAPSHOT_TRANSFER_TIMEOUT_MS_DEFAULT,
} from "./snapshot_assembler.ts";
export {
  createPeerApp,
  type MessageSender,
  type PeerAppOptions,
  PeerServer,
  type PeerServerOptions,
  registerRpc,
} from "./server.ts";
export {
  isConnectionRefused,
  MAX_QUEUED_MESSAGES_DEFAULT,
  PeerClient,
  type PeerClientOptions,
  type ProbeResult,
  REQUEST_TIMEOUT_MS_DEFAULT,
  RpcError,
  SNAPSHOT_CHUNK_BYTES_DEFAULT,
  SNAPSHOT_TIMEOUT_MS_DEFAULT,
} from "./client.ts";
