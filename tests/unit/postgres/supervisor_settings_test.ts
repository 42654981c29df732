import assert from "node:assert/strict";
import { haSettings } from "../../../lib/postgres/supervisor_settings.ts";

Deno.test("the HA settings: replica WAL with hints for pg_rewind, WAL kept without slots", () => {
  assert.deepEqual(haSettings({}), {
    wal_level: "replica",
    max_wal_senders: "10",
    wal_log_hints: "on",
    wal_keep_size: "512MB",
    hot_standby: "on",
    synchronous_commit: "on",
    wal_retrieve_retry_interval: "1s",
  });
  const custom = haSettings({
    walKeepSize: "2GB",
    maxWalSenders: 4,
    synchronousCommit: "remote_apply",
  });
  assert.equal(custom.wal_keep_size, "2GB");
  assert.equal(custom.max_wal_senders, "4");
  assert.equal(custom.synchronous_commit, "remote_apply");
});
