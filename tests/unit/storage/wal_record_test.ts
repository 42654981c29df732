/**
 * CRC-32C against published check values and a bitwise reference, and the
 * write-ahead log's record codec: round trips, large numbers, and damage
 * caught by the frame checks.
 */

import assert from "node:assert/strict";
import type { Entry } from "../../../lib/raft/types.ts";
import { crc32c, crc32cUpdate } from "../../../lib/crc32c.ts";
import {
  decodeFrameHeader,
  decodePayload,
  encodeBatch,
  encodeSegmentHeader,
  FRAME_HEADER_BYTES,
} from "../../../lib/storage/wal/record.ts";

/** One bit at a time: the definition, slow and obviously right. */
function crc32cBitwise(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

Deno.test("crc32c gives the published check values (RFC 3720 B.4 and '123456789')", () => {
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  const descending = Uint8Array.from({ length: 32 }, (_, i) => 31 - i);
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(ascending), 0x46dd794e);
  assert.equal(crc32c(descending), 0x113fdb5c);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

Deno.test("crc32c matches the bitwise definition at every length and split point", () => {
  const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 167 + 13) & 0xff);
  for (let length = 0; length <= 70; length++) {
    const part = bytes.subarray(5, 5 + length);
    assert.equal(crc32c(part), crc32cBitwise(part), `length ${length}`);
    assert.equal(crc32c(bytes, 5, 5 + length), crc32cBitwise(part), `range of ${length}`);
    const split = length >> 1;
    assert.equal(crc32cUpdate(crc32c(part, 0, split), part, split), crc32cBitwise(part));
  }
});

Deno.test("a batch record decodes to what was encoded, numbers beyond 2^32 included", () => {
  const entries: Entry[] = [
    { index: 2 ** 40, term: 2 ** 33 + 5, type: "normal", data: new Uint8Array() },
    { index: 2 ** 40 + 1, term: 2 ** 33 + 5, type: "conf_change", data: new Uint8Array([1, 2]) },
    { index: 2 ** 40 + 2, term: 2 ** 34, type: "normal", data: new Uint8Array(1000).fill(9) },
  ];
  const frame = encodeBatch(
    { index: 2 ** 40 - 1, term: 2 ** 33, keepsLog: true },
    { term: 2 ** 34, vote: 2147483647, commit: 2 ** 40 + 1 },
    entries,
  );
  const header = decodeFrameHeader(frame);
  assert.ok(header);
  assert.equal(header.length, frame.length - FRAME_HEADER_BYTES);
  assert.equal(header.crc, crc32c(frame, FRAME_HEADER_BYTES));
  assert.deepEqual(decodePayload(frame.subarray(FRAME_HEADER_BYTES), 0), {
    kind: "batch",
    marker: { index: 2 ** 40 - 1, term: 2 ** 33, keepsLog: true },
    hardState: { term: 2 ** 34, vote: 2147483647, commit: 2 ** 40 + 1 },
    firstIndex: 2 ** 40,
    terms: entries.map((e) => e.term),
    entries,
  });
  // Entries at or below keepAbove keep only their term.
  const partial = decodePayload(frame.subarray(FRAME_HEADER_BYTES), 2 ** 40 + 1);
  assert.equal(partial.kind, "batch");
  if (partial.kind === "batch") {
    assert.deepEqual(partial.entries, entries.slice(2));
    assert.equal(partial.terms.length, 3);
  }
});

Deno.test("a segment header decodes to what was encoded", () => {
  const frame = encodeSegmentHeader({
    nodeId: 7,
    seq: 12,
    firstIndex: 9001,
    hardState: { term: 4, vote: 2, commit: 8999 },
  });
  assert.deepEqual(decodePayload(frame.subarray(FRAME_HEADER_BYTES), 0), {
    kind: "segment_header",
    version: 1,
    nodeId: 7,
    seq: 12,
    firstIndex: 9001,
    hardState: { term: 4, vote: 2, commit: 8999 },
  });
});

Deno.test("any flipped bit in a frame header fails the header's own checksum", () => {
  const frame = encodeBatch(null, { term: 1, vote: 1, commit: 0 }, []);
  for (let bit = 0; bit < FRAME_HEADER_BYTES * 8; bit++) {
    const copy = frame.slice();
    copy[bit >> 3]! ^= 1 << (bit & 7);
    assert.equal(decodeFrameHeader(copy), null, `bit ${bit}`);
  }
  assert.equal(decodeFrameHeader(new Uint8Array(FRAME_HEADER_BYTES)), null, "zeros");
});
