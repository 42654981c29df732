import assert from "node:assert/strict";
import { ForwardedRequests, Ops, type OpsDeps } from "../../../lib/agent/ops.ts";

Deno.test("a forwarded request resent with the same id runs once and gets the first answer", async () => {
  const requests = new ForwardedRequests<number>();
  let runs = 0;
  const run = () => Promise.resolve(41 + ++runs);
  const [a, b] = await Promise.all([requests.answer("req-1", run), requests.answer("req-1", run)]);
  assert.equal(a, 42);
  assert.equal(b, 42);
  assert.equal(runs, 1);
  assert.equal(await requests.answer("req-2", run), 43);
  assert.equal(await requests.answer(null, run), 44);
  assert.equal(await requests.answer(null, run), 45);
  assert.equal(runs, 4);
});

Deno.test("a malformed forwarded command is refused without running", async () => {
  // No dependencies: anything that got as far as running would throw.
  const ops = new Ops({} as OpsDeps);
  assert.deepEqual(await ops.executeForwarded(null), { error: "malformed command" });
  assert.match(
    (await ops.executeForwarded({ kind: "drop_table", args: {} }) as { error: string }).error,
    /unknown command kind/,
  );
  assert.match(
    (await ops.executeForwarded({ kind: "kv_put", args: null }) as { error: string }).error,
    /malformed command arguments/,
  );
});
