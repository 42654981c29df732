/**
 * The replicated key-value store under faults (issue 7, "Proof under faults").
 * Three real PostgreSQL servers and agents; six clients put, get and delete a
 * few keys over HTTP (every written value unique) while one fault is injected:
 * kill -9 of the leader's agent, an immediate stop of a follower's
 * PostgreSQL, the agents' PostgreSQL sessions terminated, the leader paused
 * (SIGSTOP), the leader cut off by a network partition. Afterwards:
 *
 * - the whole history is linearizable (tests/helpers/linearizability.ts);
 * - no acknowledged write is lost;
 * - every node's `pgraft.kv` is the same once the leader's commit is applied everywhere.
 *
 * Every node advertises 127.0.0.2:<its agent port> (`pgraft.address`) while its
 * agent listens on 127.0.0.1 (`pgraft.listen_address`); a TCP proxy on
 * 127.0.0.2 forwards to it, so every peer link (and client) goes through a
 * proxy that can cut it.
 */

import assert from "node:assert/strict";
import { eventually as pollUntil, type TestCluster, withCluster } from "../helpers/cluster.ts";
import {
  checkHistory,
  type CheckResult,
  describeOp,
  lostWrites,
  type Operation,
  type OpKind,
} from "../helpers/linearizability.ts";
import { Partitioner } from "../helpers/tcp_proxy.ts";

const HEARTBEAT_MS = 50;
const ELECTION_MS = 500;
const PROXY_HOST = "127.0.0.2";
const CONFIG = `pgraft.heartbeat_interval = '${HEARTBEAT_MS}ms'
pgraft.election_timeout = '${ELECTION_MS}ms'
pgraft.address = '${PROXY_HOST}'
pgraft.listen_address = '127.0.0.1'
`;

const CLIENTS = 6;
const KEYS = ["a", "b", "c", "d"];
/** How long clients run per scenario, and when the fault starts. */
const RUN_MS = 10_000;
const FAULT_AT_MS = 2_500;
/** Per-request timeout: past it the outcome of a write is unknown. */
const REQUEST_TIMEOUT_MS = 2_500;
const ATTEMPTS_MAX = 6;
const OPS_PER_CLIENT_MAX = 3_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The faults' checks poll every 50 ms. */
const eventually = <T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | null | undefined | false>,
): Promise<T> => pollUntil(what, timeoutMs, check, 50);

// ---- the cluster behind proxies ----------------------------------------------

interface Env {
  cluster: TestCluster;
  net: Partitioner;
  /** node id → client base URL (through its proxy) */
  bases: Map<number, string>;
}

async function withProxiedCluster(fn: (env: Env) => Promise<void>): Promise<void> {
  await withCluster({ nodes: 3, bootstrap: false, extraConfig: CONFIG }, async (cluster) => {
    const net = new Partitioner(cluster.nodes.map((n) => ({
      nodeId: n.id,
      listen: { hostname: PROXY_HOST, port: n.agentPort },
      target: { hostname: "127.0.0.1", port: n.agentPort },
    })));
    try {
      const sql = cluster.sql(1);
      await sql`select pgraft_init()`;
      for (const n of cluster.nodes.slice(1)) {
        await sql`select pgraft_add_node(${n.id}, ${PROXY_HOST}, ${n.agentPort})`;
      }
      await cluster.waitForLeader(15_000);
      await eventually("3 voters", 15_000, async () => {
        const leader = await cluster.waitForLeader(5_000);
        const [row] = await cluster.sql(leader)`
          select count(*)::int as n from pgraft_get_nodes() where is_voter`;
        return row?.n === 3;
      });
      const bases = new Map(
        cluster.nodes.map((n) => [n.id, `http://${PROXY_HOST}:${n.agentPort}`]),
      );
      await fn({ cluster, net, bases });
    } finally {
      net.heal();
      for (const n of cluster.nodes) {
        try {
          n.agent?.kill("SIGCONT");
        } catch { /* gone */ }
      }
      await net.close();
    }
  });
}

// ---- clients -------------------------------------------------------------------

interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

/**
 * Clients open a new connection for every request: Deno's fetch sends a
 * request again by itself when a pooled keep-alive connection breaks before
 * the response (denoland/deno#32566), even though the server may have acted on
 * the first copy; the second copy's answer (a 307 from a new leader, say)
 * would then be taken for the outcome. Without pooling there is no such retry;
 * every request carries an id and the proxies check that none came twice.
 */
const http = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
let requestSeq = 0;
globalThis.addEventListener("unload", () => http.close());

/** One HTTP attempt; a network error or timeout is returned as an Error. */
async function request(url: string, method: string, body?: string): Promise<Reply | Error> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error("timeout")), REQUEST_TIMEOUT_MS);
  try {
    const res = await fetch(url, {
      method,
      body,
      redirect: "manual",
      signal: controller.signal,
      client: http,
      headers: { "x-request-id": `r${++requestSeq}` },
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text };
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  } finally {
    clearTimeout(timer);
  }
}

function parseJson(text: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text);
    return typeof v === "object" && v !== null ? v as Record<string, unknown> : {};
  } catch {
    return {};
  }
}

interface Workload {
  history: Operation[];
  /** unexpected replies (status/body) seen, for the report */
  odd: string[];
  stop: boolean;
}

/** Why each attempt ended as it did, and where it was sent (for reports). */
const notes = new WeakMap<Operation, string>();
const targets = new WeakMap<Operation, string>();

/** What a reply means for an operation; `next` is where to retry (null: a fresh node). */
function classify(
  op: Operation,
  reply: Reply | Error,
  workload: Workload,
): { done: boolean; redirect: string | null } {
  op.ret = performance.now();
  if (reply instanceof Error) {
    notes.set(op, `error: ${reply.message.slice(0, 160)}`);
    op.outcome = op.op === "get" ? "fail" : "unknown";
    return { done: false, redirect: null };
  }
  const { status, headers, text } = reply;
  notes.set(
    op,
    `${status} ${text.slice(0, 160)}${
      headers.get("location") ? ` -> ${headers.get("location")}` : ""
    }`,
  );
  if (status === 200 || (op.op === "get" && status === 404)) {
    op.outcome = "ok";
    if (op.op === "get") op.output = status === 200 ? text : null;
    if (op.op === "delete") {
      const deleted = parseJson(text).deleted;
      if (typeof deleted === "boolean") op.existed = deleted;
    }
    return { done: true, redirect: null };
  }
  if (status === 307) {
    // Answered before proposing: not applied.
    op.outcome = "fail";
    return { done: false, redirect: headers.get("location") };
  }
  if (status === 502 && headers.get("x-tcp-proxy") === "not-delivered") {
    op.outcome = "fail";
    return { done: false, redirect: null };
  }
  if (status === 503) {
    const body = parseJson(text);
    const notApplied = body.outcome === "not applied" ||
      (body.outcome === undefined && typeof body.error === "string" &&
        body.error.startsWith("no leader is known"));
    op.outcome = op.op === "get" || notApplied ? "fail" : "unknown";
    return { done: false, redirect: null };
  }
  workload.odd.push(`${op.op} ${op.key}: ${status} ${text.slice(0, 200)}`);
  op.outcome = op.op === "get" ? "fail" : "unknown";
  return { done: false, redirect: null };
}

async function client(
  id: number,
  env: Env,
  workload: Workload,
  deadline: number,
  rand: () => number,
): Promise<void> {
  const ids = [...env.bases.keys()];
  let home = ids[id % ids.length]!;
  for (
    let seq = 0;
    seq < OPS_PER_CLIENT_MAX && !workload.stop && performance.now() < deadline;
    seq++
  ) {
    const key = KEYS[Math.floor(rand() * KEYS.length)]!;
    const r = rand();
    const kind: OpKind = r < 0.45 ? "get" : r < 0.9 ? "put" : "delete";
    let url: string | null = `${env.bases.get(home)}/v1/kv/${key}`;
    for (let attempt = 0; attempt < ATTEMPTS_MAX && performance.now() < deadline; attempt++) {
      const value = `c${id}-${seq}-${attempt}`;
      const op: Operation = {
        client: id,
        op: kind,
        key,
        value: kind === "put" ? value : undefined,
        call: performance.now(),
        ret: Infinity,
        outcome: "unknown",
      };
      workload.history.push(op);
      const target = url ?? `${env.bases.get(home)}/v1/kv/${key}`;
      targets.set(op, target);
      const reply = await request(
        target,
        kind === "get" ? "GET" : kind === "put" ? "PUT" : "DELETE",
        kind === "put" ? value : undefined,
      );
      const { done, redirect } = classify(op, reply, workload);
      if (op.outcome !== "ok") op.ret = op.outcome === "unknown" ? Infinity : op.ret;
      if (done) break;
      if (redirect && [...env.bases.values()].some((b) => redirect.startsWith(b + "/"))) {
        url = redirect;
        continue;
      }
      // No leader yet, or the node is unreachable: back off, then another node.
      url = null;
      home = ids[Math.floor(rand() * ids.length)]!;
      await sleep(50 + rand() * 100);
    }
    await sleep(rand() * 10);
  }
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- after the run -------------------------------------------------------------

/** Every agent is still running (none died of the fault). */
async function agentsAlive(cluster: TestCluster): Promise<void> {
  for (const n of cluster.nodes) {
    const agent = n.agent;
    if (!agent) continue;
    const exited = await Promise.race([agent.status, sleep(10).then(() => null)]);
    if (exited) {
      throw new Error(
        `the agent of node ${n.id} exited (code ${exited.code}, signal ${exited.signal}):\n` +
          await cluster.agentLog(n.id, 12),
      );
    }
  }
}

/** A linearizable read of every key through the leader, appended to the history. */
async function finalReads(env: Env, workload: Workload): Promise<void> {
  for (const key of KEYS) {
    await eventually(`a final read of ${key}`, 20_000, async () => {
      const leader = await env.cluster.waitForLeader(5_000);
      const op: Operation = {
        client: 99,
        op: "get",
        key,
        call: performance.now(),
        ret: Infinity,
        outcome: "fail",
      };
      const reply = await request(`${env.bases.get(leader)}/v1/kv/${key}`, "GET");
      classify(op, reply, workload);
      if (op.outcome !== "ok") return false;
      workload.history.push(op);
      return true;
    });
  }
}

async function kvContent(cluster: TestCluster, id: number): Promise<Map<string, string>> {
  const rows = await cluster.sql(id)`
    select key, convert_from(value, 'UTF8') as value from pgraft.kv order by key collate "C"`;
  return new Map(rows.map((r) => [r.key as string, r.value as string]));
}

/** Every node has applied the leader's commit index; returns the content (the same on all). */
async function converged(cluster: TestCluster): Promise<Map<string, string>> {
  return await eventually(
    "every node applies the leader's commit and holds the same kv",
    30_000,
    async () => {
      const leader = await cluster.waitForLeader(5_000);
      const [s] = await cluster.sql(leader)`select commit_index from pgraft_get_cluster_status()`;
      const commit = Number(s!.commit_index);
      for (const n of cluster.nodes) {
        const [row] = await cluster.sql(n.id)`select last_applied from pgraft_get_cluster_status()`;
        if (Number(row?.last_applied ?? -1) < commit) return null;
      }
      const contents = await Promise.all(cluster.nodes.map((n) => kvContent(cluster, n.id)));
      const first = JSON.stringify([...contents[0]!]);
      for (let i = 1; i < contents.length; i++) {
        const other = JSON.stringify([...contents[i]!]);
        if (other !== first) {
          throw new Error(`node ${cluster.nodes[i]!.id} differs: ${other} vs node 1: ${first}`);
        }
      }
      return contents[0]!;
    },
  );
}

function explainViolation(history: Operation[], check: CheckResult, t0: number): string {
  const lines: string[] = [];
  const line = (i: number) => {
    const op = history[i]!;
    return `${describeOp(op, i, t0)} ${targets.get(op) ?? ""} ${notes.get(op) ?? ""}`;
  };
  for (const k of check.keys) {
    if (k.result !== "violation") continue;
    lines.push(`key ${k.key}: ${k.ops} ops, not linearizable`);
    const prefix = k.longestPrefix ?? [];
    lines.push(`  longest linearizable prefix (last 10 of ${prefix.length}):`);
    for (const i of prefix.slice(-10)) lines.push(`    ${line(i)}`);
    lines.push(`  none of these could come next:`);
    for (const i of new Set(k.stuckAt ?? [])) lines.push(`    ${line(i)}`);
  }
  return lines.join("\n");
}

/** Run clients for RUN_MS with `fault` started at FAULT_AT_MS; then check everything. */
async function scenario(
  name: string,
  seed: number,
  fault: (env: Env) => Promise<string>,
): Promise<void> {
  await withProxiedCluster(async (env) => {
    const workload: Workload = { history: [], odd: [], stop: false };
    const t0 = performance.now();
    const deadline = t0 + RUN_MS;
    const rand = seeded(seed);
    const clients = Array.from(
      { length: CLIENTS },
      (_, i) => client(i + 1, env, workload, deadline, seeded(seed * 100 + i)),
    );
    let faultDetail = "";
    try {
      await sleep(FAULT_AT_MS + rand() * 500);
      faultDetail = await fault(env);
    } finally {
      await Promise.all(clients);
    }
    const runMs = performance.now() - t0;
    env.net.heal();
    await agentsAlive(env.cluster);
    await finalReads(env, workload);
    const finalState = await converged(env.cluster);
    const history = workload.history;
    await Deno.writeTextFile(
      `${env.cluster.dir}/history.json`,
      JSON.stringify({
        t0,
        ops: history.map((op) => ({
          ...op,
          ret: Number.isFinite(op.ret) ? op.ret : null,
          target: targets.get(op),
          note: notes.get(op),
        })),
      }),
    );
    const check = checkHistory(history);
    const lost = lostWrites(history, check, finalState);
    const count = (o: string, kind?: OpKind) =>
      history.filter((op) => op.outcome === o && (!kind || op.op === kind)).length;
    const summary = {
      scenario: name,
      fault: faultDetail,
      runMs: Math.round(runMs),
      ops: history.length,
      ok: count("ok"),
      fail: count("fail"),
      unknown: count("unknown"),
      okPuts: count("ok", "put"),
      okGets: count("ok", "get"),
      okDeletes: count("ok", "delete"),
      unknownWrites: count("unknown", "put") + count("unknown", "delete"),
      check: check.result,
      checkMs: Math.round(check.ms),
      steps: check.keys.reduce((s, k) => s + k.steps, 0),
      lost: lost.direct.length + lost.witness.length,
      keysInStore: finalState.size,
      resent: env.net.resent().length,
      odd: workload.odd.slice(0, 5),
    };
    console.log(JSON.stringify(summary));
    assert.ok(
      summary.okPuts > 50,
      `too few acknowledged writes to prove anything: ${summary.okPuts}`,
    );
    assert.equal(summary.resent, 0, "a request reached a node twice (fetch resent it by itself)");
    assert.equal(check.result, "ok", explainViolation(history, check, t0));
    // The checker has teeth on this very history: a read after everything that
    // returns a value overwritten before it (a stale read) must be rejected.
    const puts = history.filter((op) => op.op === "put" && op.outcome === "ok");
    const stale = puts.find((p) => puts.some((q) => q.key === p.key && q.call > p.ret));
    if (stale) {
      const end = Math.max(...history.map((op) => op.outcome === "ok" ? op.ret : op.call)) + 1;
      const read: Operation = {
        client: 100,
        op: "get",
        key: stale.key,
        output: stale.value,
        call: end,
        ret: end + 1,
        outcome: "ok",
      };
      assert.equal(checkHistory([...history, read]).result, "violation", "a stale read is caught");
    }
    assert.deepEqual(
      lost,
      { witness: [], direct: [], finalMismatch: [] },
      "lost acknowledged writes: " +
        [...new Set([...lost.direct, ...lost.witness])].map((i) => describeOp(history[i]!, i, t0))
          .join("; "),
    );
  });
}

// ---- the scenarios -------------------------------------------------------------

Deno.test({
  name: "kv faults: kill -9 of the leader's agent, then restarted",
  fn: async () => {
    await scenario("kill -9 leader", 1, async ({ cluster }) => {
      const leader = await cluster.waitForLeader(5_000);
      await cluster.stopAgent(leader, "SIGKILL");
      await sleep(1_500);
      await cluster.startAgent(leader);
      return `killed node ${leader}'s agent for 1.5 s`;
    });
  },
});

Deno.test({
  name: "kv faults: immediate stop of a follower's PostgreSQL, then started",
  fn: async () => {
    await scenario("follower PostgreSQL immediate stop", 2, async ({ cluster }) => {
      const leader = await cluster.waitForLeader(5_000);
      const follower = [1, 2, 3].find((id) => id !== leader)!;
      await cluster.closeSql(follower);
      await cluster.node(follower).server.stopImmediate();
      await sleep(2_000);
      await cluster.node(follower).server.start();
      return `node ${follower}'s PostgreSQL stopped (immediate) for 2 s; leader ${leader}`;
    });
  },
});

Deno.test({
  name: "kv faults: the agents' PostgreSQL sessions terminated on every node",
  fn: async () => {
    await scenario("terminated sessions", 3, async ({ cluster }) => {
      let terminated = 0;
      for (let round = 0; round < 4; round++) {
        for (const n of cluster.nodes) {
          const rows = await cluster.sql(n.id)`
            select pg_terminate_backend(pid) as t from pg_stat_activity
            where application_name like 'pgraft agent%'`;
          terminated += rows.filter((r) => r.t).length;
        }
        await sleep(600);
      }
      assert.ok(terminated > 0, "some agent sessions were terminated");
      return `${terminated} agent sessions terminated in 4 rounds`;
    });
  },
});

Deno.test({
  name: "kv faults: the leader paused (SIGSTOP) for 2 s, then continued",
  fn: async () => {
    await scenario("SIGSTOP leader", 4, async ({ cluster }) => {
      const leader = await cluster.waitForLeader(5_000);
      cluster.signalAgent(leader, "SIGSTOP");
      try {
        await sleep(2_000);
      } finally {
        cluster.signalAgent(leader, "SIGCONT");
      }
      return `node ${leader}'s agent stopped for 2 s`;
    });
  },
});

Deno.test({
  name: "kv faults: the leader isolated by a partition, then healed",
  fn: async () => {
    await scenario("partition isolating the leader", 5, async ({ cluster, net }) => {
      const leader = await cluster.waitForLeader(5_000);
      net.isolate(leader);
      const others = [1, 2, 3].filter((id) => id !== leader);
      let next: number | null = null;
      try {
        next = await eventually("a new leader on the majority side", 5_000, async () => {
          const seen = await Promise.all(others.map((id) => cluster.leaderSeenBy(id)));
          return seen[0] && seen[0] !== leader && seen.every((l) => l === seen[0]) ? seen[0] : null;
        });
        await sleep(1_500);
      } finally {
        net.heal();
      }
      const dropped = [...net.proxies.values()].reduce(
        (s, p) => s + [...p.dropped.values()].reduce((a, b) => a + b, 0),
        0,
      );
      return `node ${leader} isolated; node ${next} led the majority; ${dropped} connections cut`;
    });
  },
});

Deno.test({
  name: "kv faults: a follower whose PostgreSQL crashed right after applying serves no stale read",
  fn: async () => {
    await withProxiedCluster(async ({ cluster, bases }) => {
      const history: Operation[] = [];
      const workload: Workload = { history, odd: [], stop: false };
      const leader = await cluster.waitForLeader(5_000);
      const follower = [1, 2, 3].find((id) => id !== leader)!;
      const url = (id: number) => `${bases.get(id)}/v1/kv/q`;
      let rounds = 0;
      let died = "";
      for (; rounds < 4 && !died; rounds++) {
        // A write acknowledged by the leader, applied on the follower (its
        // apply commits asynchronously), then the follower's PostgreSQL crashes.
        const put: Operation = {
          client: 1,
          op: "put",
          key: "q",
          value: `v${rounds}`,
          call: performance.now(),
          ret: Infinity,
          outcome: "unknown",
        };
        history.push(put);
        classify(put, await request(url(leader), "PUT", `v${rounds}`), workload);
        if (put.outcome !== "ok") put.ret = Infinity;
        await eventually("the follower applies the write", 5_000, async () => {
          const [s] = await cluster.sql(follower)`
            select (select last_applied from pgraft_get_cluster_status()) as a,
                   (select commit_index from pgraft_get_cluster_status()) as c`;
          return Number(s!.a) >= Number(s!.c);
        });
        await cluster.closeSql(follower);
        await cluster.node(follower).server.stopImmediate();
        await cluster.node(follower).server.start();
        // Linearizable reads on the follower once it serves again.
        for (let i = 0; i < 10; i++) {
          const get: Operation = {
            client: 2,
            op: "get",
            key: "q",
            call: performance.now(),
            ret: Infinity,
            outcome: "fail",
          };
          classify(get, await request(url(follower), "GET"), workload);
          if (get.outcome === "ok") history.push(get);
          await sleep(100);
        }
        const exited = await Promise.race([
          cluster.node(follower).agent!.status,
          sleep(10).then(() => null),
        ]);
        if (exited) died = await cluster.agentLog(follower, 3);
      }
      const check = checkHistory(history);
      console.log(JSON.stringify({
        scenario: "crashed follower PostgreSQL, quiet cluster",
        rounds,
        ops: history.length,
        check: check.result,
        reads: history.filter((op) => op.op === "get").map((op) => op.output),
        agentDied: died !== "",
      }));
      assert.equal(check.result, "ok", explainViolation(history, check, history[0]!.call));
      assert.equal(died, "", `the follower's agent died:\n${died}`);
    });
  },
});
