/**
 * The client-facing HTTP API on the agent's port: the key-value store
 * (`/v1/kv`) and the load balancers' health checks (`/primary`, `/replica`,
 * `/read-only`, as Patroni answers them), mounted by the agent on its peer
 * app. Each needs one interface from the node, {@link Cluster} and
 * {@link HealthSource}, which the agent implements.
 *
 * @module
 */

export {
  type Cluster,
  type KvPair,
  type KvWriteResult,
  RefusedError,
  UnavailableError,
} from "./cluster.ts";
export { KV_LIST_LIMIT_DEFAULT, kvApi, type KvApiOptions } from "./kv.ts";
export { clientAuth } from "./client_auth.ts";
export {
  healthApi,
  type HealthRole,
  type HealthServer,
  type HealthSource,
  PRIMARY_PATHS,
} from "./health.ts";
