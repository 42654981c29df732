/**
 * The primary's watchdog: a small process beside the agent that stops the
 * postmaster (an immediate shutdown, SIGQUIT) once the agent stops vouching
 * for it — whether the agent died (kill -9), hangs, or is paused (SIGSTOP).
 *
 * Why: the HA controller fences a primary whose leader lease runs out, but
 * only while the agent runs. An agent that is gone or frozen fences nothing,
 * and once its lease is over another node may be elected and promote its
 * server: two servers would accept writes. So the agent, while its server
 * is the primary, keeps telling the watchdog how long the server may go on
 * (what is left of its lease minus the time an immediate stop takes), and
 * the watchdog stops the server when that time passes without a word:
 *
 * - each line the agent writes is a number of seconds from now;
 * - no line in time, or the pipe closes (the agent died: the kernel closes
 *   its end), and the watchdog sends SIGQUIT to the postmaster — after
 *   checking that the PID still runs in this data directory;
 * - the line `disarm` ends the watchdog without touching the server (the
 *   agent is about to stop or demote it itself).
 *
 * It is a shell (`bash`: `read -t` takes fractions of a second) rather than a
 * thread of the agent because it must outlive the agent's process and keep
 * time while the agent's event loop does not. It ignores SIGINT, SIGTERM and
 * SIGHUP (a Ctrl+C to the agent's process group must not leave the server
 * unguarded); SIGKILL ends it, and then the postmaster runs on unguarded.
 *
 * @module
 */

/** The script; $1 = postmaster PID, $2 = its data directory (real path), $3 = first deadline (s). */
const SCRIPT = `
trap '' INT TERM HUP
pid=$1; dir=$2; t=$3
while IFS= read -r -t "$t" line; do
  if [ "$line" = disarm ]; then exit 0; fi
  t=$line
done
if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$dir" ]; then kill -QUIT "$pid" 2>/dev/null; fi
exit 0
`;

/** Shortest deadline written: `read -t 0` would only poll. */
const DEADLINE_S_MIN = 0.001;

/** The watchdog of one running primary. */
export class Watchdog {
  readonly postmasterPid: number;
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #closed = false;
  #exited = false;

  private constructor(pid: number, child: Deno.ChildProcess) {
    this.postmasterPid = pid;
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    // A failed write means the watchdog is gone: nothing more to tell it.
    this.#writer.closed.catch(() => {});
    // A watchdog that exits by itself (it fired, or the PID was no longer
    // this directory's server) leaves our end of its pipe to be closed.
    child.status.then(() => {
      this.#exited = true;
      this.#closeStdin();
    });
  }

  /**
   * Guard postmaster `pid` of `dataDir`: it is stopped unless {@link renew}
   * is called within `validForMs`.
   */
  static async start(pid: number, dataDir: string, validForMs: number): Promise<Watchdog> {
    const real = await Deno.realPath(dataDir);
    const child = new Deno.Command("bash", {
      args: ["-c", SCRIPT, "pgraft-watchdog", String(pid), real, seconds(validForMs)],
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    return new Watchdog(pid, child);
  }

  /** The watchdog process is still there (false once it fired or was disarmed). */
  get running(): boolean {
    return !this.#exited;
  }

  /** The server may go on for `validForMs` from now (≤ 0: stop it at once). */
  renew(validForMs: number): void {
    this.#write(`${seconds(validForMs)}\n`);
  }

  /** End the watchdog and leave the server alone; resolves once it has exited. */
  async disarm(): Promise<void> {
    this.#write("disarm\n");
    await this.#close();
  }

  /** Fire now: the watchdog stops the server and exits; resolves once it has. */
  async fire(): Promise<void> {
    await this.#close();
  }

  #write(line: string): void {
    if (this.#closed) return;
    this.#writer.write(new TextEncoder().encode(line)).catch(() => {});
  }

  async #close(): Promise<void> {
    await this.#closeStdin();
    await this.#child.status;
  }

  async #closeStdin(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writer.close().catch(() => {});
  }
}

function seconds(ms: number): string {
  return Math.max(DEADLINE_S_MIN, ms / 1000).toFixed(3);
}
