import assert from "node:assert/strict";
import { main, type Output } from "../../../lib/cli/mod.ts";
import { VERSION } from "../../../lib/version.ts";

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

const testdata = new URL("../../testdata/cli/", import.meta.url).pathname;

Deno.test("an unknown command prints the usage and exits 2", async () => {
  const io = collect();
  assert.equal(await main(["frobnicate"], io), 2);
  assert.match(io.stderr(), /unknown command "frobnicate"/);
  assert.match(io.stderr(), /Usage:/);
});

Deno.test("no command at all is a usage error", async () => {
  const io = collect();
  assert.equal(await main([], io), 2);
  assert.match(io.stderr(), /Usage:/);
});

Deno.test("an unknown flag prints the command's usage and exits 2", async () => {
  const io = collect();
  assert.equal(await main(["config", "--config", "x", "--bogus"], io), 2);
  assert.match(io.stderr(), /bogus/);
  assert.match(io.stderr(), /Usage: pgraft config/);
});

Deno.test("--help works on every command and exits 0", async () => {
  for (const command of ["run", "dev", "config", "migrate", "status", "version"]) {
    const io = collect();
    assert.equal(await main([command, "--help"], io), 0, command);
    assert.match(io.stdout(), new RegExp(`Usage: pgraft ${command}`));
  }
});

Deno.test("commands that need a configuration file say so", async () => {
  for (const command of ["run", "config", "migrate", "status"]) {
    const io = collect();
    assert.equal(await main([command], io), 2, command);
    assert.match(io.stderr(), /--config FILE is required/);
  }
});

Deno.test("version prints the version", async () => {
  const io = collect();
  assert.equal(await main(["version"], io), 0);
  assert.match(io.stdout(), new RegExp(`^pgraft ${VERSION.replaceAll(".", "\\.")} `));
});

Deno.test("config --json reports value, source file and line across include, include_dir and auto.conf", async () => {
  const io = collect();
  assert.equal(await main(["config", "--config", `${testdata}postgresql.conf`, "--json"], io), 0);
  const rows = JSON.parse(io.stdout()) as {
    name: string;
    setting: string;
    source: string;
    sourcefile: string | null;
    sourceline: number | null;
  }[];
  const by = (name: string) => rows.find((r) => r.name === name)!;
  assert.equal(by("heartbeat_interval").setting, "75ms");
  assert.match(by("heartbeat_interval").sourcefile!, /pgraft_timing\.conf$/);
  assert.equal(by("heartbeat_interval").sourceline, 1);
  assert.equal(by("election_timeout").setting, "900ms");
  assert.equal(by("append_batch_size").setting, "1024", "postgresql.auto.conf is read last");
  assert.match(by("append_batch_size").sourcefile!, /postgresql\.auto\.conf$/);
  assert.equal(by("append_batch_size").sourceline, 2);
  assert.equal(by("node_id").source, "configuration file");
  assert.equal(by("snapshot_threshold").source, "default");
  assert.equal(by("snapshot_threshold").setting, "8000");
});

Deno.test("config prints an aligned table by default", async () => {
  const io = collect();
  assert.equal(await main(["config", "--config", `${testdata}postgresql.conf`], io), 0);
  const lines = io.stdout().trimEnd().split("\n");
  assert.match(lines[0]!, /^name\s+\| setting\s+\| unit\s+\| source/);
  assert.ok(lines.some((l) => /^heartbeat_interval\s+\| 75ms/.test(l)));
});

Deno.test("a bad file exits 1 naming file:line", async () => {
  const io = collect();
  assert.equal(await main(["config", "--config", `${testdata}bad.conf`], io), 1);
  assert.match(io.stderr(), /bad\.conf:4: invalid value for pgraft\.heartbeat_interval: "soon"/);
});

Deno.test("a missing file exits 1", async () => {
  const io = collect();
  assert.equal(await main(["config", "--config", `${testdata}missing.conf`], io), 1);
  assert.match(io.stderr(), /missing\.conf/);
});
