import assert from "node:assert/strict";
import {
  FORWARDED_EVENTS_MAX,
  HaMessageError,
  parseHaMessage,
} from "../../../lib/agent/ha_messages.ts";

const WAL = { timeline: 2, receivedLsn: 100, replayedLsn: 90, flushedLsn: 100 };

Deno.test("every HA message kind parses back to what was sent", () => {
  const messages = [
    { kind: "report_request", leader: 2, term: 7, freeze: true },
    {
      kind: "report",
      nodeId: 3,
      term: 7,
      server: { state: "standby", upstream: null, wal: WAL },
      frozen: true,
    },
    {
      kind: "report",
      nodeId: 3,
      term: 7,
      server: { state: "diverged", upstream: 1, wal: WAL },
      frozen: false,
    },
    {
      kind: "report",
      nodeId: 1,
      term: 6,
      server: { state: "stopped", clean: true, rewindFailed: false, wal: WAL },
      frozen: true,
    },
    { kind: "report", nodeId: 1, term: 6, server: { state: "empty" }, frozen: true },
    {
      kind: "report",
      nodeId: 1,
      term: 6,
      server: { state: "refused", detail: "another system" },
      frozen: true,
    },
    {
      kind: "status",
      nodeId: 2,
      term: 7,
      server: { role: "standby", lsn: "0/3000148", timeline: 2, host: "10.0.0.2", port: 5432 },
      events: [{
        at: "2026-12-02T17:00:00.000Z",
        type: "postgres_cloned",
        term: 7,
        nodeId: 2,
        detail: "x",
      }],
    },
  ];
  for (const m of messages) assert.deepEqual(parseHaMessage(JSON.parse(JSON.stringify(m))), m);
});

Deno.test("a malformed HA message is refused with what is wrong, as a 400 (TypeError)", () => {
  const status = {
    kind: "status",
    nodeId: 2,
    term: 7,
    server: { role: "standby", lsn: null, timeline: null, host: "h", port: 5432 },
    events: [],
  };
  const cases: [unknown, RegExp][] = [
    [null, /the body must be an object/],
    [{ kind: "vote" }, /unknown kind "vote"/],
    [{ kind: "report_request", leader: 0, term: 1, freeze: false }, /leader must be a node id/],
    [{ kind: "report_request", leader: 1, term: 0, freeze: false }, /term must be an integer >= 1/],
    [{ kind: "report_request", leader: 1, term: 1, freeze: "yes" }, /freeze must be a boolean/],
    [
      { kind: "report", nodeId: 2, term: 1, server: { state: "primary" }, frozen: true },
      /server\.wal must be an object/,
    ],
    [
      {
        kind: "report",
        nodeId: 2,
        term: 1,
        server: { state: "standby", upstream: null, wal: { ...WAL, flushedLsn: -1 } },
        frozen: true,
      },
      /server\.wal\.flushedLsn must be an integer >= 0/,
    ],
    [
      { kind: "report", nodeId: 2, term: 1, server: { state: "running" }, frozen: true },
      /unknown server state "running"/,
    ],
    [{ ...status, server: { ...status.server, role: "leader" } }, /unknown server role "leader"/],
    [{ ...status, server: { ...status.server, port: 0 } }, /server\.port must be an integer >= 1/],
    [{ ...status, events: "none" }, /events must be an array/],
    [
      { ...status, events: Array.from({ length: FORWARDED_EVENTS_MAX + 1 }, () => ({})) },
      /events must be an array of at most/,
    ],
    [
      { ...status, events: [{ at: "yesterday", type: "x", term: 1, nodeId: 1, detail: "" }] },
      /events\[0\]\.at is not a timestamp/,
    ],
  ];
  for (const [body, message] of cases) {
    assert.throws(
      () => parseHaMessage(body),
      (e) => e instanceof HaMessageError && e instanceof TypeError && message.test(e.message),
      String(message),
    );
  }
});
