/**
 * The RaftStorage contract against WalStorage (a temporary directory per
 * case) and MemoryRaftStorage (a memory disk per case).
 */

import { MemoryRaftDisk, MemoryRaftStorage } from "../../../lib/storage/memory_raft_storage.ts";
import type { RaftStorage } from "../../../lib/storage/raft_storage.ts";
import { WalStorage } from "../../../lib/storage/wal_storage.ts";
import { runStorageContract, type StorageHarness } from "./raft_storage_contract.ts";

/** Closes whatever a case left open, so a failing case does not leak files. */
function tracking(): { track: (s: RaftStorage) => RaftStorage; closeAll: () => Promise<void> } {
  const opened: RaftStorage[] = [];
  return {
    track: (s) => {
      opened.push(s);
      return s;
    },
    closeAll: async () => {
      for (const s of opened) await s.close().catch(() => {});
    },
  };
}

runStorageContract("WalStorage", async (): Promise<StorageHarness> => {
  const dir = await Deno.makeTempDir({ prefix: "pgraft-wal-contract-" });
  const { track, closeAll } = tracking();
  return {
    open: async (o) =>
      track(
        await WalStorage.open(`${dir}/data`, {
          nodeId: o?.nodeId ?? 1,
          clusterId: o?.clusterId ?? null,
          segmentBytes: 4096,
        }),
      ),
    dispose: async () => {
      await closeAll();
      await Deno.remove(dir, { recursive: true });
    },
  };
});

runStorageContract("MemoryRaftStorage", (): Promise<StorageHarness> => {
  const disk = new MemoryRaftDisk("memory disk");
  const { track, closeAll } = tracking();
  return Promise.resolve({
    open: async (o) =>
      track(
        await MemoryRaftStorage.open(disk, {
          nodeId: o?.nodeId ?? 1,
          clusterId: o?.clusterId ?? null,
        }),
      ),
    dispose: closeAll,
  });
});
