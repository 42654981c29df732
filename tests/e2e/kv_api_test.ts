/**
 * The key-value store over HTTP and SQL on a cluster with a shared secret:
 * writes acknowledged once applied on the leader, 307 from followers,
 * linearizable reads on any node, local reads, listing, limits, and
 * authentication of clients.
 */

import assert from "node:assert/strict";
import { type TestCluster, withCluster } from "../helpers/cluster.ts";

const SECRET = "kv-api-test-secret";
const CONFIG =
  `pgraft.auth_secret = '${SECRET}'\npgraft.heartbeat_interval = '50ms'\npgraft.election_timeout = '500ms'\n`;
const AUTH = { authorization: `Bearer ${SECRET}` };

function url(cluster: TestCluster, id: number, path: string): string {
  return `http://127.0.0.1:${cluster.node(id).agentPort}${path}`;
}

async function call(
  cluster: TestCluster,
  id: number,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; text: string; location: string | null }> {
  const res = await fetch(url(cluster, id, path), {
    redirect: "manual",
    ...init,
    headers: { ...AUTH, ...(init.headers ?? {}) },
  });
  return { status: res.status, text: await res.text(), location: res.headers.get("location") };
}

Deno.test({
  name:
    "KV over HTTP: leader writes, follower redirects, linearizable and local reads, list, limits, auth",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: CONFIG }, async (cluster) => {
      const leader = await cluster.waitForLeader();
      const follower = [1, 2, 3].find((id) => id !== leader)!;

      const put = await call(cluster, leader, "/v1/kv/app/color", { method: "PUT", body: "blue" });
      assert.equal(put.status, 200, put.text);
      const { revision, index } = JSON.parse(put.text) as { revision: number; index: number };
      assert.ok(revision >= 1 && index === revision);

      // A follower answers a write with a redirect to the leader's agent.
      const redirected = await call(cluster, follower, "/v1/kv/app/color", {
        method: "PUT",
        body: "x",
      });
      assert.equal(redirected.status, 307);
      assert.equal(redirected.location, url(cluster, leader, "/v1/kv/app/color"));

      // Linearizable by default, on the leader and on a follower (ReadIndex through the leader).
      assert.deepEqual(await call(cluster, leader, "/v1/kv/app/color"), {
        status: 200,
        text: "blue",
        location: null,
      });
      assert.equal((await call(cluster, follower, "/v1/kv/app/color")).text, "blue");
      const local = await call(cluster, follower, "/v1/kv/app/color?consistency=local");
      assert.ok(local.status === 200 || local.status === 404);

      await call(cluster, leader, "/v1/kv/app/size", { method: "PUT", body: "L" });
      await call(cluster, leader, "/v1/kv/other", { method: "PUT", body: "o" });
      const list = JSON.parse((await call(cluster, follower, "/v1/kv?prefix=app/")).text) as {
        items: { key: string; value: string }[];
      };
      assert.deepEqual(list.items.map((i) => [i.key, i.value]), [["app/color", "blue"], [
        "app/size",
        "L",
      ]]);

      const del = await call(cluster, leader, "/v1/kv/app/size", { method: "DELETE" });
      assert.equal(JSON.parse(del.text).deleted, true);
      assert.equal((await call(cluster, follower, "/v1/kv/app/size")).status, 404);

      // The same store through SQL on a follower.
      // Each statement in its own transaction, as psql runs pasted lines: the
      // command is queued when the first commits, and the next statement on
      // this node waits until it is applied here.
      const put1 = await cluster.psql(follower, "SELECT pgraft_kv_put('app/sql', 'from sql');");
      assert.equal(put1.code, 0, put1.stderr);
      const get1 = await cluster.psql(follower, "SELECT pgraft_kv_get('app/sql');", ["-A", "-t"]);
      assert.equal(get1.code, 0, get1.stderr);
      assert.ok(!/WARNING/.test(get1.stderr), get1.stderr);
      assert.equal(get1.stdout.trim(), "from sql");
      assert.equal((await call(cluster, leader, "/v1/kv/app/sql")).text, "from sql");

      // Limits and bad keys.
      const longKey = "k".repeat(1025);
      assert.equal(
        (await call(cluster, leader, `/v1/kv/${longKey}`, { method: "PUT", body: "v" })).status,
        414,
      );
      const big = new Uint8Array(1024 * 1024 + 1);
      assert.equal(
        (await call(cluster, leader, "/v1/kv/big", { method: "PUT", body: big })).status,
        413,
      );
      assert.equal(
        (await call(cluster, leader, "/v1/kv/a%00b", { method: "PUT", body: "v" })).status,
        400,
      );
      assert.equal((await call(cluster, leader, "/v1/kv?limit=0")).status, 400);

      // Clients must present the secret.
      const anonymous = await fetch(url(cluster, leader, "/v1/kv/app/color"));
      assert.equal(anonymous.status, 401);
      await anonymous.body?.cancel();
      const wrong = await fetch(url(cluster, leader, "/v1/kv/app/color"), {
        headers: { authorization: "Bearer nope" },
      });
      assert.equal(wrong.status, 401);
      await wrong.body?.cancel();
    });
  },
});
