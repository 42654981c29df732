/**
 * Running PostgreSQL's own programs (`pg_controldata`, `pg_basebackup`,
 * `pg_rewind`, `initdb`, `postgres -C`) for the supervisor: as the server's OS
 * user when pgraft runs as root (./server.ts's {@link serverUser}), with
 * English messages (`LC_ALL=C`, so output can be read), each bounded in time
 * and stopped by its PID when it overruns, each failure reported with the
 * program's own stderr.
 *
 * ./server.ts keeps its spawn helpers private; the few lines needed here
 * (spawn options for the server user, chown) are written again rather than
 * exported from there.
 *
 * @module
 */

import { join } from "node:path";
import { deadline, sleep, TimeoutError } from "../async.ts";
import { type PgBinaries, serverUser } from "./server.ts";

/** How long a program may take to exit after SIGTERM before it gets SIGKILL. */
const TERM_GRACE_MS = 2_000;

/** Characters of a program's output kept in an error message. */
export const OUTPUT_QUOTED_MAX = 4_000;

/** A server program that exited with an error, or overran its time. */
export class ProgramError extends Error {
  override name = "ProgramError";
  /** the program's base name, e.g. `pg_rewind` */
  readonly program: string;
  /** exit code, or null when it was stopped for overrunning */
  readonly code: number | null;
  /** what the program wrote to stderr (trimmed) */
  readonly stderr: string;

  /** @param message the whole message; the fields are for callers that branch */
  constructor(
    message: string,
    program: string,
    code: number | null,
    stderr: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.program = program;
    this.code = code;
    this.stderr = stderr;
  }
}

/** What a program printed, once it exited with 0. */
export interface ProgramOutput {
  stdout: string;
  stderr: string;
  /** wall time from spawn to exit */
  durationMs: number;
}

/** Spawn options that run a program as the server's OS user (nothing when not root). */
export async function serverUserSpawn(): Promise<{ uid?: number; gid?: number; cwd?: string }> {
  const user = await serverUser();
  // In "/": our own working directory may be out of that user's reach (under /root).
  return user ? { uid: user.uid, gid: user.gid, cwd: "/" } : {};
}

/** Make `path` (one file or directory, not recursive) belong to the server's OS user. */
export async function chownToServerUser(path: string): Promise<void> {
  const user = await serverUser();
  if (user) await Deno.chown(path, user.uid, user.gid);
}

/** Options of {@link runProgram}. */
export interface RunProgramOptions {
  /** what is being done, for messages ("pg_rewind of /var/lib/postgresql/15/main") */
  what: string;
  /** stop the program (SIGTERM, then SIGKILL) after this long */
  timeoutMs: number;
  /** extra environment (e.g. `PGPASSWORD`) */
  env?: Record<string, string>;
  /** run as the invoking user even when root. @default false */
  asInvoker?: boolean;
}

/**
 * Run `program` with `args` to completion, bounded by `timeoutMs`.
 *
 * @param program absolute path of the binary
 * @param args its arguments
 * @param options what it does, the bound, environment
 * @returns stdout and stderr, and how long it ran
 * @throws ProgramError when it exits non-zero (stderr quoted) or overruns (stopped by PID)
 * @example
 * ```ts ignore
 * const out = await runProgram("/usr/lib/postgresql/15/bin/pg_controldata", [dataDir], {
 *   what: "pg_controldata",
 *   timeoutMs: 10_000,
 * });
 * // out.stdout includes "Database system identifier"
 * ```
 */
export async function runProgram(
  program: string,
  args: string[],
  options: RunProgramOptions,
): Promise<ProgramOutput> {
  const name = program.slice(program.lastIndexOf("/") + 1);
  const spawn = options.asInvoker ? {} : await serverUserSpawn();
  const started = performance.now();
  const child = new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { LC_ALL: "C", LANG: "C", ...options.env },
    ...spawn,
  }).spawn();
  const output = child.output();
  let result: Deno.CommandOutput;
  try {
    result = await deadline(output, options.timeoutMs, options.what);
  } catch (error) {
    if (!(error instanceof TimeoutError)) throw error;
    const stopped = await stopChild(child, output);
    const text = stopped ? decode(stopped.stderr) : "";
    throw new ProgramError(
      `${options.what} did not finish within ${options.timeoutMs} ms and was stopped` +
        (text ? `; it said: ${quote(text)}` : ""),
      name,
      null,
      text,
      { cause: error },
    );
  }
  const stdout = decode(result.stdout);
  const stderr = decode(result.stderr);
  if (!result.success) {
    const said = stderr || stdout;
    throw new ProgramError(
      `${options.what} failed (${name} exited with ${result.code})` +
        (said ? `: ${quote(said)}` : ""),
      name,
      result.code,
      stderr,
    );
  }
  return { stdout, stderr, durationMs: performance.now() - started };
}

/** SIGTERM, then SIGKILL after a grace period; the output once it has exited. */
async function stopChild(
  child: Deno.ChildProcess,
  output: Promise<Deno.CommandOutput>,
): Promise<Deno.CommandOutput | null> {
  const signal = (name: Deno.Signal) => {
    try {
      child.kill(name);
    } catch { /* already gone */ }
  };
  signal("SIGTERM");
  const exited = await Promise.race([output.then(() => true, () => true), sleep(TERM_GRACE_MS)]);
  if (!exited) signal("SIGKILL");
  return await output.catch(() => null);
}

function decode(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes).trim();
}

/** The end of a program's output, short enough for an error message. */
export function quote(text: string): string {
  const trimmed = text.trim();
  return trimmed.length <= OUTPUT_QUOTED_MAX
    ? trimmed
    : `…${trimmed.slice(trimmed.length - OUTPUT_QUOTED_MAX)}`;
}

/** The extra server programs the supervisor needs, beside `postgres` and `initdb`. */
export interface SupervisorPrograms {
  pgControlData: string;
  pgBaseBackup: string;
  pgRewind: string;
}

/**
 * The paths of `pg_controldata`, `pg_basebackup` and `pg_rewind` beside the
 * server binaries. A missing one is reported only when it is needed (the
 * embedded package may lack some), by {@link requireProgram}.
 */
export function supervisorPrograms(bins: PgBinaries): SupervisorPrograms {
  return {
    pgControlData: join(bins.binDir, "pg_controldata"),
    pgBaseBackup: join(bins.binDir, "pg_basebackup"),
    pgRewind: join(bins.binDir, "pg_rewind"),
  };
}

/**
 * What `manage_postgres` needs beside the server binaries and `bins` lacks
 * (the embedded package ships only initdb, pg_ctl and postgres).
 *
 * @returns an error message naming the missing programs and the fix, or null
 */
export async function missingSupervisorPrograms(bins: PgBinaries): Promise<string | null> {
  const missing: string[] = [];
  for (const path of Object.values(supervisorPrograms(bins))) {
    if (!(await Deno.stat(path).catch(() => null))?.isFile) {
      missing.push(path.slice(path.lastIndexOf("/") + 1));
    }
  }
  if (missing.length === 0) return null;
  return `high availability (pgraft.manage_postgres) needs ${missing.join(", ")} beside the ` +
    `server binaries in ${bins.binDir}, which has none: install a PostgreSQL server package ` +
    `(apt-get install postgresql), or point pgraft.pg_bin_dir (PGRAFT_PG_BIN for pgraft dev) ` +
    `at a directory that has them`;
}

/**
 * `path` when it is an executable file, else a clear error.
 *
 * @throws Error naming the program and the directory looked in
 */
export async function requireProgram(path: string): Promise<string> {
  const info = await Deno.stat(path).catch(() => null);
  if (!info?.isFile) {
    throw new Error(
      `${path} does not exist: this PostgreSQL installation lacks ${
        path.slice(path.lastIndexOf("/") + 1)
      }, which high availability needs (install the server package that ships it, or set ` +
        `PGRAFT_PG_BIN to a directory that has it)`,
    );
  }
  return path;
}
