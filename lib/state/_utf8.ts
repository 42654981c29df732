/**
 * Strict UTF-8 decoding with a fast path for short ASCII text (most keys):
 * TextDecoder costs a call into the runtime per string.
 *
 * @module
 */

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Longest text decoded by the ASCII fast path. */
const ASCII_FAST_BYTES_MAX = 1024;

/**
 * The text `bytes` hold.
 *
 * @throws TypeError when `bytes` are not valid UTF-8
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(decodeUtf8(new Uint8Array([0x61, 0xc3, 0xa9])), "aé");
 * ```
 */
export function decodeUtf8(bytes: Uint8Array): string {
  const n = bytes.length;
  if (n <= ASCII_FAST_BYTES_MAX) {
    let i = 0;
    while (i < n && bytes[i]! < 0x80) i++;
    if (i === n) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }
  return decoder.decode(bytes);
}
