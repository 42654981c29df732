/**
 * etcd as the benchmarks' anchor: a 3-member etcd cluster on loopback
 * (Debian's `etcd-server`, 3.4), started with the same heartbeat interval and
 * election timeout as the pgraft cluster under test and etcd's defaults
 * otherwise (snapshot count, quota, no pre-vote), written to through its HTTP
 * gateway (`POST /v3/kv/put`) by the same load generator as pgraft
 * (bench/load.ts).
 *
 * Every etcd process is started by this module through `/bin/sh -c "exec etcd
 * …"` (so the child's PID is etcd's), and stopped by that PID — SIGTERM, then
 * SIGKILL — waiting until the PID is gone, also when a start or a measurement
 * fails, and on SIGINT/SIGTERM of the benchmark.
 *
 * @module
 */

import { join } from "node:path";
import type { FailoverTarget, PutOutcome } from "./load.ts";
import type { Grouper } from "./proc.ts";
import { eventually, progress, rssMb, sleep } from "./stats.ts";

/** The binary, looked up on PATH. */
const ETCD = "etcd";

/** Why etcd is not measured when it is missing. */
export const ETCD_MISSING =
  "etcd is not installed (Debian: apt-get install etcd-server etcd-client)";

/** `etcd --version`'s first line ("etcd Version: 3.4.23"), or null when etcd is not installed. */
export async function etcdVersion(): Promise<string | null> {
  try {
    const out = await new Deno.Command(ETCD, {
      args: ["--version"],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
      signal: AbortSignal.timeout(10_000),
    }).output();
    if (!out.success) return null;
    const first = new TextDecoder().decode(out.stdout).split("\n")[0] ?? "";
    return first.replace(/^etcd Version:\s*/, "").trim() || "unknown";
  } catch {
    return null;
  }
}

/** A free TCP port on 127.0.0.1 (the OS picks it). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Settings of the cluster: the same timeouts as the pgraft cluster beside it. */
export interface EtcdOptions {
  heartbeatMs: number;
  electionMs: number;
}

/** One member: its ports, its data directory, and its process while it runs. */
interface EtcdMember {
  /** 1..3, like pgraft's node ids */
  id: number;
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  logFile: string;
  child: Deno.ChildProcess | null;
  /** set when the running child has exited */
  exited: boolean;
  /** etcd's member id (a uint64 in decimal), learned from its status */
  memberId: string | null;
}

/** The parts of `POST /v3/maintenance/status` the benchmark reads (uint64s stay strings). */
export interface EtcdStatus {
  memberId: string;
  /** "0" when the member knows no leader */
  leader: string;
  raftTerm: number;
  raftIndex: number;
  raftAppliedIndex: number;
}

/** Resolves true once `child` has exited, false after `ms` (no timer is left behind). */
async function exitedWithin(child: Deno.ChildProcess, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([child.status.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** True when no process `pid` exists (reaped) or it is a zombie. */
async function pidGone(pid: number): Promise<boolean> {
  try {
    return /\) Z /.test(await Deno.readTextFile(`/proc/${pid}/stat`));
  } catch {
    return true;
  }
}

/** A running 3-member etcd cluster; {@link EtcdCluster.stop} stops every process it started. */
export class EtcdCluster {
  readonly dir: string;
  readonly members: EtcdMember[];
  readonly options: EtcdOptions;
  readonly http: Deno.HttpClient;
  #onSignal: (() => void) | null = null;

  private constructor(dir: string, members: EtcdMember[], options: EtcdOptions) {
    this.dir = dir;
    this.members = members;
    this.options = options;
    this.http = Deno.createHttpClient({});
  }

  /**
   * Start 3 members in a temporary directory and wait until they agree on a
   * leader; on failure every process started is stopped before the error.
   */
  static async start(options: EtcdOptions): Promise<EtcdCluster> {
    const dir = await Deno.makeTempDir({ prefix: "pgraft-bench-etcd-" });
    const members: EtcdMember[] = [1, 2, 3].map((id) => ({
      id,
      name: `m${id}`,
      clientPort: freePort(),
      peerPort: freePort(),
      dataDir: join(dir, `m${id}`),
      logFile: join(dir, `m${id}.log`),
      child: null,
      exited: false,
      memberId: null,
    }));
    const cluster = new EtcdCluster(dir, members, options);
    cluster.#installSignalHandlers();
    try {
      for (const m of members) cluster.#spawn(m);
      await cluster.settle(30_000);
      return cluster;
    } catch (error) {
      progress(`etcd: start failed; logs kept in ${dir}\n${await cluster.logTail()}`);
      await cluster.stop({ keepDir: true });
      throw error;
    }
  }

  /** The command-line flags of member `m` (the same on every start). */
  args(m: EtcdMember): string[] {
    const initial = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(",");
    return [
      "--name",
      m.name,
      "--data-dir",
      m.dataDir,
      "--listen-client-urls",
      `http://127.0.0.1:${m.clientPort}`,
      "--advertise-client-urls",
      `http://127.0.0.1:${m.clientPort}`,
      "--listen-peer-urls",
      `http://127.0.0.1:${m.peerPort}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${m.peerPort}`,
      "--initial-cluster",
      initial,
      "--initial-cluster-state",
      "new",
      "--initial-cluster-token",
      "pgraft-bench",
      "--heartbeat-interval",
      String(this.options.heartbeatMs),
      "--election-timeout",
      String(this.options.electionMs),
      "--logger",
      "zap",
      "--log-level",
      "warn",
    ];
  }

  /** Start member `m`'s process, its output appended to its log file. */
  #spawn(m: EtcdMember): void {
    if (m.child && !m.exited) throw new Error(`etcd member ${m.id} is already running`);
    const quote = (a: string) => `'${a.replaceAll("'", `'"'"'`)}'`;
    const line = [ETCD, ...this.args(m)].map(quote).join(" ");
    // The shell appends etcd's output to the log and then becomes etcd (exec):
    // the child's PID is etcd's.
    const child = new Deno.Command("/bin/sh", {
      args: ["-c", `exec ${line} >> ${quote(m.logFile)} 2>&1`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    m.child = child;
    m.exited = false;
    child.status.then(() => {
      if (m.child === child) m.exited = true;
    });
  }

  /** A SIGINT/SIGTERM of the benchmark kills every etcd process before it exits. */
  #installSignalHandlers(): void {
    const handler = () => {
      for (const m of this.members) {
        if (m.child && !m.exited) {
          try {
            Deno.kill(m.child.pid, "SIGKILL");
          } catch { /* gone */ }
        }
      }
      Deno.exit(130);
    };
    Deno.addSignalListener("SIGINT", handler);
    Deno.addSignalListener("SIGTERM", handler);
    this.#onSignal = handler;
  }

  member(id: number): EtcdMember {
    const m = this.members.find((x) => x.id === id);
    if (!m) throw new Error(`no etcd member ${id}`);
    return m;
  }

  /** PIDs of the running members. */
  pids(): Map<number, number> {
    const out = new Map<number, number>();
    for (const m of this.members) if (m.child && !m.exited) out.set(m.id, m.child.pid);
    return out;
  }

  /** Member `id`'s status, or null when it does not answer within `timeoutMs`. */
  async status(id: number, timeoutMs = 500): Promise<EtcdStatus | null> {
    const m = this.member(id);
    try {
      const res = await fetch(`http://127.0.0.1:${m.clientPort}/v3/maintenance/status`, {
        method: "POST",
        body: "{}",
        client: this.http,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      if (res.status !== 200) return null;
      const json = JSON.parse(text) as {
        header?: { member_id?: string };
        leader?: string;
        raftTerm?: string;
        raftIndex?: string;
        raftAppliedIndex?: string;
      };
      const memberId = json.header?.member_id;
      if (!memberId) return null;
      m.memberId = memberId;
      return {
        memberId,
        leader: json.leader ?? "0",
        raftTerm: Number(json.raftTerm ?? 0),
        raftIndex: Number(json.raftIndex ?? 0),
        raftAppliedIndex: Number(json.raftAppliedIndex ?? 0),
      };
    } catch {
      return null;
    }
  }

  /** The node id (1..3) of etcd member id `memberId`, when known. */
  idOf(memberId: string): number | null {
    return this.members.find((m) => m.memberId === memberId)?.id ?? null;
  }

  /** The leader every member in `ids` names, or null. */
  async agreedLeader(ids: readonly number[]): Promise<number | null> {
    const seen = await Promise.all(ids.map((id) => this.status(id)));
    const first = seen[0]?.leader;
    if (!first || first === "0" || !seen.every((s) => s?.leader === first)) return null;
    return this.idOf(first);
  }

  /**
   * Wait until every member runs, all name the same leader and have applied
   * the same index (caught up); returns the leader's id.
   */
  async settle(timeoutMs = 30_000): Promise<number> {
    return await eventually("a settled etcd cluster", timeoutMs, async () => {
      const dead = this.members.find((m) => !m.child || m.exited);
      if (dead) throw new Error(`etcd member ${dead.id} is not running (see ${dead.logFile})`);
      const all = await Promise.all(this.members.map((m) => this.status(m.id)));
      if (all.some((s) => s === null)) return null;
      const s = all as EtcdStatus[];
      const leader = s[0]!.leader;
      if (leader === "0" || !s.every((x) => x.leader === leader)) return null;
      if (!s.every((x) => x.raftAppliedIndex === s[0]!.raftAppliedIndex)) return null;
      return this.idOf(leader);
    }, 25);
  }

  /** kill -9 member `id`; resolves once its PID is gone. */
  async kill(id: number): Promise<void> {
    await this.#stopMember(this.member(id), "SIGKILL");
  }

  /** SIGSTOP / SIGCONT member `id`'s process (by PID). */
  signal(id: number, signal: "SIGSTOP" | "SIGCONT"): void {
    const m = this.member(id);
    if (m.child && !m.exited) {
      try {
        Deno.kill(m.child.pid, signal);
      } catch { /* gone */ }
    }
  }

  /** Start member `id` again with the same data directory and flags; waits until it answers. */
  async restart(id: number): Promise<void> {
    const m = this.member(id);
    this.#spawn(m);
    await eventually(`etcd member ${id} to answer after a restart`, 30_000, async () => {
      if (m.exited) throw new Error(`etcd member ${id} exited (see ${m.logFile})`);
      return await this.status(id);
    }, 20);
  }

  /**
   * Stop member `m` by PID with `signal` (SIGCONT too, in case it is stopped),
   * SIGKILL after 5 s, and wait until the PID is gone (10 s at most).
   */
  async #stopMember(m: EtcdMember, signal: Deno.Signal): Promise<void> {
    const child = m.child;
    if (!child) return;
    const pid = child.pid;
    const send = (s: Deno.Signal) => {
      try {
        Deno.kill(pid, s);
      } catch { /* gone */ }
    };
    if (!m.exited) {
      send(signal);
      send("SIGCONT");
      if (!await exitedWithin(child, 5_000)) {
        send("SIGKILL");
        if (!await exitedWithin(child, 10_000)) {
          throw new Error(`etcd member ${m.id} (pid ${pid}) did not exit after SIGKILL`);
        }
      }
    } else {
      await child.status;
    }
    const deadline = performance.now() + 5_000;
    for (let i = 0; i < 500 && !await pidGone(pid) && performance.now() < deadline; i++) {
      await sleep(10);
    }
    if (m.child === child) {
      m.child = null;
      m.exited = true;
    }
  }

  /** The last lines of every member's log (for failure messages). */
  async logTail(lines = 15): Promise<string> {
    const parts = await Promise.all(this.members.map(async (m) => {
      const text = await Deno.readTextFile(m.logFile).catch(() => "");
      return `--- etcd ${m.name} (${m.logFile})\n${text.split("\n").slice(-lines).join("\n")}`;
    }));
    return parts.join("\n");
  }

  /** Resident set size of every running member now and at its peak, in MB. */
  async rss(field: "VmRSS" | "VmHWM" = "VmRSS"): Promise<Record<string, number | null>> {
    const out: Record<string, number | null> = {};
    for (const m of this.members) {
      out[`member${m.id}`] = m.child && !m.exited ? await rssMb(m.child.pid, field) : null;
    }
    return out;
  }

  /** Groups the members' processes for bench/proc.ts: `etcd_member<N>`. */
  grouper(): Grouper {
    return (pid) => {
      const m = this.members.find((x) => x.child?.pid === pid);
      return m ? `etcd_member${m.id}` : null;
    };
  }

  /**
   * Stop every member by PID (SIGKILL: the data is thrown away, and a SIGTERM
   * of all three at once has the leader try to hand over to a stopping member
   * for seconds) and wait until each PID is gone; remove the directory unless
   * `keepDir`. Safe to call more than once.
   */
  async stop(options: { keepDir?: boolean } = {}): Promise<void> {
    const results = await Promise.allSettled(
      this.members.map((m) => this.#stopMember(m, "SIGKILL")),
    );
    if (this.#onSignal) {
      Deno.removeSignalListener("SIGINT", this.#onSignal);
      Deno.removeSignalListener("SIGTERM", this.#onSignal);
      this.#onSignal = null;
    }
    try {
      this.http.close();
    } catch { /* closed */ }
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    if (!options.keepDir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Start an etcd cluster, run `fn`, and stop every etcd process whatever happened. */
export async function withEtcd<T>(
  options: EtcdOptions,
  fn: (etcd: EtcdCluster) => Promise<T>,
): Promise<T> {
  const etcd = await EtcdCluster.start(options);
  let failed = false;
  try {
    return await fn(etcd);
  } catch (error) {
    failed = true;
    progress(`etcd: logs kept in ${etcd.dir}\n${await etcd.logTail()}`);
    throw error;
  } finally {
    await etcd.stop({ keepDir: failed });
  }
}

/** Base64 of an ASCII or UTF-8 string. */
function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/**
 * etcd as a {@link FailoverTarget}: `POST /v3/kv/put` with
 * `{"key": base64, "value": base64}` over keep-alive connections of one
 * Deno.HttpClient, to the leader found by {@link EtcdTarget.settle} (a follower
 * forwards a put, so a leader change during a load costs no error). A non-200
 * answer, or a 200 whose body has an `error` field, is an error.
 */
export class EtcdTarget implements FailoverTarget {
  readonly name = "etcd";
  readonly ids: readonly number[];
  readonly etcd: EtcdCluster;
  readonly http: Deno.HttpClient;
  #leader = 1;
  #encoded = new Map<string, string>();

  constructor(etcd: EtcdCluster) {
    this.etcd = etcd;
    this.ids = etcd.members.map((m) => m.id);
    this.http = Deno.createHttpClient({});
  }

  /** Settle the cluster and aim the load at its leader. */
  async settle(timeoutMs = 30_000): Promise<number> {
    this.#leader = await this.etcd.settle(timeoutMs);
    return this.#leader;
  }

  put(key: string, value: string, timeoutMs = 2_000): Promise<PutOutcome> {
    return this.putTo(this.#leader, key, value, timeoutMs);
  }

  async putTo(id: number, key: string, value: string, timeoutMs = 2_000): Promise<PutOutcome> {
    let v = this.#encoded.get(value);
    if (v === undefined) {
      v = base64(value);
      if (this.#encoded.size < 16) this.#encoded.set(value, v);
    }
    const port = this.etcd.member(id).clientPort;
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v3/kv/put`, {
        method: "POST",
        body: `{"key":"${base64(key)}","value":"${v}"}`,
        client: this.http,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      if (res.status === 200 && !text.includes('"error"')) return { status: 200 };
      let message = text.slice(0, 80);
      try {
        message = String((JSON.parse(text) as { error?: unknown }).error ?? message);
      } catch { /* not JSON */ }
      // A 200 carrying an error counts as no answer (status 0) with that error.
      return { status: res.status === 200 ? 0 : res.status, error: `etcd: ${message}` };
    } catch (error) {
      return { status: 0, error: (error as Error).name + ": " + (error as Error).message };
    }
  }

  agreedLeader(ids: readonly number[]): Promise<number | null> {
    return this.etcd.agreedLeader(ids);
  }

  kill(id: number): Promise<void> {
    return this.etcd.kill(id);
  }

  signal(id: number, what: "pause" | "resume"): void {
    this.etcd.signal(id, what === "pause" ? "SIGSTOP" : "SIGCONT");
  }

  pid(id: number): number | null {
    return this.etcd.pids().get(id) ?? null;
  }

  restart(id: number): Promise<void> {
    return this.etcd.restart(id);
  }

  async term(id: number): Promise<number | null> {
    return (await this.etcd.status(id))?.raftTerm ?? null;
  }

  close(): void {
    this.http.close();
  }
}
