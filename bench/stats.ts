/**
 * Small helpers shared by the benchmarks: percentiles, rounding, timed loops,
 * sleeping and polling, every loop bounded in count and in time.
 *
 * @module
 */

/** Round to two decimals (milliseconds, MB). */
export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The `p` quantile (0..1) of `samples`, nearest rank; NaN when empty. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * p) - 1));
  return sorted[rank]!;
}

/** A finite number at `path` inside `obj`, or null. */
export function pick(obj: unknown, ...path: string[]): number | null {
  let at: unknown = obj;
  for (const key of path) {
    if (typeof at !== "object" || at === null) return null;
    at = (at as Record<string, unknown>)[key];
  }
  return typeof at === "number" && Number.isFinite(at) ? at : null;
}

/** Median of `samples` (NaN when empty). */
export function median(samples: readonly number[]): number {
  return percentile(samples, 0.5);
}

/** p50, p99 and max of latency samples in ms, rounded. */
export function latencySummary(samples: readonly number[]): {
  n: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
} {
  return {
    n: samples.length,
    p50_ms: round(percentile(samples, 0.5)),
    p99_ms: round(percentile(samples, 0.99)),
    max_ms: round(samples.length ? Math.max(...samples) : NaN),
  };
}

/**
 * Run `fn` sequentially up to `count` times or until `maxMs` has passed,
 * whichever comes first; returns each call's duration in ms.
 */
export async function timedLoop(
  count: number,
  maxMs: number,
  fn: (i: number) => Promise<unknown>,
): Promise<number[]> {
  const samples: number[] = [];
  const deadline = performance.now() + maxMs;
  for (let i = 0; i < count && performance.now() < deadline; i++) {
    const start = performance.now();
    await fn(i);
    samples.push(performance.now() - start);
  }
  return samples;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until a check holds (the e2e tests' helper). */
export { eventually } from "../tests/helpers/cluster.ts";

/**
 * Resident set size of a process in MB, or null: now (VmRSS of
 * /proc/<pid>/status), or its peak since it started (`"VmHWM"`).
 */
export async function rssMb(
  pid: number,
  field: "VmRSS" | "VmHWM" = "VmRSS",
): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(status);
    return match ? round(Number(match[1]) / 1024, 1) : null;
  } catch {
    return null;
  }
}

/** Log progress to stderr (stdout carries only the JSON). */
export function progress(line: string): void {
  console.error(`[bench ${new Date().toISOString().slice(11, 23)}] ${line}`);
}
