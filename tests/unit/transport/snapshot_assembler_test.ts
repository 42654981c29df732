/**
 * The snapshot assembler without HTTP: chunks in order make the whole
 * envelope; everything else is refused or dropped, within one memory budget.
 * (`snapshot_test.ts` covers the same through `POST /raft/snapshot`.)
 */
import assert from "node:assert/strict";
import { Metrics, Rejection } from "../../../lib/transport/mod.ts";
import { SnapshotAssembler } from "../../../lib/transport/snapshot_assembler.ts";

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);

function assembler(maxBytes = 1000, timeoutMs = 5000) {
  const metrics = new Metrics();
  const dropped = (reason: string) =>
    metrics.value("transport_snapshot_transfers_dropped_total", { reason }) ?? 0;
  return { a: new SnapshotAssembler(maxBytes, timeoutMs, metrics), dropped };
}

function refused(fn: () => unknown, status: number, reason: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof Rejection);
    assert.equal(error.status, status);
    assert.equal(error.reason, reason);
    return true;
  });
}

Deno.test("chunks in order make the whole envelope, once", () => {
  const { a } = assembler();
  assert.equal(a.accept(1, { id: "s", offset: 0, total: 5 }, bytes(2, 1), 0), null);
  assert.equal(a.size, 1);
  const whole = a.accept(1, { id: "s", offset: 2, total: 5 }, bytes(3, 2), 0);
  assert.deepEqual(whole, new Uint8Array([1, 1, 2, 2, 2]));
  assert.equal(a.size, 0, "a finished transfer is forgotten");
  refused(
    () => a.accept(1, { id: "s", offset: 2, total: 5 }, bytes(3, 2), 0),
    409,
    "snapshot_out_of_order",
  );
});

Deno.test("a gap, a chunk beyond the total, an empty chunk or a total over the limit is refused", () => {
  const { a, dropped } = assembler(1000);
  a.accept(1, { id: "s", offset: 0, total: 10 }, bytes(2, 1), 0);
  refused(
    () => a.accept(1, { id: "s", offset: 4, total: 10 }, bytes(2, 1), 0),
    409,
    "snapshot_out_of_order",
  );
  assert.equal(dropped("rejected"), 1);
  assert.equal(a.size, 0);
  refused(() => a.accept(1, { id: "t", offset: 0, total: 3 }, bytes(4, 1), 0), 400, "bad_request");
  refused(() => a.accept(1, { id: "t", offset: 0, total: 3 }, bytes(0, 1), 0), 400, "bad_request");
  refused(() => a.accept(1, { id: "t", offset: 0, total: 1001 }, bytes(1, 1), 0), 413, "too_large");
  assert.equal(a.size, 0);
});

Deno.test("one transfer per sender, one memory budget, and idle ones expire", () => {
  const { a, dropped } = assembler(1000, 5000);
  a.accept(1, { id: "old", offset: 0, total: 400 }, bytes(1, 1), 0);
  a.accept(1, { id: "new", offset: 0, total: 400 }, bytes(1, 1), 1);
  assert.equal(dropped("superseded"), 1);
  a.accept(2, { id: "two", offset: 0, total: 500 }, bytes(1, 1), 2);
  assert.equal(a.size, 2);
  a.accept(3, { id: "three", offset: 0, total: 300 }, bytes(1, 1), 3);
  assert.equal(dropped("evicted"), 1, "the idlest (node 1's) made room");
  refused(
    () => a.accept(1, { id: "new", offset: 1, total: 400 }, bytes(1, 1), 4),
    409,
    "snapshot_out_of_order",
  );
  a.sweep(5003);
  assert.equal(a.size, 1, "idle for more than 5000 ms: node 2's (since 2), not yet node 3's");
  a.sweep(5004);
  assert.equal(a.size, 0);
  assert.equal(dropped("timeout"), 2);
});
