/**
 * Snapshots travel as chunks of one encoded envelope (`POST /raft/snapshot`)
 * and are reassembled with bounded memory; incomplete transfers are dropped
 * when superseded, out of order, over budget or idle.
 */
import assert from "node:assert/strict";
import {
  encodeMessages,
  HEADER_SNAPSHOT_ID,
  HEADER_SNAPSHOT_OFFSET,
  HEADER_SNAPSHOT_TOTAL,
  Metrics,
  PeerClient,
  PeerServer,
} from "../../../lib/transport/mod.ts";
import type { Message } from "../../../lib/raft/types.ts";
import {
  type App,
  body,
  CLUSTER,
  heartbeat,
  makeApp,
  peerHeaders,
  SECRET,
  signed,
  snapshotRequest,
  until,
} from "./helpers.ts";

/** Split `data` into chunks of `size` and make a signed request for each. */
async function chunks(
  data: Uint8Array,
  size: number,
  id: string,
  options: { from?: number; timestamp?: number; total?: number } = {},
): Promise<RequestInit[]> {
  const out: RequestInit[] = [];
  for (let offset = 0; offset < data.length; offset += size) {
    out.push(
      await signed("/raft/snapshot", data.subarray(offset, offset + size), {
        timestamp: options.timestamp,
        headers: peerHeaders({
          "X-Pgraft-From": String(options.from ?? 1),
          [HEADER_SNAPSHOT_ID]: id,
          [HEADER_SNAPSHOT_OFFSET]: String(offset),
          [HEADER_SNAPSHOT_TOTAL]: String(options.total ?? data.length),
        }),
      }),
    );
  }
  return out;
}

async function send(t: App, init: RequestInit): Promise<{ status: number; code?: string }> {
  const res = await t.app.request("/raft/snapshot", init);
  const text = await res.text();
  return { status: res.status, code: text ? JSON.parse(text).code : undefined };
}

function snapshotData(m: Message | undefined): Uint8Array {
  assert.ok(m?.type === "snapshot_request");
  return m.snapshot.data;
}

const dropped = (t: App, reason: string) =>
  t.metrics.value("transport_snapshot_transfers_dropped_total", { reason }) ?? 0;

Deno.test("a snapshot in several chunks is delivered once, whole, after the last chunk", async () => {
  const t = makeApp();
  const message = snapshotRequest(2500);
  const encoded = body([message]);
  const parts = await chunks(encoded, 1000, "snap-1");
  assert.equal(parts.length, 3);
  assert.equal((await send(t, parts[0]!)).status, 202);
  assert.equal((await send(t, parts[1]!)).status, 202);
  assert.equal(t.received.length, 0, "nothing before the last chunk");
  assert.equal((await send(t, parts[2]!)).status, 204);
  assert.equal(t.received.length, 1);
  assert.deepEqual(t.received[0]!.messages, [message]);
  assert.equal(t.received[0]!.clusterId, CLUSTER);
  assert.equal(t.metrics.value("transport_snapshot_chunks_received_total"), 3);
  assert.equal(
    t.metrics.value("transport_messages_received_total", { type: "snapshot_request" }),
    1,
  );
  // the finished transfer is gone: its chunks again are out of order (or replays)
  assert.equal((await send(t, (await chunks(encoded, 1000, "snap-1"))[1]!)).status, 409);
});

Deno.test("an interrupted transfer is dropped when a newer one starts; its late chunks get 409", async () => {
  const t = makeApp();
  const a = await chunks(body([snapshotRequest(3000, 1)]), 1000, "a");
  const b = await chunks(body([snapshotRequest(2000, 2)]), 1000, "b");
  assert.equal((await send(t, a[0]!)).status, 202);
  assert.equal((await send(t, a[1]!)).status, 202);
  assert.equal((await send(t, b[0]!)).status, 202, "a newer transfer replaces the old one");
  assert.equal(dropped(t, "superseded"), 1);
  assert.deepEqual(await send(t, a[2]!), { status: 409, code: "snapshot_out_of_order" });
  for (const part of b.slice(1)) await send(t, part);
  assert.equal(t.received.length, 1);
  assert.deepEqual(snapshotData(t.messages()[0]), snapshotData(snapshotRequest(2000, 2)));
  assert.equal(t.rejected("snapshot", "snapshot_out_of_order"), 1);
});

Deno.test("an idle transfer is dropped after the timeout", async () => {
  let now = Date.now();
  const t = makeApp({ now: () => now, snapshotTransferTimeoutMs: 5_000 });
  const encoded = body([snapshotRequest(2000)]);
  const first = await chunks(encoded, 1000, "slow", { timestamp: now });
  assert.equal((await send(t, first[0]!)).status, 202);
  now += 6_000;
  // any request sweeps idle transfers
  const hb = await t.app.request(
    "/raft/messages",
    await signed("/raft/messages", body([heartbeat(1)]), { timestamp: now }),
  );
  assert.equal(hb.status, 204);
  assert.equal(dropped(t, "timeout"), 1);
  const late = await chunks(encoded, 1000, "slow", { timestamp: now });
  assert.deepEqual(await send(t, late[1]!), { status: 409, code: "snapshot_out_of_order" });
  assert.equal(t.messages().filter((m) => m.type === "snapshot_request").length, 0);
});

Deno.test("chunks out of order, over the limit, or not fitting are refused", async () => {
  const t = makeApp({ maxSnapshotBytes: 5000 });
  const encoded = body([snapshotRequest(3000)]);
  const parts = await chunks(encoded, 1000, "x");
  // starting anywhere but 0
  assert.deepEqual(await send(t, parts[1]!), { status: 409, code: "snapshot_out_of_order" });
  // skipping a chunk drops the transfer
  assert.equal((await send(t, parts[0]!)).status, 202);
  assert.deepEqual(await send(t, parts[2]!), { status: 409, code: "snapshot_out_of_order" });
  assert.equal(dropped(t, "rejected"), 1);
  // a total over the limit
  const huge = await chunks(new Uint8Array(100), 100, "huge", { total: 5001 });
  assert.deepEqual(await send(t, huge[0]!), { status: 413, code: "too_large" });
  // a chunk beyond its declared total, an empty chunk, bad headers
  const beyond = await chunks(new Uint8Array(100), 100, "beyond", { total: 50 });
  assert.deepEqual(await send(t, beyond[0]!), { status: 400, code: "bad_request" });
  const empty = await signed("/raft/snapshot", new Uint8Array(0), {
    headers: peerHeaders({
      [HEADER_SNAPSHOT_ID]: "e",
      [HEADER_SNAPSHOT_OFFSET]: "0",
      [HEADER_SNAPSHOT_TOTAL]: "10",
    }),
  });
  assert.equal((await send(t, empty)).status, 400);
  for (
    const headers of <Record<string, string>[]> [
      { [HEADER_SNAPSHOT_OFFSET]: "0", [HEADER_SNAPSHOT_TOTAL]: "10" },
      {
        [HEADER_SNAPSHOT_ID]: "bad id!",
        [HEADER_SNAPSHOT_OFFSET]: "0",
        [HEADER_SNAPSHOT_TOTAL]: "10",
      },
      { [HEADER_SNAPSHOT_ID]: "i", [HEADER_SNAPSHOT_OFFSET]: "-1", [HEADER_SNAPSHOT_TOTAL]: "10" },
      { [HEADER_SNAPSHOT_ID]: "i", [HEADER_SNAPSHOT_OFFSET]: "0", [HEADER_SNAPSHOT_TOTAL]: "0" },
    ]
  ) {
    const init = await signed("/raft/snapshot", new Uint8Array(5), {
      headers: peerHeaders(headers),
    });
    assert.equal((await send(t, init)).status, 400, JSON.stringify(headers));
  }
  // a complete transfer that is not one snapshot_request
  const notSnapshot = await chunks(body([heartbeat(1)]), 1000, "hb");
  assert.deepEqual(await send(t, notSnapshot[0]!), { status: 400, code: "bad_request" });
  assert.equal(t.received.length, 0);
});

Deno.test("incomplete transfers share one memory budget: the idlest is dropped to make room", async () => {
  const t = makeApp({ maxSnapshotBytes: 5000 });
  const from1 = await chunks(body([snapshotRequest(3000, 1)]), 1000, "one", { from: 1 });
  const from3 = await chunks(
    encodeMessages({
      clusterId: CLUSTER,
      from: 3,
      sender: null,
      messages: [{ ...snapshotRequest(3000, 3), from: 3 } as Message],
    }) as Uint8Array,
    1000,
    "three",
    { from: 3 },
  );
  assert.equal((await send(t, from1[0]!)).status, 202);
  assert.equal((await send(t, from3[0]!)).status, 202, "node 3's transfer evicts node 1's");
  assert.equal(dropped(t, "evicted"), 1);
  assert.equal((await send(t, from1[1]!)).status, 409);
  for (const part of from3.slice(1)) await send(t, part);
  assert.deepEqual(t.received.map((r) => r.sender.nodeId), [3]);
});

Deno.test("a client sends a large snapshot in 1 MiB chunks over a signed connection", async () => {
  const t = makeApp();
  const server = new PeerServer(t.app, { hostname: "127.0.0.1", port: 0 });
  await server.start();
  const results: [number, boolean][] = [];
  const metrics = new Metrics();
  const client = new PeerClient({
    nodeId: 1,
    peerId: 2,
    baseUrl: `http://127.0.0.1:${server.port}`,
    clusterId: () => CLUSTER,
    authSecret: SECRET,
    metrics,
    onUnreachable: () => assert.fail("unreachable"),
    onSnapshotResult: (peer, ok) => results.push([peer, ok]),
  });
  try {
    const message = snapshotRequest(3.5 * 1024 * 1024);
    client.send([heartbeat(1), message, heartbeat(2)]);
    await until(() => results.length === 1, "the snapshot result");
    assert.deepEqual(results, [[2, true]]);
    const snapshots = t.messages().filter((m) => m.type === "snapshot_request");
    assert.equal(snapshots.length, 1);
    assert.deepEqual(snapshotData(snapshots[0]), snapshotData(message));
    assert.equal(metrics.value("transport_snapshot_chunks_sent_total", { peer: "2" }), 4);
    assert.equal(t.metrics.value("transport_snapshot_chunks_received_total"), 4);
    await until(() => t.messages().length === 3, "the heartbeats too");
  } finally {
    await client.close();
    await server.stop();
  }
});

Deno.test("a transfer interrupted by a failed chunk reports failure; the next one succeeds", async () => {
  const t = makeApp();
  let snapshotRequests = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req, info) => {
      if (new URL(req.url).pathname === "/raft/snapshot" && ++snapshotRequests === 2) {
        await req.body?.cancel();
        return new Response("injected failure", { status: 503 });
      }
      return await t.app.fetch(req, info);
    },
  );
  const results: [number, boolean][] = [];
  const unreachable: number[] = [];
  const client = new PeerClient({
    nodeId: 1,
    peerId: 2,
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    clusterId: () => CLUSTER,
    authSecret: SECRET,
    metrics: new Metrics(),
    snapshotChunkBytes: 1000,
    onUnreachable: (peer) => unreachable.push(peer),
    onSnapshotResult: (peer, ok) => results.push([peer, ok]),
  });
  try {
    client.send([snapshotRequest(3500, 1)]);
    await until(() => results.length === 1, "the failed result");
    assert.deepEqual(results, [[2, false]]);
    assert.deepEqual(unreachable, [2]);
    assert.equal(snapshotRequests, 2, "no chunk after the failed one");
    assert.equal(t.received.length, 0);

    client.send([snapshotRequest(3500, 2)]);
    await until(() => results.length === 2, "the second result");
    assert.deepEqual(results[1], [2, true]);
    assert.equal(t.received.length, 1);
    assert.deepEqual(
      snapshotData(t.messages()[0]),
      snapshotData(snapshotRequest(3500, 2)),
    );
    assert.equal(dropped(t, "superseded"), 1, "the first transfer's chunk was dropped");
  } finally {
    await client.close();
    await server.shutdown();
  }
});

Deno.test("the reassembled snapshot is a fixed-length buffer, not a copy per chunk", async () => {
  const t = makeApp();
  const message = snapshotRequest(5000);
  for (const part of await chunks(body([message]), 1500, "fixed")) await send(t, part);
  const data = snapshotData(t.messages()[0]);
  assert.deepEqual(data, snapshotData(message));
  assert.equal((data.buffer as ArrayBuffer).resizable, false);
});
