/**
 * Segment files of the write-ahead log: their names, how a new one is made
 * durable, and how one is read back and judged.
 *
 * A segment is `<seq>-<first index>.wal` (16 hex digits each): the sequence
 * number orders the segments, the first index is the log index the node was
 * at when the segment was created (for people reading a listing). It holds a
 * segment header record, then one batch record per save.
 *
 * Every record is checked (frame header checksum, length, payload checksum,
 * decoding). A bad record is corruption (StorageCorruptError naming the file
 * and byte offset) in an earlier segment (sealed and synced before the next
 * one was created), in the segment header (written under a temporary name
 * and renamed once synced), or when a valid record follows it (a save is
 * written only after the previous one was synced, so valid data after a bad
 * record means the bad one had been acknowledged).
 *
 * The last record of the LAST segment may be torn by a crash during its
 * append (never acknowledged): it is cut off only when the torn-tail rule of
 * torn.ts says so: (a) the file ends inside it, (b) the file is all zero from
 * its start, or (c) its failing checksum is explained by an all-zero sector
 * chunk and is not one flipped bit. Any other bad last record (a full-length
 * record with a flipped bit in its header, checksums or payload) is
 * corruption, never cut off.
 *
 * @module
 */

import { join } from "node:path";
import { assert } from "../../assert.ts";
import { crc32c } from "../../crc32c.ts";
import { StorageCorruptError } from "../raft_storage.ts";
import { FILE_MODE, syncDir, TEMP_SUFFIX, writeAll } from "./files.ts";
import {
  type Batch,
  decodeFrameHeader,
  decodePayload,
  encodeSegmentHeader,
  FRAME_HEADER_BYTES,
  RECORD_BYTES_MAX,
  RecordFormatError,
  type SegmentHeader,
} from "./record.ts";
import { type ByteSource, checkRecord, describeFault, judgeTail } from "./torn.ts";

/** Suffix of segment files. */
export const SEGMENT_SUFFIX = ".wal";
/** Bytes read from a segment at a time. */
const READ_CHUNK_BYTES = 1024 * 1024;
const NAME_PATTERN = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;

/** What a segment's name says. */
export interface SegmentName {
  seq: number;
  firstIndex: number;
  name: string;
}

function hex16(n: number): string {
  assert(Number.isSafeInteger(n) && n >= 0, () => `bad number ${n} for a file name`);
  return n.toString(16).padStart(16, "0");
}

/**
 * The file name of a segment.
 *
 * @param seq the sequence number (1, 2, ...)
 * @param firstIndex the log index the segment starts at
 * @returns e.g. `0000000000000001-0000000000000001.wal`
 */
export function segmentFileName(seq: number, firstIndex: number): string {
  return `${hex16(seq)}-${hex16(firstIndex)}${SEGMENT_SUFFIX}`;
}

/**
 * Parse a segment file name.
 *
 * @param name a file name
 * @returns its parts, or null when it is not a segment's name
 */
export function parseSegmentName(name: string): SegmentName | null {
  const m = NAME_PATTERN.exec(name);
  if (!m) return null;
  const seq = parseInt(m[1]!, 16);
  const firstIndex = parseInt(m[2]!, 16);
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(firstIndex)) return null;
  return { seq, firstIndex, name };
}

/**
 * Create a new segment durably: header record (with the current hard state)
 * written to a temporary file and synced, renamed into place, directory synced.
 *
 * @param dir the wal directory
 * @param header what the header record says
 * @returns the open file (positioned after the header, for appending), its name and size
 */
export async function createSegment(
  dir: string,
  header: Omit<SegmentHeader, "kind" | "version">,
): Promise<{ file: Deno.FsFile; name: string; size: number }> {
  const name = segmentFileName(header.seq, header.firstIndex);
  const temp = join(dir, name + TEMP_SUFFIX);
  const bytes = encodeSegmentHeader(header);
  const file = await Deno.open(temp, {
    write: true,
    create: true,
    truncate: true,
    mode: FILE_MODE,
  });
  try {
    await writeAll(file, bytes);
    await file.syncData();
    await Deno.rename(temp, join(dir, name));
    await syncDir(dir);
  } catch (error) {
    file.close();
    throw error;
  }
  return { file, name, size: bytes.length };
}

/** Reads a file forward through a window; `bytes()` may only move forward until `reset()`. */
class ForwardReader implements ByteSource {
  readonly #file: Deno.FsFile;
  readonly #size: number;
  #buf = new Uint8Array(0);
  /** file offsets held in #buf: [#start, #end) */
  #start = 0;
  #end = 0;

  constructor(file: Deno.FsFile, size: number) {
    this.#file = file;
    this.#size = size;
  }

  /** `n` bytes at `offset` (valid until the next call). */
  async bytes(offset: number, n: number): Promise<Uint8Array> {
    assert(offset >= this.#start && offset + n <= this.#size, "read outside the window");
    if (offset + n > this.#end) await this.#refill(offset, n);
    const at = offset - this.#start;
    return this.#buf.subarray(at, at + n);
  }

  /** Forget the window: the next `bytes()` may be at any offset. */
  reset(): void {
    this.#start = 0;
    this.#end = 0;
  }

  async #refill(offset: number, n: number): Promise<void> {
    const want = Math.min(this.#size - offset, Math.max(n, READ_CHUNK_BYTES));
    const kept = Math.max(0, this.#end - offset);
    if (want <= this.#buf.length) {
      if (kept > 0) this.#buf.copyWithin(0, offset - this.#start, this.#end - this.#start);
    } else {
      const fresh = new Uint8Array(want);
      if (kept > 0) fresh.set(this.#buf.subarray(offset - this.#start, this.#end - this.#start));
      this.#buf = fresh;
    }
    if (kept === 0) await this.#file.seek(offset, Deno.SeekMode.Start);
    let filled = kept;
    // Each read brings at least one byte: at most `want` steps.
    for (let step = 0; filled < want && step <= want; step++) {
      const got = await this.#file.read(this.#buf.subarray(filled, want));
      if (got === null || got === 0) {
        throw new Error(`file shrank while being read (${filled}/${want})`);
      }
      filled += got;
    }
    this.#start = offset;
    this.#end = offset + want;
  }
}

/** The first offset >= `from` where a valid record starts, or null. */
async function findValidRecord(
  reader: ForwardReader,
  from: number,
  size: number,
): Promise<number | null> {
  for (let at = from; at + FRAME_HEADER_BYTES < size; at++) {
    const header = decodeFrameHeader(await reader.bytes(at, FRAME_HEADER_BYTES));
    if (header === null || header.length < 1) continue;
    if (header.length > RECORD_BYTES_MAX || at + FRAME_HEADER_BYTES + header.length > size) {
      continue;
    }
    const frame = await reader.bytes(at, FRAME_HEADER_BYTES + header.length);
    if (crc32c(frame, FRAME_HEADER_BYTES) === header.crc) return at;
  }
  return null;
}

/** What reading a segment found. */
export interface SegmentScan {
  header: SegmentHeader;
  /** file size */
  size: number;
  /** end of the last good record: where a torn tail starts, or the file size */
  validEnd: number;
  /** true when the last segment ended with a torn record (from validEnd to size) */
  torn: boolean;
  /** which case of the torn-tail rule it was (null: not torn) */
  tornReason: string | null;
}

/**
 * Read a segment from start to end, checking every record, and hand each
 * batch (with its byte offset) to `on.batch` in order. A bad record is
 * judged by the torn-tail rule (torn.ts) when it may be a torn tail.
 *
 * @param path the segment file
 * @param options `last`: this is the last segment (a torn tail is allowed);
 *   `keepAbove`: entries at or below this index are decoded without data
 * @param on `header`: called with the segment header, `batch`: with each batch record
 * @returns the header and where the good records end; StorageCorruptError on corruption
 */
export async function scanSegment(
  path: string,
  options: { last: boolean; keepAbove: number },
  on: { header: (header: SegmentHeader) => void; batch: (batch: Batch, offset: number) => void },
): Promise<SegmentScan> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    const reader = new ForwardReader(file, size);
    let header: SegmentHeader | null = null;
    let offset = 0;
    // Every record is longer than FRAME_HEADER_BYTES: at most size / FRAME_HEADER_BYTES steps.
    for (let step = 0; offset < size; step++) {
      assert(step <= size / FRAME_HEADER_BYTES, "segment scan does not progress");
      const read = await checkRecord(reader, offset, size);
      if (read.fault !== null) {
        const reason = describeFault(read.fault);
        if (!options.last) throw new StorageCorruptError(path, offset, reason);
        if (header === null) throw new StorageCorruptError(path, offset, `${reason} (header)`);
        const verdict = await judgeTail(reader, offset, size, read.fault);
        if (!verdict.torn) throw new StorageCorruptError(path, offset, verdict.why);
        // A torn record is the last thing in the file: with its end unknown,
        // a valid record after it means it was acknowledged.
        reader.reset();
        const found = await findValidRecord(reader, verdict.searchFrom, size);
        if (found !== null) {
          throw new StorageCorruptError(
            path,
            offset,
            `${reason}, and a valid record follows at byte offset ${found}`,
          );
        }
        return { header, size, validEnd: offset, torn: true, tornReason: verdict.why };
      }
      let record;
      try {
        record = decodePayload(read.payload, options.keepAbove);
      } catch (error) {
        if (!(error instanceof RecordFormatError)) throw error;
        throw new StorageCorruptError(path, offset, error.message, { cause: error });
      }
      if (header === null) {
        if (record.kind !== "segment_header") {
          throw new StorageCorruptError(path, offset, "the segment does not start with a header");
        }
        header = record;
        on.header(record);
      } else {
        if (record.kind !== "batch") {
          throw new StorageCorruptError(path, offset, "a second segment header");
        }
        on.batch(record, offset);
      }
      offset = read.next;
    }
    if (header === null) throw new StorageCorruptError(path, 0, "empty segment");
    return { header, size, validEnd: offset, torn: false, tornReason: null };
  } finally {
    file.close();
  }
}
