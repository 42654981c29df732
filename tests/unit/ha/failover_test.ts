/**
 * The comparison a failover makes (lib/ha/failover.ts), and the counting
 * argument behind it checked exhaustively for 2 to 7 voters.
 */

import assert from "node:assert/strict";
import {
  compareWal,
  finalPosition,
  planFailover,
  reportsNeeded,
  synchronousCount,
} from "../../../lib/ha/mod.ts";
import { at, frozenAt, report } from "./helpers.ts";

Deno.test("positions order by timeline first, then flushed LSN", () => {
  assert.ok(compareWal(at(3, 10), at(2, 1_000_000)) > 0);
  assert.ok(compareWal(at(2, 10), at(2, 11)) < 0);
  assert.equal(compareWal(at(2, 10), at(2, 10)), 0);
  const received = { timeline: 2, receivedLsn: 900, replayedLsn: 100, flushedLsn: 500 };
  assert.ok(compareWal(received, at(2, 600)) < 0, "the flushed LSN is what counts");
});

Deno.test("a final position: known, and nothing more can arrive", () => {
  assert.deepEqual(finalPosition({ state: "empty" }, 1), { wal: null, candidate: false });
  assert.deepEqual(finalPosition({ state: "refused", detail: "x" }, 1), {
    wal: null,
    candidate: false,
  });
  assert.deepEqual(finalPosition(frozenAt(2, 7), 1), { wal: at(2, 7), candidate: true });
  assert.deepEqual(
    finalPosition({ state: "standby", upstream: 1, wal: at(2, 7) }, 1),
    { wal: at(2, 7), candidate: true },
    "streaming from the collecting leader's own server",
  );
  assert.equal(finalPosition({ state: "standby", upstream: 3, wal: at(2, 7) }, 1), null);
  assert.deepEqual(finalPosition({ state: "diverged", upstream: 3, wal: at(1, 9) }, 1), {
    wal: at(1, 9),
    candidate: false,
  });
  const clean = { state: "stopped", clean: true, rewindFailed: false, wal: at(2, 7) } as const;
  assert.deepEqual(finalPosition(clean, 1), { wal: at(2, 7), candidate: true });
  assert.equal(finalPosition({ ...clean, clean: false, wal: null }, 1), null);
  assert.equal(finalPosition({ ...clean, rewindFailed: true }, 1), null);
  assert.equal(finalPosition({ state: "starting" }, 1), null);
  assert.equal(finalPosition({ state: "primary", wal: at(2, 7) }, 1), null);
});

Deno.test("reports needed: n − quorum + 1 (a majority of the others for odd n)", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(reportsNeeded), [1, 1, 2, 2, 3, 3, 4]);
});

/** Every k-subset of `items`. */
function subsets<T>(items: readonly T[], k: number): T[][] {
  if (k === 0) return [[]];
  if (items.length < k) return [];
  const [first, ...rest] = items as [T, ...T[]];
  return [...subsets(rest, k - 1).map((s) => [first, ...s]), ...subsets(rest, k)];
}

Deno.test("the argument, exhaustively: reports meet every acknowledgement, and the old primary can no longer commit", () => {
  for (let n = 2; n <= 7; n++) {
    const voters = Array.from({ length: n }, (_, k) => k + 1);
    const old = 1;
    const others = voters.filter((v) => v !== old);
    const k = synchronousCount(n);
    for (const reported of subsets(others, reportsNeeded(n))) {
      // 1. The standbys left to acknowledge for the old primary are fewer than k.
      const unfrozen = others.filter((v) => !reported.includes(v));
      assert.ok(unfrozen.length < k, `n=${n}: ${unfrozen.length} unfrozen standbys, k=${k}`);
      // 2. Every acknowledgement (the old primary and k standbys) meets the reports.
      for (const acked of subsets(others, k)) {
        assert.ok(
          acked.some((v) => reported.includes(v)),
          `n=${n} reports ${reported} ack ${acked}`,
        );
      }
    }
  }
});

const facts = {
  self: 2,
  term: 6,
  voters: [1, 2, 3, 4, 5],
  oldPrimary: 1,
  recordTimeline: 3,
  own: { wal: at(3, 500), candidate: true },
  members: [],
};

Deno.test("plan: five voters need three reports besides the old primary's", () => {
  assert.deepEqual(planFailover(facts), { kind: "collect", from: [1, 3, 4, 5], have: 1, need: 3 });
  const two = [report(3, frozenAt(3, 400), { term: 6 }), report(4, frozenAt(3, 450), { term: 6 })];
  assert.deepEqual(planFailover({ ...facts, members: two }), { kind: "self", timeline: 4 });
  const ahead = [
    report(3, frozenAt(3, 400), { term: 6 }),
    report(5, frozenAt(3, 501), { term: 6 }),
  ];
  assert.deepEqual(planFailover({ ...facts, members: ahead }), { kind: "transfer", to: 5 });
});

Deno.test("plan: ties go to this node, then to the lowest id", () => {
  const tie = [report(4, frozenAt(3, 500), { term: 6 }), report(3, frozenAt(3, 500), { term: 6 })];
  assert.deepEqual(planFailover({ ...facts, members: tie }), { kind: "self", timeline: 4 });
  const noOwn = { ...facts, own: { wal: null, candidate: false } };
  assert.deepEqual(planFailover({ ...noOwn, members: tie }), { kind: "transfer", to: 3 });
});

Deno.test("plan: the new timeline is above every timeline seen", () => {
  const members = [
    report(3, frozenAt(3, 400), { term: 6 }),
    report(4, frozenAt(5, 1), { term: 6 }),
  ];
  assert.deepEqual(planFailover({ ...facts, members }), { kind: "transfer", to: 4 });
  const ownAhead = { ...facts, own: { wal: at(5, 2), candidate: true } };
  assert.deepEqual(planFailover({ ...ownAhead, members }), { kind: "self", timeline: 6 });
});

Deno.test("plan: the old primary's own report does not count towards the number, but wins when ahead", () => {
  const members = [
    report(1, frozenAt(3, 700), { term: 6 }),
    report(3, frozenAt(3, 400), { term: 6 }),
  ];
  // Five voters: the old primary's final position is enough on its own.
  assert.deepEqual(planFailover({ ...facts, members }), { kind: "transfer", to: 1 });
  // But not when it cannot be promoted (its rewind failed, say).
  const broken = [
    report(1, { state: "stopped", clean: false, rewindFailed: true, wal: null }, { term: 6 }),
    report(3, frozenAt(3, 400), { term: 6 }),
  ];
  assert.equal(planFailover({ ...facts, members: broken }).kind, "collect");
});

Deno.test("plan: empty and foreign directories count as holding nothing", () => {
  const members = [
    report(3, { state: "empty" }, { term: 6 }),
    report(4, { state: "refused", detail: "x" }, { term: 6 }),
  ];
  assert.deepEqual(planFailover({ ...facts, members }), { kind: "self", timeline: 4 });
});
