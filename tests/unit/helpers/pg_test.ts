import assert from "node:assert/strict";
import { connect, withPgServers } from "../../helpers/pg.ts";

Deno.test("the harness starts three servers in parallel and stops them all", async () => {
  const pids: number[] = [];
  await withPgServers(3, async (servers) => {
    assert.equal(new Set(servers.map((s) => s.port)).size, 3);
    for (const server of servers) {
      const sql = connect(server);
      try {
        const [row] = await sql`select current_setting('port')::int as port,
                                       current_setting('listen_addresses') as listen`;
        assert.equal(row!.port, server.port);
        assert.equal(row!.listen, "127.0.0.1");
      } finally {
        await sql.end();
      }
      pids.push(server.pid!);
    }
  });
  for (const pid of pids) {
    assert.throws(() => Deno.kill(pid, "SIGCONT"), "every postmaster is gone after the test");
  }
});

Deno.test("a killed server restarts on the same data directory and keeps committed rows", async () => {
  await withPgServers(1, async ([server]) => {
    let sql = connect(server!);
    await sql`create table t (x int)`;
    await sql`insert into t values (1)`;
    await sql.end();
    await server!.kill();
    await server!.start();
    sql = connect(server!);
    try {
      const rows = await sql`select x from t`;
      assert.deepEqual(rows.map((r) => r.x), [1]);
    } finally {
      await sql.end();
    }
  });
});
