import assert from "node:assert/strict";
import { join } from "node:path";
import { effectiveConfigRows, effectiveSettings } from "../../../lib/agent/settings.ts";
import { loadConfig } from "../../../lib/config/mod.ts";

async function loaded() {
  const dir = await Deno.makeTempDir();
  const file = join(dir, "postgresql.conf");
  await Deno.writeTextFile(
    file,
    "pgraft.node_id = 1\npgraft.address = '127.0.0.1'\npgraft.port = 7001\n" +
      "pgraft.auth_secret = 'hush'\npgraft.election_timeout = '2s'\n",
  );
  try {
    return { config: await loadConfig(file), file };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("effective config shows cluster-wide values canonically with source cluster, else the file's", async () => {
  const { config, file } = await loaded();
  const cluster = {
    heartbeat_interval: "0.2s",
    failover_enabled: "false",
    append_batch_size: "lots",
  };
  const rows = new Map(effectiveConfigRows(config, cluster).map((r) => [r.name, r]));
  assert.deepEqual(
    [rows.get("heartbeat_interval")!.setting, rows.get("heartbeat_interval")!.source],
    ["200ms", "cluster"],
  );
  assert.equal(rows.get("heartbeat_interval")!.sourcefile, null);
  assert.deepEqual([rows.get("failover_enabled")!.setting, rows.get("failover_enabled")!.source], [
    "off",
    "cluster",
  ]);
  // An invalid replicated value is not used, as effectiveSettings does not use it.
  assert.deepEqual(
    [rows.get("append_batch_size")!.setting, rows.get("append_batch_size")!.source],
    [
      "512",
      "default",
    ],
  );
  assert.equal(effectiveSettings(config, cluster).appendBatchSize, 512);
  assert.equal(effectiveSettings(config, cluster).heartbeatIntervalMs, 200);
  // File values keep their source line; secrets stay masked.
  assert.deepEqual(
    [
      rows.get("election_timeout")!.setting,
      rows.get("election_timeout")!.source,
      rows.get("election_timeout")!.sourcefile,
    ],
    ["2000ms", "configuration file", file],
  );
  assert.equal(rows.get("auth_secret")!.setting, "********");
});
