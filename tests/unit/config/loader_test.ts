import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { ConfigError, loadConfig, type LoadedConfig } from "../../../lib/config/mod.ts";

const tree = new URL("../../testdata/config/tree/", import.meta.url).pathname;

/** The three settings every loadable file needs. */
const REQUIRED = "pgraft.node_id = 1\npgraft.address = '10.0.0.1'\npgraft.port = 7001\n";

/** Write `files` (relative path → text) under a new temporary directory, run `fn`, remove it. */
async function withFiles<T>(
  files: Record<string, string>,
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "pgraft_config_test_" });
  try {
    for (const [name, text] of Object.entries(files)) {
      const path = join(dir, name);
      await Deno.mkdir(dirname(path), { recursive: true });
      await Deno.writeTextFile(path, text);
    }
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function load(files: Record<string, string>): Promise<LoadedConfig> {
  return await withFiles(files, (dir) => loadConfig(join(dir, "postgresql.conf")));
}

/** Load and expect a ConfigError at `file` (relative to the directory) and `line`. */
async function loadError(
  files: Record<string, string>,
  file: string,
  line: number | null,
  pattern: RegExp,
): Promise<ConfigError> {
  return await withFiles(files, async (dir) => {
    const error = await loadConfig(join(dir, "postgresql.conf")).then(
      () => assert.fail("expected a ConfigError"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.file, join(dir, file));
    assert.equal(error.line, line);
    assert.match(error.message, pattern);
    const name = file.split("/").pop()!;
    const prefix = line === null ? `${name}: ` : `${name}:${line}: `;
    assert.ok(error.message.startsWith(prefix), `${error.message} starts with ${prefix}`);
    return error;
  });
}

function entry(config: LoadedConfig, name: string) {
  const found = config.entries.find((e) => e.name === name);
  assert.ok(found, `entry ${name}`);
  return found;
}

Deno.test("the fixture tree is read with every include form, in PostgreSQL's order", async () => {
  const config = await loadConfig(`${tree}postgresql.conf`);
  assert.deepEqual(config.files, [
    `${tree}postgresql.conf`,
    `${tree}sub/extra.conf`,
    `${tree}sub/more.conf`,
    `${tree}conf.d/B.conf`,
    `${tree}conf.d/a.conf`,
    `${tree}conf.d/b.conf`,
    `${tree}postgresql.auto.conf`,
  ]);
  assert.deepEqual(config.settings, {
    nodeId: 3,
    address: "10.0.0.3",
    port: 7003,
    listenAddress: "10.0.0.3",
    database: "app",
    authSecret: "s3cr3t-from-file",
    clusterName: "from-b",
    heartbeatIntervalMs: 50,
    electionTimeoutMs: 1000,
    appendBatchSize: 64,
    snapshotThreshold: 200,
    failoverEnabled: false,
    kvQuotaBytes: 64 * 1024 * 1024,
    managePostgres: false,
    synchronousReplication: true,
    replicationUser: "postgres",
    pgBinDir: null,
    allowReclone: false,
    dataDir: `${tree.replace(/\/$/, "")}.pgraft`,
    tlsCertFile: null,
    tlsKeyFile: null,
    tlsCaFile: null,
  });
  assert.deepEqual(config.connection, {
    port: 5433,
    unixSocketDirectory: null,
    listenAddress: "localhost",
    dataDirectory: null,
    sourcefile: `${tree}postgresql.conf`,
  });
  assert.deepEqual(config.warnings, []);
});

Deno.test("entries give each setting's display value, source, file and line", async () => {
  const config = await loadConfig(`${tree}postgresql.conf`);
  assert.deepEqual(config.entries.map((e) => e.name).slice(0, 3), ["node_id", "address", "port"]);
  assert.equal(config.entries.length, 23);
  assert.deepEqual(entry(config, "heartbeat_interval"), {
    name: "heartbeat_interval",
    setting: "50ms",
    unit: "ms",
    source: "configuration file",
    sourcefile: `${tree}sub/more.conf`,
    sourceline: 1,
  });
  assert.deepEqual(entry(config, "snapshot_threshold"), {
    name: "snapshot_threshold",
    setting: "200",
    unit: null,
    source: "configuration file",
    sourcefile: `${tree}postgresql.conf`,
    sourceline: 13,
  });
  assert.deepEqual(entry(config, "election_timeout").sourcefile, `${tree}conf.d/B.conf`);
  assert.equal(entry(config, "failover_enabled").setting, "off");
  assert.equal(entry(config, "failover_enabled").sourceline, 3);
  assert.equal(entry(config, "auth_secret_file").setting, `${tree}sub/secret.txt`);
  assert.deepEqual(entry(config, "listen_address"), {
    name: "listen_address",
    setting: "10.0.0.3",
    unit: null,
    source: "default",
    sourcefile: null,
    sourceline: null,
  });
  assert.equal(entry(config, "auth_secret").setting, "");
  assert.equal(entry(config, "auth_secret").source, "default");
});

Deno.test("later lines win, and the entry points at the later line", async () => {
  const config = await load({
    "postgresql.conf": REQUIRED + "pgraft.cluster_name = first\npgraft.cluster_name = second\n",
  });
  assert.equal(config.settings.clusterName, "second");
  assert.equal(entry(config, "cluster_name").sourceline, 5);
});

Deno.test("defaults fill every setting that is not set", async () => {
  const config = await load({ "postgresql.conf": REQUIRED });
  assert.deepEqual(config.settings, {
    nodeId: 1,
    address: "10.0.0.1",
    port: 7001,
    listenAddress: "10.0.0.1",
    database: "postgres",
    authSecret: null,
    clusterName: "pgraft",
    heartbeatIntervalMs: 100,
    electionTimeoutMs: 1000,
    appendBatchSize: 512,
    snapshotThreshold: 8000,
    failoverEnabled: true,
    kvQuotaBytes: 64 * 1024 * 1024,
    managePostgres: false,
    synchronousReplication: true,
    replicationUser: "postgres",
    pgBinDir: null,
    allowReclone: false,
    dataDir: `${dirname(config.files[0]!)}.pgraft`,
    tlsCertFile: null,
    tlsKeyFile: null,
    tlsCaFile: null,
  });
  assert.deepEqual(
    config.entries.filter((e) => e.source === "default").map((e) => [e.name, e.setting]),
    [
      ["listen_address", "10.0.0.1"],
      ["database", "postgres"],
      ["auth_secret", ""],
      ["auth_secret_file", ""],
      ["tls_cert_file", ""],
      ["tls_key_file", ""],
      ["tls_ca_file", ""],
      ["cluster_name", "pgraft"],
      ["heartbeat_interval", "100ms"],
      ["election_timeout", "1000ms"],
      ["append_batch_size", "512"],
      ["snapshot_threshold", "8000"],
      ["failover_enabled", "on"],
      ["data_dir", `${dirname(config.files[0]!)}.pgraft`],
      ["manage_postgres", "off"],
      ["synchronous_replication", "on"],
      ["replication_user", "postgres"],
      ["pg_bin_dir", ""],
      ["kv_quota", "64MB"],
      ["allow_reclone", "off"],
    ],
  );
  assert.deepEqual(config.connection, {
    port: null,
    unixSocketDirectory: null,
    listenAddress: null,
    dataDirectory: null,
    sourcefile: config.files[0],
  });
});

Deno.test("comments, both assignment forms, quotes and escapes reach the typed settings", async () => {
  const config = await load({
    "postgresql.conf": [
      "# header comment",
      "pgraft.node_id 4   # no equals sign",
      "pgraft.address = 'db-4.example' # quoted, then a comment",
      "PGRAFT.PORT=7004",
      String.raw`pgraft.auth_secret = 'it''s a\nsecret # not a comment'`,
      "pgraft.listen_address = 0.0.0.0",
      "pgraft.heartbeat_interval = '0.1s'",
      "pgraft.election_timeout = 2min",
      "pgraft.failover_enabled = No",
    ].join("\n"),
  });
  assert.equal(config.settings.nodeId, 4);
  assert.equal(config.settings.address, "db-4.example");
  assert.equal(config.settings.port, 7004);
  assert.equal(config.settings.authSecret, "it's a\nsecret # not a comment");
  assert.equal(config.settings.listenAddress, "0.0.0.0");
  assert.equal(config.settings.heartbeatIntervalMs, 100);
  assert.equal(config.settings.electionTimeoutMs, 120_000);
  assert.equal(config.settings.failoverEnabled, false);
  assert.equal(entry(config, "auth_secret").setting, "********");
  assert.equal(entry(config, "election_timeout").setting, "120000ms");
});

Deno.test("include paths are relative to the including file's directory", async () => {
  const config = await load({
    "postgresql.conf": REQUIRED + "include 'a/one.conf'\n",
    "a/one.conf": "include 'b/two.conf'\n",
    "a/b/two.conf": "pgraft.database = deep\n",
  });
  assert.equal(config.settings.database, "deep");
  assert.match(entry(config, "database").sourcefile!, /\/a\/b\/two\.conf$/);
});

Deno.test("an absolute include path is used as it is", async () => {
  await withFiles({ "elsewhere/abs.conf": "pgraft.cluster_name = abs\n" }, async (other) => {
    const config = await load({
      "postgresql.conf": REQUIRED + `include '${other}/elsewhere/abs.conf'\n`,
    });
    assert.equal(config.settings.clusterName, "abs");
  });
});

Deno.test("include_dir reads .conf files sorted by byte order, skipping hidden files and directories", async () => {
  const config = await load({
    "postgresql.conf": REQUIRED + "include_dir 'conf.d'\n",
    "conf.d/20-b.conf": "pgraft.cluster_name = twenty\n",
    "conf.d/100-a.conf": "pgraft.cluster_name = hundred\n",
    "conf.d/Z.conf": "pgraft.cluster_name = upper\n",
    "conf.d/.00.conf": "pgraft.cluster_name = hidden\n",
    "conf.d/x.conf.sample": "pgraft.cluster_name = sample\n",
    "conf.d/dir.conf/inner.conf": "pgraft.cluster_name = inner\n",
  });
  assert.deepEqual(config.files.slice(1).map((f) => f.split("/").slice(-2).join("/")), [
    "conf.d/100-a.conf",
    "conf.d/20-b.conf",
    "conf.d/Z.conf",
  ]);
  assert.equal(config.settings.clusterName, "upper");
});

Deno.test("include_dir of a missing directory is an error at the including line", async () => {
  await loadError(
    { "postgresql.conf": REQUIRED + "include_dir 'nowhere'\n" },
    "postgresql.conf",
    4,
    /could not open configuration directory ".*\/nowhere": No such file or directory/,
  );
});

Deno.test("include_if_exists skips a missing file and reads one that exists", async () => {
  const config = await load({
    "postgresql.conf": REQUIRED +
      "include_if_exists 'missing.conf'\ninclude_if_exists 'present.conf'\n",
    "present.conf": "pgraft.cluster_name = present\n",
  });
  assert.equal(config.settings.clusterName, "present");
  assert.equal(config.files.length, 2);
});

Deno.test("include of a missing file is an error naming the including file and line", async () => {
  await loadError(
    { "postgresql.conf": REQUIRED + "\ninclude 'missing.conf'\n" },
    "postgresql.conf",
    5,
    /could not open configuration file ".*\/missing\.conf": No such file or directory/,
  );
});

Deno.test("an include cycle is an error at the line that closes it, not a hang", async () => {
  const error = await loadError(
    {
      "postgresql.conf": REQUIRED + "include 'a.conf'\n",
      "a.conf": "pgraft.cluster_name = a\ninclude 'b.conf'\n",
      "b.conf": "# back to a\ninclude 'a.conf'\n",
    },
    "b.conf",
    2,
    /include cycle: ".*\/a\.conf" is already being read \(a\.conf -> b\.conf -> a\.conf\)/,
  );
  assert.doesNotMatch(error.message, /nesting depth/);
});

Deno.test("a file that includes itself is a cycle", async () => {
  await loadError(
    { "postgresql.conf": REQUIRED + "include 'postgresql.conf'\n" },
    "postgresql.conf",
    4,
    /include cycle/,
  );
});

Deno.test("including the same file twice without a cycle is allowed", async () => {
  const config = await load({
    "postgresql.conf": REQUIRED + "include 'x.conf'\ninclude 'x.conf'\n",
    "x.conf": "pgraft.append_batch_size = 7\n",
  });
  assert.equal(config.files.length, 3);
  assert.equal(config.settings.appendBatchSize, 7);
});

/** A chain: postgresql.conf includes 1.conf, which includes 2.conf, ... up to `levels`. */
function chain(levels: number): Record<string, string> {
  const files: Record<string, string> = { "postgresql.conf": REQUIRED + "include '1.conf'\n" };
  for (let i = 1; i <= levels; i++) {
    files[`${i}.conf`] = i < levels
      ? `include '${i + 1}.conf'\n`
      : "pgraft.cluster_name = deepest\n";
  }
  return files;
}

Deno.test("ten levels of nested includes are read", async () => {
  const config = await load(chain(10));
  assert.equal(config.settings.clusterName, "deepest");
  assert.equal(config.files.length, 11);
});

Deno.test("more than ten levels of nested includes is an error at the eleventh include", async () => {
  await loadError(
    chain(11),
    "10.conf",
    1,
    /could not open configuration file ".*\/11\.conf": maximum nesting depth exceeded/,
  );
});

Deno.test("postgresql.auto.conf beside the main file is read last", async () => {
  const config = await load({
    "postgresql.conf": REQUIRED + "pgraft.cluster_name = main\ninclude 'late.conf'\n",
    "late.conf": "pgraft.cluster_name = late\n",
    "postgresql.auto.conf": "# ALTER SYSTEM\npgraft.cluster_name = 'auto'\n",
  });
  assert.equal(config.settings.clusterName, "auto");
  assert.match(entry(config, "cluster_name").sourcefile!, /\/postgresql\.auto\.conf$/);
  assert.equal(entry(config, "cluster_name").sourceline, 2);
  assert.match(config.files.at(-1)!, /\/postgresql\.auto\.conf$/);
});

Deno.test("errors in postgresql.auto.conf name that file", async () => {
  await loadError(
    { "postgresql.conf": REQUIRED, "postgresql.auto.conf": "pgraft.port = high\n" },
    "postgresql.auto.conf",
    1,
    /invalid value for pgraft\.port: "high" \(expected an integer\)/,
  );
});

Deno.test("a relative main path is resolved against the current directory", async () => {
  await withFiles({ "postgresql.conf": REQUIRED }, async (dir) => {
    const before = Deno.cwd();
    Deno.chdir(dir);
    try {
      const config = await loadConfig("postgresql.conf");
      assert.equal(config.files[0], join(await Deno.realPath(dir), "postgresql.conf"));
    } finally {
      Deno.chdir(before);
    }
  });
});

Deno.test("an unknown pgraft name is an error with did-you-mean at file and line", async () => {
  const error = await loadError(
    {
      "postgresql.conf": REQUIRED + "include 'timing.conf'\n",
      "timing.conf": "\n\npgraft.heartbeat_intervl = 100ms\n",
    },
    "timing.conf",
    3,
    /did you mean "pgraft\.heartbeat_interval"\?/,
  );
  assert.equal(
    error.message,
    `timing.conf:3: unrecognized configuration parameter "pgraft.heartbeat_intervl" (did you mean "pgraft.heartbeat_interval"?)`,
  );
});

Deno.test("other names, of PostgreSQL and other extensions, are ignored", async () => {
  const config = await load({
    "postgresql.conf":
      "shared_buffers = 128MB\nwork_mem = '4MB'\npg_stat_statements.max = 10000\n" +
      "log_line_prefix = '%m [%p] '\n" + REQUIRED,
  });
  assert.equal(config.settings.nodeId, 1);
});

Deno.test("a bad duration is reported with file and line", async () => {
  const error = await loadError(
    { "postgresql.conf": REQUIRED + "# timing\npgraft.heartbeat_interval = soon\n" },
    "postgresql.conf",
    5,
    /invalid value/,
  );
  assert.equal(
    error.message,
    `postgresql.conf:5: invalid value for pgraft.heartbeat_interval: "soon" (expected a duration such as '100ms')`,
  );
  assert.ok(error.cause instanceof TypeError);
});

Deno.test("a bad value is reported even when a later line would override it", async () => {
  await loadError(
    {
      "postgresql.conf": "pgraft.failover_enabled = o\npgraft.failover_enabled = on\n" + REQUIRED,
    },
    "postgresql.conf",
    1,
    /invalid value for pgraft\.failover_enabled: "o"/,
  );
});

Deno.test("boolean forms are accepted in the file", async () => {
  for (const [raw, expected] of [["off", false], ["'yes'", true], ["0", false], ["t", true]]) {
    const config = await load({
      "postgresql.conf": REQUIRED + `pgraft.failover_enabled = ${raw}\n`,
    });
    assert.equal(config.settings.failoverEnabled, expected, String(raw));
  }
});

Deno.test("node_id 0 and port 70000 are out of range at their lines", async () => {
  await loadError(
    { "postgresql.conf": "pgraft.node_id = 0\n" },
    "postgresql.conf",
    1,
    /pgraft\.node_id: "0" \(must be between 1 and 2147483647\)/,
  );
  await loadError(
    { "postgresql.conf": REQUIRED + "pgraft.port = 70000\n" },
    "postgresql.conf",
    4,
    /pgraft\.port: "70000" \(must be between 1 and 65535\)/,
  );
});

Deno.test("a syntax error is reported with file and line", async () => {
  await loadError(
    {
      "postgresql.conf": REQUIRED + "include 's.conf'\n",
      "s.conf": "a = 1\npgraft.cluster_name = two words\n",
    },
    "s.conf",
    2,
    /syntax error near "words"/,
  );
});

Deno.test("a missing required setting names the main file", async () => {
  const error = await loadError(
    { "postgresql.conf": "pgraft.address = x\npgraft.port = 7001\n" },
    "postgresql.conf",
    null,
    /node_id/,
  );
  assert.equal(error.message, "postgresql.conf: pgraft.node_id is not set");
  await loadError(
    { "postgresql.conf": "pgraft.node_id = 1\npgraft.address = x\n" },
    "postgresql.conf",
    null,
    /^postgresql\.conf: pgraft\.port is not set$/,
  );
  await loadError(
    { "postgresql.conf": "pgraft.node_id = 1\npgraft.port = 1\n" },
    "postgresql.conf",
    null,
    /^postgresql\.conf: pgraft\.address is not set$/,
  );
});

Deno.test("a missing main file is a ConfigError naming it", async () => {
  await withFiles({}, async (dir) => {
    const path = join(dir, "missing.conf");
    await assert.rejects(loadConfig(path), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.file, path);
      assert.equal(e.line, null);
      assert.match(e.message, /could not open configuration file ".*missing\.conf": No such file/);
      return true;
    });
  });
});

Deno.test("election_timeout below twice heartbeat_interval is an error at the later line", async () => {
  await loadError(
    {
      "postgresql.conf": REQUIRED + "pgraft.election_timeout = 150ms\ninclude 'hb.conf'\n",
      "hb.conf": "pgraft.heartbeat_interval = 100ms\n",
    },
    "hb.conf",
    1,
    /pgraft\.election_timeout \(150ms\) must be at least 2 times pgraft\.heartbeat_interval \(100ms\)/,
  );
  await loadError(
    {
      "postgresql.conf": "pgraft.heartbeat_interval = 1s\n" + REQUIRED +
        "pgraft.election_timeout = 1.5s\n",
    },
    "postgresql.conf",
    5,
    /must be at least 2 times/,
  );
  // A default election_timeout (1000ms) against a file's heartbeat_interval.
  await loadError(
    { "postgresql.conf": REQUIRED + "pgraft.heartbeat_interval = 600ms\n" },
    "postgresql.conf",
    4,
    /\(1000ms\) must be at least 2 times pgraft\.heartbeat_interval \(600ms\)/,
  );
});

Deno.test("election_timeout below five times heartbeat_interval is a warning with file and line", async () => {
  const config = await load({
    "postgresql.conf": REQUIRED +
      "pgraft.heartbeat_interval = 100ms\npgraft.election_timeout = 400ms\n",
  });
  assert.equal(config.settings.electionTimeoutMs, 400);
  assert.deepEqual(config.warnings, [
    "postgresql.conf:5: pgraft.election_timeout (400ms) is less than 5 times " +
    "pgraft.heartbeat_interval (100ms); followers may start needless elections",
  ]);
  const exactlyTwice = await load({
    "postgresql.conf": REQUIRED + "pgraft.election_timeout = 200ms\n",
  });
  assert.equal(exactlyTwice.warnings.length, 1);
  const exactlyFive = await load({
    "postgresql.conf": REQUIRED + "pgraft.election_timeout = 500ms\n",
  });
  assert.deepEqual(exactlyFive.warnings, []);
});

Deno.test("auth_secret_file is read relative to the file that sets it, trimmed", async () => {
  const config = await load({
    "postgresql.conf": REQUIRED + "include 'secrets/pgraft.conf'\n",
    "secrets/pgraft.conf": "pgraft.auth_secret_file = 'token'\n",
    "secrets/token": "\n  abc123  \n",
  });
  assert.equal(config.settings.authSecret, "abc123");
  assert.match(entry(config, "auth_secret_file").setting, /\/secrets\/token$/);
  assert.ok(!config.entries.some((e) => e.setting.includes("abc123")), "the secret is not shown");
});

Deno.test("an unreadable or empty auth_secret_file is an error at its line", async () => {
  await loadError(
    { "postgresql.conf": REQUIRED + "pgraft.auth_secret_file = 'nope'\n" },
    "postgresql.conf",
    4,
    /could not read pgraft\.auth_secret_file ".*\/nope": No such file or directory/,
  );
  await loadError(
    { "postgresql.conf": REQUIRED + "pgraft.auth_secret_file = 'empty'\n", "empty": " \n\n" },
    "postgresql.conf",
    4,
    /pgraft\.auth_secret_file ".*\/empty" is empty/,
  );
});

Deno.test("auth_secret and auth_secret_file together are an error at the later line", async () => {
  await loadError(
    {
      "postgresql.conf": REQUIRED + "pgraft.auth_secret_file = s\npgraft.auth_secret = 'x'\n",
      "s": "y\n",
    },
    "postgresql.conf",
    5,
    /both set/,
  );
});

Deno.test("an empty auth_secret means none", async () => {
  const config = await load({ "postgresql.conf": REQUIRED + "pgraft.auth_secret = ''\n" });
  assert.equal(config.settings.authSecret, null);
  assert.equal(entry(config, "auth_secret").setting, "");
});

Deno.test("connection settings come from port, unix_socket_directories and listen_addresses", async () => {
  const config = await load({
    "postgresql.conf": "port = 5432\nunix_socket_directories = ' /run/a , /run/b'\n" +
      "listen_addresses = '*'\n" + REQUIRED + "include 'more.conf'\n",
    "more.conf": "PORT = 6543  # last one wins\n",
  });
  assert.deepEqual(config.connection, {
    port: 6543,
    unixSocketDirectory: "/run/a",
    listenAddress: "*",
    dataDirectory: null,
    sourcefile: config.files[0],
  });
  assert.equal(config.settings.port, 7001, "pgraft.port is not PostgreSQL's port");
});

Deno.test("an empty unix_socket_directories or listen_addresses gives null", async () => {
  const config = await load({
    "postgresql.conf": "unix_socket_directories = '/run/x'\nunix_socket_directories = ''\n" +
      "listen_addresses = ''\n" + REQUIRED,
  });
  assert.equal(config.connection.unixSocketDirectory, null);
  assert.equal(config.connection.listenAddress, null);
});

Deno.test("a double-quoted socket directory loses its quotes", async () => {
  const config = await load({
    "postgresql.conf": `unix_socket_directories = '"/run/with, comma", /tmp'\n` + REQUIRED,
  });
  // PostgreSQL's list syntax allows quoting; a comma inside quotes is beyond this reader.
  assert.equal(config.connection.unixSocketDirectory, '"/run/with');
  const plain = await load({
    "postgresql.conf": `unix_socket_directories = '"/run/quoted", /tmp'\n` + REQUIRED,
  });
  assert.equal(plain.connection.unixSocketDirectory, "/run/quoted");
});

Deno.test("an invalid PostgreSQL port is an error at its line", async () => {
  await loadError(
    { "postgresql.conf": REQUIRED + "port = 99999\n" },
    "postgresql.conf",
    4,
    /invalid value for port: "99999"/,
  );
});

Deno.test("kv_quota cannot be set in a file: it is part of the replicated state", async () => {
  const error = await loadError(
    { "postgresql.conf": REQUIRED + "pgraft.kv_quota = '1GB'\n" },
    "postgresql.conf",
    4,
    /replicated state.*pgraft_set_config\('kv_quota', '1GB'\)/,
  );
  assert.ok(error);
});
