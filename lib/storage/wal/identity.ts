/**
 * The identity file of a storage directory: which node (and, once known,
 * which cluster) the directory belongs to. JSON, replaced atomically:
 * `{"format":"pgraft-storage","version":1,"nodeId":3,"clusterId":"…"}`.
 *
 * @module
 */

import { join } from "node:path";
import { StorageCorruptError, type StorageIdentity } from "../raft_storage.ts";
import { writeFileAtomic } from "./files.ts";

/** Name of the identity file in the storage directory. */
export const IDENTITY_FILE = "identity";
const FORMAT = "pgraft-storage";
const VERSION = 1;
const IDENTITY_BYTES_MAX = 4096;

/**
 * Read the identity file of `dir`.
 *
 * @param dir the storage directory
 * @returns the identity, or null when there is no identity file
 */
export async function readIdentity(dir: string): Promise<StorageIdentity | null> {
  const path = join(dir, IDENTITY_FILE);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  const bad = (reason: string) => new StorageCorruptError(path, null, reason);
  if (bytes.length > IDENTITY_BYTES_MAX) throw bad("too large for an identity file");
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw bad("not JSON");
  }
  if (typeof parsed !== "object" || parsed === null) throw bad("not an identity object");
  const o = parsed as Record<string, unknown>;
  if (o.format !== FORMAT || o.version !== VERSION) throw bad("not a pgraft identity file");
  const nodeId = o.nodeId;
  const clusterId = o.clusterId;
  if (typeof nodeId !== "number" || !Number.isInteger(nodeId) || nodeId < 1) {
    throw bad("bad nodeId");
  }
  if (clusterId !== null && typeof clusterId !== "string") throw bad("bad clusterId");
  return { nodeId, clusterId };
}

/**
 * Write the identity file of `dir` atomically.
 *
 * @param dir the storage directory
 * @param identity the identity
 * @returns once durable
 */
export async function writeIdentity(dir: string, identity: StorageIdentity): Promise<void> {
  const text = JSON.stringify({
    format: FORMAT,
    version: VERSION,
    nodeId: identity.nodeId,
    clusterId: identity.clusterId,
  }) + "\n";
  await writeFileAtomic(dir, IDENTITY_FILE, [new TextEncoder().encode(text)]);
}
