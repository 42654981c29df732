import assert from "node:assert/strict";
import { parsePgUrl, resolveConnection } from "../../../lib/postgres/connection.ts";

const server = { port: 5544, unixSocketDirectory: "/run/pg", listenAddress: "10.1.2.3" };

Deno.test("the socket directory from postgresql.conf is preferred over listen_addresses", () => {
  const c = resolveConnection(server, "app", { env: { USER: "alice" } });
  assert.deepEqual(c, { host: "/run/pg", port: 5544, database: "app", user: "alice" });
});

Deno.test("without a socket directory the first listen address is used, * meaning loopback", () => {
  const c = resolveConnection(
    { port: null, unixSocketDirectory: null, listenAddress: "*, 10.0.0.1" },
    "postgres",
    { env: { USER: "root" } },
  );
  assert.deepEqual(c, { host: "127.0.0.1", port: 5432, database: "postgres", user: "postgres" });
});

Deno.test("PG* variables override the file and --pg-url overrides both", () => {
  const env = { PGHOST: "h", PGPORT: "6000", PGUSER: "u", PGDATABASE: "d", PGPASSWORD: "p" };
  assert.deepEqual(resolveConnection(server, "app", { env }), {
    host: "h",
    port: 6000,
    user: "u",
    database: "d",
    password: "p",
  });
  const c = resolveConnection(server, "app", { env, pgUrl: "postgres://x@127.0.0.1:7000/y" });
  assert.deepEqual(c, { host: "127.0.0.1", port: 7000, user: "x", database: "y", password: "p" });
});

Deno.test("a bad PGPORT or --pg-url is a clear error", () => {
  assert.throws(() => resolveConnection(server, "a", { env: { PGPORT: "70000" } }), /PGPORT/);
  assert.throws(() => parsePgUrl("mysql://x@y/z"), /scheme must be postgres/);
  assert.throws(() => parsePgUrl("not a url"), /invalid --pg-url/);
  assert.deepEqual(parsePgUrl("postgresql:///db?host=/tmp/s"), { host: "/tmp/s", database: "db" });
});
