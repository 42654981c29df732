/**
 * Durable storage of the Raft state and the replicated state machine:
 * {@link PgStorage} on the node's own PostgreSQL, {@link MemoryStorage} for
 * tests, and the codec of state machine commands.
 *
 * @module
 */

export * from "./types.ts";
export { decodeCommand, encodeCommand } from "./commands.ts";
export { isUnavailable, PgStorage, type PgStorageOptions } from "./pg_storage.ts";
export { MemoryStorage } from "./memory_storage.ts";
