/**
 * Measures the transport over loopback and prints the numbers; checks only
 * that every message arrived (in order, with one request in flight).
 */
import assert from "node:assert/strict";
import { createPeerApp, Metrics, PeerClient, PeerServer } from "../../../lib/transport/mod.ts";
import { append as appendOf, heartbeat } from "./helpers.ts";

/** The `batch`-th append of `entries` entries (indexes follow on from the previous batch). */
function append(batch: number, entries: number, entryBytes: number) {
  return appendOf(entries, entryBytes, batch * entries + 1);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

interface Rig {
  client: PeerClient;
  delivered: () => number;
  /** resolves once `count` messages in all have been delivered */
  waitFor: (count: number) => Promise<void>;
  order: number[];
}

async function withRig(
  maxInflightRequests: number,
  fn: (rig: Rig) => Promise<void>,
): Promise<void> {
  let delivered = 0;
  const order: number[] = [];
  let waiter: { count: number; resolve: () => void } | null = null;
  const app = createPeerApp({
    nodeId: 2,
    clusterId: () => null,
    authSecret: "bench",
    metrics: new Metrics(),
    onMessages: (_c, messages) => {
      for (const m of messages) {
        order.push(
          m.type === "heartbeat_request"
            ? m.commit
            : m.type === "append_request"
            ? m.entries[0]!.index
            : -1,
        );
      }
      delivered += messages.length;
      if (waiter && delivered >= waiter.count) {
        const w = waiter;
        waiter = null;
        w.resolve();
      }
    },
    status: () => ({}),
    health: () => ({ ok: true }),
  });
  const server = new PeerServer(app, { hostname: "127.0.0.1", port: 0 });
  await server.start();
  const client = new PeerClient({
    nodeId: 1,
    peerId: 2,
    baseUrl: `http://127.0.0.1:${server.port}`,
    clusterId: () => null,
    authSecret: "bench",
    metrics: new Metrics(),
    onUnreachable: () => assert.fail("unreachable during the benchmark"),
    onSnapshotResult: () => {},
    maxInflightRequests,
    maxQueuedMessages: 100_000,
  });
  try {
    await fn({
      client,
      delivered: () => delivered,
      order,
      waitFor: (count) => {
        if (delivered >= count) return Promise.resolve();
        return new Promise((resolve) => (waiter = { count, resolve }));
      },
    });
  } finally {
    await client.close();
    await server.stop();
  }
}

const results: string[] = [];

for (const inflight of [1, 2, 4]) {
  Deno.test(`loopback throughput and latency with ${inflight} request(s) in flight`, async () => {
    await withRig(inflight, async (rig) => {
      // warm up the connection(s)
      rig.client.send([heartbeat(0)]);
      await rig.waitFor(1);
      let total = 1;

      // latency of a single message, one at a time
      const single: number[] = [];
      for (let i = 0; i < 300; i++) {
        const t = performance.now();
        rig.client.send([heartbeat(total)]);
        total++;
        await rig.waitFor(total);
        single.push(performance.now() - t);
      }
      single.sort((a, b) => a - b);

      // throughput of 1-message sends in a burst (the client batches them)
      const burst = 20_000;
      let t = performance.now();
      for (let i = 0; i < burst; i++) rig.client.send([heartbeat(total + i)]);
      total += burst;
      await rig.waitFor(total);
      const singleRate = burst / ((performance.now() - t) / 1000);

      // latency of a 100-entry append (256-byte entries), one at a time
      const batches: number[] = [];
      for (let b = 0; b < 100; b++) {
        const m = append(b, 100, 256);
        const start = performance.now();
        rig.client.send([m]);
        total++;
        await rig.waitFor(total);
        batches.push(performance.now() - start);
      }
      batches.sort((a, b) => a - b);

      // throughput of 100-entry appends sent back to back
      const appends = 300;
      const pre = Array.from({ length: appends }, (_, b) => append(100 + b, 100, 256));
      t = performance.now();
      for (const m of pre) rig.client.send([m]);
      total += appends;
      await rig.waitFor(total);
      const appendSeconds = (performance.now() - t) / 1000;

      assert.equal(rig.delivered(), total);
      if (inflight === 1) {
        const heartbeats = rig.order.slice(0, 1 + 300 + burst);
        assert.deepEqual(heartbeats, Array.from({ length: heartbeats.length }, (_, i) => i));
      }
      const line = `inflight=${inflight}: 1-msg p50 ${percentile(single, 0.5).toFixed(2)} ms ` +
        `p99 ${percentile(single, 0.99).toFixed(2)} ms, burst ${Math.round(singleRate)} msg/s; ` +
        `100-entry append p50 ${percentile(batches, 0.5).toFixed(2)} ms, ` +
        `${Math.round(appends / appendSeconds)} appends/s = ${
          Math.round((appends * 100) / appendSeconds)
        } entries/s ` +
        `(${((appends * 100 * 256) / appendSeconds / 1e6).toFixed(1)} MB/s of entry data)`;
      results.push(line);
      console.log(line);
    });
  });
}
