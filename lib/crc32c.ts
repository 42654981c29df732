/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the one checksum of
 * pgraft's files: the write-ahead log's records, snapshot files, and the
 * state machine's images. Pure (no I/O). Table-driven,
 * slicing-by-8: eight bytes per step through eight 256-entry tables.
 *
 * @module
 */

const POLYNOMIAL = 0x82f63b78;
const SLICES = 8;

/** `TABLES[k * 256 + b]`: the CRC of byte b followed by k zero bytes. Int32 keeps V8 on small integers. */
const TABLES: Int32Array = (() => {
  const t = new Int32Array(SLICES * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLYNOMIAL : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < SLICES; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
})();

/**
 * Continue a CRC-32C over `bytes[start, end)`.
 *
 * @param crc the CRC so far (0 to start)
 * @param bytes the data
 * @param start first byte (default 0)
 * @param end one past the last byte (default bytes.length)
 * @returns the updated CRC, an unsigned 32-bit integer
 * @example
 * ```ts
 * const part = crc32cUpdate(0, new TextEncoder().encode("1234"));
 * crc32cUpdate(part, new TextEncoder().encode("56789")) === 0xe3069283; // true
 * ```
 */
export function crc32cUpdate(
  crc: number,
  bytes: Uint8Array,
  start = 0,
  end: number = bytes.length,
): number {
  const t = TABLES;
  let c = ~crc;
  let i = start;
  const end8 = start + ((end - start) & ~7);
  for (; i < end8; i += 8) {
    const a = c ^
      (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    const b = bytes[i + 4]! | (bytes[i + 5]! << 8) | (bytes[i + 6]! << 16) | (bytes[i + 7]! << 24);
    c = t[1792 + (a & 0xff)]! ^ t[1536 + ((a >>> 8) & 0xff)]! ^ t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^ t[768 + (b & 0xff)]! ^ t[512 + ((b >>> 8) & 0xff)]! ^
      t[256 + ((b >>> 16) & 0xff)]! ^ t[b >>> 24]!;
  }
  for (; i < end; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * CRC-32C of `bytes[start, end)`.
 *
 * @param bytes the data
 * @param start first byte (default 0)
 * @param end one past the last byte (default bytes.length)
 * @returns the CRC, an unsigned 32-bit integer
 * @example
 * ```ts
 * crc32c(new TextEncoder().encode("123456789")) === 0xe3069283; // true
 * ```
 */
export function crc32c(bytes: Uint8Array, start = 0, end: number = bytes.length): number {
  return crc32cUpdate(0, bytes, start, end);
}
