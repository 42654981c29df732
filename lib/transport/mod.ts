/**
 * The peer transport: Raft messages and RPCs between pgraft agents over HTTP.
 *
 * - {@link createPeerApp} / {@link registerRpc} / {@link PeerServer}: the Hono
 *   server side (`POST /raft/messages`, `POST /rpc/<name>`, `GET /health`,
 *   `GET /status`, `GET /metrics`), with authentication, cluster checks and
 *   body limits;
 * - {@link PeerClient}: one ordered, batching, bounded send queue per peer;
 * - {@link encodeMessages} / {@link decodeMessages}: the wire format, validated
 *   field by field;
 * - {@link Metrics}: a Prometheus registry.
 *
 * @module
 */

export { authorized, clientToken, isLoopback } from "./auth.ts";
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
  MAX_BODY_BYTES_DEFAULT,
  type MessageSender,
  type PeerAppOptions,
  PeerServer,
  registerRpc,
} from "./server.ts";
export {
  MAX_QUEUED_MESSAGES_DEFAULT,
  PeerClient,
  type PeerClientOptions,
  REQUEST_TIMEOUT_MS_DEFAULT,
  RpcError,
} from "./client.ts";
