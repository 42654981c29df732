/**
 * Core benchmark: entries committed per second through a 3-node in-memory
 * cluster (no I/O: persisting is free, messages are delivered at once), with
 * 100-byte entries proposed in batches as the agent does. Measures the Raft
 * core's own cost per entry. Target (issue 3): >= 200,000 entries/s.
 */

import { bootstrapState, type Message, RaftNode } from "../lib/raft/mod.ts";

function seeded(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return a % n;
  };
}

/** Run the benchmark for about `durationMs`; returns its figures. */
export function coreBench(
  options: { durationMs?: number; batch?: number; appendBatchSize?: number } = {},
): Record<string, unknown> {
  const durationMs = options.durationMs ?? 2_000;
  const batch = options.batch ?? 512;
  const voters = [1, 2, 3].map((id) => ({ id, context: "" }));
  const nodes = new Map<number, RaftNode>();
  for (const { id } of voters) {
    nodes.set(
      id,
      new RaftNode({
        id,
        heartbeatTicks: 10,
        electionTicks: 100,
        appendBatchSize: options.appendBatchSize ?? 512,
        maxInflight: 64,
        snapshotThreshold: 1_000_000_000,
        randomInt: seeded(id),
      }, bootstrapState(voters)),
    );
  }
  const queue: Message[] = [];
  let applied = 0;
  const pump = () => {
    for (let rounds = 0; rounds < 1_000_000; rounds++) {
      let busy = false;
      for (const [id, node] of nodes) {
        while (node.hasReady()) {
          busy = true;
          const rd = node.ready();
          queue.push(...rd.messagesBeforePersist, ...rd.messages);
          if (id === 1) applied += rd.committedEntries.length;
          node.advance(rd);
        }
      }
      for (let m = queue.shift(); m; m = queue.shift()) {
        busy = true;
        nodes.get(m.to)!.step(m);
      }
      if (!busy) return;
    }
    throw new Error("the cluster did not settle");
  };
  const leader = nodes.get(1)!;
  leader.campaign();
  pump();
  if (leader.status().role !== "leader") throw new Error("node 1 did not become leader");
  const payload = new Uint8Array(100).fill(7);
  const appliedBefore = applied;
  const started = performance.now();
  let proposed = 0;
  while (performance.now() - started < durationMs) {
    for (let k = 0; k < batch; k++) leader.propose(payload);
    proposed += batch;
    pump();
  }
  const seconds = (performance.now() - started) / 1000;
  const committed = applied - appliedBefore;
  return {
    entriesCommitted: committed,
    proposed,
    seconds: Number(seconds.toFixed(3)),
    entriesPerSecond: Math.round(committed / seconds),
    entryBytes: payload.length,
    proposalsPerReady: batch,
    target: 200_000,
    met: committed / seconds >= 200_000,
  };
}

if (import.meta.main) console.log(JSON.stringify(coreBench()));
