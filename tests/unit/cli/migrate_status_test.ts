import assert from "node:assert/strict";
import { join } from "node:path";
import { main, type Output } from "../../../lib/cli/mod.ts";
import { connect, withPgServer } from "../../helpers/pg.ts";

function collect(): Output & { stdout: () => string; stderr: () => string } {
  let out = "";
  let err = "";
  return {
    out: (t) => (out += t),
    err: (t) => (err += t),
    stdout: () => out,
    stderr: () => err,
  };
}

async function writeConfig(dir: string, port: number): Promise<string> {
  const file = join(dir, "pgraft-test.conf");
  await Deno.writeTextFile(
    file,
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = ''`,
      `pgraft.node_id = 1`,
      `pgraft.address = '127.0.0.1'`,
      `pgraft.port = 7001`,
      "",
    ].join("\n"),
  );
  return file;
}

Deno.test("pgraft migrate connects as the configuration file says, applies the schema, then is up to date", async () => {
  await withPgServer(async (server) => {
    const dir = await Deno.makeTempDir();
    try {
      const config = await writeConfig(dir, server.port);
      const first = collect();
      assert.equal(await main(["migrate", "--config", config], first), 0, first.stderr());
      assert.match(first.stdout(), /applied 001_schema/);
      assert.match(first.stdout(), /applied \d+ migration/);
      const second = collect();
      assert.equal(await main(["migrate", "--config", config], second), 0, second.stderr());
      assert.match(second.stdout(), /up to date/);
      const sql = connect(server);
      try {
        const [row] = await sql`select count(*)::int as n from pgraft.schema_migrations`;
        assert.ok(row!.n >= 4);
        const fns = await sql`select proname from pg_proc where proname like 'pgraft\\_%'`;
        assert.ok(fns.some((f) => f.proname === "pgraft_get_nodes"));
      } finally {
        await sql.end();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("pgraft migrate against an unreachable server exits 1 naming where it tried", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = await writeConfig(dir, 1);
    const io = collect();
    assert.equal(await main(["migrate", "--config", config], io), 1);
    assert.match(io.stderr(), /cannot migrate .*127\.0\.0\.1:1\//);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pgraft status without a running agent says so and exits non-zero", async () => {
  await withPgServer(async (server) => {
    const dir = await Deno.makeTempDir();
    try {
      const config = await writeConfig(dir, server.port);
      assert.equal(await main(["migrate", "--config", config], collect()), 0);
      const io = collect();
      const code = await main(["status", "--config", config, "--json"], io);
      assert.notEqual(code, 0);
      assert.match(io.stderr(), /agent/i);
      const report = JSON.parse(io.stdout()) as { members: unknown[]; nodes: unknown[] };
      assert.deepEqual(report.members, []);
      const table = collect();
      assert.notEqual(await main(["status", "--config", config], table), 0);
      assert.match(table.stdout(), /^cluster .* · leader: none known/);
      assert.match(table.stderr(), /the agent is not running on this node/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});
