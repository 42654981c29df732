/**
 * The write-ahead log's records: how they are framed and what they carry.
 *
 * Frame (little endian):
 * ```
 * 0   u32  payload length (1..RECORD_BYTES_MAX)
 * 4   u32  CRC-32C of the payload
 * 8   u32  CRC-32C of bytes 0..7 (the header checks itself: a damaged length is seen as such)
 * 12  payload
 * ```
 * Payload kinds:
 * - segment header (kind 1, first record of every segment): format version,
 *   magic "PGRW", node id, segment sequence number, the index the segment's
 *   log starts at, and the hard state current when the segment was created
 *   (so that older segments can be deleted).
 * - batch (kind 2, one per save): an optional snapshot marker (index, term of
 *   a snapshot received from the leader, and whether the log was kept), an optional hard state (term, vote,
 *   commit), and contiguous entries (first index, then per entry: term, type,
 *   data length, data).
 *
 * Numbers above 2^32 are written as two u32 (low, high) and must be safe integers.
 *
 * @module
 */

import { assert } from "../../assert.ts";
import type { Entry, EntryType, HardState } from "../../raft/types.ts";
import { crc32c } from "../../crc32c.ts";

/** Bytes of a frame header. */
export const FRAME_HEADER_BYTES = 12;
/** Largest payload of one record (a batch beyond it is refused). */
export const RECORD_BYTES_MAX = 256 * 1024 * 1024;
/** Version of the record format. */
export const FORMAT_VERSION = 1;

const KIND_SEGMENT_HEADER = 1;
const KIND_BATCH = 2;
const MAGIC = 0x57524750; // "PGRW" read as a little-endian u32
const FLAG_HARD_STATE = 1;
const FLAG_SNAPSHOT_MARKER = 2;
const FLAG_MARKER_KEEPS_LOG = 4;
const SEGMENT_HEADER_BYTES = 56;
const BATCH_FIXED_BYTES = 16;
const MARKER_BYTES = 16;
const HARD_STATE_BYTES = 24;
const ENTRY_FIXED_BYTES = 13;
const TWO_32 = 0x1_0000_0000;
const TYPE_CODES: Record<EntryType, number> = { normal: 0, conf_change: 1 };
const TYPES: readonly EntryType[] = ["normal", "conf_change"];

/** The first record of a segment. */
export interface SegmentHeader {
  kind: "segment_header";
  version: number;
  nodeId: number;
  seq: number;
  firstIndex: number;
  hardState: HardState;
}

/** A snapshot received from the leader, and what installing it did to the log. */
export interface SnapshotMarker {
  index: number;
  term: number;
  /**
   * true: the log held the snapshot's last entry with its term, and the
   * entries after it were kept; false: the whole log was discarded. Recorded
   * rather than recomputed on replay, since the segments holding that entry
   * may have been compacted away by then.
   */
  keepsLog: boolean;
}

/** One save. Entries at or below `keepAbove` (a decoding option) carry no data. */
export interface Batch {
  kind: "batch";
  marker: SnapshotMarker | null;
  hardState: HardState | null;
  /** index of the first entry (0 when there are none) */
  firstIndex: number;
  /** the term of every entry of the batch, in order */
  terms: number[];
  /** the entries with index > keepAbove, in order */
  entries: Entry[];
}

/** Thrown by decoders for a payload whose checksum is right but whose content is not. */
export class RecordFormatError extends Error {
  override name = "RecordFormatError";
}

function putU64(view: DataView, offset: number, n: number): void {
  assert(Number.isSafeInteger(n) && n >= 0, () => `cannot encode ${n} as u64`);
  view.setUint32(offset, n % TWO_32, true);
  view.setUint32(offset + 4, Math.floor(n / TWO_32), true);
}

function getU64(view: DataView, offset: number): number {
  const high = view.getUint32(offset + 4, true);
  if (high > 0x1f_ffff) throw new RecordFormatError(`number at payload offset ${offset} too large`);
  return high * TWO_32 + view.getUint32(offset, true);
}

/** A frame with room for `payloadBytes`; the payload is written at FRAME_HEADER_BYTES. */
function allocFrame(payloadBytes: number): { frame: Uint8Array; view: DataView } {
  assert(payloadBytes >= 1 && payloadBytes <= RECORD_BYTES_MAX, "bad payload size");
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payloadBytes);
  return { frame, view: new DataView(frame.buffer) };
}

/** Fill in the frame header once the payload is in place. */
function sealFrame(frame: Uint8Array, view: DataView): Uint8Array {
  view.setUint32(0, frame.length - FRAME_HEADER_BYTES, true);
  view.setUint32(4, crc32c(frame, FRAME_HEADER_BYTES), true);
  view.setUint32(8, crc32c(frame, 0, 8), true);
  return frame;
}

/**
 * Read a frame header.
 *
 * @param header at least FRAME_HEADER_BYTES bytes
 * @returns the payload length and CRC, or null when the header's own checksum fails
 */
export function decodeFrameHeader(header: Uint8Array): { length: number; crc: number } | null {
  assert(header.length >= FRAME_HEADER_BYTES, "short frame header");
  const view = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_BYTES);
  if (crc32c(header, 0, 8) !== view.getUint32(8, true)) return null;
  return { length: view.getUint32(0, true), crc: view.getUint32(4, true) };
}

/**
 * Encode the header record of a new segment.
 *
 * @param h the header (without `kind`)
 * @returns the framed record
 */
export function encodeSegmentHeader(h: Omit<SegmentHeader, "kind" | "version">): Uint8Array {
  const { frame, view } = allocFrame(SEGMENT_HEADER_BYTES);
  const p = FRAME_HEADER_BYTES;
  view.setUint8(p, KIND_SEGMENT_HEADER);
  view.setUint8(p + 1, FORMAT_VERSION);
  view.setUint32(p + 4, MAGIC, true);
  view.setUint32(p + 8, h.nodeId, true);
  putU64(view, p + 16, h.seq);
  putU64(view, p + 24, h.firstIndex);
  putU64(view, p + 32, h.hardState.term);
  view.setUint32(p + 40, h.hardState.vote, true);
  putU64(view, p + 48, h.hardState.commit);
  return sealFrame(frame, view);
}

/**
 * Encode one save as a batch record: marker, hard state and entries.
 *
 * @param marker a snapshot received from the leader, or null
 * @param hardState the new hard state, or null
 * @param entries contiguous entries (may be empty)
 * @returns the framed record; RangeError when larger than RECORD_BYTES_MAX
 */
export function encodeBatch(
  marker: SnapshotMarker | null,
  hardState: HardState | null,
  entries: readonly Entry[],
): Uint8Array {
  let size = BATCH_FIXED_BYTES + (marker ? MARKER_BYTES : 0) + (hardState ? HARD_STATE_BYTES : 0);
  for (let i = 0; i < entries.length; i++) size += ENTRY_FIXED_BYTES + entries[i]!.data.length;
  if (size > RECORD_BYTES_MAX) {
    throw new RangeError(`a save of ${size} bytes exceeds the record limit ${RECORD_BYTES_MAX}`);
  }
  const { frame, view } = allocFrame(size);
  let p = FRAME_HEADER_BYTES;
  view.setUint8(p, KIND_BATCH);
  const flags = (hardState ? FLAG_HARD_STATE : 0) |
    (marker ? FLAG_SNAPSHOT_MARKER : 0) |
    (marker?.keepsLog ? FLAG_MARKER_KEEPS_LOG : 0);
  view.setUint8(p + 1, flags);
  view.setUint32(p + 4, entries.length, true);
  putU64(view, p + 8, entries[0]?.index ?? 0);
  p += BATCH_FIXED_BYTES;
  if (marker) {
    putU64(view, p, marker.index);
    putU64(view, p + 8, marker.term);
    p += MARKER_BYTES;
  }
  if (hardState) {
    putU64(view, p, hardState.term);
    putU64(view, p + 8, hardState.commit);
    view.setUint32(p + 16, hardState.vote, true);
    p += HARD_STATE_BYTES;
  }
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    putU64(view, p, e.term);
    view.setUint8(p + 8, TYPE_CODES[e.type]);
    view.setUint32(p + 9, e.data.length, true);
    frame.set(e.data, p + ENTRY_FIXED_BYTES);
    p += ENTRY_FIXED_BYTES + e.data.length;
  }
  assert(p === frame.length, "batch size mismatch");
  return sealFrame(frame, view);
}

function need(payload: Uint8Array, offset: number, bytes: number): void {
  if (offset + bytes > payload.length) {
    throw new RecordFormatError(`record ends at ${payload.length}, needs ${offset + bytes}`);
  }
}

/**
 * Decode a payload whose checksum matched.
 *
 * @param payload the payload bytes (not retained: entry data is copied)
 * @param keepAbove entries at or below this index keep only their term
 * @returns the record; RecordFormatError when it does not decode
 */
export function decodePayload(payload: Uint8Array, keepAbove: number): SegmentHeader | Batch {
  need(payload, 0, 4);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const kind = view.getUint8(0);
  if (kind === KIND_SEGMENT_HEADER) return decodeSegmentHeader(payload, view);
  if (kind === KIND_BATCH) return decodeBatch(payload, view, keepAbove);
  throw new RecordFormatError(`unknown record kind ${kind}`);
}

function decodeSegmentHeader(payload: Uint8Array, view: DataView): SegmentHeader {
  if (payload.length !== SEGMENT_HEADER_BYTES) {
    throw new RecordFormatError(`segment header of ${payload.length} bytes`);
  }
  const version = view.getUint8(1);
  if (version !== FORMAT_VERSION) throw new RecordFormatError(`unknown format version ${version}`);
  if (view.getUint32(4, true) !== MAGIC) throw new RecordFormatError("bad magic number");
  return {
    kind: "segment_header",
    version,
    nodeId: view.getUint32(8, true),
    seq: getU64(view, 16),
    firstIndex: getU64(view, 24),
    hardState: {
      term: getU64(view, 32),
      vote: view.getUint32(40, true),
      commit: getU64(view, 48),
    },
  };
}

function decodeBatch(payload: Uint8Array, view: DataView, keepAbove: number): Batch {
  need(payload, 0, BATCH_FIXED_BYTES);
  const flags = view.getUint8(1);
  if ((flags & ~(FLAG_HARD_STATE | FLAG_SNAPSHOT_MARKER | FLAG_MARKER_KEEPS_LOG)) !== 0) {
    throw new RecordFormatError(`unknown batch flags ${flags}`);
  }
  const count = view.getUint32(4, true);
  const firstIndex = getU64(view, 8);
  if ((count === 0) !== (firstIndex === 0)) throw new RecordFormatError("bad first index");
  let p = BATCH_FIXED_BYTES;
  let marker: SnapshotMarker | null = null;
  if (flags & FLAG_SNAPSHOT_MARKER) {
    need(payload, p, MARKER_BYTES);
    marker = {
      index: getU64(view, p),
      term: getU64(view, p + 8),
      keepsLog: (flags & FLAG_MARKER_KEEPS_LOG) !== 0,
    };
    p += MARKER_BYTES;
  }
  let hardState: HardState | null = null;
  if (flags & FLAG_HARD_STATE) {
    need(payload, p, HARD_STATE_BYTES);
    hardState = {
      term: getU64(view, p),
      commit: getU64(view, p + 8),
      vote: view.getUint32(p + 16, true),
    };
    p += HARD_STATE_BYTES;
  }
  if (count > (payload.length - p) / ENTRY_FIXED_BYTES) {
    throw new RecordFormatError(`batch claims ${count} entries`);
  }
  const terms: number[] = new Array(count);
  const entries: Entry[] = [];
  for (let i = 0; i < count; i++) {
    need(payload, p, ENTRY_FIXED_BYTES);
    const term = getU64(view, p);
    const type = TYPES[view.getUint8(p + 8)];
    const length = view.getUint32(p + 9, true);
    if (type === undefined) {
      throw new RecordFormatError(`unknown entry type ${view.getUint8(p + 8)}`);
    }
    if (term < 1) throw new RecordFormatError("entry term 0");
    p += ENTRY_FIXED_BYTES;
    need(payload, p, length);
    terms[i] = term;
    const index = firstIndex + i;
    if (index > keepAbove) {
      entries.push({ index, term, type, data: payload.slice(p, p + length) });
    }
    p += length;
  }
  if (p !== payload.length) {
    throw new RecordFormatError(`${payload.length - p} bytes after the entries`);
  }
  return { kind: "batch", marker, hardState, firstIndex, terms, entries };
}
