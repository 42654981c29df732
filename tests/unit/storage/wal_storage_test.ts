/**
 * WalStorage on a real directory: torn tails, corruption, rollover and
 * compaction, snapshots that fail their checks, identity and locking.
 * (The RaftStorage contract is in raft_storage_contract_test.ts, the crash
 * test in wal_crash_test.ts.)
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Entry, HardState, Snapshot } from "../../../lib/raft/types.ts";
import { StorageCorruptError, StorageIdentityError } from "../../../lib/storage/raft_storage.ts";
import { writeSnapshotFile } from "../../../lib/storage/wal/snapshot_file.ts";
import { WalStorage } from "../../../lib/storage/wal_storage.ts";
import { entry } from "./raft_storage_contract.ts";

const hs = (term: number, vote: number, commit: number): HardState => ({ term, vote, commit });

function entries(from: number, to: number, term: number, bytes = 0): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) {
    const e = entry(i, term);
    if (bytes > 0) e.data = new Uint8Array(bytes).fill(i & 0xff);
    out.push(e);
  }
  return out;
}

function snapshot(index: number, term: number): Snapshot {
  return {
    meta: { index, term, membership: { voters: [1], learners: [] } },
    data: new TextEncoder().encode(`state at ${index}`),
  };
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pgraft-wal-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function names(dir: string, suffix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(suffix)) out.push(e.name);
  return out.sort();
}

async function segments(dir: string): Promise<string[]> {
  return (await names(join(dir, "wal"), ".wal")).map((n) => join(dir, "wal", n));
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyTree(join(from, e.name), join(to, e.name));
    else await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}

async function flipBit(path: string, offset: number): Promise<void> {
  const bytes = await Deno.readFile(path);
  bytes[offset]! ^= 0x10;
  await Deno.writeFile(path, bytes);
}

const size = async (path: string) => (await Deno.stat(path)).size;

Deno.test("a torn last record is cut off at every byte offset, and later appends work", async () => {
  await withTempDir(async (root) => {
    const base = join(root, "base");
    const s = await WalStorage.open(base, { nodeId: 1 });
    await s.save({ snapshot: null, entries: entries(1, 3, 1), hardState: hs(1, 1, 1) });
    await s.save({ snapshot: null, entries: [entry(4, 1)], hardState: hs(1, 1, 3) });
    const before = await s.load();
    const [segment] = await segments(base);
    const start = await size(segment!);
    await s.save({ snapshot: null, entries: entries(5, 7, 2), hardState: hs(2, 1, 4) });
    const end = await size(segment!);
    await s.close();
    assert.ok(end - start > 100, "the last record spans many bytes");
    for (let cut = start; cut < end; cut++) {
      const copy = join(root, `cut-${cut}`);
      await copyTree(base, copy);
      const copied = join(copy, "wal", segment!.split("/").pop()!);
      await Deno.truncate(copied, cut);
      const t = await WalStorage.open(copy, { nodeId: 1 });
      try {
        assert.deepEqual(await t.load(), before, `cut at ${cut}`);
        assert.equal(t.recovery.tornBytes, cut - start);
        assert.equal(await size(copied), start);
        await t.save({ snapshot: null, entries: [entry(5, 3)], hardState: hs(3, 1, 4) });
      } finally {
        await t.close();
      }
      const u = await WalStorage.open(copy, { nodeId: 1 });
      assert.deepEqual(await u.load(), {
        hardState: hs(3, 1, 4),
        snapshot: null,
        entries: [...before.entries, entry(5, 3)],
      });
      assert.equal(u.recovery.tornBytes, 0);
      await u.close();
      await Deno.remove(copy, { recursive: true });
    }
  });
});

Deno.test("a tail of zeros (space the file system extended but never wrote) is cut off", async () => {
  await withTempDir(async (dir) => {
    const s = await WalStorage.open(dir, { nodeId: 1 });
    await s.save({ snapshot: null, entries: entries(1, 2, 1), hardState: hs(1, 1, 1) });
    const expected = await s.load();
    await s.close();
    const [segment] = await segments(dir);
    const good = await size(segment!);
    const file = await Deno.open(segment!, { append: true });
    await file.write(new Uint8Array(5000));
    file.close();
    const t = await WalStorage.open(dir, { nodeId: 1 });
    assert.deepEqual(await t.load(), expected);
    assert.equal(t.recovery.tornBytes, 5000);
    assert.equal(await size(segment!), good);
    await t.close();
  });
});

Deno.test("a flipped bit in a record before the last is a StorageCorruptError naming file and offset", async () => {
  await withTempDir(async (root) => {
    const base = join(root, "base");
    const s = await WalStorage.open(base, { nodeId: 1 });
    const [segment] = await segments(base);
    const offsets: number[] = [];
    for (let i = 1; i <= 4; i++) {
      offsets.push(await size(segment!));
      await s.save({ snapshot: null, entries: [entry(i, 1)], hardState: hs(1, 1, i - 1) });
    }
    await s.close();
    const second = offsets[1]!;
    // In the payload, in the length field, in the payload checksum.
    for (const at of [second + 30, second + 1, second + 5]) {
      const copy = join(root, `flip-${at}`);
      await copyTree(base, copy);
      const path = join(copy, "wal", segment!.split("/").pop()!);
      await flipBit(path, at);
      await assert.rejects(WalStorage.open(copy, { nodeId: 1 }), (e: unknown) => {
        assert.ok(e instanceof StorageCorruptError, String(e));
        assert.equal(e.file, path);
        assert.equal(e.offset, second);
        assert.ok(e.message.includes(path), e.message);
        assert.ok(e.message.includes(`byte offset ${second}`), e.message);
        return true;
      });
      // Refused again: nothing was repaired away.
      await assert.rejects(WalStorage.open(copy, { nodeId: 1 }), StorageCorruptError);
    }
  });
});

Deno.test("damage in an earlier segment, or a missing segment, is a StorageCorruptError", async () => {
  await withTempDir(async (root) => {
    const base = join(root, "base");
    const s = await WalStorage.open(base, { nodeId: 1, segmentBytes: 1024 });
    for (let i = 1; i <= 40; i++) {
      await s.save({ snapshot: null, entries: entries(i, i, 1, 100), hardState: null });
    }
    await s.close();
    const all = await segments(base);
    assert.ok(all.length >= 4, `${all.length} segments`);
    const name = (p: string) => p.split("/").pop()!;
    // The tail of a sealed segment cut off: not a torn tail, since a later segment exists.
    let copy = join(root, "cut");
    await copyTree(base, copy);
    const first = join(copy, "wal", name(all[0]!));
    await Deno.truncate(first, (await size(first)) - 3);
    await assert.rejects(WalStorage.open(copy, { nodeId: 1 }), (e: unknown) => {
      assert.ok(e instanceof StorageCorruptError && e.file === first, String(e));
      return true;
    });
    copy = join(root, "flip");
    await copyTree(base, copy);
    const second = join(copy, "wal", name(all[1]!));
    await flipBit(second, 200);
    await assert.rejects(WalStorage.open(copy, { nodeId: 1 }), (e: unknown) => {
      assert.ok(e instanceof StorageCorruptError && e.file === second, String(e));
      assert.ok(e.offset !== null && e.offset <= 200);
      return true;
    });
    copy = join(root, "missing");
    await copyTree(base, copy);
    await Deno.remove(join(copy, "wal", name(all[2]!)));
    await assert.rejects(WalStorage.open(copy, { nodeId: 1 }), /segment .* is missing/);
  });
});

Deno.test("segments roll over; compaction deletes old ones and the hard state survives", async () => {
  await withTempDir(async (dir) => {
    let s = await WalStorage.open(dir, { nodeId: 1, segmentBytes: 1024 });
    await s.save({ snapshot: null, entries: [], hardState: hs(5, 2, 0) });
    for (let i = 1; i <= 60; i++) {
      await s.save({ snapshot: null, entries: entries(i, i, 5, 100), hardState: null });
    }
    const before = await segments(dir);
    assert.ok(before.length >= 6, `${before.length} segments`);
    await s.saveSnapshot(snapshot(20, 5));
    assert.deepEqual(await segments(dir), before, "one snapshot: the log still covers from 0");
    await s.saveSnapshot(snapshot(40, 5));
    const after = await segments(dir);
    assert.ok(after.length < before.length, `${after.length} < ${before.length}`);
    assert.notEqual(after[0], before[0]);
    assert.deepEqual(await names(join(dir, "snap"), ".snap"), [
      "0000000000000005-0000000000000014.snap",
      "0000000000000005-0000000000000028.snap",
    ]);
    await s.close();
    s = await WalStorage.open(dir, { nodeId: 1, segmentBytes: 1024 });
    const loaded = await s.load();
    assert.deepEqual(loaded.hardState, hs(5, 2, 40));
    assert.deepEqual(loaded.snapshot, snapshot(40, 5));
    assert.deepEqual(loaded.entries, entries(41, 60, 5, 100));
    await s.saveSnapshot(snapshot(50, 5));
    assert.equal((await names(join(dir, "snap"), ".snap")).length, 2);
    await s.save({ snapshot: null, entries: entries(61, 61, 6, 100), hardState: hs(6, 0, 55) });
    await s.close();
    s = await WalStorage.open(dir, { nodeId: 1, segmentBytes: 1024 });
    assert.deepEqual(await s.load(), {
      hardState: hs(6, 0, 55),
      snapshot: snapshot(50, 5),
      entries: [...entries(51, 60, 5, 100), ...entries(61, 61, 6, 100)],
    });
    await s.close();
  });
});

Deno.test("a newest snapshot failing its checksum: the previous one is used while the log covers it", async () => {
  await withTempDir(async (dir) => {
    let s = await WalStorage.open(dir, { nodeId: 1 });
    await s.save({ snapshot: null, entries: entries(1, 30, 1), hardState: hs(1, 1, 30) });
    await s.saveSnapshot(snapshot(10, 1));
    await s.saveSnapshot(snapshot(20, 1));
    await s.close();
    const newest = join(dir, "snap", "0000000000000001-0000000000000014.snap");
    await flipBit(newest, 30);
    s = await WalStorage.open(dir, { nodeId: 1 });
    assert.deepEqual(await s.load(), {
      hardState: hs(1, 1, 30),
      snapshot: snapshot(10, 1),
      entries: entries(11, 30, 1),
    });
    assert.deepEqual(s.recovery.brokenSnapshots, [newest]);
    assert.deepEqual(await names(join(dir, "snap"), ".broken"), [
      newest.split("/").pop() + ".broken",
    ]);
    await s.close();
  });
});

Deno.test("a bad newest snapshot the log does not cover from the previous one stops the open", async () => {
  await withTempDir(async (dir) => {
    const s = await WalStorage.open(dir, { nodeId: 1 });
    await s.save({ snapshot: null, entries: entries(1, 5, 1), hardState: hs(1, 1, 5) });
    await s.saveSnapshot(snapshot(3, 1));
    // From the leader, not matching the log: the log restarts after it.
    await s.save({ snapshot: snapshot(10, 2), entries: [entry(11, 2)], hardState: hs(2, 0, 10) });
    await s.close();
    const newest = join(dir, "snap", "0000000000000002-000000000000000a.snap");
    await flipBit(newest, 20);
    await assert.rejects(WalStorage.open(dir, { nodeId: 1 }), (e: unknown) => {
      assert.ok(e instanceof StorageCorruptError, String(e));
      assert.equal(e.file, newest);
      assert.ok(e.message.includes(newest), e.message);
      return true;
    });
  });
});

Deno.test("a leader's snapshot written without its log record (a crash in between) is set aside", async () => {
  await withTempDir(async (dir) => {
    let s = await WalStorage.open(dir, { nodeId: 1 });
    await s.save({ snapshot: null, entries: entries(1, 5, 1), hardState: hs(1, 1, 2) });
    const expected = await s.load();
    await s.close();
    await writeSnapshotFile(join(dir, "snap"), snapshot(50, 3));
    s = await WalStorage.open(dir, { nodeId: 1 });
    assert.deepEqual(await s.load(), expected);
    assert.equal(s.recovery.staleSnapshots.length, 1);
    assert.deepEqual(await names(join(dir, "snap"), ".snap"), []);
    await s.close();
  });
});

Deno.test("another node's directory is refused, naming both ids and the directory", async () => {
  await withTempDir(async (root) => {
    const dir = join(root, "data");
    const s = await WalStorage.open(dir, { nodeId: 3, clusterId: "cluster-a" });
    await s.save({ snapshot: null, entries: [entry(1, 1)], hardState: hs(1, 3, 0) });
    await s.close();
    await assert.rejects(WalStorage.open(dir, { nodeId: 4 }), (e: unknown) => {
      assert.ok(e instanceof StorageIdentityError);
      for (const part of [dir, "node 3", "node 4"]) assert.ok(e.message.includes(part), e.message);
      return true;
    });
    await assert.rejects(
      WalStorage.open(dir, { nodeId: 3, clusterId: "cluster-b" }),
      (e: unknown) => {
        assert.ok(e instanceof StorageIdentityError);
        for (const part of [dir, "cluster-a", "cluster-b"]) assert.ok(e.message.includes(part));
        return true;
      },
    );
    // A log without its identity file is not taken over.
    await Deno.remove(join(dir, "identity"));
    await assert.rejects(WalStorage.open(dir, { nodeId: 4 }), StorageCorruptError);
  });
});

Deno.test("the directory is created with mode 0700 and cannot be opened twice at once", async () => {
  await withTempDir(async (root) => {
    const dir = join(root, "a", "b");
    const s = await WalStorage.open(dir, { nodeId: 1 });
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    await assert.rejects(WalStorage.open(dir, { nodeId: 1 }), /in use/);
    await s.close();
    const t = await WalStorage.open(dir, { nodeId: 1 });
    await t.close();
  });
});

Deno.test("a load while running reads back what the saves made durable", async () => {
  await withTempDir(async (dir) => {
    const s = await WalStorage.open(dir, { nodeId: 1, segmentBytes: 1024 });
    await s.save({ snapshot: null, entries: entries(1, 50, 1, 40), hardState: hs(1, 1, 50) });
    await s.save({ snapshot: null, entries: entries(40, 45, 2, 40), hardState: hs(2, 1, 39) });
    await s.saveSnapshot(snapshot(30, 1));
    const loaded = await s.load();
    assert.deepEqual(loaded.snapshot, snapshot(30, 1));
    assert.deepEqual(loaded.entries, [...entries(31, 39, 1, 40), ...entries(40, 45, 2, 40)]);
    await s.close();
  });
});

Deno.test("a leader's snapshot that kept the log replays the same once older segments are compacted", async () => {
  await withTempDir(async (dir) => {
    // Entries of 1100 bytes in 1024-byte segments: one save per segment.
    let s = await WalStorage.open(dir, { nodeId: 1, segmentBytes: 1024 });
    for (let i = 1; i <= 17; i++) {
      await s.save({ snapshot: null, entries: entries(i, i, 1, 1100), hardState: hs(1, 1, i - 1) });
    }
    // The log holds entry 16 with term 1: the entries after it are kept.
    await s.save({ snapshot: snapshot(16, 1), entries: [], hardState: hs(2, 0, 16) });
    await s.save({ snapshot: null, entries: entries(18, 18, 2, 1100), hardState: null });
    await s.saveSnapshot(snapshot(17, 1)); // keeps 17 and 16: segments up to entry 16 go
    const expected = {
      hardState: hs(2, 0, 17),
      snapshot: snapshot(17, 1),
      entries: entries(18, 18, 2, 1100),
    };
    assert.deepEqual(await s.load(), expected);
    await s.close();
    s = await WalStorage.open(dir, { nodeId: 1, segmentBytes: 1024 });
    assert.deepEqual(await s.load(), expected);
    await s.close();
  });
});
