/**
 * Chunked snapshot transfers, receiving side: a snapshot travels as a
 * sequence of `POST /raft/snapshot` requests, each carrying one chunk of the
 * encoded envelope (one `snapshot_request`) with {@link HEADER_SNAPSHOT_ID},
 * {@link HEADER_SNAPSHOT_OFFSET} and {@link HEADER_SNAPSHOT_TOTAL}, in order.
 * {@link SnapshotAssembler} puts them back together with bounded memory.
 *
 * @module
 */

import { Rejection } from "./gate.ts";
import { type Metrics, TRANSPORT_METRICS as M } from "./metrics.ts";

/** Header naming a snapshot transfer (1..64 of `A-Za-z0-9_-`), the same on each of its chunks. */
export const HEADER_SNAPSHOT_ID = "X-Pgraft-Snapshot-Id";
/** Header with the byte offset of a chunk in the encoded snapshot envelope. */
export const HEADER_SNAPSHOT_OFFSET = "X-Pgraft-Snapshot-Offset";
/** Header with the size in bytes of the whole encoded snapshot envelope. */
export const HEADER_SNAPSHOT_TOTAL = "X-Pgraft-Snapshot-Total";
/** Default largest snapshot (encoded envelope) received, and bound of the reassembly memory: 1 GiB. */
export const MAX_SNAPSHOT_BYTES_DEFAULT = 1024 * 1024 * 1024;
/** Default time an incomplete snapshot transfer is kept without a new chunk. */
export const SNAPSHOT_TRANSFER_TIMEOUT_MS_DEFAULT = 30_000;

/** The headers of one chunk of a snapshot transfer. */
export interface ChunkHeaders {
  /** names the transfer: {@link HEADER_SNAPSHOT_ID} */
  id: string;
  /** where the chunk goes in the encoded envelope: {@link HEADER_SNAPSHOT_OFFSET} */
  offset: number;
  /** the size of the whole encoded envelope: {@link HEADER_SNAPSHOT_TOTAL} */
  total: number;
}

/**
 * Read the chunk headers of a `POST /raft/snapshot`.
 *
 * @param headers the request's headers
 * @returns the transfer id, the chunk's offset and the transfer's total size
 * @throws {Rejection} 400 when one is missing or malformed
 */
export function parseChunkHeaders(headers: Headers): ChunkHeaders {
  const id = headers.get(HEADER_SNAPSHOT_ID);
  if (id === null || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    throw new Rejection(400, "bad_request", `${HEADER_SNAPSHOT_ID}: expected 1..64 of A-Za-z0-9_-`);
  }
  const number = (name: string, min: number): number => {
    const text = headers.get(name);
    if (text === null || !/^\d{1,15}$/.test(text) || Number(text) < min) {
      throw new Rejection(400, "bad_request", `${name}: expected an integer >= ${min}`);
    }
    return Number(text);
  };
  return {
    id,
    offset: number(HEADER_SNAPSHOT_OFFSET, 0),
    total: number(HEADER_SNAPSHOT_TOTAL, 1),
  };
}

interface Transfer {
  id: string;
  total: number;
  received: number;
  /** grows with the chunks received, up to `total` */
  buffer: ArrayBuffer;
  lastActivity: number;
}

/**
 * Reassembles snapshot transfers: at most one per sender (a newer one
 * replaces it), chunks in order, the memory reserved by incomplete transfers
 * at most `maxBytes` in all (the least recently active ones are dropped to
 * make room), a transfer without a chunk for `timeoutMs` dropped.
 */
export class SnapshotAssembler {
  readonly #transfers = new Map<number, Transfer>();

  /**
   * @param maxBytes largest transfer, and bound of the memory held by incomplete ones
   * @param timeoutMs a transfer without a new chunk for this long is dropped
   * @param metrics the registry drops are counted in
   */
  constructor(
    readonly maxBytes: number,
    readonly timeoutMs: number,
    readonly metrics: Metrics,
  ) {}

  /** Incomplete transfers held now. */
  get size(): number {
    return this.#transfers.size;
  }

  /**
   * Drop transfers idle for longer than the timeout.
   *
   * @param now the clock, ms
   */
  sweep(now: number): void {
    for (const [from, t] of this.#transfers) {
      if (now - t.lastActivity > this.timeoutMs) this.#drop(from, "timeout");
    }
  }

  /**
   * Add one chunk.
   *
   * @param from the sender's node id (one transfer per sender)
   * @param chunk the chunk's headers
   * @param data the chunk's bytes
   * @param now the clock, ms
   * @returns the whole encoded envelope when this chunk completed it, else null
   * @throws {Rejection} 413 when the total is over the limit, 409 for a chunk
   *   out of order or of an unknown transfer, 400 for an inconsistent one
   */
  accept(from: number, chunk: ChunkHeaders, data: Uint8Array, now: number): Uint8Array | null {
    let t = this.#transfers.get(from);
    if (chunk.total > this.maxBytes) {
      if (t?.id === chunk.id) this.#drop(from, "rejected");
      throw new Rejection(
        413,
        "too_large",
        `snapshot of ${chunk.total} bytes exceeds the limit of ${this.maxBytes}`,
      );
    }
    if (data.length === 0 || chunk.offset + data.length > chunk.total) {
      throw new Rejection(
        400,
        "bad_request",
        `snapshot chunk of ${data.length} bytes at ${chunk.offset} does not fit in ${chunk.total}`,
      );
    }
    if (t !== undefined && t.id !== chunk.id) {
      if (chunk.offset !== 0) throw this.#unknown(chunk);
      this.#drop(from, "superseded");
      t = undefined;
    }
    if (t === undefined) {
      if (chunk.offset !== 0) throw this.#unknown(chunk);
      this.#makeRoom(chunk.total);
      t = {
        id: chunk.id,
        total: chunk.total,
        received: 0,
        buffer: new ArrayBuffer(0, { maxByteLength: chunk.total }),
        lastActivity: now,
      };
      this.#transfers.set(from, t);
    } else if (t.total !== chunk.total || t.received !== chunk.offset) {
      this.#drop(from, "rejected");
      throw new Rejection(
        409,
        "snapshot_out_of_order",
        `snapshot transfer ${chunk.id}: expected offset ${t.received} of ${t.total}, ` +
          `got ${chunk.offset} of ${chunk.total}; start again at offset 0`,
      );
    }
    t.buffer.resize(chunk.offset + data.length);
    new Uint8Array(t.buffer).set(data, chunk.offset);
    t.received += data.length;
    t.lastActivity = now;
    // most recently active last, so #makeRoom drops the idlest first
    this.#transfers.delete(from);
    if (t.received < t.total) {
      this.#transfers.set(from, t);
      return null;
    }
    // a fixed-length buffer for the storage layer (moved, not copied)
    return new Uint8Array(t.buffer.transferToFixedLength());
  }

  #unknown(chunk: ChunkHeaders): Rejection {
    return new Rejection(
      409,
      "snapshot_out_of_order",
      `snapshot transfer ${chunk.id} is unknown (expired or superseded); start again at offset 0`,
    );
  }

  #makeRoom(bytes: number): void {
    let reserved = bytes;
    for (const t of this.#transfers.values()) reserved += t.total;
    for (const [from, t] of this.#transfers) {
      if (reserved <= this.maxBytes) break;
      reserved -= t.total;
      this.#drop(from, "evicted");
    }
  }

  #drop(from: number, reason: "timeout" | "superseded" | "evicted" | "rejected"): void {
    if (this.#transfers.delete(from)) this.metrics.inc(M.snapshotTransfersDropped, { reason });
  }
}
