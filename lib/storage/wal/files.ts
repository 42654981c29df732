/**
 * File system steps the storage makes durable: whole writes, directory syncs,
 * atomic replacement of a small file (temporary file, sync, rename, directory
 * sync), listings.
 *
 * @module
 */

import { dirname, join } from "node:path";

/** Most files a storage directory may list (a bound on every listing loop). */
export const DIRECTORY_FILES_MAX = 100_000;
/** Suffix of files written before being renamed into place. */
export const TEMP_SUFFIX = ".tmp";
/** Mode of every file the storage creates: the agent's user only. */
export const FILE_MODE = 0o600;
/** Mode of every directory the storage creates. */
export const DIRECTORY_MODE = 0o700;

/**
 * Write all of `bytes` at the file's position (a write may be short).
 *
 * @param file an open file
 * @param bytes what to write
 * @returns once every byte was handed to the kernel
 */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  // Each step writes at least one byte, so at most bytes.length steps.
  for (let step = 0; done < bytes.length && step <= bytes.length; step++) {
    const n = await file.write(done === 0 ? bytes : bytes.subarray(done));
    if (n <= 0) throw new Error(`write returned ${n}`);
    done += n;
  }
}

/**
 * Write all of `bytes` at the file's position, synchronously: a write to the
 * page cache takes microseconds, less than a round trip through the async
 * file ops' thread pool (the fdatasync that follows stays asynchronous).
 *
 * @param file the file
 * @param bytes what to write
 */
export function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  let done = 0;
  // Each step writes at least one byte, so at most bytes.length steps.
  for (let step = 0; done < bytes.length && step <= bytes.length; step++) {
    const n = file.writeSync(done === 0 ? bytes : bytes.subarray(done));
    if (n <= 0) throw new Error(`write returned ${n}`);
    done += n;
  }
}

/**
 * fsync a directory, so that files created, renamed or removed in it are durable.
 *
 * @param dir the directory
 * @returns once synced
 */
export async function syncDir(dir: string): Promise<void> {
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

/**
 * Replace `dir/name` atomically: write a temporary file, sync it, rename it
 * over the target, sync the directory.
 *
 * @param dir the directory
 * @param name the file name
 * @param parts the content, written in order
 * @returns once the new content is durable under `name`
 */
export async function writeFileAtomic(
  dir: string,
  name: string,
  parts: readonly Uint8Array[],
): Promise<void> {
  const temp = join(dir, name + TEMP_SUFFIX);
  const file = await Deno.open(temp, {
    write: true,
    create: true,
    truncate: true,
    mode: FILE_MODE,
  });
  try {
    for (const part of parts) await writeAll(file, part);
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(temp, join(dir, name));
  await syncDir(dir);
}

/**
 * Names of the files in `dir` that end with `suffix`, sorted.
 *
 * @param dir the directory
 * @param suffix e.g. ".wal"
 * @returns the names (not paths)
 */
export async function listNames(dir: string, suffix: string): Promise<string[]> {
  const names: string[] = [];
  let seen = 0;
  for await (const item of Deno.readDir(dir)) {
    if (++seen > DIRECTORY_FILES_MAX) {
      throw new Error(`${dir} holds more than ${DIRECTORY_FILES_MAX} files`);
    }
    if (item.isFile && item.name.endsWith(suffix)) names.push(item.name);
  }
  return names.sort();
}

/**
 * Remove the temporary files a crash left in `dir` (they were never renamed into place).
 *
 * @param dir the directory
 * @returns how many were removed
 */
export async function removeTempFiles(dir: string): Promise<number> {
  const names = await listNames(dir, TEMP_SUFFIX);
  for (const name of names) await Deno.remove(join(dir, name));
  if (names.length > 0) await syncDir(dir);
  return names.length;
}

/**
 * Create a directory (and its missing parents, mode 0700) and make its entry
 * durable: the parent of each directory created is synced.
 *
 * @param dir the directory
 * @returns once it exists durably
 */
export async function ensureDir(dir: string): Promise<void> {
  const missing: string[] = [];
  // Walk up to the first existing ancestor (bounded by the path's depth).
  for (let at = dir, depth = 0; depth < 256; at = dirname(at), depth++) {
    try {
      await Deno.lstat(at);
      break;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      missing.push(at);
    }
    if (dirname(at) === at) break;
  }
  if (missing.length === 0) return;
  await Deno.mkdir(dir, { recursive: true, mode: DIRECTORY_MODE });
  for (const created of missing) await syncDir(dirname(created));
}
