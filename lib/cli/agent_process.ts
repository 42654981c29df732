/**
 * Agents as child processes, as `pgraft dev` and the tests start them: the
 * command line (this executable, or `deno run main.ts`) and the spawn with
 * the agent's output appended to a log file.
 *
 * @module
 */

/**
 * V8 flags for agents: a small young generation keeps the agent's resident
 * memory near its live data (measured: ~150 MB -> ~95 MB after a write burst)
 * at no measurable throughput cost. compile.sh builds them into the executable.
 */
export const AGENT_V8_FLAGS = "--max-semi-space-size=1";

/** The command line that starts an agent: this executable, or deno running main.ts. */
export function agentCommand(args: string[]): { cmd: string; args: string[] } {
  const exec = Deno.execPath();
  if (/(^|\/)deno$/.test(exec)) {
    const main = new URL("../../main.ts", import.meta.url).pathname;
    return { cmd: exec, args: ["run", "-A", `--v8-flags=${AGENT_V8_FLAGS}`, main, ...args] };
  }
  return { cmd: exec, args };
}

/**
 * Start `pgraft run --config FILE` as a child process. A shell appends the
 * agent's output to `logFile` and then becomes the agent (exec), so the
 * child's PID is the agent's and the log survives us.
 *
 * @param options.detached in a session of its own (out of reach of a terminal's Ctrl+C)
 */
export function spawnAgent(
  configFile: string,
  logFile: string,
  options: { detached?: boolean; extraArgs?: string[] } = {},
): Deno.ChildProcess {
  const { cmd, args } = agentCommand([
    "run",
    "--config",
    configFile,
    "--log-format",
    "text",
    ...(options.extraArgs ?? []),
  ]);
  const quote = (a: string) => `'${a.replaceAll("'", `'"'"'`)}'`;
  return new Deno.Command("/bin/sh", {
    args: ["-c", `exec ${[cmd, ...args].map(quote).join(" ")} >>${quote(logFile)} 2>&1`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: options.detached ?? false,
  }).spawn();
}

/** Stop an agent with `signal` and wait for it (SIGKILL after `killAfterMs`). */
export async function stopAgentProcess(
  child: Deno.ChildProcess,
  signal: Deno.Signal = "SIGTERM",
  killAfterMs = 15_000,
): Promise<void> {
  try {
    child.kill(signal);
  } catch { /* gone */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, killAfterMs);
  await child.status;
  clearTimeout(timer);
}
