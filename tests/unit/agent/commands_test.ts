import assert from "node:assert/strict";
import type { Agent } from "../../../lib/agent/agent.ts";
import { CommandExecutor, type CommandReply } from "../../../lib/agent/commands.ts";

/** Counts executions instead of proposing (the leader side of a forwarded command). */
class CountingExecutor extends CommandExecutor {
  runs = 0;
  override executeLocal(): Promise<CommandReply> {
    this.runs++;
    return Promise.resolve({ index: 41 + this.runs, result: {} });
  }
}

Deno.test("a forwarded command resent with the same request id runs once and gets the first answer", async () => {
  const executor = new CountingExecutor({} as Agent);
  const body = { kind: "kv_put", args: { key: "k", value: "v" }, requestId: "req-1" };
  const [a, b] = await Promise.all([
    executor.executeForwarded(body),
    executor.executeForwarded(body),
  ]);
  assert.deepEqual(a, { index: 42, result: {} });
  assert.deepEqual(b, { index: 42, result: {} });
  assert.equal(executor.runs, 1);
  await executor.executeForwarded({ ...body, requestId: "req-2" });
  assert.equal(executor.runs, 2);
});

Deno.test("a malformed forwarded command is refused without running", async () => {
  const executor = new CountingExecutor({} as Agent);
  assert.deepEqual(await executor.executeForwarded(null), { error: "malformed command" });
  assert.match(
    (await executor.executeForwarded({ kind: "drop_table", args: {} }) as { error: string }).error,
    /unknown command kind/,
  );
  assert.equal(executor.runs, 0);
});
