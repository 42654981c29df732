/** synchronous_standby_names: ANY k with primary + k = a majority of the voters. */

import assert from "node:assert/strict";
import {
  applicationName,
  parseSynchronousStandbyNames,
  synchronousCount,
  synchronousStandbyNames,
} from "../../../lib/ha/mod.ts";
import { quorumSize } from "../../../lib/raft/mod.ts";

Deno.test("each member streams under pgraft_node_<id>", () => {
  assert.equal(applicationName(1), "pgraft_node_1");
  assert.equal(applicationName(42), "pgraft_node_42");
  assert.throws(() => applicationName(0));
});

Deno.test("k = quorum − 1: the primary and k standbys are a majority of the voters", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(synchronousCount), [0, 1, 1, 2, 2, 3, 3]);
  for (let n = 1; n <= 9; n++) assert.equal(1 + synchronousCount(n), quorumSize(n));
});

Deno.test("ANY k over the other voters, in id order", () => {
  assert.equal(synchronousStandbyNames([1, 2, 3], 2, true), "ANY 1 (pgraft_node_1, pgraft_node_3)");
  assert.equal(
    synchronousStandbyNames([5, 4, 3, 2, 1], 3, true),
    "ANY 2 (pgraft_node_1, pgraft_node_2, pgraft_node_4, pgraft_node_5)",
  );
  assert.equal(
    synchronousStandbyNames([1, 2, 3, 4], 1, true),
    "ANY 2 (pgraft_node_2, pgraft_node_3, pgraft_node_4)",
  );
  assert.equal(synchronousStandbyNames([1, 2], 1, true), "ANY 1 (pgraft_node_2)");
});

Deno.test("'' when asynchronous or alone", () => {
  assert.equal(synchronousStandbyNames([1, 2, 3], 1, false), "");
  assert.equal(synchronousStandbyNames([1], 1, true), "");
  assert.equal(synchronousStandbyNames([], 1, true), "");
});

Deno.test("a primary outside the voters does not count: k standbys alone are a majority", () => {
  assert.equal(
    synchronousStandbyNames([1, 2, 3], 4, true),
    "ANY 2 (pgraft_node_1, pgraft_node_2, pgraft_node_3)",
  );
});

Deno.test("what this module writes parses back; anything else is null", () => {
  for (let n = 1; n <= 7; n++) {
    const voters = Array.from({ length: n }, (_, k) => k + 1);
    const value = synchronousStandbyNames(voters, 1, true);
    const parsed = parseSynchronousStandbyNames(value)!;
    assert.equal(parsed.count, synchronousCount(n));
    assert.deepEqual(parsed.nodes, n === 1 ? [] : voters.slice(1));
  }
  assert.equal(parseSynchronousStandbyNames("FIRST 1 (a)"), null);
  assert.equal(parseSynchronousStandbyNames("ANY 1 (standby_a)"), null);
  assert.equal(parseSynchronousStandbyNames("*"), null);
});

Deno.test("duplicate voters are a bug", () => {
  assert.throws(() => synchronousStandbyNames([1, 2, 2], 1, true), /duplicate/);
});
