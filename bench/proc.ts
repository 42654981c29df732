/**
 * CPU time of the processes a benchmark involves, from /proc: sample before
 * and after a load, and see how the machine's cores were shared between the
 * agents, their PostgreSQL servers, the benchmark client and everything else.
 *
 * @module
 */

const CLOCK_TICKS_PER_S = 100;

interface ProcTimes {
  ppid: number;
  /** the command name (comm) */
  comm: string;
  /** user + system CPU time in ticks */
  ticks: number;
}

/** utime + stime and parent of every process, by pid. */
export async function readProcTimes(): Promise<Map<number, ProcTimes>> {
  const out = new Map<number, ProcTimes>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(Number(entry.name), {
        ppid: Number(fields[1]),
        comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
        ticks: Number(fields[11]) + Number(fields[12]),
      });
    } catch { /* gone meanwhile */ }
  }
  return out;
}

/** Which group a pid belongs to; null for "other". */
export type Grouper = (pid: number, ppid: number) => string | null;

/**
 * CPU used per group between two samples, in percent of one core, and the
 * machine's total (all processes) beside the core count. What falls in no
 * group is `other`, and its three largest command names (≥ 1 %) are listed as
 * `other:<comm>_pct` — on a shared machine, who else was busy.
 */
export function cpuByGroup(
  before: Map<number, ProcTimes>,
  after: Map<number, ProcTimes>,
  seconds: number,
  group: Grouper,
): Record<string, number> {
  const sums = new Map<string, number>();
  const others = new Map<string, number>();
  let total = 0;
  for (const [pid, now] of after) {
    const ticks = now.ticks - (before.get(pid)?.ticks ?? 0);
    if (ticks <= 0) continue;
    total += ticks;
    const name = group(pid, now.ppid) ?? "other";
    sums.set(name, (sums.get(name) ?? 0) + ticks);
    if (name === "other") {
      const comm = now.comm.replace(/[^\w.-]/g, "_");
      others.set(comm, (others.get(comm) ?? 0) + ticks);
    }
  }
  const pct = (ticks: number) => Math.round((ticks / CLOCK_TICKS_PER_S / seconds) * 1000) / 10;
  const out: Record<string, number> = {};
  for (const [name, ticks] of [...sums.entries()].sort()) out[`${name}_pct`] = pct(ticks);
  const top = [...others.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3);
  for (const [comm, ticks] of top) if (pct(ticks) >= 1) out[`other:${comm}_pct`] = pct(ticks);
  out["all_processes_pct"] = pct(total);
  out["cores_pct"] = navigator.hardwareConcurrency * 100;
  return out;
}

/** True when every thread of process `pid` is stopped (state T in /proc/<pid>/task/<tid>/stat). */
async function allThreadsStopped(pid: number): Promise<boolean> {
  let threads = 0;
  for await (const entry of Deno.readDir(`/proc/${pid}/task`)) {
    const stat = await Deno.readTextFile(`/proc/${pid}/task/${entry.name}/stat`).catch(() => "");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state && state !== "T") return false;
    threads++;
  }
  return threads > 0;
}

/**
 * Wait until every thread of process `pid` has stopped after a SIGSTOP. The
 * kernel wakes one thread to take a SIGSTOP, and only when that thread runs
 * does it stop the others: on a busy machine the process can go on working
 * for milliseconds (a leader committing one more write). Polls every 1 ms,
 * `timeoutMs` at most; returns the ms waited.
 */
export async function waitUntilStopped(pid: number, timeoutMs = 2_000): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < 100_000 && performance.now() - started < timeoutMs; i++) {
    if (await allThreadsStopped(pid)) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`process ${pid} did not stop within ${timeoutMs} ms of SIGSTOP`);
}
