/**
 * The client-facing HTTP API on the agent's port: the key-value store
 * (`/v1/kv`), mounted by the agent on its peer app. It needs one interface
 * from the node, {@link Cluster}, which the agent implements.
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
