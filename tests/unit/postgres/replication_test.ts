import assert from "node:assert/strict";
import {
  checkDivergence,
  compareLsn,
  conninfoTarget,
  formatLsn,
  HBA_BEGIN,
  HBA_END,
  hbaBlock,
  maxLsn,
  parseConninfo,
  parseLsn,
  parseTimelineHistory,
  primaryConninfo,
  sourceConninfo,
  standbyWalPosition,
  withHbaBlock,
} from "../../../lib/postgres/replication.ts";

Deno.test("LSNs parse, print and order as 64-bit positions", () => {
  assert.equal(parseLsn("0/3000148"), 0x3000148n);
  assert.equal(parseLsn("1/0"), 0x1_0000_0000n);
  assert.equal(formatLsn(parseLsn("2A/FF00")), "2A/FF00");
  assert.ok(compareLsn("0/FFFFFFFF", "1/0") < 0);
  assert.equal(compareLsn("0/3000148", "0/3000148"), 0);
  assert.equal(maxLsn(null, "0/10"), "0/10");
  assert.equal(maxLsn("1/0", "0/FFFFFFFF"), "1/0");
  assert.throws(() => parseLsn("3000148"), SyntaxError);
});

Deno.test("primary_conninfo names the standby and quotes what libpq needs quoted", () => {
  const plain = primaryConninfo({
    host: "10.0.0.1",
    port: 5432,
    user: "replicator",
    applicationName: "n2",
  });
  assert.equal(
    plain,
    "host=10.0.0.1 port=5432 user=replicator application_name=n2 connect_timeout=2",
  );
  const quoted = primaryConninfo({
    host: "h",
    port: 1,
    user: "u",
    applicationName: "node two",
    password: "it's\\secret",
  });
  assert.match(quoted, /application_name='node two'/);
  assert.match(quoted, /password='it\\'s\\\\secret'/);
  assert.match(
    sourceConninfo({ host: "h", port: 1, user: "u", applicationName: "a" }, "postgres", "tool"),
    /dbname=postgres/,
  );
});

Deno.test("a timeline history file parses; a bad line is named", () => {
  const text =
    "1\t0/3000148\tno recovery target specified\n\n2\t0/5000000\tno recovery target specified\n";
  assert.deepEqual(parseTimelineHistory(text), [
    { timeline: 1, switchpoint: "0/3000148" },
    { timeline: 2, switchpoint: "0/5000000" },
  ]);
  assert.throws(() => parseTimelineHistory("1\t0/3000148\nbad line\n"), /line 2/);
});

Deno.test("divergence: behind on an ancestor timeline follows, past its switchpoint must rewind", () => {
  const primary = {
    timeline: 3,
    lsn: "0/9000000",
    history: [
      { timeline: 1, switchpoint: "0/3000100" },
      { timeline: 2, switchpoint: "0/6000000" },
    ],
  };
  const at = (timeline: number, lsn: string, lastRecordStart = false) =>
    checkDivergence({ timeline, lsn, lastRecordStart }, primary);
  assert.equal(at(1, "0/3000100").diverged, false, "a running server's WAL ending at the fork");
  assert.equal(at(1, "0/3000101").diverged, true);
  assert.equal(at(2, "0/5000000").diverged, false);
  // A stopped server: its last record (the shutdown checkpoint) starts at lsn.
  assert.equal(at(1, "0/3000000", true).diverged, false);
  assert.equal(at(1, "0/3000100", true).diverged, true, "the checkpoint itself was not received");
  assert.equal(at(3, "0/9000000").diverged, false);
  assert.equal(at(3, "0/9000001").diverged, true, "ahead of the primary on its own timeline");
  const unknown = at(4, "0/1000000");
  assert.equal(unknown.diverged, true);
  assert.match((unknown as { reason: string }).reason, /timeline 4 is not in the history/);
});

Deno.test("a standby holding part of a record past the switch point follows the new timeline", () => {
  // Seen in the HAProxy end-to-end test: the primary was killed while it
  // sent a record; both standbys had received up to 0/5030000, the last whole
  // record ended at 0/502FFE8, and the promoted one's timeline 2 started there.
  // pg_rewind of the other then failed: there was nothing to rewind.
  const primary = {
    timeline: 2,
    lsn: "0/5040000",
    history: [{ timeline: 1, switchpoint: "0/502FFE8" }],
  };
  const frozen = { timeline: 1, lsn: "0/5030000", replayLsn: "0/502FFE8" };
  assert.equal(checkDivergence(standbyWalPosition(frozen)!, primary).diverged, false);
  const replayedPast = { ...frozen, replayLsn: "0/5030000" };
  assert.equal(checkDivergence(standbyWalPosition(replayedPast)!, primary).diverged, true);
  assert.equal(
    standbyWalPosition({ timeline: 1, lsn: "0/5030000", replayLsn: null })?.lsn,
    "0/5030000",
  );
  assert.equal(standbyWalPosition({ timeline: null, lsn: "0/5030000", replayLsn: null }), null);
});

Deno.test("pgraft's pg_hba.conf block goes first, once, and replaces an earlier one", () => {
  const block = hbaBlock({
    user: "postgres",
    method: "trust",
    addresses: ["10.0.0.2", "10.1.0.0/16"],
  });
  assert.match(block, /^host replication postgres 127\.0\.0\.1\/32 trust$/m);
  assert.match(block, /^host postgres postgres 10\.0\.0\.2\/32 trust$/m);
  assert.match(block, /^host replication postgres 10\.1\.0\.0\/16 trust$/m);
  assert.match(block, /^local replication postgres trust$/m);
  const original =
    "# Debian\nlocal all postgres peer\nhost replication all 127.0.0.1/32 scram-sha-256\n";
  const once = withHbaBlock(original, block);
  assert.ok(once.startsWith(HBA_BEGIN));
  assert.ok(once.endsWith(original));
  assert.equal(withHbaBlock(once, block), once);
  const other = hbaBlock({ user: "replicator", method: "scram-sha-256" });
  const replaced = withHbaBlock(once, other);
  assert.equal(replaced.split(HBA_END).length, 2);
  assert.doesNotMatch(replaced, /postgres 10\.0\.0\.2/);
  assert.ok(replaced.endsWith(original));
  assert.throws(() => hbaBlock({ user: "a b", method: "trust" }), RangeError);
});

Deno.test("a connection string parses back to its keywords; its host and port are the upstream", () => {
  const text = primaryConninfo({
    host: "db-2",
    port: 6543,
    user: "u",
    applicationName: "node two",
    password: "it's\\x",
  });
  const info = parseConninfo(text);
  assert.equal(info.get("application_name"), "node two");
  assert.equal(info.get("password"), "it's\\x");
  assert.deepEqual(conninfoTarget(text), { host: "db-2", port: 6543 });
  assert.deepEqual(conninfoTarget("host=h"), { host: "h", port: 5432 });
  assert.equal(conninfoTarget(""), null);
  assert.throws(() => parseConninfo("host='open"), SyntaxError);
  assert.throws(() => parseConninfo("host"), SyntaxError);
});
