/**
 * The torn-tail rule on a real directory (lib/storage/wal/torn.ts): the last
 * record of the log is cut off only when a crash during its append can
 * explain the damage (the file ends inside it, zeros to the end, an all-zero
 * sector chunk); a flipped bit in a last record that was fully written is a
 * StorageCorruptError naming the file and offset, and nothing is cut off.
 * (Truncation at every byte offset and the zero tail are in wal_storage_test.ts.)
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Entry, HardState } from "../../../lib/raft/types.ts";
import { crc32c } from "../../../lib/crc32c.ts";
import {
  type LoadedState,
  type SaveUpdate,
  StorageCorruptError,
} from "../../../lib/storage/raft_storage.ts";
import { encodeBatch, FRAME_HEADER_BYTES } from "../../../lib/storage/wal/record.ts";
import {
  isOneBitError,
  isOneBitHeaderError,
  SECTOR_BYTES,
  zeroedChunk,
} from "../../../lib/storage/wal/torn.ts";
import { WalStorage } from "../../../lib/storage/wal_storage.ts";

const hs = (term: number, vote: number, commit: number): HardState => ({ term, vote, commit });

/** `length` bytes, none of them zero. */
function nonZero(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => ((seed + i * 31) % 255) + 1);
}

/** Entries from `from`, one per data size. */
function entriesOf(from: number, sizes: readonly number[], term: number): Entry[] {
  return sizes.map((n, i) => ({
    index: from + i,
    term,
    type: "normal",
    data: nonZero(n, from + i),
  }));
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pgraft-wal-torn-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A log whose last record is `last`, and what is known of that record. */
interface Fixture {
  dir: string;
  /** the (only) segment */
  path: string;
  /** the segment's bytes as written */
  bytes: Uint8Array;
  /** where the last record starts and ends */
  start: number;
  end: number;
  /** what the log loads without its last record */
  before: LoadedState;
  /** the index the last record's entries start at */
  next: number;
}

/**
 * Three saves, then (with `endMod`) a save padded so that the last record
 * ends at `endMod` bytes past a sector boundary, then the last record.
 */
async function fixture(
  dir: string,
  last: (next: number) => SaveUpdate,
  endMod: number | null = null,
): Promise<Fixture> {
  const s = await WalStorage.open(dir, { nodeId: 1 });
  const path = join(dir, "wal", "0000000000000001-0000000000000001.wal");
  const size = async () => (await Deno.stat(path)).size;
  let next = 1;
  for (let k = 0; k < 3; k++) {
    await s.save({ snapshot: null, entries: entriesOf(next, [50], 1), hardState: hs(1, 1, next) });
    next++;
  }
  if (endMod !== null) {
    const u = last(next + 1);
    const lastBytes = encodeBatch(null, u.hardState, u.entries).length;
    const padFrame = FRAME_HEADER_BYTES + 16 + 13; // one entry, no hard state: + its data
    const data = (((endMod - (await size()) - padFrame - lastBytes) % SECTOR_BYTES) +
      SECTOR_BYTES) % SECTOR_BYTES;
    await s.save({ snapshot: null, entries: entriesOf(next, [data], 1), hardState: null });
    next++;
  }
  const before = await s.load();
  const start = await size();
  await s.save(last(next));
  const end = await size();
  await s.close();
  if (endMod !== null) assert.equal(end % SECTOR_BYTES, endMod);
  return { dir, path, bytes: await Deno.readFile(path), start, end, before, next };
}

/** The segment as written, changed by `change`, in place of the segment. */
async function damage(f: Fixture, change: (bytes: Uint8Array) => void): Promise<void> {
  const bytes = f.bytes.slice();
  change(bytes);
  await Deno.writeFile(f.path, bytes);
}

async function assertCorrupt(f: Fixture, what: string): Promise<void> {
  await assert.rejects(WalStorage.open(f.dir, { nodeId: 1 }), (e: unknown) => {
    assert.ok(e instanceof StorageCorruptError, `${what}: ${e}`);
    assert.equal(e.file, f.path, what);
    assert.equal(e.offset, f.start, `${what}: ${e.message}`);
    assert.ok(e.message.includes(`${f.path} at byte offset ${f.start}`), e.message);
    return true;
  });
  assert.equal((await Deno.stat(f.path)).size, f.end, `${what}: nothing was cut off`);
}

async function assertTorn(f: Fixture, what: string): Promise<void> {
  const s = await WalStorage.open(f.dir, { nodeId: 1 });
  try {
    assert.deepEqual(await s.load(), f.before, what);
    assert.equal(s.recovery.tornBytes, f.end - f.start, what);
    assert.match(s.recovery.tornReason ?? "", /^\(c\) /, what);
    assert.equal((await Deno.stat(f.path)).size, f.start, what);
    await s.save({ snapshot: null, entries: entriesOf(f.next, [10], 3), hardState: hs(3, 0, 1) });
  } finally {
    await s.close();
  }
  const t = await WalStorage.open(f.dir, { nodeId: 1 });
  assert.deepEqual((await t.load()).entries, [...f.before.entries, ...entriesOf(f.next, [10], 3)]);
  assert.equal(t.recovery.tornBytes, 0);
  await t.close();
}

/** A vote and entries: a record of a few sectors. */
const bigLast = (next: number): SaveUpdate => ({
  snapshot: null,
  entries: entriesOf(next, [700, 900, 1100], 2),
  hardState: hs(2, 1, 3),
});

Deno.test("a flipped bit in the last record's payload is a StorageCorruptError naming file and offset (it was cut off before)", async () => {
  await withTempDir(async (dir) => {
    const f = await fixture(dir, (next) => ({
      snapshot: null,
      entries: entriesOf(next, [40, 3], 2),
      hardState: hs(2, 1, 3),
    }));
    for (let at = f.start + FRAME_HEADER_BYTES; at < f.end; at++) {
      await damage(f, (b) => b[at]! ^= 1 << (at % 8));
      await assertCorrupt(f, `bit ${at % 8} of byte ${at}`);
    }
  });
});

Deno.test("a flipped bit in the last record's length field is a StorageCorruptError naming file and offset", async () => {
  await withTempDir(async (dir) => {
    const f = await fixture(dir, bigLast);
    for (let bit = 0; bit < 32; bit++) {
      await damage(f, (b) => b[f.start + (bit >> 3)]! ^= 1 << (bit & 7));
      await assertCorrupt(f, `length bit ${bit}`);
    }
  });
});

Deno.test("a flipped bit in the last record's checksum fields (payload's, header's) is a StorageCorruptError naming file and offset", async () => {
  await withTempDir(async (dir) => {
    const f = await fixture(dir, bigLast);
    for (let bit = 32; bit < 96; bit++) {
      await damage(f, (b) => b[f.start + (bit >> 3)]! ^= 1 << (bit & 7));
      await assertCorrupt(f, `header bit ${bit}`);
    }
  });
});

Deno.test("a flipped bit in a last record holding zeros of its own where a sector chunk falls is still a StorageCorruptError", async () => {
  await withTempDir(async (root) => {
    // A vote for node 1 ends in seven zero bytes (the vote's high bytes, the
    // padding): here the last five are the record's share of the last sector.
    const vote = await fixture(
      join(root, "vote"),
      () => ({ snapshot: null, entries: [], hardState: hs(2, 1, 3) }),
      5,
    );
    assert.deepEqual([...vote.bytes.subarray(vote.end - 5)], [0, 0, 0, 0, 0]);
    const chunkStart = vote.end - 5;
    assert.equal(zeroedChunk(vote.bytes, 0, vote.start, vote.end, vote.start), chunkStart);
    for (let at = vote.start + FRAME_HEADER_BYTES; at < chunkStart; at++) {
      await damage(vote, (b) => b[at]! ^= 1 << (at % 8));
      await assertCorrupt(vote, `vote record, bit ${at % 8} of byte ${at}`);
    }
    // Entry data of zeros covering whole sectors.
    const zeros = await fixture(join(root, "zeros"), (next) => ({
      snapshot: null,
      entries: [{ index: next, term: 2, type: "normal", data: new Uint8Array(1500) }],
      hardState: null,
    }));
    assert.notEqual(zeroedChunk(zeros.bytes, 0, zeros.start, zeros.end, zeros.start), null);
    for (const at of [zeros.start + 12, zeros.start + 30, zeros.start + 700, zeros.end - 1]) {
      await damage(zeros, (b) => b[at]! ^= 0x40);
      await assertCorrupt(zeros, `zero data, byte ${at}`);
    }
  });
});

Deno.test("a last record with sectors unwritten (all zero) is cut off as torn", async () => {
  await withTempDir(async (root) => {
    const f = await fixture(join(root, "big"), bigLast, 100);
    const { start, end } = f;
    const first = Math.ceil(start / SECTOR_BYTES) * SECTOR_BYTES; // first boundary in the record
    const lastBoundary = end - 100;
    assert.ok(first - start > FRAME_HEADER_BYTES && lastBoundary - first >= 3 * SECTOR_BYTES);
    const cases: [string, number, number][] = [
      ["a whole sector inside the payload", first + SECTOR_BYTES, first + 2 * SECTOR_BYTES],
      ["the record's share of its last sector", lastBoundary, end],
      ["every sector from one boundary to the end", first + SECTOR_BYTES, end],
      ["the first sector's share (the header)", start, first],
    ];
    for (const [what, from, to] of cases) {
      await damage(f, (b) => b.fill(0, from, to));
      await assertTorn(f, what);
    }
    await damage(f, (b) => {
      for (let at = first; at < end; at += 2 * SECTOR_BYTES) b.fill(0, at, at + SECTOR_BYTES);
    });
    await assertTorn(f, "every other sector");
    // A header across a sector boundary (starting 6 bytes before it), its second sector unwritten.
    const { entries, hardState } = bigLast(1);
    const bigBytes = encodeBatch(null, hardState, entries).length;
    const across = await fixture(join(root, "across"), bigLast, (506 + bigBytes) % SECTOR_BYTES);
    const boundary = Math.ceil(across.start / SECTOR_BYTES) * SECTOR_BYTES;
    assert.ok(boundary - across.start > 0 && boundary - across.start < FRAME_HEADER_BYTES);
    await damage(across, (b) => b.fill(0, boundary, boundary + SECTOR_BYTES));
    await assertTorn(across, "the header's second sector");
  });
});

Deno.test("zeros that fill no sector's share of the last record are a StorageCorruptError", async () => {
  await withTempDir(async (dir) => {
    const f = await fixture(dir, bigLast, 100);
    const first = Math.ceil(f.start / SECTOR_BYTES) * SECTOR_BYTES;
    // 500 zero bytes inside one sector, one byte short of each end of it.
    await damage(f, (b) => b.fill(0, first + SECTOR_BYTES + 1, first + 2 * SECTOR_BYTES - 1));
    await assertCorrupt(f, "zeros inside a sector");
    // A header zeroed, the rest of its sector written.
    await damage(f, (b) => b.fill(0, f.start, f.start + FRAME_HEADER_BYTES));
    await assertCorrupt(f, "a zeroed header in a written sector");
  });
});

Deno.test("a bad last record with bytes after it (a later append was made, so it was acknowledged) is a StorageCorruptError", async () => {
  await withTempDir(async (dir) => {
    const f = await fixture(dir, bigLast);
    // A later append that reached the disk as zeros, after the record lost a sector.
    const zeroed = Math.ceil(f.start / SECTOR_BYTES) * SECTOR_BYTES + SECTOR_BYTES;
    await damage(f, (b) => b.fill(0, zeroed, zeroed + SECTOR_BYTES));
    const file = await Deno.open(f.path, { append: true });
    await file.write(new Uint8Array(100));
    file.close();
    await assert.rejects(WalStorage.open(dir, { nodeId: 1 }), (e: unknown) => {
      assert.ok(e instanceof StorageCorruptError && e.offset === f.start, String(e));
      assert.match(e.message, /100 bytes follow the record/);
      return true;
    });
  });
});

Deno.test("isOneBitError finds every single flipped bit and takes no two flipped bits for one", () => {
  const payload = nonZero(300, 7);
  const expected = crc32c(payload);
  for (let bit = 0; bit < payload.length * 8; bit++) {
    const damaged = payload.slice();
    damaged[bit >> 3]! ^= 1 << (bit & 7);
    assert.ok(isOneBitError(expected, crc32c(damaged), payload.length), `bit ${bit}`);
  }
  for (let k = 0; k < 500; k++) {
    const damaged = payload.slice();
    damaged[k % 300]! ^= 1;
    damaged[(k * 7 + 3) % 300]! ^= 0x10;
    assert.ok(!isOneBitError(expected, crc32c(damaged), payload.length), `pair ${k}`);
  }
  assert.ok(!isOneBitError(expected, expected, payload.length), "no difference");
  // A sector of zeros in place of data is not one bit either.
  const torn = payload.slice();
  torn.fill(0, 100, 200);
  assert.ok(!isOneBitError(expected, crc32c(torn), payload.length));
});

Deno.test("isOneBitHeaderError finds every single flipped bit of a frame header, and not a zeroed part", () => {
  const frame = encodeBatch(null, hs(4, 2, 9), entriesOf(1, [20], 4));
  const header = frame.subarray(0, FRAME_HEADER_BYTES);
  for (let bit = 0; bit < 96; bit++) {
    const damaged = header.slice();
    damaged[bit >> 3]! ^= 1 << (bit & 7);
    assert.ok(isOneBitHeaderError(damaged), `bit ${bit}`);
  }
  for (let cut = 1; cut < FRAME_HEADER_BYTES; cut++) {
    assert.ok(!isOneBitHeaderError(Uint8Array.from(header).fill(0, cut)), `zeros from ${cut}`);
  }
  assert.ok(!isOneBitHeaderError(new Uint8Array(FRAME_HEADER_BYTES)), "all zero");
});

Deno.test("zeroedChunk cuts the range at sector boundaries of the file and counts only chunks ending after countFrom", () => {
  const base = 1000; // bytes[0] is file offset 1000; boundaries at 1024, 1536
  const bytes = nonZero(700, 3);
  assert.equal(zeroedChunk(bytes, base, 1000, 1700, 1000), null);
  bytes.fill(0, 24, 536); // the whole sector 1024..1536
  assert.equal(zeroedChunk(bytes, base, 1000, 1700, 1000), 1024);
  assert.equal(zeroedChunk(bytes, base, 1000, 1700, 1536), null, "ends at countFrom");
  bytes.fill(5, 24, 536);
  bytes.fill(0, 0, 24); // the range's share of sector 512..1024
  assert.equal(zeroedChunk(bytes, base, 1000, 1700, 1000), 1000);
  assert.equal(zeroedChunk(bytes, base, 1000, 1700, 1024), null);
  bytes.fill(0, 0, 23);
  bytes[23] = 1;
  assert.equal(zeroedChunk(bytes, base, 1000, 1700, 1000), null, "one byte short");
  bytes.fill(0, 536, 700); // the range's share of sector 1536..2048
  assert.equal(zeroedChunk(bytes, base, 1000, 1700, 1000), 1536);
});
