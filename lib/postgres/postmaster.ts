/**
 * The postmaster of one data directory as a process: spawned as the server's
 * OS user with its log going straight to a file (so it outlives the agent
 * and logs on), found again through `postmaster.pid` when an earlier agent
 * started it, signalled and waited for by PID — never by name.
 *
 * @module
 */

import { join } from "node:path";
import { deadline, poll } from "../async.ts";
import { chownToServerUser, serverUserSpawn } from "./programs.ts";
import { waitForPidGone } from "./server.ts";

/** What `postmaster.pid` says (PostgreSQL's `PM_STATUS_*`). */
export type PostmasterStatus = "starting" | "stopping" | "ready" | "standby";

/** The parsed `postmaster.pid` of a data directory. */
export interface PidFile {
  pid: number;
  /** null while the postmaster has not written it yet */
  status: PostmasterStatus | null;
}

/** Lines of the server log quoted when it fails to start. */
const LOG_TAIL_LINES = 20;

/** Bound on waiting for a killed postmaster's children (they hold its shared memory). */
const BACKENDS_GONE_MS = 10_000;

/**
 * Parse `postmaster.pid`: line 1 the PID, line 8 the status.
 *
 * @example
 * ```ts
 * const file = parsePidFile("4242\n/data\n1700000000\n5432\n/tmp\n*\n  1234 5\nready   \n");
 * if (file?.pid !== 4242 || file.status !== "ready") throw new Error();
 * ```
 */
export function parsePidFile(text: string): PidFile | null {
  const lines = text.split("\n");
  const pid = Number(lines[0]?.trim());
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const raw = lines[7]?.trim() ?? "";
  const status = raw === "starting" || raw === "stopping" || raw === "ready" || raw === "standby"
    ? raw
    : null;
  return { pid, status };
}

/** Whether process `pid` exists and is not a zombie. */
export async function processAlive(pid: number): Promise<boolean> {
  try {
    return !/\) Z /.test(await Deno.readTextFile(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

/** Options of {@link Postmaster}. */
export interface PostmasterOptions {
  /** the `postgres` binary */
  postgres: string;
  dataDir: string;
  /** the arguments after `postgres` (`-D …`, `-c …`) */
  args: readonly string[];
  /** where the server's stderr goes (appended) */
  logFile: string;
  /** a session of its own, so a terminal's Ctrl+C reaches only the agent */
  detached: boolean;
}

/** One data directory's postmaster: start, find, signal, wait. */
export class Postmaster {
  readonly #options: PostmasterOptions;
  #child: Deno.ChildProcess | null = null;
  #exited = true;
  #realDataDir: string | null = null;

  /** @param options the binary, data directory, arguments and log file */
  constructor(options: PostmasterOptions) {
    this.#options = options;
  }

  /** The `postmaster.pid` of the data directory, or null when there is none (or it is unreadable). */
  async pidFile(): Promise<PidFile | null> {
    const text = await Deno.readTextFile(join(this.#options.dataDir, "postmaster.pid"))
      .catch(() => null);
    return text === null ? null : parsePidFile(text);
  }

  /**
   * The running postmaster's PID: the one we spawned while it lives, else the
   * one `postmaster.pid` names when that process lives and works in this data
   * directory (a server an earlier agent started), else null.
   */
  async runningPid(): Promise<number | null> {
    if (this.#child && !this.#exited) return this.#child.pid;
    const file = await this.pidFile();
    if (!file || !(await processAlive(file.pid))) return null;
    const cwd = await Deno.readLink(`/proc/${file.pid}/cwd`).catch(() => null);
    // Another user's cwd may be unreadable when not root: trust the live PID then.
    if (cwd !== null && cwd !== await this.#dataDirReal()) return null;
    return file.pid;
  }

  async #dataDirReal(): Promise<string> {
    this.#realDataDir ??= await Deno.realPath(this.#options.dataDir).catch(() => null);
    return this.#realDataDir ?? this.#options.dataDir;
  }

  /**
   * Spawn the postmaster (as the server's OS user) with stderr appended to the
   * log file; `sh` only redirects and `exec`s, so the PID is the postmaster's.
   *
   * @returns the byte offset of the log where this start's output begins
   */
  async spawn(): Promise<number> {
    const { logFile } = this.#options;
    const log = await Deno.open(logFile, { create: true, append: true });
    const offset = (await log.stat()).size;
    log.close();
    await chownToServerUser(logFile);
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        'exec "$0" "$@" >>"$PGRAFT_SERVER_LOG" 2>&1',
        this.#options.postgres,
        ...this
          .#options.args,
      ],
      env: { PGRAFT_SERVER_LOG: logFile },
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached: this.#options.detached,
      ...(await serverUserSpawn()),
    }).spawn();
    this.#child = child;
    this.#exited = false;
    child.status.then(() => (this.#exited = true));
    this.#realDataDir = null;
    return offset;
  }

  /** The postmaster we spawned has exited (a failed start). */
  get exited(): boolean {
    return this.#exited;
  }

  /** What the log says since `offset`: its last lines. */
  async logSince(offset: number): Promise<string> {
    try {
      const bytes = await Deno.readFile(this.#options.logFile);
      const text = new TextDecoder().decode(bytes.subarray(offset)).trimEnd();
      return text.split("\n").slice(-LOG_TAIL_LINES).join("\n");
    } catch {
      return "";
    }
  }

  /** Send `signal` to `pid`; false when it is gone. */
  signal(pid: number, signal: Deno.Signal): boolean {
    try {
      Deno.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Wait until postmaster `pid` has exited, at most `timeoutMs`.
   *
   * @returns whether it is gone
   */
  async waitGone(pid: number, timeoutMs: number): Promise<boolean> {
    const child = this.#child;
    if (child && child.pid === pid) {
      const done = await deadline(child.status, timeoutMs, `postmaster ${pid} to exit`)
        .then(() => true, () => false);
      if (!done) return false;
      this.#child = null;
    }
    return await waitForPidGone(pid, Math.max(timeoutMs, 100));
  }

  /**
   * After a postmaster's SIGKILL its children notice and exit; wait (bounded)
   * until no process works in the data directory any more, since a new
   * postmaster refuses shared memory still attached by them.
   */
  async waitChildrenGone(): Promise<void> {
    const dataDir = await this.#dataDirReal();
    await poll(async () => !(await this.#dataDirInUse(dataDir)), {
      timeoutMs: BACKENDS_GONE_MS,
      intervalMs: 50,
      what: `the processes of ${dataDir} to exit`,
    });
  }

  async #dataDirInUse(dataDir: string): Promise<boolean> {
    for await (const entry of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const cwd = await Deno.readLink(`/proc/${entry.name}/cwd`).catch(() => null);
      if (cwd === dataDir && await processAlive(Number(entry.name))) return true;
    }
    return false;
  }
}
