import assert from "node:assert/strict";
import type { Hono } from "hono";
import {
  clientToken,
  createPeerApp,
  encodeMessages,
  type MessageSender,
  Metrics,
  type PeerAppOptions,
  PeerClient,
  type PeerClientOptions,
  PeerServer,
  registerRpc,
  RpcError,
} from "../../../lib/transport/mod.ts";
import type { Message } from "../../../lib/raft/types.ts";

const CLUSTER = "c0ffee00-0000-4000-8000-000000000001";

function heartbeat(commit: number, from = 1, to = 2): Message {
  return { type: "heartbeat_request", term: 3, from, to, commit, readContext: "" };
}

function snapshotRequest(size: number): Message {
  return {
    type: "snapshot_request",
    term: 3,
    from: 1,
    to: 2,
    snapshot: {
      meta: { index: 50, term: 3, membership: { voters: [1, 2], learners: [] } },
      data: new Uint8Array(size).fill(7),
    },
  };
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

interface Received {
  clusterId: string | null;
  messages: Message[];
  sender: MessageSender;
}

interface Peer {
  app: Hono;
  server: PeerServer;
  options: PeerAppOptions;
  received: Received[];
  messages: () => Message[];
  metrics: Metrics;
  url: string;
  healthy: { ok: boolean };
}

/** Node 2's server on 127.0.0.1, port 0, with an echo RPC and a failing one. */
async function withPeer(
  overrides: Partial<PeerAppOptions>,
  fn: (peer: Peer) => Promise<void>,
): Promise<void> {
  const received: Received[] = [];
  const metrics = new Metrics();
  const healthy = { ok: true };
  const options: PeerAppOptions = {
    nodeId: 2,
    clusterId: () => CLUSTER,
    authSecret: null,
    metrics,
    onMessages: (clusterId, messages, sender) => {
      received.push({ clusterId, messages, sender });
    },
    status: () => ({ node: 2, role: "follower" }),
    health: () => ({ ...healthy, detail: "x" }),
    ...overrides,
  };
  const app = createPeerApp(options);
  registerRpc(app, options, "echo", (body) => Promise.resolve({ echoed: body }));
  registerRpc(app, options, "fail", (body) => {
    const { status, code, message } = body as { status?: number; code?: string; message: string };
    const error = Object.assign(
      new Error(message),
      status === undefined ? {} : { status },
      code === undefined ? {} : { code },
    );
    return Promise.reject(error);
  });
  registerRpc(app, options, "slow", () => new Promise((r) => setTimeout(() => r("late"), 300)));
  const server = new PeerServer(app, { hostname: "127.0.0.1", port: 0 });
  await server.start();
  assert.ok(server.port > 0);
  try {
    await fn({
      app,
      server,
      options,
      received,
      messages: () => received.flatMap((r) => r.messages),
      metrics,
      url: `http://127.0.0.1:${server.port}`,
      healthy,
    });
  } finally {
    await server.stop();
  }
}

interface Client {
  client: PeerClient;
  unreachable: number[];
  snapshots: [number, boolean][];
  metrics: Metrics;
}

async function withClient(
  url: string,
  overrides: Partial<PeerClientOptions>,
  fn: (c: Client) => Promise<void>,
): Promise<void> {
  const unreachable: number[] = [];
  const snapshots: [number, boolean][] = [];
  const metrics = new Metrics();
  const client = new PeerClient({
    nodeId: 1,
    peerId: 2,
    baseUrl: url,
    clusterId: () => CLUSTER,
    authSecret: null,
    metrics,
    onUnreachable: (peer) => unreachable.push(peer),
    onSnapshotResult: (peer, ok) => snapshots.push([peer, ok]),
    ...overrides,
  });
  try {
    await fn({ client, unreachable, snapshots, metrics });
  } finally {
    await client.close();
  }
}

/** Headers a well-behaved node 1 sends. */
function peerHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return { "X-Pgraft-From": "1", "X-Pgraft-Cluster": CLUSTER, ...extra };
}

function body(messages: Message[], clusterId: string | null = CLUSTER): Uint8Array<ArrayBuffer> {
  return encodeMessages({ clusterId, from: 1, sender: null, messages }) as Uint8Array<ArrayBuffer>;
}

async function post(
  url: string,
  init: RequestInit,
): Promise<{ status: number; json: Record<string, unknown> | null }> {
  const res = await fetch(url, { method: "POST", ...init });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

Deno.test("messages arrive in order, batched while a request is in flight", async () => {
  await withPeer({}, async (peer) => {
    await withClient(
      peer.url,
      { selfAddress: { address: "127.0.0.1", port: 7001 } },
      async ({ client, unreachable }) => {
        for (let i = 1; i <= 500; i++) client.send([heartbeat(i)]);
        await until(() => peer.messages().length === 500, "500 messages");
        assert.deepEqual(
          peer.messages().map((m) => (m as { commit: number }).commit),
          Array.from({ length: 500 }, (_, i) => i + 1),
        );
        assert.ok(
          peer.received.length < 500,
          `expected batching, got ${peer.received.length} requests`,
        );
        assert.deepEqual(peer.received[0]!.sender, {
          nodeId: 1,
          address: "127.0.0.1",
          port: 7001,
          view: null,
          answers: true,
        });
        assert.equal(peer.received[0]!.clusterId, CLUSTER);
        assert.deepEqual(unreachable, []);
        assert.equal(
          peer.metrics.value("transport_messages_received_total", { type: "heartbeat_request" }),
          500,
        );
      },
    );
  });
});

Deno.test("a node without a secret accepts loopback peers and refuses others with 403", async () => {
  await withPeer({}, async (peer) => {
    const init = { method: "POST", headers: peerHeaders(), body: body([heartbeat(1)]) };
    const remote = (hostname: string) => ({
      remoteAddr: { transport: "tcp", hostname, port: 40000 },
    });
    const outside = await peer.app.request("/raft/messages", init, remote("10.1.2.3"));
    assert.equal(outside.status, 403);
    assert.match((await outside.json()).error, /only loopback peers are accepted, not 10\.1\.2\.3/);
    assert.equal(
      (await peer.app.request("/raft/messages", init)).status,
      403,
      "unknown remote address",
    );
    assert.equal(peer.received.length, 0);
    const v6 = await peer.app.request(
      "/raft/messages",
      { ...init, body: body([heartbeat(1)]) },
      remote("::1"),
    );
    assert.equal(v6.status, 204);
    const mapped = await peer.app.request(
      "/raft/messages",
      { ...init, body: body([heartbeat(2)]) },
      remote("::ffff:127.0.0.9"),
    );
    assert.equal(mapped.status, 204);
    assert.equal(peer.received.length, 2);
    assert.equal(
      peer.metrics.value("transport_requests_rejected_total", {
        endpoint: "raft",
        reason: "forbidden",
      }),
      2,
    );
  });
});

Deno.test("with a secret, a missing or wrong token gets 401 and delivers nothing", async () => {
  await withPeer({ authSecret: "s3cret" }, async (peer) => {
    const missing = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders(),
      body: body([heartbeat(1)]),
    });
    assert.equal(missing.status, 401);
    assert.equal(missing.json?.code, "unauthorized");
    const wrong = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders({ Authorization: `Bearer ${clientToken("other")}` }),
      body: body([heartbeat(1)]),
    });
    assert.equal(wrong.status, 401);
    const short = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders({ Authorization: "Bearer abc" }),
      body: body([heartbeat(1)]),
    });
    assert.equal(short.status, 401);
    assert.equal(
      (await post(`${peer.url}/rpc/echo`, { headers: peerHeaders(), body: "{}" })).status,
      401,
    );
    const status = await fetch(`${peer.url}/status`);
    await status.body?.cancel();
    assert.equal(status.status, 401);
    assert.equal(peer.received.length, 0);

    await withClient(peer.url, { authSecret: "wrong" }, async ({ client, unreachable }) => {
      client.send([heartbeat(1)]);
      await until(() => unreachable.length > 0, "onUnreachable");
      assert.deepEqual(unreachable, [2]);
    });
    assert.equal(peer.received.length, 0);

    await withClient(peer.url, { authSecret: "s3cret" }, async ({ client, unreachable }) => {
      client.send([heartbeat(9)]);
      await until(() => peer.received.length === 1, "delivery with the right token");
      assert.deepEqual(unreachable, []);
      assert.deepEqual(await client.rpc("echo", { a: 1 }, 2000), { echoed: { a: 1 } });
    });
    assert.equal(
      peer.metrics.value("transport_requests_rejected_total", {
        endpoint: "raft",
        reason: "unauthorized",
      }),
      4,
    );
  });
});

Deno.test("a different cluster id gets 409; a node without a cluster accepts any", async () => {
  await withPeer({}, async (peer) => {
    const byHeader = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders({ "X-Pgraft-Cluster": "other-cluster" }),
      body: body([heartbeat(1)], "other-cluster"),
    });
    assert.equal(byHeader.status, 409);
    assert.equal(byHeader.json?.code, "cluster_mismatch");
    const byBody = await post(`${peer.url}/raft/messages`, {
      headers: { "X-Pgraft-From": "1" },
      body: body([heartbeat(1)], "other-cluster"),
    });
    assert.equal(byBody.status, 409);
    assert.equal(
      (await post(`${peer.url}/rpc/echo`, {
        headers: peerHeaders({ "X-Pgraft-Cluster": "x" }),
        body: "1",
      })).status,
      409,
    );
    assert.equal(peer.received.length, 0);
  });
  await withPeer({ clusterId: () => null }, async (peer) => {
    const res = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders({ "X-Pgraft-Cluster": "any-cluster" }),
      body: body([heartbeat(1)], "any-cluster"),
    });
    assert.equal(res.status, 204);
    assert.equal(peer.received[0]?.clusterId, "any-cluster");
  });
});

Deno.test("a body over the limit gets 413, declared or streamed", async () => {
  await withPeer({ maxBodyBytes: 1000 }, async (peer) => {
    const big = body([snapshotRequest(2000)]);
    const declared = await post(`${peer.url}/raft/messages`, { headers: peerHeaders(), body: big });
    assert.equal(declared.status, 413);
    assert.equal(declared.json?.code, "too_large");
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 4; i++) controller.enqueue(new Uint8Array(400));
        controller.close();
      },
    });
    const streamed = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders(),
      body: stream,
    });
    assert.equal(streamed.status, 413);
    assert.equal(
      (await post(`${peer.url}/rpc/echo`, { headers: peerHeaders(), body: "x".repeat(1001) }))
        .status,
      413,
    );
    assert.equal(peer.received.length, 0);
    assert.equal(
      peer.metrics.value("transport_requests_rejected_total", {
        endpoint: "raft",
        reason: "too_large",
      }),
      2,
    );
  });
});

Deno.test("a malformed body gets 400 with the codec's message", async () => {
  await withPeer({}, async (peer) => {
    const wrongTo = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders(),
      body: body([heartbeat(1, 1, 3)]),
    });
    assert.equal(wrongTo.status, 400);
    assert.equal(wrongTo.json?.error, "messages[0].to: is 3 but this is node 2");
    const garbage = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders(),
      body: "{not json",
    });
    assert.equal(garbage.status, 400);
    assert.match(String(garbage.json?.error), /^body: not valid JSON/);
    const noFrom = await post(`${peer.url}/raft/messages`, {
      headers: { "X-Pgraft-Cluster": CLUSTER },
      body: body([]),
    });
    assert.equal(noFrom.status, 400);
    assert.match(String(noFrom.json?.error), /X-Pgraft-From/);
    const spoofed = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders({ "X-Pgraft-From": "5" }),
      body: body([]),
    });
    assert.equal(spoofed.status, 400);
    assert.equal(spoofed.json?.error, "from: 1 differs from X-Pgraft-From 5");
    const badSender = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders({ "X-Pgraft-Sender": "nohost" }),
      body: body([]),
    });
    assert.equal(badSender.status, 400);
    const badRpc = await post(`${peer.url}/rpc/echo`, { headers: peerHeaders(), body: "{" });
    assert.equal(badRpc.status, 400);
    assert.equal(peer.received.length, 0);
  });
});

Deno.test("the sender header is used when the body names no sender", async () => {
  await withPeer({}, async (peer) => {
    const res = await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders({ "X-Pgraft-Sender": "[::1]:7005" }),
      body: body([heartbeat(1)]),
    });
    assert.equal(res.status, 204);
    assert.deepEqual(peer.received[0]?.sender, {
      nodeId: 1,
      address: "::1",
      port: 7005,
      view: null,
      answers: true,
    });
  });
});

Deno.test("GET /health answers 200 or 503, /status JSON, /metrics Prometheus text", async () => {
  await withPeer({}, async (peer) => {
    const ok = await fetch(`${peer.url}/health`);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { ok: true, detail: "x" });
    peer.healthy.ok = false;
    const bad = await fetch(`${peer.url}/health`);
    assert.equal(bad.status, 503);
    assert.deepEqual(await bad.json(), { ok: false, detail: "x" });
    const status = await fetch(`${peer.url}/status`);
    assert.equal(status.status, 200);
    assert.deepEqual(await status.json(), { node: 2, role: "follower" });

    await post(`${peer.url}/raft/messages`, {
      headers: peerHeaders(),
      body: body([heartbeat(1), heartbeat(2)]),
    });
    const metrics = await fetch(`${peer.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.equal(metrics.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await metrics.text();
    assert.match(text, /^# HELP pgraft_transport_messages_received_total .+$/m);
    assert.match(text, /^# TYPE pgraft_transport_messages_received_total counter$/m);
    assert.match(text, /^pgraft_transport_messages_received_total\{type="heartbeat_request"\} 2$/m);
    assert.match(text, /^# TYPE pgraft_transport_request_duration_seconds histogram$/m);
    for (const line of text.trimEnd().split("\n")) {
      assert.match(line, /^(# (HELP|TYPE) pgraft_\w+ .+|pgraft_\w+(\{[^}]*\})? \S+)$/, line);
    }
  });
});

Deno.test("rpc returns the handler's JSON and propagates errors with status and code", async () => {
  await withPeer({}, async (peer) => {
    await withClient(peer.url, {}, async ({ client }) => {
      assert.deepEqual(await client.rpc("echo", { kind: "add_node", args: [1, "x"] }, 2000), {
        echoed: { kind: "add_node", args: [1, "x"] },
      });
      const cases: [Record<string, unknown>, number, string | undefined][] = [
        [{ message: "not the leader", code: "not_leader" }, 400, "not_leader"],
        [{ message: "busy", status: 503, code: "busy" }, 503, "busy"],
        [{ message: "boom" }, 500, undefined],
      ];
      for (const [request, status, code] of cases) {
        await assert.rejects(client.rpc("fail", request, 2000), (error: unknown) => {
          assert.ok(error instanceof RpcError);
          assert.equal(error.status, status);
          assert.equal(error.code, code);
          assert.equal(error.message, request.message);
          return true;
        });
      }
      await assert.rejects(
        client.rpc("nope", {}, 2000),
        (e: unknown) => e instanceof RpcError && e.status === 404,
      );
      await assert.rejects(client.rpc("slow", {}, 50), /rpc slow to node 2 timed out after 50 ms/);
    });
  });
});

Deno.test("an unreachable peer calls onUnreachable, reports a failed snapshot and leaks nothing", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await withClient(
    `http://127.0.0.1:${port}`,
    {},
    async ({ client, unreachable, snapshots, metrics }) => {
      client.send([heartbeat(1), heartbeat(2)]);
      client.send([snapshotRequest(10)]);
      await until(() => unreachable.length >= 2 && snapshots.length === 1, "failure callbacks");
      assert.ok(unreachable.every((p) => p === 2));
      assert.deepEqual(snapshots, [[2, false]]);
      assert.equal(
        metrics.value("transport_request_errors_total", { peer: "2", reason: "network" }),
        2,
      );
      assert.equal(
        metrics.value("transport_messages_dropped_total", { peer: "2", reason: "request_failed" }),
        3,
      );
      await assert.rejects(
        client.rpc("echo", {}, 1000),
        /rpc echo to node 2 at http:\/\/127\.0\.0\.1:\d+ failed/,
      );
      client.send([heartbeat(3)]); // queued behind the backoff timer: close must clear it
    },
  );
});

Deno.test("a snapshot delivered reports success, without holding up other messages", async () => {
  await withPeer({}, async (peer) => {
    await withClient(peer.url, {}, async ({ client, snapshots }) => {
      client.send([heartbeat(1), snapshotRequest(3 * 1024 * 1024), heartbeat(2)]);
      await until(() => snapshots.length === 1 && peer.messages().length === 3, "snapshot result");
      assert.deepEqual(snapshots, [[2, true]]);
      const snapshot = peer.messages().find((m) => m.type === "snapshot_request");
      assert.ok(snapshot?.type === "snapshot_request");
      assert.equal(snapshot.snapshot.data.length, 3 * 1024 * 1024);
      const heartbeats = peer.messages().filter((m) => m.type === "heartbeat_request");
      assert.deepEqual(heartbeats.map((m) => (m as { commit: number }).commit), [1, 2]);
    });
  });
});

Deno.test("large appends are split across requests so no body nears the server's limit", async () => {
  await withPeer({}, async (peer) => {
    await withClient(peer.url, {}, async ({ client, unreachable }) => {
      const appends: Message[] = [];
      for (let i = 0; i < 4; i++) {
        appends.push({
          type: "append_request",
          term: 3,
          from: 1,
          to: 2,
          prevLogIndex: i,
          prevLogTerm: i === 0 ? 0 : 3,
          commit: 0,
          entries: [{
            index: i + 1,
            term: 3,
            type: "normal",
            data: new Uint8Array(3 * 1024 * 1024).fill(i),
          }],
        });
      }
      client.send([heartbeat(1)]); // in flight: the appends queue behind it
      client.send(appends);
      await until(() => peer.messages().length === 5, "all appends");
      assert.deepEqual(unreachable, []);
      const perRequest = peer.received.map((r) =>
        r.messages.filter((m) => m.type === "append_request").length
      );
      assert.ok(
        perRequest.every((n) => n <= 1),
        `at most one 3 MiB append per request, got ${perRequest}`,
      );
      const indexes = peer.messages().flatMap((m) =>
        m.type === "append_request" ? [m.entries[0]!.index] : []
      );
      assert.deepEqual(indexes, [1, 2, 3, 4]);
    });
  });
});

/** A server that holds every request until released; counts what arrives. */
async function withStalledServer(
  fn: (url: string, release: () => void, arrived: Message[][]) => Promise<void>,
): Promise<void> {
  const arrived: Message[][] = [];
  let releaseAll!: () => void;
  let gate = new Promise<void>((r) => (releaseAll = r));
  const { decodeMessages } = await import("../../../lib/transport/mod.ts");
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const bytes = new Uint8Array(await req.arrayBuffer());
    await gate;
    arrived.push(decodeMessages(bytes, 2).messages);
    return new Response(null, { status: 204 });
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, () => {
      releaseAll();
      gate = Promise.resolve();
    }, arrived);
  } finally {
    releaseAll();
    await server.shutdown();
  }
}

Deno.test("a full queue drops the oldest messages and calls onUnreachable", async () => {
  await withStalledServer(async (url, release, arrived) => {
    await withClient(url, { maxQueuedMessages: 10 }, async ({ client, unreachable, metrics }) => {
      client.send([heartbeat(0)]); // goes in flight and stalls
      for (let i = 1; i <= 25; i++) client.send([heartbeat(i)]);
      assert.equal(client.queuedMessages, 10);
      await until(() => unreachable.length > 0, "onUnreachable for the overflow");
      assert.equal(
        metrics.value("transport_messages_dropped_total", { peer: "2", reason: "queue_full" }),
        15,
      );
      release();
      await until(() => arrived.flat().length === 11, "the kept messages");
      assert.deepEqual(arrived.flat().map((m) => (m as { commit: number }).commit), [
        0,
        16,
        17,
        18,
        19,
        20,
        21,
        22,
        23,
        24,
        25,
      ]);
    });
  });
});

Deno.test("a request that times out drops its batch and calls onUnreachable", async () => {
  await withStalledServer(async (url) => {
    await withClient(url, { requestTimeoutMs: 100 }, async ({ client, unreachable, metrics }) => {
      client.send([heartbeat(1)]);
      await until(() => unreachable.length === 1, "onUnreachable after the timeout");
      assert.equal(
        metrics.value("transport_request_errors_total", { peer: "2", reason: "timeout" }),
        1,
      );
    });
  });
});

Deno.test("close aborts requests in flight and later sends are dropped", async () => {
  await withStalledServer(async (url, _release, arrived) => {
    const metrics = new Metrics();
    const unreachable: number[] = [];
    const client = new PeerClient({
      nodeId: 1,
      peerId: 2,
      baseUrl: url,
      clusterId: () => null,
      authSecret: null,
      metrics,
      onUnreachable: (p) => unreachable.push(p),
      onSnapshotResult: () => assert.fail("no callbacks after close"),
    });
    client.send([heartbeat(1), snapshotRequest(100)]);
    await new Promise((r) => setTimeout(r, 20));
    const started = performance.now();
    await client.close();
    assert.ok(performance.now() - started < 1000);
    client.send([heartbeat(2)]);
    assert.equal(client.queuedMessages, 0);
    await assert.rejects(client.rpc("echo", {}, 100), /closed/);
    assert.deepEqual(unreachable, []);
    assert.deepEqual(arrived, []);
  });
});

Deno.test("a client refuses a bad peer id, URL or in-flight limit", () => {
  const base: PeerClientOptions = {
    nodeId: 1,
    peerId: 2,
    baseUrl: "http://127.0.0.1:1",
    clusterId: () => null,
    authSecret: null,
    metrics: new Metrics(),
    onUnreachable: () => {},
    onSnapshotResult: () => {},
  };
  assert.throws(() => new PeerClient({ ...base, peerId: 0 }), /peerId: expected a node id/);
  assert.throws(() => new PeerClient({ ...base, baseUrl: "not a url" }), /baseUrl: not a URL/);
  assert.throws(() => new PeerClient({ ...base, baseUrl: "ftp://x" }), /baseUrl: expected http/);
  assert.throws(
    () => new PeerClient({ ...base, maxInflightRequests: 5 }),
    /maxInflightRequests: expected 1\.\.4/,
  );
});

Deno.test("the bearer token is a fixed-length HMAC that depends on the secret", () => {
  assert.match(clientToken("a"), /^[0-9a-f]{64}$/);
  assert.equal(clientToken("a"), clientToken("a"));
  assert.notEqual(clientToken("a"), clientToken("b"));
});

Deno.test("a peer's replies come back in the response body and reach onReply, not a second request", async () => {
  const metrics = new Metrics();
  const replied: Message[][] = [];
  const received: Message[] = [];
  const app = createPeerApp({
    nodeId: 2,
    clusterId: () => null,
    authSecret: null,
    metrics,
    onMessages: (_clusterId, messages) => {
      received.push(...messages);
      return Promise.resolve([{
        type: "heartbeat_response",
        term: 1,
        from: 2,
        to: 1,
        readContext: "",
      }]);
    },
    status: () => null,
    health: () => ({ ok: true }),
  });
  const server = new PeerServer(app, { hostname: "127.0.0.1", port: 0 });
  await server.start();
  const client = new PeerClient({
    nodeId: 1,
    peerId: 2,
    baseUrl: `http://127.0.0.1:${server.port}`,
    clusterId: () => null,
    authSecret: null,
    metrics,
    onUnreachable: () => {},
    onSnapshotResult: () => {},
    onReply: (messages) => replied.push(messages),
  });
  try {
    client.send([{
      type: "heartbeat_request",
      term: 1,
      from: 1,
      to: 2,
      commit: 0,
      readContext: "",
    }]);
    await until(() => replied.length === 1, "the reply");
    assert.equal(received.length, 1);
    assert.deepEqual(replied[0]!.map((m) => [m.type, m.from, m.to]), [[
      "heartbeat_response",
      2,
      1,
    ]]);
  } finally {
    await client.close();
    await server.stop();
  }
});
