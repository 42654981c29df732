/**
 * The one interface the client-facing HTTP API needs from the node, declared
 * here by its user (as etcd's `RaftKV`) and implemented by the agent, so that
 * imports run one way: agent → api. Also the errors the API turns into
 * answers; anything else a method throws is answered 503 "outcome unknown".
 *
 * @module
 */

import type { Problem } from "../state/limits.ts";

/** One key of the replicated store. */
export interface KvPair {
  key: string;
  value: Uint8Array;
  /** the index of the log entry that last wrote it */
  revision: number;
}

/** What a write did, once committed and applied on the leader. */
export interface KvWriteResult {
  /** the log index of the write */
  index: number;
  /** the key's revision after a put (= index); for a delete, the index too */
  revision: number;
  /** whether the key existed before */
  existed: boolean;
}

/** The node, as the key-value API sees it. */
export interface Cluster {
  /** The base URL (`http://host:port`) of the leader's agent, or null when none is known. */
  leaderUrl(): string | null;
  /**
   * Put a key through the log.
   * @throws NotLeaderError (lib/raft) when this node does not lead, RefusedError, UnavailableError
   */
  kvPut(key: string, value: Uint8Array): Promise<KvWriteResult>;
  /**
   * Delete a key through the log.
   * @throws NotLeaderError, RefusedError, UnavailableError
   */
  kvDelete(key: string): Promise<KvWriteResult>;
  /**
   * Wait until this node's copy reflects every write acknowledged before the
   * call (ReadIndex through the leader, thesis §6.4).
   * @throws NotLeaderError when no leader is known, UnavailableError
   */
  linearizableRead(): Promise<void>;
  /** This node's copy of a key. */
  kvGet(key: string): Promise<KvPair | null>;
  /** Keys starting with `prefix` in code point order, at most `limit`. */
  kvList(prefix: string, limit: number): Promise<KvPair[]>;
}

/** The request was refused for its input (bad key, too large, over quota): nothing changed. */
export class RefusedError extends Error {
  override name = "RefusedError";
  /** the HTTP status, SQLSTATE and hint that go with it */
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(problem.message);
    this.problem = problem;
  }
}

/** The node cannot answer now; the client may retry. */
export class UnavailableError extends Error {
  override name = "UnavailableError";
  /** for a write: "not applied" (certainly not), "unknown" (it may have been) */
  readonly outcome: "not applied" | "unknown";

  constructor(message: string, outcome: "not applied" | "unknown", options?: ErrorOptions) {
    super(message, options);
    this.outcome = outcome;
  }
}
