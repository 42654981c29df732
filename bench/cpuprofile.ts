/**
 * Reading V8 `.cpuprofile` files (what `deno run --cpu-prof` writes): self
 * time per function, the top ones first, with idle and GC shown apart.
 *
 * @module
 */

/** The parts of a V8 CPU profile we read. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function shortUrl(url: string): string {
  const i = url.indexOf("/node_modules/");
  if (i >= 0) return url.slice(i + "/node_modules/".length).replace(/^\.deno\//, "");
  const j = url.indexOf("/lib/");
  if (j >= 0) return url.slice(j + 1);
  return url.replace(/^file:\/\//, "");
}

/**
 * Self time per function (name + file:line), in ms, the `top` largest first;
 * also the total, idle and garbage collector time.
 */
export function summarizeCpuProfile(profile: CpuProfile, top = 25): Record<string, unknown> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<string, number>();
  const byFile = new Map<string, number>();
  let totalUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    const dt = profile.timeDeltas[i + 1] ?? 0;
    if (!node) continue;
    totalUs += dt;
    const f = node.callFrame;
    const where = f.url ? `${shortUrl(f.url)}:${f.lineNumber + 1}` : "";
    const key = `${f.functionName || "(anonymous)"} ${where}`.trim();
    selfUs.set(key, (selfUs.get(key) ?? 0) + dt);
    const file = f.url ? shortUrl(f.url) : `(${f.functionName || "native"})`;
    byFile.set(file, (byFile.get(file) ?? 0) + dt);
  }
  const ms = (us: number) => Math.round(us / 100) / 10;
  const idle = selfUs.get("(idle)") ?? 0;
  const busy = totalUs - idle;
  const topOf = (m: Map<string, number>, n: number) =>
    [...m.entries()].filter(([k]) => k !== "(idle)" && k !== "((idle))")
      .sort((a, b) => b[1] - a[1]).slice(0, n)
      .map(([k, us]) => ({
        fn: k,
        self_ms: ms(us),
        pct_of_busy: Math.round((us / busy) * 1000) / 10,
      }));
  return {
    total_ms: ms(totalUs),
    idle_ms: ms(idle),
    busy_ms: ms(busy),
    gc_ms: ms(selfUs.get("(garbage collector)") ?? 0),
    program_ms: ms(selfUs.get("(program)") ?? 0),
    top_self: topOf(selfUs, top),
    top_files: topOf(byFile, 12),
  };
}
