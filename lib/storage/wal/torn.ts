/**
 * The torn-tail rule: telling a record a crash interrupted (never
 * acknowledged, cut off on open) from a record damaged after it was
 * acknowledged (corruption: the open stops, naming the file and offset).
 *
 * What we rely on:
 * - A save is ONE record appended to the last segment, then fdatasync; it is
 *   acknowledged only once fdatasync returned, and the next save is written
 *   only after that (a new segment is created, synced and renamed before its
 *   first save). So at a crash at most one record is unsynced: the last one
 *   of the last segment. Every earlier record was synced, and damage to it is
 *   corruption. Nothing is ever written after an unsynced record.
 * - An append writes the file from its old end `offset` onwards: after a
 *   crash its size is between `offset` and the end of the record (a file only
 *   grows by what was written; it never rots shorter).
 * - The disk writes a 512-byte sector whole or not at all (sector-atomic
 *   writes; a disk with 4 KiB physical sectors is atomic on 4 KiB, which keeps
 *   every 512-byte sector whole too). Files start on a block boundary, so file
 *   offsets that are multiples of 512 are sector boundaries.
 * - The file system never shows stale data: space it extended but never
 *   wrote, and the rest of the sector past the old end of the file, read as
 *   zeros (ext4 data=ordered, XFS, btrfs; a truncation, synced, zeroes the
 *   rest of its block).
 *
 * Hence, with a "chunk" being the record's share of one 512-byte-aligned
 * sector (a whole sector, or at the record's ends the part of the sector the
 * record covers), an interrupted append leaves the file ending somewhere in
 * the record, and every chunk present either exactly as intended or all zero.
 * A record that was fully written and synced has every chunk as intended: a
 * flipped bit cannot turn a chunk that held a non-zero byte into zeros.
 *
 * The rule, for the first record of the last segment that fails its checks,
 * at `offset`, in a file of `size` bytes (the caller also requires that no
 * valid record follows it):
 * - (a) torn: the file ends inside the record: fewer than 12 header bytes
 *   remain, or the header checks and its length runs past the end of the file.
 *   Only an append cut short leaves a file shorter than a record it holds.
 * - (b) torn: every byte from `offset` to the end is zero: space the file
 *   system extended for the append but never wrote. A record that was written
 *   has a non-zero header (its length is at least 1).
 * - (c) torn: the checksum that fails is explained by a chunk the write never
 *   reached:
 *   - the header fails its checksum: a chunk holding header bytes is all zero
 *     (the length being unknown, a chunk ends at the end of the file at the
 *     latest);
 *   - the header checks, the payload fails, and the record ends exactly at
 *     the end of the file: a chunk holding payload bytes is all zero;
 *   and the damage is not one flipped bit: CRC-32C pins a single-bit error
 *   exactly (for the header, flipping one of its 96 bits makes it check; for
 *   the payload, the CRC difference is that of one bit at some position). So
 *   a record that holds zeros of its own where a chunk falls (a vote ends in
 *   four bytes of padding, seven for node ids below 256; an entry without
 *   data in nine) and then has a bit flipped is still corruption.
 * - Everything else is corruption: a header that checks with an impossible
 *   length; a full-length record whose header or payload checksum fails with
 *   no zeroed chunk to explain it; one flipped bit anywhere in the record
 *   (length, checksums, payload); a bad record with bytes after its end.
 *
 * Limits. On the safe side (refused as corruption): a torn record whose CRC
 * difference happens to equal a single-bit one (probability at most
 * 8 × payload bytes / 2^32: 2e-6 for 1 KiB); a disk that tears inside a
 * sector. Not told apart (cut off as torn, as etcd's wal, `isTornEntry`,
 * would): damage of several bits in a last record that holds an all-zero
 * chunk of its own, and a sector of the acknowledged last record lost whole
 * (a lost or misdirected write).
 *
 * @module
 */

import { assert } from "../../assert.ts";
import { crc32c } from "../../crc32c.ts";
import { decodeFrameHeader, FRAME_HEADER_BYTES, RECORD_BYTES_MAX } from "./record.ts";

/** The unit a disk writes whole (the smallest sector size). */
export const SECTOR_BYTES = 512;

const POLYNOMIAL = 0x82f63b78;
/** Bytes read at a time when checking that a tail is all zero. */
const ZERO_CHECK_BYTES = 1024 * 1024;

/** Why a record fails its checks. */
export type Fault =
  /** fewer than FRAME_HEADER_BYTES bytes remain */
  | { kind: "short_header" }
  /** the header fails its own checksum */
  | { kind: "bad_header" }
  /** the header checks, but its length is 0 or above RECORD_BYTES_MAX */
  | { kind: "bad_length"; length: number }
  /** the header checks, and the record runs past the end of the file */
  | { kind: "short_record"; length: number }
  /** the header checks, the record is there, its payload fails the checksum */
  | { kind: "bad_payload"; length: number; expected: number; actual: number };

/**
 * What is wrong with a record, in a few words.
 *
 * @param fault how it fails
 * @returns e.g. "incomplete record (40 bytes)"
 */
export function describeFault(fault: Fault): string {
  switch (fault.kind) {
    case "short_header":
      return "incomplete record header";
    case "bad_header":
      return "record header checksum mismatch";
    case "bad_length":
      return `bad record length ${fault.length}`;
    case "short_record":
      return `incomplete record (${fault.length} bytes)`;
    case "bad_payload":
      return "record checksum mismatch";
  }
}

/** What a failing record is taken for: torn (cut off) or corruption (refused). */
export interface Verdict {
  torn: boolean;
  /** why, for the operator */
  why: string;
  /**
   * when torn: where a valid record could still start (the caller looks for
   * one from there to the end, and refuses if there is); the size when the
   * record's bytes are known to reach the end of the file
   */
  searchFrom: number;
}

/** Reads `n` bytes of the file at `offset` (valid until the next call). */
export interface ByteSource {
  bytes(offset: number, n: number): Promise<Uint8Array>;
}

/**
 * Check the record at `offset`: the fault when it fails, null when it is valid.
 *
 * @param source the file's bytes
 * @param offset where the record starts
 * @param size the file size
 * @returns the fault, or the payload (a view valid until the next read) and where the next record starts
 */
export async function checkRecord(
  source: ByteSource,
  offset: number,
  size: number,
): Promise<{ fault: Fault } | { fault: null; payload: Uint8Array; next: number }> {
  if (size - offset < FRAME_HEADER_BYTES) return { fault: { kind: "short_header" } };
  const header = decodeFrameHeader(await source.bytes(offset, FRAME_HEADER_BYTES));
  if (header === null) return { fault: { kind: "bad_header" } };
  const { length } = header;
  if (length < 1 || length > RECORD_BYTES_MAX) return { fault: { kind: "bad_length", length } };
  const next = offset + FRAME_HEADER_BYTES + length;
  if (next > size) return { fault: { kind: "short_record", length } };
  const frame = await source.bytes(offset, FRAME_HEADER_BYTES + length);
  const actual = crc32c(frame, FRAME_HEADER_BYTES);
  if (actual !== header.crc) {
    return { fault: { kind: "bad_payload", length, expected: header.crc, actual } };
  }
  return { fault: null, payload: frame.subarray(FRAME_HEADER_BYTES), next };
}

/**
 * Apply the torn-tail rule (see the module documentation) to the failing
 * last record of the last segment.
 *
 * @param source the file's bytes (read from `offset` on)
 * @param offset where the failing record starts
 * @param size the file size
 * @param fault how it fails (from checkRecord)
 * @returns torn or corruption, and why
 */
export async function judgeTail(
  source: ByteSource,
  offset: number,
  size: number,
  fault: Fault,
): Promise<Verdict> {
  const torn = (why: string, searchFrom = size): Verdict => ({ torn: true, why, searchFrom });
  const corrupt = (why: string): Verdict => ({ torn: false, why, searchFrom: size });
  switch (fault.kind) {
    case "short_header":
      return torn(`(a) the file ends ${size - offset} bytes into a record header`);
    case "short_record":
      return torn(
        `(a) the file ends inside a record (its header says ${fault.length} payload bytes)`,
      );
    case "bad_length":
      return corrupt(`record header checks but gives length ${fault.length}`);
    case "bad_payload": {
      const end = offset + FRAME_HEADER_BYTES + fault.length;
      if (end < size) {
        return corrupt(`record checksum mismatch, and ${size - end} bytes follow the record`);
      }
      if (isOneBitError(fault.expected, fault.actual, fault.length)) {
        return corrupt("record checksum mismatch: one flipped bit in the payload");
      }
      const frame = await source.bytes(offset, end - offset);
      const zeroed = zeroedChunk(frame, offset, offset, end, offset + FRAME_HEADER_BYTES);
      if (zeroed === null) return corrupt("record checksum mismatch, no unwritten sector");
      return torn(`(c) record checksum mismatch; unwritten sector at byte offset ${zeroed}`);
    }
    case "bad_header": {
      // The chunks holding header bytes: up to the sector boundary after the header.
      const to = Math.min(size, ceilToSector(offset + FRAME_HEADER_BYTES));
      const bytes = await source.bytes(offset, to - offset);
      const oneBit = isOneBitHeaderError(bytes);
      const zeroed = zeroedChunk(bytes, offset, offset, to, offset);
      if (await allZero(source, offset, size)) {
        return torn(`(b) ${size - offset} zero bytes at the end of the file`);
      }
      if (oneBit) return corrupt("record header checksum mismatch: one flipped bit in the header");
      if (zeroed === null) return corrupt("record header checksum mismatch, no unwritten sector");
      return torn(
        `(c) record header checksum mismatch; unwritten sector at byte offset ${zeroed}`,
        offset + 1,
      );
    }
  }
}

function ceilToSector(offset: number): number {
  return Math.ceil(offset / SECTOR_BYTES) * SECTOR_BYTES;
}

/**
 * The first chunk of the file range [from, to) that is all zero, where the
 * range is cut at the sector boundaries (multiples of SECTOR_BYTES) into
 * chunks; only chunks ending after `countFrom` count.
 *
 * @param bytes the bytes, bytes[0] at file offset `base`, covering [from, to)
 * @param base the file offset of bytes[0]
 * @param from start of the range (a file offset)
 * @param to end of the range (a file offset)
 * @param countFrom chunks ending at or before this file offset are skipped
 * @returns the file offset of the zeroed chunk, or null
 */
export function zeroedChunk(
  bytes: Uint8Array,
  base: number,
  from: number,
  to: number,
  countFrom: number,
): number | null {
  assert(from >= base && to - base <= bytes.length, "range outside the bytes");
  // Each step moves `start` to the next sector boundary (or `to`): at most
  // (to - from) / SECTOR_BYTES + 2 steps.
  for (let start = from; start < to;) {
    const end = Math.min(to, (Math.floor(start / SECTOR_BYTES) + 1) * SECTOR_BYTES);
    if (end > countFrom && isZero(bytes, start - base, end - base)) return start;
    start = end;
  }
  return null;
}

function isZero(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Whether every byte of the file from `offset` to `size` is zero. */
async function allZero(source: ByteSource, offset: number, size: number): Promise<boolean> {
  // Each step reads at least one byte: at most size - offset steps.
  for (let at = offset; at < size;) {
    const n = Math.min(ZERO_CHECK_BYTES, size - at);
    if (!isZero(await source.bytes(at, n), 0, n)) return false;
    at += n;
  }
  return true;
}

/**
 * Whether flipping one of the 96 bits of a frame header makes its checksum pass.
 *
 * @param header at least FRAME_HEADER_BYTES bytes (not modified)
 * @returns true when the header is one flipped bit away from a valid one
 */
export function isOneBitHeaderError(header: Uint8Array): boolean {
  const copy = header.slice(0, FRAME_HEADER_BYTES);
  for (let bit = 0; bit < FRAME_HEADER_BYTES * 8; bit++) {
    copy[bit >> 3]! ^= 1 << (bit & 7);
    const valid = decodeFrameHeader(copy) !== null;
    copy[bit >> 3]! ^= 1 << (bit & 7);
    if (valid) return true;
  }
  return false;
}

/**
 * `STEP8[b]`: eight shifts of the CRC register holding b (the CRC-32C table).
 * Int32 keeps V8 on small integers.
 */
const STEP8: Int32Array = (() => {
  const t = new Int32Array(256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLYNOMIAL : c >>> 1;
    t[b] = c;
  }
  return t;
})();

/**
 * Whether a payload of `length` bytes whose CRC-32C is `actual`, where
 * `expected` was recorded, differs from a payload with that CRC in exactly
 * one bit.
 *
 * CRC-32C is linear: flipping bit j (0 = least significant) of byte i of an
 * n-byte message changes its CRC by S^(8(n-i)-j)(1), S being one shift of
 * the register (`c >>> 1`, xor the polynomial when a 1 falls out). So the
 * difference d is a single-bit error iff S^j(d) = S^(8m)(1) for some m in
 * 1..n and j in 0..7: one table step per byte of the payload.
 *
 * @param expected the CRC recorded in the header
 * @param actual the CRC of the payload as read
 * @param length the payload's length in bytes
 * @returns true when one flipped bit explains the difference
 */
export function isOneBitError(expected: number, actual: number, length: number): boolean {
  const d = (expected ^ actual) | 0;
  if (d === 0) return false;
  // shifted[j] = S^j(d), as Int32 like the table's values.
  const shifted = new Int32Array(8);
  shifted[0] = d;
  for (let j = 1; j < 8; j++) {
    const c = shifted[j - 1]!;
    shifted[j] = c & 1 ? (c >>> 1) ^ POLYNOMIAL : c >>> 1;
  }
  let u = 1;
  for (let m = 1; m <= length; m++) {
    u = STEP8[u & 0xff]! ^ (u >>> 8);
    for (let j = 0; j < 8; j++) if (u === shifted[j]) return true;
  }
  return false;
}
