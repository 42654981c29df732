import assert from "node:assert/strict";
import { connect, withPgServer } from "../../helpers/pg.ts";
import { migrate, type Migration, MIGRATIONS } from "../../../lib/postgres/migrations.ts";

Deno.test("migrations create schema pgraft and a second run is a no-op", async () => {
  await withPgServer(async (server) => {
    const sql = connect(server);
    try {
      const first = await migrate(sql);
      assert.equal(first.applied.length, MIGRATIONS.length);
      const [schema] =
        await sql`select count(*)::int as n from pg_namespace where nspname = 'pgraft'`;
      assert.equal(schema!.n, 1);
      const second = await migrate(sql);
      assert.equal(second.applied.length, 0);
      assert.equal(second.alreadyApplied, MIGRATIONS.length);
      const rows = await sql`select version from pgraft.schema_migrations order by version`;
      assert.deepEqual(rows.map((r) => r.version), MIGRATIONS.map((m) => m.version));
    } finally {
      await sql.end();
    }
  });
});

Deno.test("two concurrent migrators apply each file once", async () => {
  // A migration that counts how often it ran: applying it twice would insert two rows.
  const counting: Migration[] = [
    ...MIGRATIONS,
    {
      version: 900,
      name: "counting",
      sql: `create table if not exists pgraft.ran (n int);
            insert into pgraft.ran values (1);
            select pg_sleep(0.2);`,
    },
  ];
  await withPgServer(async (server) => {
    const a = connect(server);
    const b = connect(server);
    try {
      const results = await Promise.all([migrate(a, counting), migrate(b, counting)]);
      assert.deepEqual(
        results.map((r) => r.applied.length).sort(),
        [0, counting.length],
        "one migrator applied everything, the other nothing",
      );
      const [row] = await a`select count(*)::int as n from pgraft.ran`;
      assert.equal(row!.n, 1);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });
});

Deno.test("migrations out of order are refused before touching the database", async () => {
  await withPgServer(async (server) => {
    const sql = connect(server);
    try {
      await assert.rejects(
        migrate(sql, [{ version: 2, name: "b", sql: "" }, { version: 1, name: "a", sql: "" }]),
        /out of order/,
      );
      const [row] = await sql`select count(*)::int as n from pg_namespace where nspname = 'pgraft'`;
      assert.equal(row!.n, 0);
    } finally {
      await sql.end();
    }
  });
});
