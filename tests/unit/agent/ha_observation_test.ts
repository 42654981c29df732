import assert from "node:assert/strict";
import {
  healthServer,
  lsnBytes,
  memberAt,
  pgRole,
  serverObservation,
} from "../../../lib/agent/ha_observation.ts";
import type { Observation } from "../../../lib/postgres/supervisor.ts";

const MEMBERS = [
  { nodeId: 1, host: "10.0.0.1", port: 5432 },
  { nodeId: 2, host: "10.0.0.2", port: 5432 },
];

function seen(fields: Partial<Observation>): Observation {
  return {
    role: "stopped",
    pid: null,
    lsn: null,
    timeline: null,
    receiveLsn: null,
    replayLsn: null,
    flushLsn: null,
    primaryConninfo: null,
    upstream: null,
    synchronousStandbyNames: null,
    rewindFailed: false,
    sender: null,
    streaming: false,
    senderLsn: null,
    cleanShutdown: null,
    divergence: null,
    dataDirectory: { kind: "ours", systemIdentifier: "7" },
    error: null,
    ...fields,
  };
}

Deno.test("an LSN is its byte offset", () => {
  assert.equal(lsnBytes("0/0"), 0);
  assert.equal(lsnBytes("0/3000148"), 0x3000148);
  assert.equal(lsnBytes("1/0"), 2 ** 32);
});

Deno.test("the upstream is the member whose server primary_conninfo names, else none", () => {
  assert.equal(memberAt(MEMBERS, { host: "10.0.0.2", port: 5432 }), 2);
  assert.equal(memberAt(MEMBERS, { host: "10.0.0.2", port: 5433 }), 0);
});

Deno.test("a standby's position is its received and replayed WAL; frozen when it names no upstream", () => {
  const standby = serverObservation(
    seen({
      role: "standby",
      timeline: 2,
      receiveLsn: "0/3000200",
      replayLsn: "0/3000100",
      upstream: { host: "10.0.0.1", port: 5432 },
    }),
    MEMBERS,
  );
  assert.deepEqual(standby, {
    state: "standby",
    upstream: 1,
    wal: { timeline: 2, receivedLsn: 0x3000200, replayedLsn: 0x3000100, flushedLsn: 0x3000200 },
  });
  const frozen = serverObservation(
    seen({ role: "standby", timeline: 2, replayLsn: "0/10" }),
    MEMBERS,
  );
  assert.deepEqual(frozen, {
    state: "standby",
    upstream: null,
    wal: { timeline: 2, receivedLsn: 0, replayedLsn: 16, flushedLsn: 16 },
  });
});

Deno.test("a stopped server's end of WAL is known only after a clean shutdown", () => {
  const clean = serverObservation(
    seen({ cleanShutdown: true, flushLsn: "0/5000028", timeline: 3 }),
    MEMBERS,
  );
  assert.deepEqual(clean, {
    state: "stopped",
    clean: true,
    rewindFailed: false,
    wal: { timeline: 3, receivedLsn: 0x5000028, replayedLsn: 0x5000028, flushedLsn: 0x5000028 },
  });
  const crashed = serverObservation(seen({ cleanShutdown: false, timeline: 3 }), MEMBERS);
  assert.deepEqual(crashed, { state: "stopped", clean: false, rewindFailed: false, wal: null });
});

Deno.test("an empty directory, another system's, and a server that does not answer", () => {
  assert.deepEqual(serverObservation(seen({ dataDirectory: { kind: "empty" } }), MEMBERS), {
    state: "empty",
  });
  assert.deepEqual(
    serverObservation(
      seen({
        dataDirectory: { kind: "foreign", systemIdentifier: "9", reason: "system 9, not 7" },
      }),
      MEMBERS,
    ),
    { state: "refused", detail: "system 9, not 7" },
  );
  assert.deepEqual(serverObservation(seen({ role: "unknown", pid: 5 }), MEMBERS), {
    state: "starting",
  });
});

Deno.test("pg_role and the health checks' view follow the observation", () => {
  const standby = seen({
    role: "standby",
    timeline: 2,
    receiveLsn: "0/3000200",
    replayLsn: "0/3000100",
    senderLsn: "0/3000300",
    streaming: true,
  });
  assert.equal(pgRole(standby, serverObservation(standby, MEMBERS)), "standby");
  assert.equal(pgRole(null, null), "unknown");
  const stopped = seen({});
  assert.equal(pgRole(stopped, serverObservation(stopped, MEMBERS)), "stopped");
  assert.equal(healthServer(standby).lagBytes, 0x200);
  assert.equal(healthServer(seen({ role: "primary", lsn: "0/5" })).lagBytes, null);
  assert.equal(healthServer(null).role, "unknown");
});
