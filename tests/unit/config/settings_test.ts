import assert from "node:assert/strict";
import {
  levenshtein,
  parseSettingValue,
  SETTINGS,
  unknownSettingMessage,
} from "../../../lib/config/mod.ts";

Deno.test("SETTINGS lists every pgraft setting in DESIGN.md table order with its scope", () => {
  assert.deepEqual(SETTINGS.map((s) => [s.name, s.scope]), [
    ["node_id", "node"],
    ["address", "node"],
    ["port", "node"],
    ["listen_address", "node"],
    ["database", "node"],
    ["auth_secret", "node"],
    ["auth_secret_file", "node"],
    ["tls_cert_file", "node"],
    ["tls_key_file", "node"],
    ["tls_ca_file", "node"],
    ["cluster_name", "cluster"],
    ["heartbeat_interval", "cluster"],
    ["election_timeout", "cluster"],
    ["append_batch_size", "cluster"],
    ["snapshot_threshold", "cluster"],
    ["failover_enabled", "cluster"],
    ["data_dir", "node"],
    ["manage_postgres", "node"],
    ["synchronous_replication", "cluster"],
    ["replication_user", "cluster"],
    ["pg_bin_dir", "node"],
    ["kv_quota", "cluster"],
    ["allow_reclone", "node"],
  ]);
});

Deno.test("defaults are the DESIGN.md ones and parse back to their own display form", () => {
  const defaults = Object.fromEntries(SETTINGS.map((s) => [s.name, s.default]));
  assert.equal(defaults.node_id, null);
  assert.equal(defaults.database, "postgres");
  assert.equal(defaults.cluster_name, "pgraft");
  assert.equal(defaults.heartbeat_interval, "100ms");
  assert.equal(defaults.election_timeout, "1000ms");
  assert.equal(defaults.append_batch_size, "512");
  assert.equal(defaults.snapshot_threshold, "8000");
  assert.equal(defaults.failover_enabled, "on");
  for (const spec of SETTINGS) {
    if (spec.default === null) continue;
    assert.equal(parseSettingValue(spec.name, spec.default).display, spec.default, spec.name);
  }
});

Deno.test("durations have unit ms, sizes unit B, and nothing else has a unit", () => {
  for (const spec of SETTINGS) {
    const unit = spec.type === "duration" ? "ms" : spec.type === "bytes" ? "B" : null;
    assert.equal(spec.unit, unit, spec.name);
  }
});

Deno.test("sizes take PostgreSQL's memory units and show the largest unit that divides them", () => {
  assert.deepEqual(parseSettingValue("kv_quota", "64MB"), {
    value: 64 * 1024 * 1024,
    display: "64MB",
  });
  assert.deepEqual(parseSettingValue("kv_quota", "1536kB"), {
    value: 1536 * 1024,
    display: "1536kB",
  });
  assert.deepEqual(parseSettingValue("kv_quota", "1048577"), {
    value: 1048577,
    display: "1048577B",
  });
  assert.throws(() => parseSettingValue("kv_quota", "12parsecs"), /unit/);
  assert.throws(() => parseSettingValue("kv_quota", "100"), /between 1024B/);
});

Deno.test("parseSettingValue types each value and gives its display form", () => {
  assert.deepEqual(parseSettingValue("heartbeat_interval", "1.5s"), {
    value: 1500,
    display: "1500ms",
  });
  assert.deepEqual(parseSettingValue("election_timeout", "90"), { value: 90, display: "90ms" });
  assert.deepEqual(parseSettingValue("append_batch_size", "0x100"), {
    value: 256,
    display: "256",
  });
  assert.deepEqual(parseSettingValue("failover_enabled", "no"), { value: false, display: "off" });
  assert.deepEqual(parseSettingValue("failover_enabled", "t"), { value: true, display: "on" });
  assert.deepEqual(parseSettingValue("cluster_name", "blue"), { value: "blue", display: "blue" });
});

Deno.test("parseSettingValue accepts a pgraft. prefix and any case in the name", () => {
  assert.equal(parseSettingValue("PGRAFT.Node_Id", "7").value, 7);
});

Deno.test("auth_secret is masked in its display form", () => {
  assert.deepEqual(parseSettingValue("auth_secret", "hunter2"), {
    value: "hunter2",
    display: "********",
  });
  assert.equal(parseSettingValue("auth_secret", "").display, "");
});

Deno.test("a bad duration names the setting, the value and the expected form", () => {
  assert.throws(
    () => parseSettingValue("heartbeat_interval", "soon"),
    (e: unknown) => {
      assert.ok(e instanceof TypeError);
      assert.equal(
        e.message,
        `invalid value for pgraft.heartbeat_interval: "soon" (expected a duration such as '100ms')`,
      );
      return true;
    },
  );
  assert.throws(
    () => parseSettingValue("election_timeout", "2 weeks"),
    /invalid value for pgraft\.election_timeout: "2 weeks" \(unknown unit "weeks"/,
  );
});

Deno.test("values outside a setting's range are RangeErrors naming the bounds", () => {
  const cases: [string, string, RegExp][] = [
    ["node_id", "0", /pgraft\.node_id: "0" \(must be between 1 and 2147483647\)/],
    ["node_id", "2147483648", /must be between 1 and 2147483647/],
    ["port", "70000", /pgraft\.port: "70000" \(must be between 1 and 65535\)/],
    ["port", "0", /between 1 and 65535/],
    ["append_batch_size", "65537", /between 1 and 65536/],
    ["snapshot_threshold", "0", /snapshot_threshold/],
    ["heartbeat_interval", "0", /between 1ms and/],
    ["heartbeat_interval", "-5ms", /between 1ms and/],
    ["heartbeat_interval", "0.4ms", /between 1ms and/],
    ["election_timeout", "2d", /between 2ms and 86400000ms/],
  ];
  for (const [name, raw, pattern] of cases) {
    assert.throws(() => parseSettingValue(name, raw), (e: unknown) => {
      assert.ok(e instanceof RangeError, `${name}=${raw}: ${e}`);
      assert.match(e.message, pattern);
      return true;
    });
  }
  assert.equal(parseSettingValue("port", "65535").value, 65535);
  assert.equal(parseSettingValue("node_id", "2147483647").value, 2147483647);
});

Deno.test("values of the wrong form are TypeErrors", () => {
  assert.throws(
    () => parseSettingValue("port", "http"),
    /pgraft\.port: "http" \(expected an integer\)/,
  );
  assert.throws(() => parseSettingValue("node_id", "1.5"), TypeError);
  assert.throws(() => parseSettingValue("append_batch_size", "64kB"), TypeError);
  assert.throws(() => parseSettingValue("failover_enabled", "o"), /expected on, off/);
  assert.throws(
    () => parseSettingValue("address", ""),
    /pgraft\.address: "" \(must not be empty\)/,
  );
  assert.throws(() => parseSettingValue("database", ""), TypeError);
});

Deno.test("an unknown name suggests the closest setting within three edits", () => {
  assert.throws(
    () => parseSettingValue("heartbeat_intervl", "100ms"),
    (e: unknown) => {
      assert.ok(e instanceof RangeError);
      assert.equal(
        e.message,
        `unrecognized configuration parameter "pgraft.heartbeat_intervl" (did you mean "pgraft.heartbeat_interval"?)`,
      );
      return true;
    },
  );
  assert.match(unknownSettingMessage("nodeid"), /did you mean "pgraft\.node_id"/);
  assert.match(unknownSettingMessage("prot"), /did you mean "pgraft\.port"/);
});

Deno.test("an unknown name far from every setting gets no suggestion", () => {
  assert.equal(
    unknownSettingMessage("max_wal_senders"),
    `unrecognized configuration parameter "pgraft.max_wal_senders"`,
  );
});

Deno.test("levenshtein counts insertions, deletions and substitutions", () => {
  assert.equal(levenshtein("", ""), 0);
  assert.equal(levenshtein("abc", ""), 3);
  assert.equal(levenshtein("kitten", "sitting"), 3);
  assert.equal(levenshtein("port", "prot"), 2);
  assert.equal(levenshtein("heartbeat_intervl", "heartbeat_interval"), 1);
});
