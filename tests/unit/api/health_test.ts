import assert from "node:assert/strict";
import { Hono } from "hono";
import {
  healthApi,
  type HealthServer,
  type HealthSource,
  PRIMARY_PATHS,
} from "../../../lib/api/mod.ts";
import type { Observation } from "../../../lib/postgres/supervisor_types.ts";

/** A node whose server and lease the test sets. */
class FakeNode implements HealthSource {
  readonly nodeId = 2;
  current: HealthServer | null;
  entitled = false;
  fail = false;

  constructor(server: HealthServer | null, entitled = false) {
    this.current = server;
    this.entitled = entitled;
  }

  server(): HealthServer | null {
    if (this.fail) throw new Error("connection to postgres://replicator:s3cret@h failed");
    return this.current;
  }

  entitledPrimary(): boolean {
    return this.entitled;
  }
}

const BASE: HealthServer = {
  role: "unknown",
  streaming: false,
  timeline: null,
  lsn: null,
  receiveLsn: null,
  replayLsn: null,
  lagBytes: null,
};
const PRIMARY: HealthServer = { ...BASE, role: "primary", timeline: 3, lsn: "0/3000148" };
const STANDBY: HealthServer = {
  ...BASE,
  role: "standby",
  streaming: true,
  timeline: 3,
  receiveLsn: "0/3000148",
  replayLsn: "0/3000110",
  lagBytes: 0,
};

/** Each case: a server, whether the agent holds the lease, and who answers 200. */
const CASES: { name: string; server: HealthServer; entitled: boolean; ok: string[] }[] = [
  { name: "entitled primary", server: PRIMARY, entitled: true, ok: ["primary", "read-only"] },
  { name: "primary without the lease", server: PRIMARY, entitled: false, ok: [] },
  { name: "streaming standby", server: STANDBY, entitled: false, ok: ["replica", "read-only"] },
  {
    name: "streaming standby, lease (promotion pending)",
    server: STANDBY,
    entitled: true,
    ok: ["replica", "read-only"],
  },
  {
    name: "standby not streaming",
    server: { ...STANDBY, streaming: false },
    entitled: false,
    ok: [],
  },
  {
    name: "diverged",
    server: { ...STANDBY, role: "diverged", streaming: false },
    entitled: false,
    ok: [],
  },
  { name: "starting", server: { ...BASE, role: "starting" }, entitled: true, ok: [] },
  { name: "stopping", server: { ...BASE, role: "stopping" }, entitled: true, ok: [] },
  { name: "stopped", server: { ...BASE, role: "stopped", timeline: 3 }, entitled: true, ok: [] },
  { name: "unknown", server: BASE, entitled: true, ok: [] },
];

const PATHS: { path: string; kind: string }[] = [
  ...PRIMARY_PATHS.map((path) => ({ path, kind: "primary" })),
  { path: "/replica", kind: "replica" },
  { path: "/read-only", kind: "read-only" },
];

async function get(app: Hono, path: string, method = "GET") {
  const res = await app.request(path, { method });
  const text = await res.text();
  const isJson = res.headers.get("content-type")?.startsWith("application/json") ?? false;
  return { status: res.status, text, json: isJson && text !== "" ? JSON.parse(text) : null };
}

Deno.test("the primary paths are Patroni's four", () => {
  assert.deepEqual([...PRIMARY_PATHS], ["/primary", "/master", "/leader", "/read-write"]);
});

Deno.test("each path answers each server role as Patroni's would (GET and HEAD)", async () => {
  for (const { name, server, entitled, ok } of CASES) {
    const app = healthApi(new FakeNode(server, entitled));
    for (const { path, kind } of PATHS) {
      const expected = ok.includes(kind) ? 200 : 503;
      const got = await get(app, path);
      assert.equal(got.status, expected, `GET ${path} on ${name}`);
      assert.equal(got.json.pg_role, server.role, `GET ${path} on ${name}: body`);
      const head = await get(app, path, "HEAD");
      assert.equal(head.status, expected, `HEAD ${path} on ${name}`);
      assert.equal(head.text, "", `HEAD ${path} on ${name}: no body`);
    }
  }
});

Deno.test("a primary's body: running, its location and timeline, the lease", async () => {
  const got = await get(healthApi(new FakeNode(PRIMARY, true)), "/primary");
  assert.deepEqual(got.json, {
    state: "running",
    role: "primary",
    pg_role: "primary",
    timeline: 3,
    xlog: { location: "0/3000148" },
    lag_bytes: null,
    entitled_primary: true,
    node_id: 2,
  });
});

Deno.test("a standby's body: replica, received and replayed locations, lag", async () => {
  const got = await get(healthApi(new FakeNode({ ...STANDBY, lagBytes: 56 })), "/replica");
  assert.equal(got.status, 200);
  assert.deepEqual(got.json, {
    state: "running",
    role: "replica",
    pg_role: "standby",
    timeline: 3,
    xlog: { received_location: "0/3000148", replayed_location: "0/3000110" },
    lag_bytes: 56,
    entitled_primary: false,
    node_id: 2,
  });
});

Deno.test("bodies of servers that are not running say their state, with no locations", async () => {
  const expected: Record<string, [string, string]> = {
    starting: ["starting", "unknown"],
    stopping: ["stopping", "unknown"],
    stopped: ["stopped", "unknown"],
    unknown: ["unknown", "unknown"],
  };
  for (const [role, [state, patroniRole]] of Object.entries(expected)) {
    const server = { ...BASE, role: role as HealthServer["role"] };
    const got = await get(healthApi(new FakeNode(server)), "/read-only");
    assert.equal(got.status, 503, role);
    assert.equal(got.json.state, state, role);
    assert.equal(got.json.role, patroniRole, role);
    assert.equal(got.json.xlog, null, role);
  }
  const diverged = await get(
    healthApi(new FakeNode({ ...STANDBY, role: "diverged", streaming: false })),
    "/replica",
  );
  assert.equal(diverged.json.state, "diverged");
  assert.equal(diverged.json.role, "replica");
  assert.deepEqual(diverged.json.xlog, {
    received_location: "0/3000148",
    replayed_location: "0/3000110",
  });
});

Deno.test("?lag= takes bytes or PostgreSQL's units; the bound itself is within", async () => {
  const cases: [string, number, number][] = [
    ["100", 100, 200],
    ["100", 101, 503],
    ["512kB", 512 * 1024, 200],
    ["512kB", 512 * 1024 + 1, 503],
    ["16MB", 16 * 1024 ** 2, 200],
    ["16MB", 16 * 1024 ** 2 + 1, 503],
    ["1GB", 1024 ** 3, 200],
    ["1GB", 1024 ** 3 + 1, 503],
    ["0", 0, 200],
    ["0", 1, 503],
    ["1.5kB", 1536, 200],
    [" 16 MB ", 16 * 1024 ** 2, 200],
  ];
  for (const [lag, lagBytes, status] of cases) {
    const node = new FakeNode({ ...STANDBY, lagBytes });
    const app = healthApi(node);
    const query = `lag=${encodeURIComponent(lag)}`;
    assert.equal((await get(app, `/replica?${query}`)).status, status, `${lag} at ${lagBytes}`);
    assert.equal((await get(app, `/read-only?${query}`)).status, status, `${lag} at ${lagBytes}`);
    assert.equal((await get(app, `/replica?${query}`, "HEAD")).status, status);
  }
});

Deno.test("a standby whose lag is unknown is 503 with ?lag=, 200 without", async () => {
  const app = healthApi(new FakeNode({ ...STANDBY, lagBytes: null }));
  assert.equal((await get(app, "/replica?lag=1GB")).status, 503);
  assert.equal((await get(app, "/read-only?lag=1GB")).status, 503);
  assert.equal((await get(app, "/replica")).status, 200);
  assert.equal((await get(app, "/read-only")).status, 200);
});

Deno.test("?lag= does not hold back the primary on /read-only", async () => {
  const app = healthApi(new FakeNode(PRIMARY, true));
  assert.equal((await get(app, "/read-only?lag=0")).status, 200);
  assert.equal((await get(app, "/replica?lag=0")).status, 503);
});

Deno.test("a malformed lag is a 400 that says why, on every role", async () => {
  const cases: [string, RegExp][] = [
    ["abc", /not a number: "abc"/],
    ["", /not a number/],
    ["16mb", /unknown unit "mb"/],
    ["16 XB", /unknown unit "XB"/],
    ["-1", /must not be negative/],
    ["1e30", /out of range/],
  ];
  for (const server of [STANDBY, PRIMARY, BASE]) {
    const app = healthApi(new FakeNode(server, true));
    for (const [lag, why] of cases) {
      for (const path of ["/replica", "/read-only"]) {
        const got = await get(app, `${path}?lag=${encodeURIComponent(lag)}`);
        assert.equal(got.status, 400, `${path} lag=${lag}`);
        assert.match(got.json.error, /^lag must be a size in bytes|^lag must not be negative/);
        assert.match(got.json.error, why, `${path} lag=${lag}`);
        assert.equal((await get(app, `${path}?lag=${lag}`, "HEAD")).status, 400);
      }
    }
  }
});

Deno.test("the primary paths ignore ?lag=", async () => {
  const app = healthApi(new FakeNode(PRIMARY, true));
  assert.equal((await get(app, "/primary?lag=abc")).status, 200);
});

Deno.test("a node that runs no PostgreSQL answers 503 on every path, saying so", async () => {
  const app = healthApi(new FakeNode(null, true));
  for (const { path } of PATHS) {
    const got = await get(app, path);
    assert.equal(got.status, 503, path);
    assert.equal(got.json.state, "unmanaged");
    assert.match(got.json.error, /manage_postgres = off/);
    assert.equal(got.json.node_id, 2);
    assert.equal((await get(app, path, "HEAD")).status, 503);
  }
});

Deno.test("a node that fails to report is 503, and its error text stays out of the body", async () => {
  const node = new FakeNode(STANDBY);
  node.fail = true;
  const app = healthApi(node);
  for (const { path } of PATHS) {
    const got = await get(app, path);
    assert.equal(got.status, 503, path);
    assert.equal(got.json.state, "unknown");
    assert.doesNotMatch(got.text, /s3cret|postgres:\/\//);
  }
});

Deno.test("mounted on the agent's app, the paths answer GET and HEAD without a token", async () => {
  const node = new FakeNode(STANDBY);
  const parent = new Hono();
  parent.get("/health", (c) => c.json({ ok: true }));
  parent.route("/", healthApi(node));
  assert.equal((await get(parent, "/replica?lag=16MB")).status, 200);
  const head = await get(parent, "/replica?lag=16MB", "HEAD");
  assert.equal(head.status, 200);
  assert.equal(head.text, "");
  assert.equal((await get(parent, "/primary", "HEAD")).status, 503);
  assert.equal((await get(parent, "/health")).status, 200);
  assert.equal((await get(parent, "/replica/")).status, 404);
  assert.equal((await get(parent, "/replica", "POST")).status, 404);
});

Deno.test("the body has only the documented fields", async () => {
  const got = await get(healthApi(new FakeNode(STANDBY)), "/replica");
  assert.deepEqual(Object.keys(got.json).sort(), [
    "entitled_primary",
    "lag_bytes",
    "node_id",
    "pg_role",
    "role",
    "state",
    "timeline",
    "xlog",
  ]);
});

Deno.test("a supervisor observation fills a HealthServer as it is, plus the lag", () => {
  // Type-level: this compiles only while Observation carries HealthServer's fields.
  const fill = (seen: Observation, lagBytes: number | null): HealthServer => ({
    ...seen,
    lagBytes,
  });
  assert.equal(typeof fill, "function");
});
