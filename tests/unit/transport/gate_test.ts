/**
 * The server's gate, through `app.request()` (no sockets): signatures,
 * timestamps, replays, and every kind of bad request. Each refusal has the
 * right 4xx, is counted by reason, and never reaches onMessages or an RPC.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import {
  canonicalRequest,
  clientToken,
  encodeMessages,
  encodeMessagesJson,
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  Metrics,
  Rejection,
  ReplayGuard,
  signRequest,
  verifyRequest,
} from "../../../lib/transport/mod.ts";
import { peerGate } from "../../../lib/transport/gate.ts";
import {
  append,
  body,
  CLUSTER,
  heartbeat,
  LOOPBACK,
  makeApp,
  peerHeaders,
  REMOTE,
  SECRET,
  signed,
} from "./helpers.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

async function json(res: Response): Promise<{ error: string; code: string }> {
  return await res.json();
}

Deno.test("the canonical request covers method, path, timestamp, sender, body hash and x-pgraft headers", async () => {
  const parts = {
    method: "post",
    path: "/raft/messages",
    timestamp: "1700000000000",
    from: "1",
    body: utf8("abc"),
    headers: [
      ["X-Pgraft-Cluster", "c"],
      ["Content-Type", "application/octet-stream"],
      ["X-Pgraft-Signature", "ignored"],
      ["X-Pgraft-Timestamp", "ignored"],
      ["X-Pgraft-From", "ignored"],
      ["x-pgraft-a", "1"],
    ] as [string, string][],
  };
  assert.equal(
    await canonicalRequest(parts),
    [
      "pgraft-request-v1",
      "POST",
      "/raft/messages",
      "1700000000000",
      "1",
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      "x-pgraft-a:1",
      "x-pgraft-cluster:c",
    ].join("\n"),
  );
  const signature = await signRequest(SECRET, parts);
  assert.match(signature, /^[0-9a-f]{64}$/);
  assert.equal(await verifyRequest(SECRET, parts, signature), true);
  assert.equal(await verifyRequest(SECRET, parts, signature.toUpperCase()), true);
  assert.equal(await verifyRequest("other", parts, signature), false);
  assert.equal(await verifyRequest(SECRET, { ...parts, body: utf8("abd") }, signature), false);
  assert.equal(await verifyRequest(SECRET, { ...parts, path: "/rpc/x" }, signature), false);
  assert.equal(await verifyRequest(SECRET, { ...parts, from: "2" }, signature), false);
  assert.equal(
    await verifyRequest(SECRET, { ...parts, timestamp: "1700000000001" }, signature),
    false,
  );
  assert.equal(
    await verifyRequest(SECRET, { ...parts, headers: [["X-Pgraft-Cluster", "d"]] }, signature),
    false,
  );
  assert.equal(await verifyRequest(SECRET, parts, "zz".repeat(32)), false);
  assert.equal(await verifyRequest(SECRET, parts, signature.slice(2)), false);
});

Deno.test("a signed request is accepted; a tampered, unsigned or wrongly signed one gets 401", async () => {
  const t = makeApp();
  const good = await signed("/raft/messages", body([heartbeat(1)]));
  assert.equal((await t.app.request("/raft/messages", good, REMOTE)).status, 204);
  assert.equal(t.received.length, 1);
  assert.equal(
    (await t.app.request("/rpc/echo", await signed("/rpc/echo", '{"a":1}'))).status,
    200,
  );
  assert.deepEqual(t.rpcCalls, [{ a: 1 }]);

  const cases: [string, string, RequestInit][] = [];
  const base = await signed("/raft/messages", body([heartbeat(2)]));
  const h = base.headers as Record<string, string>;
  cases.push(["no signature", "/raft/messages", {
    ...base,
    headers: { ...h, [HEADER_SIGNATURE]: undefined as unknown as string },
  }]);
  cases.push(["no timestamp", "/raft/messages", {
    ...base,
    headers: Object.fromEntries(Object.entries(h).filter(([k]) => k !== HEADER_TIMESTAMP)),
  }]);
  cases.push(["bearer token only", "/raft/messages", {
    method: "POST",
    headers: peerHeaders({ Authorization: `Bearer ${clientToken(SECRET)}` }),
    body: body([heartbeat(2)]),
  }]);
  cases.push(["tampered body", "/raft/messages", { ...base, body: body([heartbeat(3)]) }]);
  cases.push(["tampered sender header", "/raft/messages", {
    ...base,
    headers: { ...h, "X-Pgraft-Sender": "10.0.0.9:7001" },
  }]);
  cases.push(["signed for another path", "/rpc/echo", await signed("/rpc/other", "{}")]);
  cases.push([
    "wrong secret",
    "/raft/messages",
    await signed("/raft/messages", body([heartbeat(2)]), { secret: "other" }),
  ]);
  cases.push(["garbage signature", "/raft/messages", {
    ...base,
    headers: { ...h, [HEADER_SIGNATURE]: "not-hex" },
  }]);
  cases.push(["timestamp not a number", "/raft/messages", {
    ...base,
    headers: { ...h, [HEADER_TIMESTAMP]: "yesterday" },
  }]);
  for (const [what, path, init] of cases) {
    const headers = Object.fromEntries(
      Object.entries(init.headers as Record<string, string | undefined>).filter(([, v]) =>
        v !== undefined
      ),
    ) as Record<string, string>;
    const res = await t.app.request(path, { ...init, headers }, LOOPBACK);
    assert.equal(res.status, 401, what);
    assert.equal((await json(res)).code, "unauthorized", what);
  }
  assert.equal(t.received.length, 1, "nothing more delivered");
  assert.equal(t.rpcCalls.length, 1, "no more RPC calls");
  assert.equal(t.rejected("raft", "unauthorized"), cases.length - 1);
  assert.equal(t.rejected("rpc_echo", "unauthorized"), 1);
});

Deno.test("a timestamp outside ±30 s gets 401 stale; inside it is accepted", async () => {
  let now = 1_700_000_000_000;
  const t = makeApp({ now: () => now });
  const at = (timestamp: number) => signed("/raft/messages", body([heartbeat(1)]), { timestamp });
  const old = await t.app.request("/raft/messages", await at(now - 30_001));
  assert.equal(old.status, 401);
  const error = await json(old);
  assert.equal(error.code, "stale");
  assert.match(error.error, /is 30001 ms from this node's clock \(allowed: ±30000 ms\)/);
  assert.equal((await t.app.request("/raft/messages", await at(now + 30_001))).status, 401);
  assert.equal((await t.app.request("/raft/messages", await at(now - 29_000))).status, 204);
  assert.equal((await t.app.request("/raft/messages", await at(now + 29_000))).status, 204);
  // a request signed now, delivered 31 s later
  const late = await at(now);
  now += 31_000;
  assert.equal((await t.app.request("/raft/messages", late)).status, 401);
  assert.equal(t.rejected("raft", "stale"), 3);
  assert.equal(t.received.length, 2);

  const tight = makeApp({ maxClockSkewMs: 1000, now: () => now });
  const res = await tight.app.request(
    "/rpc/echo",
    await signed("/rpc/echo", "1", { timestamp: now - 1500 }),
  );
  assert.equal(res.status, 401);
  assert.equal(tight.rejected("rpc_echo", "stale"), 1);
  assert.deepEqual(tight.rpcCalls, []);
});

Deno.test("an exact replay gets 401 replay, even after the original was refused for its body", async () => {
  const t = makeApp();
  const init = await signed("/raft/messages", body([heartbeat(1)]));
  assert.equal((await t.app.request("/raft/messages", init)).status, 204);
  for (let i = 0; i < 3; i++) {
    const again = await t.app.request("/raft/messages", init);
    assert.equal(again.status, 401);
    assert.equal((await json(again)).code, "replay");
  }
  assert.equal(t.received.length, 1);

  const rpc = await signed("/rpc/echo", '{"op":"transfer"}');
  assert.equal((await t.app.request("/rpc/echo", rpc)).status, 200);
  assert.equal((await t.app.request("/rpc/echo", rpc)).status, 401);
  assert.equal(t.rpcCalls.length, 1, "the RPC ran once");

  const bad = await signed("/raft/messages", "{not json");
  assert.equal((await t.app.request("/raft/messages", bad)).status, 400);
  assert.equal((await t.app.request("/raft/messages", bad)).status, 401);

  // two identical requests signed in the same millisecond differ by their nonce
  const timestamp = Date.now();
  const a = await signed("/raft/messages", body([heartbeat(5)]), { timestamp });
  const b = await signed("/raft/messages", body([heartbeat(5)]), { timestamp });
  assert.equal((await t.app.request("/raft/messages", a)).status, 204);
  assert.equal((await t.app.request("/raft/messages", b)).status, 204);

  assert.equal(t.rejected("raft", "replay"), 4);
  assert.equal(t.rejected("rpc_echo", "replay"), 1);
  const metrics = await t.app.request("/metrics", {
    headers: { Authorization: `Bearer ${clientToken(SECRET)}` },
  });
  assert.match(
    await metrics.text(),
    /^pgraft_transport_requests_rejected_total\{endpoint="raft",reason="replay"\} 4$/m,
  );
});

Deno.test("the replay guard is bounded and never lets an evicted signature through", () => {
  const guard = new ReplayGuard(3, 30_000);
  const now = 1_000_000;
  for (let i = 0; i < 5; i++) assert.equal(guard.admit(`sig${i}`, 1, now + i, now + i), true);
  assert.equal(guard.size, 3);
  assert.equal(guard.admit("sig0", 1, now, now + 10), false, "evicted, refused by the floor");
  assert.equal(guard.admit("sig1", 1, now + 1, now + 10), false);
  assert.equal(guard.admit("sig4", 1, now + 4, now + 10), false, "still remembered");
  assert.equal(guard.admit("fresh", 1, now + 10, now + 10), true);
  assert.equal(guard.admit("other-node", 2, now, now + 10), true, "floors are per sender");
  // entries expire with the window
  const later = now + 40_000;
  assert.equal(guard.admit("new", 1, later, later), true);
  assert.equal(guard.size, 1);
  assert.throws(() => new ReplayGuard(0), /replay cache size/);
});

/** Bodies that must get 400, in the JSON text form unless binary. */
function badBodies(): [string, Uint8Array | string, RegExp][] {
  const hb = { type: "heartbeat_request", term: 3, from: 1, to: 2, commit: 1, readContext: "" };
  const env = (o: Record<string, unknown>, messages: unknown[] = [hb]) =>
    JSON.stringify({ v: 1, clusterId: CLUSTER, from: 1, sender: null, messages, ...o });
  const ap = (o: Record<string, unknown>) =>
    env({}, [{
      type: "append_request",
      term: 3,
      from: 1,
      to: 2,
      prevLogIndex: 0,
      prevLogTerm: 0,
      commit: 0,
      entries: [{ index: 1, term: 3, type: "normal", data: "AAE=" }],
      ...o,
    }]);
  const binary = body([heartbeat(1)]);
  const lying = binary.slice();
  new DataView(lying.buffer).setUint32(4, 1_000_000);
  const outside = encodeMessages({
    clusterId: CLUSTER,
    from: 1,
    sender: null,
    messages: [{
      type: "append_request",
      term: 3,
      from: 1,
      to: 2,
      prevLogIndex: 0,
      prevLogTerm: 0,
      commit: 0,
      entries: [{ index: 1, term: 3, type: "normal", data: new Uint8Array(4) }],
    }],
  }) as Uint8Array;
  return [
    // malformed
    ["empty", "", /^body: not valid JSON/],
    ["not JSON", "{not json", /^body: not valid JSON/],
    ["invalid UTF-8", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), /not valid UTF-8/],
    ["truncated binary", binary.subarray(0, 6), /truncated binary header/],
    ["header length beyond the body", lying, /header length 1000000 exceeds/],
    ["byte range beyond the payload", outside.subarray(0, outside.length - 2), /lie beyond/],
    [
      "invalid base64",
      ap({ entries: [{ index: 1, term: 3, type: "normal", data: "@@" }] }),
      /invalid base64/,
    ],
    // wrong types
    ["an array", "[]", /^body: expected an object/],
    ["version 2", env({ v: 2 }), /unsupported format version 2/],
    ["from as a string", env({ from: "1" }), /^from: expected a node id/],
    ["messages not an array", env({ messages: {} }), /^messages: expected an array/],
    [
      "unknown message type",
      env({}, [{ ...hb, type: "install" }]),
      /unknown message type "install"/,
    ],
    ["term as a string", env({}, [{ ...hb, term: "3" }]), /term: expected a non-negative integer/],
    [
      "boolean as a number",
      env({}, [{ type: "vote_request", term: 3, from: 1, to: 2, preVote: 1 }]),
      /preVote: expected a boolean/,
    ],
    [
      "entry data as a number",
      ap({ entries: [{ index: 1, term: 3, type: "normal", data: 5 }] }),
      /data: expected a base64 string/,
    ],
    [
      "clusterId as a number",
      env({ clusterId: 7 }),
      /^clusterId: expected a non-empty string or null/,
    ],
    ["sender without port", env({ sender: { address: "h" } }), /sender\.port/],
    // out of range
    ["from 0", env({ from: 0 }), /^from: expected a node id/],
    ["from beyond the node ids", env({ from: 2 ** 40 }), /^from: expected a node id/],
    ["negative term", env({}, [{ ...hb, term: -1 }]), /term: expected a non-negative integer/],
    [
      "fractional commit",
      env({}, [{ ...hb, commit: 1.5 }]),
      /commit: expected a non-negative integer/,
    ],
    [
      "unsafe integer",
      env({}, [{ ...hb, commit: 2 ** 60 }]),
      /commit: expected a non-negative integer/,
    ],
    ["port 70000", env({ sender: { address: "h", port: 70000 } }), /sender\.port: expected a port/],
    ["cluster id too long", env({ clusterId: "x".repeat(200) }), /longer than 128/],
    [
      "entry term above the message term",
      ap({ entries: [{ index: 1, term: 9, type: "normal", data: "" }] }),
      /above the message term/,
    ],
    [
      "non-contiguous entries",
      ap({ entries: [{ index: 2, term: 3, type: "normal", data: "" }] }),
      /contiguous/,
    ],
    ["addressed to node 3", env({}, [{ ...hb, to: 3 }]), /to: is 3 but this is node 2/],
    [
      "message from another node",
      env({}, [{ ...hb, from: 4 }]),
      /from: is 4 but the request comes from node 1/,
    ],
  ];
}

Deno.test("malformed bodies, wrong types and out-of-range numbers get 400 naming the field", async () => {
  for (const secret of [SECRET, null]) {
    const t = makeApp({ authSecret: secret });
    const cases = badBodies();
    for (const [what, data, message] of cases) {
      const init = secret === null
        ? { method: "POST", headers: peerHeaders(), body: data as BodyInit }
        : await signed("/raft/messages", data);
      const res = await t.app.request("/raft/messages", init, LOOPBACK);
      assert.equal(res.status, 400, `${what}: ${res.status}`);
      const error = await json(res);
      assert.equal(error.code, "bad_request", what);
      assert.match(error.error, message, what);
    }
    assert.equal(t.rejected("raft", "bad_request"), cases.length);
    // the JSON text form itself is fine
    const text = encodeMessagesJson({
      clusterId: CLUSTER,
      from: 1,
      sender: null,
      messages: [heartbeat(1)],
    });
    const ok = secret === null
      ? { method: "POST", headers: peerHeaders(), body: text }
      : await signed("/raft/messages", text);
    assert.equal((await t.app.request("/raft/messages", ok, LOOPBACK)).status, 204);
    assert.equal(t.received.length, 1, "only the valid body was delivered");

    const rpc = secret === null
      ? { method: "POST", headers: peerHeaders(), body: "{" }
      : await signed("/rpc/echo", "{");
    assert.equal((await t.app.request("/rpc/echo", rpc, LOOPBACK)).status, 400);
    assert.equal(t.rejected("rpc_echo", "bad_request"), 1);
    assert.deepEqual(t.rpcCalls, []);
  }
});

Deno.test("bad sender headers get 400", async () => {
  const t = makeApp();
  const cases: Record<string, string>[] = [
    { "X-Pgraft-From": "0" },
    { "X-Pgraft-From": "abc" },
    { "X-Pgraft-From": "99999999999" },
    { "X-Pgraft-Sender": "nohost" },
    { "X-Pgraft-Sender": "h:70000" },
  ];
  for (const extra of cases) {
    const init = await signed("/raft/messages", body([heartbeat(1)]), {
      headers: peerHeaders(extra),
    });
    const res = await t.app.request("/raft/messages", init);
    assert.equal(res.status, 400, JSON.stringify(extra));
  }
  assert.equal(t.rejected("raft", "bad_request"), cases.length);
  assert.equal(t.received.length, 0);
});

Deno.test("oversized bodies get 413, signed or not, and are never delivered", async () => {
  const t = makeApp({ maxBodyBytes: 1000 });
  const big = body([heartbeat(1), append(1, 1000)]);
  const signedBig = await t.app.request("/raft/messages", await signed("/raft/messages", big));
  assert.equal(signedBig.status, 413);
  assert.equal((await json(signedBig)).code, "too_large");
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < 5; i++) controller.enqueue(new Uint8Array(300));
      controller.close();
    },
  });
  const init = await signed("/raft/messages", new Uint8Array(0));
  const streamed = await t.app.request("/raft/messages", { ...init, body: stream });
  assert.equal(streamed.status, 413);
  const declared = await t.app.request("/rpc/echo", {
    ...(await signed("/rpc/echo", "1")),
    headers: {
      ...(await signed("/rpc/echo", "1")).headers as Record<string, string>,
      "Content-Length": "5000",
    },
  });
  assert.equal(declared.status, 413);
  assert.equal(t.rejected("raft", "too_large"), 2);
  assert.equal(t.rejected("rpc_echo", "too_large"), 1);
  assert.equal(t.received.length, 0);
  assert.deepEqual(t.rpcCalls, []);
});

Deno.test("a wrong cluster id, in the header or the body, gets 409", async () => {
  const t = makeApp();
  const byHeader = await t.app.request(
    "/raft/messages",
    await signed("/raft/messages", body([heartbeat(1)], "other"), {
      headers: peerHeaders({ "X-Pgraft-Cluster": "other" }),
    }),
  );
  assert.equal(byHeader.status, 409);
  assert.equal((await json(byHeader)).code, "cluster_mismatch");
  const byBody = await t.app.request(
    "/raft/messages",
    await signed("/raft/messages", body([heartbeat(1)], "other"), {
      headers: { "X-Pgraft-From": "1" },
    }),
  );
  assert.equal(byBody.status, 409);
  const rpc = await t.app.request(
    "/rpc/echo",
    await signed("/rpc/echo", "{}", { headers: peerHeaders({ "X-Pgraft-Cluster": "x" }) }),
  );
  assert.equal(rpc.status, 409);
  assert.equal(t.rejected("raft", "cluster_mismatch"), 2);
  assert.equal(t.rejected("rpc_echo", "cluster_mismatch"), 1);
  assert.equal(t.received.length, 0);
  assert.deepEqual(t.rpcCalls, []);
});

Deno.test("without a secret, signatures are not needed but only loopback peers are accepted", async () => {
  const t = makeApp({ authSecret: null });
  const init = () => ({ method: "POST", headers: peerHeaders(), body: body([heartbeat(1)]) });
  assert.equal((await t.app.request("/raft/messages", init(), REMOTE)).status, 403);
  assert.equal((await t.app.request("/raft/snapshot", init(), REMOTE)).status, 403);
  assert.equal((await t.app.request("/rpc/echo", init(), REMOTE)).status, 403);
  assert.equal((await t.app.request("/raft/messages", init(), LOOPBACK)).status, 204);
  assert.equal(t.rejected("raft", "forbidden"), 1);
  assert.equal(t.rejected("snapshot", "forbidden"), 1);
  assert.equal(t.rejected("rpc_echo", "forbidden"), 1);
  assert.equal(t.received.length, 1);
  assert.deepEqual(t.rpcCalls, []);
});

Deno.test("GET /status and /metrics still take the bearer token", async () => {
  const t = makeApp();
  assert.equal((await t.app.request("/status")).status, 401);
  const ok = await t.app.request("/status", {
    headers: { Authorization: `Bearer ${clientToken(SECRET)}` },
  });
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { node: 2 });
  assert.equal(t.rejected("status", "unauthorized"), 1);
});

Deno.test("signatures are HMAC-SHA256 of the canonical text, for small and large bodies alike", async () => {
  const key = await crypto.subtle.importKey(
    "raw",
    utf8(SECRET),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  for (const size of [0, 100, 8 * 1024, 8 * 1024 + 1, 200_000]) {
    const parts = {
      method: "POST",
      path: "/raft/messages",
      timestamp: "1",
      from: "1",
      body: new Uint8Array(size).fill(size & 0xff),
      headers: [] as [string, string][],
    };
    const text = await canonicalRequest(parts);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", parts.body));
    assert.ok(text.includes([...digest].map((b) => b.toString(16).padStart(2, "0")).join("")));
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8(text)));
    const expected = [...mac].map((b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(await signRequest(SECRET, parts), expected, `body of ${size} bytes`);
  }
});

Deno.test("GET /status and /metrics also take the secret itself as the bearer token", async () => {
  const t = makeApp();
  for (const path of ["/status", "/metrics"]) {
    const ok = await t.app.request(path, { headers: { Authorization: `Bearer ${SECRET}` } });
    assert.equal(ok.status, 200, path);
    await ok.body?.cancel();
  }
  const wrong = await t.app.request("/status", { headers: { Authorization: "Bearer s3cre" } });
  assert.equal(wrong.status, 401);
  assert.equal(t.rejected("status", "unauthorized"), 1);
});

Deno.test("the gate alone: sets what it checked, and its rejections are HTTPExceptions", async () => {
  let now = 1_700_000_000_000;
  const gate = peerGate({
    endpoint: "test",
    authSecret: SECRET,
    clusterId: () => CLUSTER,
    metrics: new Metrics(),
    replay: new ReplayGuard(10, 30_000),
    maxBodyBytes: 1000,
    maxClockSkewMs: 30_000,
    now: () => now,
  });
  const seen: unknown[] = [];
  const thrown: unknown[] = [];
  const app = new Hono();
  app.onError((error, c) => {
    thrown.push(error);
    return error instanceof HTTPException ? error.getResponse() : c.text("unexpected", 500);
  });
  app.post("/raft/messages", gate, (c) => {
    seen.push({ ...c.get("gate"), endpoint: c.get("endpoint") });
    return c.body(null, 204);
  });
  app.get("/status", gate, (c) => c.json({ ...c.get("gate"), body: c.get("gate").body.length }));

  const data = body([heartbeat(1)]);
  const init = await signed("/raft/messages", data, {
    timestamp: now,
    headers: peerHeaders({ "X-Pgraft-Sender": "10.0.0.1:7001" }),
  });
  assert.equal((await app.request("/raft/messages", init)).status, 204);
  assert.deepEqual(seen, [{
    from: 1,
    clusterId: CLUSTER,
    sender: { address: "10.0.0.1", port: 7001 },
    body: data,
    endpoint: "test",
  }]);

  now += 31_000;
  const stale = await app.request("/raft/messages", init);
  assert.equal(stale.status, 401);
  assert.equal((await json(stale)).code, "stale");
  const rejection = thrown[0];
  assert.ok(rejection instanceof Rejection && rejection instanceof HTTPException);
  assert.equal(rejection.status, 401);
  assert.equal(rejection.reason, "stale");

  const status = await app.request("/status", {
    headers: { Authorization: `Bearer ${clientToken(SECRET)}` },
  });
  assert.deepEqual(await status.json(), { from: 0, clusterId: null, sender: null, body: 0 });
  assert.equal(seen.length, 1, "nothing rejected reached the handler");
});
