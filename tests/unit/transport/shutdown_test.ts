/** PeerServer.stop() is graceful: requests in flight finish, new ones are refused. */
import assert from "node:assert/strict";
import { PeerServer, registerRpc } from "../../../lib/transport/mod.ts";
import { makeApp, peerHeaders, until } from "./helpers.ts";

Deno.test("stop() lets requests in flight finish and refuses new ones", async () => {
  const t = makeApp({ authSecret: null });
  let started = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  registerRpc(t.app, t.options, "slow", async () => {
    started++;
    await gate;
    return "finished";
  });
  const server = new PeerServer(t.app, { hostname: "127.0.0.1", port: 0 });
  await server.start();
  const url = `http://127.0.0.1:${server.port}`;
  const call = () =>
    fetch(`${url}/rpc/slow`, { method: "POST", headers: peerHeaders(), body: "{}" });

  const inflight = [call(), call()];
  await until(() => started === 2, "two slow requests in flight");
  assert.equal(server.inflight, 2);

  let stopped = false;
  const stopping = server.stop().then(() => (stopped = true));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(stopped, false, "stop waits for the requests in flight");

  // a new connection is refused while stopping
  await assert.rejects(
    fetch(`${url}/health`).then((r) => r.body?.cancel()),
    (error: unknown) => error instanceof TypeError,
  );

  release();
  for (const res of await Promise.all(inflight)) {
    assert.equal(res.status, 200);
    assert.equal(await res.json(), "finished");
  }
  await stopping;
  assert.equal(stopped, true);
  assert.equal(server.inflight, 0);
  await assert.rejects(fetch(`${url}/health`), TypeError);
  await server.stop(); // idempotent
});
