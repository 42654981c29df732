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
 * machine's total (all processes) beside the core count.
 */
export function cpuByGroup(
  before: Map<number, ProcTimes>,
  after: Map<number, ProcTimes>,
  seconds: number,
  group: Grouper,
): Record<string, number> {
  const sums = new Map<string, number>();
  let total = 0;
  for (const [pid, now] of after) {
    const ticks = now.ticks - (before.get(pid)?.ticks ?? 0);
    if (ticks <= 0) continue;
    total += ticks;
    const name = group(pid, now.ppid) ?? "other";
    sums.set(name, (sums.get(name) ?? 0) + ticks);
  }
  const pct = (ticks: number) => Math.round((ticks / CLOCK_TICKS_PER_S / seconds) * 1000) / 10;
  const out: Record<string, number> = {};
  for (const [name, ticks] of [...sums.entries()].sort()) out[`${name}_pct`] = pct(ticks);
  out["all_processes_pct"] = pct(total);
  out["cores_pct"] = navigator.hardwareConcurrency * 100;
  return out;
}
