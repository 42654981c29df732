/**
 * The one load generator of the cluster benchmarks, for every system under
 * test (pgraft, etcd): commit latency of one sequential client, closed-loop
 * throughput at N clients, and failover rounds (kill -9 or SIGSTOP of the
 * leader's process, then the first write a survivor accepts). A system plugs
 * in as a {@link WriteTarget} (and a {@link FailoverTarget} for failover), so
 * both see the same keys, the same 100-byte values, the same warm-up, the same
 * durations and the same probing. Latency and throughput run the systems
 * interleaved in slices (A B, B A, …) so that the load of a shared machine
 * falls on both alike.
 *
 * @module
 */

import type { PutOutcome } from "./kv_client.ts";
import { VALUE_100B } from "./kv_client.ts";
import { cpuByGroup, type Grouper, readProcTimes, waitUntilStopped } from "./proc.ts";
import { eventually, latencySummary, median, progress, round, sleep } from "./stats.ts";

export type { PutOutcome };

/** A system the load generator writes to. Every method resolves; none throws on a failed write. */
export interface WriteTarget {
  /** "pgraft", "etcd": the prefix of progress lines */
  readonly name: string;
  /**
   * One write of the load (to the leader the target knows; a pgraft target
   * follows a 307 for the next write, and the 307 itself is not a success).
   * 200 = committed.
   */
  put(key: string, value: string, timeoutMs?: number): Promise<PutOutcome>;
}

/** A system whose leader can be killed, paused and restarted, node by node. */
export interface FailoverTarget extends WriteTarget {
  /** node ids (1..3) */
  readonly ids: readonly number[];
  /**
   * Wait until every node runs, agrees on one leader and is caught up; point
   * {@link WriteTarget.put} at that leader and return its id.
   */
  settle(timeoutMs?: number): Promise<number>;
  /** One write to node `id` exactly (no redirect followed); 200 = accepted and committed. */
  putTo(id: number, key: string, value: string, timeoutMs?: number): Promise<PutOutcome>;
  /** The leader the nodes in `ids` all name, or null. */
  agreedLeader(ids: readonly number[]): Promise<number | null>;
  /** kill -9 node `id`'s process; resolves once its PID is gone. */
  kill(id: number): Promise<void>;
  /** SIGSTOP (`pause`) or SIGCONT (`resume`) node `id`'s process. */
  signal(id: number, what: "pause" | "resume"): void;
  /** The PID of node `id`'s process (the agent, the etcd member), or null when it is not running. */
  pid(id: number): number | null;
  /** Start node `id` again (same data directory and flags) and wait until it runs. */
  restart(id: number): Promise<void>;
  /** The Raft term node `id` is in, when the target can tell. */
  term?(id: number): Promise<number | null>;
}

/** How an unsuccessful write is counted: by HTTP status, or by its error (trimmed). */
function errorKind(out: PutOutcome): string {
  if (out.status) return `http_${out.status}${out.error ? `: ${out.error.slice(0, 60)}` : ""}`;
  return (out.error ?? "error").slice(0, 80);
}

/** Sum of the `<prefix>*_pct` groups of a CPU record (one system's processes). */
export function cpuOfGroups(cpu: Record<string, number>, prefixes: readonly string[]): number {
  let sum = 0;
  for (const [k, v] of Object.entries(cpu)) {
    if (prefixes.some((p) => k.startsWith(p))) sum += v;
  }
  return round(sum, 1);
}

/** A system in an interleaved measurement: its target and its processes' CPU groups. */
export interface Contender {
  target: WriteTarget;
  /** CPU group name prefixes of the system's own processes (for cpu_ms_per_write) */
  systemGroups: readonly string[];
}

/** What one slice of a measurement collected for one contender. */
interface Slice {
  samples: number[];
  errors: Record<string, number>;
  seconds: number;
  cpu: Record<string, number>;
}

/**
 * Run `slices` rounds; in each round every contender runs its slice once, the
 * order reversed from one round to the next (A B, B A, A B, …), so that a
 * change of the machine's load during the measurement falls on both.
 * Returns each contender's slices, in the contenders' order.
 */
async function interleave(
  contenders: readonly Contender[],
  slices: number,
  run: (c: Contender, slice: number) => Promise<Slice>,
): Promise<Slice[][]> {
  const out: Slice[][] = contenders.map(() => []);
  for (let slice = 0; slice < slices; slice++) {
    const order = contenders.map((_, k) => k);
    if (slice % 2 === 1) order.reverse();
    for (const k of order) out[k]!.push(await run(contenders[k]!, slice));
  }
  return out;
}

/** The slices of one contender as one measurement: CPU percentages weighted by time. */
function merge(slices: readonly Slice[]): Slice {
  const seconds = slices.reduce((a, s) => a + s.seconds, 0);
  const errors: Record<string, number> = {};
  const weighted: Record<string, number> = {};
  for (const s of slices) {
    for (const [k, v] of Object.entries(s.errors)) errors[k] = (errors[k] ?? 0) + v;
    for (const [k, v] of Object.entries(s.cpu)) weighted[k] = (weighted[k] ?? 0) + v * s.seconds;
  }
  const cpu: Record<string, number> = {};
  for (const [k, v] of Object.entries(weighted).sort(([a], [b]) => a < b ? -1 : 1)) {
    cpu[k] = round(v / Math.max(seconds, 1e-9), 1);
  }
  return { samples: slices.flatMap((s) => s.samples), errors, seconds, cpu };
}

/** Options of {@link commitLatency}. */
export interface CommitLatencyOptions {
  /** measured writes per contender */
  ops: number;
  /** unmeasured writes per contender first */
  warmup: number;
  /** groups processes for the CPU figures */
  grouper: Grouper;
  /** interleaved slices (see {@link interleave}) @default 1 */
  slices?: number;
  /** upper bound of each measured slice @default 60_000 */
  maxMs?: number;
}

/**
 * One client writing sequentially (keys `lat/0..999`) to each contender in
 * turn, slice by slice; latency of each write. Returns the figures by
 * contender name.
 */
export async function commitLatency(
  contenders: readonly Contender[],
  options: CommitLatencyOptions,
): Promise<Record<string, Record<string, unknown>>> {
  const slices = Math.max(1, options.slices ?? 1);
  const perSlice = Math.ceil(options.ops / slices);
  const once = async (target: WriteTarget, i: number, slice: Slice | null) => {
    const t = performance.now();
    const out = await target.put(`lat/${i % 1000}`, VALUE_100B, 5_000);
    if (!slice) return;
    if (out.status === 200) {
      slice.samples.push(performance.now() - t);
    } else {
      const what = errorKind(out);
      slice.errors[what] = (slice.errors[what] ?? 0) + 1;
    }
  };
  for (const { target } of contenders) {
    const warmDeadline = performance.now() + 30_000;
    for (let i = 0; i < options.warmup && performance.now() < warmDeadline; i++) {
      await once(target, i, null);
    }
  }
  const runs = await interleave(contenders, slices, async ({ target }, n) => {
    const slice: Slice = { samples: [], errors: {}, seconds: 0, cpu: {} };
    const cpuBefore = await readProcTimes();
    const started = performance.now();
    const deadline = started + (options.maxMs ?? 60_000);
    for (let i = 0; i < perSlice && performance.now() < deadline; i++) {
      await once(target, n * perSlice + i, slice);
    }
    slice.seconds = (performance.now() - started) / 1000;
    slice.cpu = cpuByGroup(cpuBefore, await readProcTimes(), slice.seconds, options.grouper);
    return slice;
  });
  const out: Record<string, Record<string, unknown>> = {};
  contenders.forEach(({ target }, k) => {
    const { samples, errors, cpu } = merge(runs[k]!);
    const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
    out[target.name] = {
      ...latencySummary(samples),
      mean_ms: round(samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length)),
      errors: errorCount,
      ...(errorCount ? { error_kinds: errors } : {}),
      value_bytes: 100,
      slices,
      cpu_pct_of_one_core: cpu,
    };
  });
  return out;
}

/** Options of {@link throughput}. */
export interface ThroughputOptions {
  clients: number;
  /** measured time per contender, split over the slices */
  durationMs: number;
  grouper: Grouper;
  /** interleaved slices (see {@link interleave}) @default 1 */
  slices?: number;
}

/**
 * Closed-loop writers (client c writes keys `tp/c/0..199`) for `durationMs`
 * per contender, slice by slice, each slice after a warm-up of one write per
 * client: writes/s, latency of successful writes, errors, CPU per process
 * group and the system's own CPU time per write. Returns the figures by
 * contender name.
 */
export async function throughput(
  contenders: readonly Contender[],
  options: ThroughputOptions,
): Promise<Record<string, Record<string, unknown>>> {
  const { clients } = options;
  const slices = Math.max(1, options.slices ?? 1);
  const sliceMs = options.durationMs / slices;
  const runs = await interleave(contenders, slices, async ({ target }) => {
    const slice: Slice = { samples: [], errors: {}, seconds: 0, cpu: {} };
    // A short warm-up opens every client's connection before the clock starts.
    await Promise.all(
      Array.from({ length: clients }, (_, c) => target.put(`tp/${c}/warm`, VALUE_100B, 5_000)),
    );
    const cpuBefore = await readProcTimes();
    const started = performance.now();
    const deadline = started + sliceMs;
    await Promise.all(Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; performance.now() < deadline && i < 10_000_000; i++) {
        const t = performance.now();
        const out = await target.put(`tp/${c}/${i % 200}`, VALUE_100B, 5_000);
        if (out.status === 200) {
          slice.samples.push(performance.now() - t);
        } else {
          const what = errorKind(out);
          slice.errors[what] = (slice.errors[what] ?? 0) + 1;
          await sleep(5);
        }
      }
    }));
    slice.seconds = (performance.now() - started) / 1000;
    slice.cpu = cpuByGroup(cpuBefore, await readProcTimes(), slice.seconds, options.grouper);
    return slice;
  });
  const out: Record<string, Record<string, unknown>> = {};
  contenders.forEach(({ target, systemGroups }, k) => {
    const { samples, errors, seconds, cpu } = merge(runs[k]!);
    const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
    const systemPct = cpuOfGroups(cpu, systemGroups);
    const writesPerS = samples.length / seconds;
    out[target.name] = {
      clients,
      seconds: round(seconds, 3),
      slices,
      writes: samples.length,
      writes_per_s: Math.round(writesPerS),
      ...latencySummary(samples),
      errors: errorCount,
      ...(errorCount ? { error_kinds: errors } : {}),
      cpu_pct_of_one_core: cpu,
      system_cpu_pct: systemPct,
      // CPU time of the system's own processes (not the client's) per committed write
      cpu_ms_per_write: writesPerS > 0 ? round((systemPct / 100) * 1000 / writesPerS, 3) : null,
    };
  });
  return out;
}

/** The first write a survivor accepted: ms since t0, the node, how many probes were sent. */
export interface AcceptedWrite {
  ms: number;
  node: number;
  attempts: number;
}

/** Options of {@link firstAcceptedWrite}. */
export interface ProbeOptions {
  /** give up after this long since t0 @default 10_000 */
  timeoutMs?: number;
  /** a probe is abandoned after this long (a write forwarded to a dead leader hangs) @default 500 */
  probeTimeoutMs?: number;
  /** a new probe starts every this many ms (the resolution), to the next node in turn @default 10 */
  everyMs?: number;
}

/**
 * Probe writes to the nodes in `ids` in turn, a new one every `everyMs` (so a
 * probe that hangs does not hide a node that answers meanwhile), until one
 * answers 200; returns the time since `t0` and that node. Bounded in time and
 * in probes; every probe has settled when it returns.
 */
export async function firstAcceptedWrite(
  target: FailoverTarget,
  ids: readonly number[],
  t0: number,
  key: string,
  options: ProbeOptions = {},
): Promise<AcceptedWrite> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const probeTimeoutMs = options.probeTimeoutMs ?? 500;
  const everyMs = options.everyMs ?? 10;
  const deadline = t0 + timeoutMs;
  const maxProbes = Math.ceil(timeoutMs / everyMs) + 10;
  let done: AcceptedWrite | null = null;
  const inFlight = new Set<Promise<void>>();
  let attempts = 0;
  for (let i = 0; !done && performance.now() < deadline && i < maxProbes; i++) {
    const id = ids[i % ids.length]!;
    attempts++;
    const probe: Promise<void> = target.putTo(id, key, VALUE_100B, probeTimeoutMs).then((out) => {
      if (out.status === 200) done ??= { ms: performance.now() - t0, node: id, attempts };
    }).finally(() => inFlight.delete(probe));
    inFlight.add(probe);
    await sleep(everyMs);
  }
  await Promise.all(inFlight);
  if (!done) {
    throw new Error(`${target.name}: no node of ${ids} accepted a write within ${timeoutMs} ms`);
  }
  return done;
}

/** Wait until the nodes in `ids` agree on a leader other than `not`; ms since `t0`. */
export async function agreementAfter(
  target: FailoverTarget,
  ids: readonly number[],
  not: number,
  t0: number,
  timeoutMs = 10_000,
): Promise<{ ms: number; leader: number }> {
  const leader = await eventually(
    `${target.name}: the survivors agree on a new leader`,
    timeoutMs,
    async () => {
      const l = await target.agreedLeader(ids);
      return l && l !== not ? l : null;
    },
    5,
  );
  return { ms: performance.now() - t0, leader };
}

/** How the leader is lost in a failover round. */
export type LossKind = "kill" | "pause";

/**
 * Settle `target` twice, `gapMs` apart, until both name the same leader (at
 * most 5 times): a leader that is about to change is not the one to lose.
 */
async function stableLeader(target: FailoverTarget, gapMs: number): Promise<number> {
  let leader = await target.settle(30_000);
  for (let i = 0; i < 5; i++) {
    await sleep(gapMs);
    const again = await target.settle(30_000);
    if (again === leader) return leader;
    leader = again;
  }
  throw new Error(`${target.name}: the leader kept changing while idle`);
}

/** Options of {@link failoverRound}. */
export interface FailoverOptions {
  /** the systems' heartbeat interval: the leader must hold this long, and a silent loss cannot be detected sooner */
  heartbeatMs: number;
  probe?: ProbeOptions;
}

/**
 * One failover attempt: settle (the same leader twice, a heartbeat apart),
 * open connections to the survivors, lose the leader (kill -9, or SIGSTOP),
 * measure the first accepted write on a survivor and the survivors'
 * agreement, then bring the lost node back (restart with the same data, or
 * SIGCONT) and wait until the cluster is settled again. A paused node is
 * resumed whatever happens.
 */
async function failoverAttempt(
  target: FailoverTarget,
  kind: LossKind,
  round_: number,
  options: FailoverOptions,
): Promise<Record<string, unknown>> {
  const leader = await stableLeader(target, Math.max(options.heartbeatMs, 100));
  const survivors = target.ids.filter((id) => id !== leader);
  // Open keep-alive connections to the survivors, as a client already talking to them has.
  await Promise.all(survivors.map((id) => target.putTo(id, `fo/warm`, VALUE_100B, 2_000)));
  const termBefore = target.term ? await target.term(survivors[0]!) : null;
  let t0 = performance.now();
  let paused = false;
  let stopMs: number | null = null;
  let lost: Promise<void> = Promise.resolve();
  try {
    if (kind === "kill") {
      lost = target.kill(leader);
    } else {
      const pid = target.pid(leader);
      if (pid === null) throw new Error(`${target.name}: node ${leader} has no process`);
      target.signal(leader, "pause");
      paused = true;
      // The clock starts once every thread has stopped: from then on the leader is silent.
      stopMs = await waitUntilStopped(pid);
      t0 = performance.now();
    }
    const [write, agree] = await Promise.all([
      firstAcceptedWrite(target, survivors, t0, `fo/${kind}/${round_}`, options.probe),
      agreementAfter(target, survivors, leader, t0),
    ]);
    await lost;
    const termAfter = target.term ? await target.term(write.node) : null;
    const back = performance.now();
    if (paused) {
      target.signal(leader, "resume");
      paused = false;
    } else {
      await target.restart(leader);
    }
    await target.settle(30_000);
    return {
      round: round_,
      lost: leader,
      new_leader: write.node,
      to_write_ms: Math.round(write.ms),
      to_agreement_ms: Math.round(agree.ms),
      probes: write.attempts,
      ...(stopMs !== null ? { sigstop_took_effect_ms: round(stopMs, 1) } : {}),
      // > 1: more than one election round (a split vote) before a leader won
      ...(target.term
        ? {
          terms_advanced: termBefore !== null && termAfter !== null ? termAfter - termBefore : null,
        }
        : {}),
      [kind === "kill" ? "restart_catch_up_ms" : "resume_settled_ms"]: Math.round(
        performance.now() - back,
      ),
    };
  } finally {
    if (paused) target.signal(leader, "resume");
    await lost.catch(() => {});
  }
}

/**
 * One failover round (see {@link failoverAttempt}). A silent loss answered by
 * a write sooner than one heartbeat interval cannot have been detected (the
 * old leader was still at work; {@link waitUntilStopped} should rule that
 * out), so such an attempt is discarded, listed under `discarded`, and the
 * round is run again (3 attempts at most).
 */
export async function failoverRound(
  target: FailoverTarget,
  kind: LossKind,
  round_: number,
  options: FailoverOptions,
): Promise<Record<string, unknown>> {
  const discarded: Record<string, unknown>[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    const run = await failoverAttempt(target, kind, round_, options);
    const tooSoon = kind === "pause" && (run["to_write_ms"] as number) < options.heartbeatMs;
    if (!tooSoon) {
      const out = discarded.length ? { ...run, discarded } : run;
      progress(`${target.name} failover (${kind}) round ${round_}: ${JSON.stringify(out)}`);
      return out;
    }
    progress(
      `${target.name} failover (${kind}) round ${round_}: discarded, a write ${
        run["to_write_ms"]
      } ms after a silent loss: ${JSON.stringify(run)}`,
    );
    discarded.push(run);
  }
  throw new Error(
    `${target.name}: failover (${kind}) round ${round_}: 3 attempts discarded ` +
      `(a write sooner than one heartbeat after a silent loss)`,
  );
}

/** Median and max of the rounds' figures. */
export function failoverSummary(
  kind: LossKind,
  runs: Record<string, unknown>[],
  electionMs: number,
): Record<string, unknown> {
  const toWrite = runs.map((r) => r["to_write_ms"] as number);
  const toAgree = runs.map((r) => r["to_agreement_ms"] as number);
  return {
    loss: kind === "kill" ? "kill -9 of the leader's process" : "SIGSTOP of the leader's process",
    rounds: runs.length,
    to_write_median_ms: median(toWrite),
    to_write_max_ms: toWrite.length ? Math.max(...toWrite) : null,
    to_agreement_median_ms: median(toAgree),
    to_agreement_max_ms: toAgree.length ? Math.max(...toAgree) : null,
    election_timeout_ms: electionMs,
    runs,
  };
}
