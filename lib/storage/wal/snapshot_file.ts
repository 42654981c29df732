/**
 * Snapshot files: `snap/<term>-<index>.snap` (16 hex digits each), written
 * atomically (temporary file, sync, rename, directory sync).
 *
 * Layout (little endian):
 * ```
 * 0   u32  magic "PGRS"
 * 4   u32  format version
 * 8   u32  CRC-32C of every byte from offset 12 to the end
 * 12  u32  length M of the metadata
 * 16  metadata: u64 index, u64 term, u32 voter count, voters (u32 each),
 *     u32 learner count, learners (u32 each)
 * 16+M  the state machine's data, to the end of the file
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { assert } from "../../assert.ts";
import type { NodeId, Snapshot } from "../../raft/types.ts";
import { crc32c, crc32cUpdate } from "../../crc32c.ts";
import { StorageCorruptError } from "../raft_storage.ts";
import { listNames, writeFileAtomic } from "./files.ts";
import { FORMAT_VERSION } from "./record.ts";

/** Suffix of snapshot files. */
export const SNAPSHOT_SUFFIX = ".snap";
const MAGIC = 0x53524750; // "PGRS" read as a little-endian u32
const HEADER_BYTES = 16;
const MEMBERS_MAX = 100_000;
const TWO_32 = 0x1_0000_0000;
const NAME_PATTERN = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;

/** What a snapshot file's name says. */
export interface SnapshotName {
  term: number;
  index: number;
  name: string;
}

/**
 * The file name of a snapshot.
 *
 * @param term the term of its last entry
 * @param index the index of its last entry
 * @returns e.g. `0000000000000002-0000000000001f40.snap`
 */
export function snapshotFileName(term: number, index: number): string {
  const hex = (n: number) => n.toString(16).padStart(16, "0");
  return `${hex(term)}-${hex(index)}${SNAPSHOT_SUFFIX}`;
}

/**
 * Parse a snapshot file name.
 *
 * @param name a file name
 * @returns its parts, or null when it is not a snapshot's name
 */
export function parseSnapshotName(name: string): SnapshotName | null {
  const m = NAME_PATTERN.exec(name);
  if (!m) return null;
  const term = parseInt(m[1]!, 16);
  const index = parseInt(m[2]!, 16);
  if (!Number.isSafeInteger(term) || !Number.isSafeInteger(index)) return null;
  return { term, index, name };
}

/**
 * The snapshot files of `dir`, newest (highest index, then term) first.
 *
 * @param dir the snap directory
 * @returns their parsed names
 */
export async function listSnapshots(dir: string): Promise<SnapshotName[]> {
  const parsed: SnapshotName[] = [];
  for (const name of await listNames(dir, SNAPSHOT_SUFFIX)) {
    const p = parseSnapshotName(name);
    if (p) parsed.push(p);
  }
  return parsed.sort((a, b) => b.index - a.index || b.term - a.term);
}

function putU64(view: DataView, offset: number, n: number): void {
  view.setUint32(offset, n % TWO_32, true);
  view.setUint32(offset + 4, Math.floor(n / TWO_32), true);
}

/**
 * Write a snapshot file atomically.
 *
 * @param dir the snap directory
 * @param snapshot the snapshot
 * @returns the file name, once the file is durable under it
 */
export async function writeSnapshotFile(dir: string, snapshot: Snapshot): Promise<string> {
  const { voters, learners } = snapshot.meta.membership;
  const metaBytes = 16 + 4 + voters.length * 4 + 4 + learners.length * 4;
  const head = new Uint8Array(HEADER_BYTES + metaBytes);
  const view = new DataView(head.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, FORMAT_VERSION, true);
  view.setUint32(12, metaBytes, true);
  let p = HEADER_BYTES;
  putU64(view, p, snapshot.meta.index);
  putU64(view, p + 8, snapshot.meta.term);
  p += 16;
  for (const list of [voters, learners]) {
    view.setUint32(p, list.length, true);
    p += 4;
    for (const id of list) {
      view.setUint32(p, id, true);
      p += 4;
    }
  }
  assert(p === head.length, "snapshot header size mismatch");
  const crc = crc32cUpdate(crc32c(head, 12), snapshot.data);
  view.setUint32(8, crc, true);
  const name = snapshotFileName(snapshot.meta.term, snapshot.meta.index);
  await writeFileAtomic(dir, name, [head, snapshot.data]);
  return name;
}

/**
 * Read and check a snapshot file.
 *
 * @param dir the snap directory
 * @param expected what its name says
 * @returns the snapshot; StorageCorruptError when the file fails its checks
 */
export async function readSnapshotFile(dir: string, expected: SnapshotName): Promise<Snapshot> {
  const path = join(dir, expected.name);
  const bytes = await Deno.readFile(path);
  const bad = (offset: number, reason: string) => new StorageCorruptError(path, offset, reason);
  if (bytes.length < HEADER_BYTES) throw bad(0, "shorter than a snapshot header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (view.getUint32(0, true) !== MAGIC) throw bad(0, "bad magic number");
  if (view.getUint32(4, true) !== FORMAT_VERSION) throw bad(4, "unknown format version");
  if (crc32c(bytes, 12) !== view.getUint32(8, true)) throw bad(12, "snapshot checksum mismatch");
  const metaBytes = view.getUint32(12, true);
  if (metaBytes < 24 || HEADER_BYTES + metaBytes > bytes.length) {
    throw bad(12, "bad metadata length");
  }
  let p = HEADER_BYTES;
  const u64 = (at: number) => view.getUint32(at + 4, true) * TWO_32 + view.getUint32(at, true);
  const index = u64(p);
  const term = u64(p + 8);
  p += 16;
  const lists: NodeId[][] = [];
  for (let k = 0; k < 2; k++) {
    if (p + 4 > HEADER_BYTES + metaBytes) throw bad(p, "metadata ends early");
    const count = view.getUint32(p, true);
    p += 4;
    if (count > MEMBERS_MAX || p + count * 4 > HEADER_BYTES + metaBytes) {
      throw bad(p, `bad member count ${count}`);
    }
    const ids: NodeId[] = [];
    for (let i = 0; i < count; i++) ids.push(view.getUint32(p + i * 4, true));
    lists.push(ids);
    p += count * 4;
  }
  if (p !== HEADER_BYTES + metaBytes) throw bad(p, "metadata length mismatch");
  if (index !== expected.index || term !== expected.term) {
    throw bad(HEADER_BYTES, `holds index ${index} term ${term}, not what its name says`);
  }
  return {
    meta: { index, term, membership: { voters: lists[0]!, learners: lists[1]! } },
    data: bytes.slice(p),
  };
}
