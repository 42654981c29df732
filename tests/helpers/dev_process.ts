/**
 * `pgraft dev` as a child process, the way a person runs it in a terminal:
 * in a process group of its own (so a test can send SIGINT to the whole
 * group, as a terminal's Ctrl+C does), its output collected as it comes.
 * The PIDs of the servers and agents it started are read from its output, and
 * {@link DevProcess.kill} removes every one of them by PID, also when a test
 * fails half way.
 *
 * @module
 */

import { poll } from "../../lib/async.ts";
import { waitForPidGone } from "../../lib/postgres/server.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** One node as `pgraft dev` printed it. */
export interface DevProcessNode {
  id: number;
  pgPort: number;
  agentPort: number;
  pgPid: number;
  agentPid: number;
}

/** A running `pgraft dev`. */
export class DevProcess {
  readonly child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  #exit: Promise<Deno.CommandStatus>;
  #pumps: Promise<void>;
  #exited = false;

  private constructor(child: Deno.ChildProcess) {
    this.child = child;
    const pump = async (stream: ReadableStream<Uint8Array>, to: "out" | "err") => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        const text = decoder.decode(chunk, { stream: true });
        if (to === "out") this.#stdout += text;
        else this.#stderr += text;
      }
    };
    this.#pumps = Promise.all([pump(child.stdout, "out"), pump(child.stderr, "err")]).then(
      () => {},
    );
    this.#exit = child.status.then((status) => {
      this.#exited = true;
      return status;
    });
  }

  /**
   * Start `pgraft dev ARGS`, optionally through a wrapper command (`unshare …`)
   * that ends by exec'ing it, so the PID is dev's own.
   */
  static start(
    args: string[],
    options: { wrapper?: string[]; env?: Record<string, string> } = {},
  ): DevProcess {
    const command = [
      ...(options.wrapper ?? []),
      Deno.execPath(),
      "run",
      "-A",
      MAIN,
      "dev",
      ...args,
    ];
    const child = new Deno.Command(command[0]!, {
      args: command.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: true, // a process group (and session) of its own, like a terminal's job
      env: options.env,
    }).spawn();
    return new DevProcess(child);
  }

  get pid(): number {
    return this.child.pid;
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Wait until the output matches `pattern` (or dev exits: then throw with its output). */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<void> {
    await poll(() => {
      if (pattern.test(this.#stdout) || pattern.test(this.#stderr)) return true;
      if (this.#exited) {
        throw new Error(
          `pgraft dev exited before printing ${pattern}:\n${this.#stderr}\n${this.#stdout}`,
        );
      }
      return false;
    }, { timeoutMs, intervalMs: 50, what: `pgraft dev to print ${pattern}` }).catch((error) => {
      if (this.#exited) throw error;
      throw new Error(`${(error as Error).message}\n${this.#stderr}\n${this.#stdout}`);
    });
  }

  /** The nodes with the PIDs and ports dev printed so far. */
  nodes(): DevProcessNode[] {
    const nodes = new Map<number, Partial<DevProcessNode>>();
    const node = (id: number) => {
      let n = nodes.get(id);
      if (!n) nodes.set(id, n = { id });
      return n;
    };
    for (const m of this.#stderr.matchAll(/starting PostgreSQL for node (\d+) on port (\d+)/g)) {
      node(Number(m[1])).pgPort = Number(m[2]);
    }
    for (const m of this.#stderr.matchAll(/PostgreSQL of node (\d+): pid (\d+)/g)) {
      node(Number(m[1])).pgPid = Number(m[2]);
    }
    for (const m of this.#stderr.matchAll(/agent of node (\d+) on port (\d+): pid (\d+)/g)) {
      node(Number(m[1])).agentPort = Number(m[2]);
      node(Number(m[1])).agentPid = Number(m[3]);
    }
    return [...nodes.values()].filter((n): n is DevProcessNode =>
      n.pgPort !== undefined && n.pgPid !== undefined && n.agentPort !== undefined &&
      n.agentPid !== undefined
    ).sort((a, b) => a.id - b.id);
  }

  /** Send `signal` to dev's whole process group, as a terminal does. */
  signalGroup(signal: Deno.Signal): void {
    Deno.kill(-this.pid, signal);
  }

  /** Dev's exit status within `timeoutMs`, or null when it is still running then. */
  async exit(timeoutMs: number): Promise<Deno.CommandStatus | null> {
    return await poll(() => this.#exited, { timeoutMs, intervalMs: 20, what: "pgraft dev to exit" })
      .then(() => this.#exit).catch(() => null);
  }

  /** SIGKILL dev and every server and agent it printed, by PID; wait until all are gone. */
  async kill(): Promise<void> {
    const pids = [this.pid, ...this.nodes().flatMap((n) => [n.agentPid, n.pgPid])];
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone already */ }
    }
    await this.#exit;
    await this.#pumps;
    for (const pid of pids) await waitForPidGone(pid);
  }
}

/** The PIDs whose parent is `pid` (a postmaster's backends and workers). */
export async function childPids(pid: number): Promise<number[]> {
  const children: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`).catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[1]) === pid) children.push(Number(entry.name));
  }
  return children;
}

/** True while `pid` exists and is not a zombie. */
export async function alive(pid: number): Promise<boolean> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => null);
  return stat !== null && !/\) Z /.test(stat);
}
