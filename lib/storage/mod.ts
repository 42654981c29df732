/**
 * The Raft core's durable storage on the node's own disk: hard state, log
 * entries and snapshots in `pgraft.data_dir` ({@link WalStorage}), and the
 * same contract in memory for tests and simulations ({@link MemoryRaftStorage}).
 * The replicated state machine is not here: it lives in memory (lib/state)
 * and is restored from the latest snapshot plus the log.
 *
 * @module
 */

export {
  type LoadedState,
  type RaftStorage,
  type SaveUpdate,
  StorageCorruptError,
  type StorageIdentity,
  StorageIdentityError,
} from "./raft_storage.ts";
export {
  SEGMENT_BYTES_DEFAULT,
  type WalRecovery,
  WalStorage,
  type WalStorageOptions,
} from "./wal_storage.ts";
export { MemoryRaftDisk, MemoryRaftStorage } from "./memory_raft_storage.ts";
