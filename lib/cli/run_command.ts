/**
 * `pgraft run --config FILE`: the agent, until SIGTERM or SIGINT. On either
 * signal a leader first hands leadership over, then the agent stops cleanly.
 * An agent that cannot go on (its Raft log cannot be written, or its
 * PostgreSQL belongs to another cluster) says why and exits 1.
 *
 * @module
 */

import { Agent } from "../agent/mod.ts";
import type { LogFormat } from "../agent/log.ts";
import { configAndConnection, type Flags, type Output } from "./output.ts";

/** Run the command. */
export async function runCommand(flags: Flags, io: Output): Promise<number> {
  const logFormat = (flags["log-format"] ?? "json") as string;
  if (logFormat !== "json" && logFormat !== "text") {
    io.err(`pgraft run: invalid --log-format "${logFormat}" (expected json or text)\n`);
    return 2;
  }
  const loaded = await configAndConnection(flags, io, "run");
  if (!loaded) return 1;
  const { config, connection } = loaded;
  for (const warning of config.warnings) io.err(`warning: ${warning}\n`);
  let agent: Agent;
  try {
    agent = await Agent.start({ config, connection, logFormat: logFormat as LogFormat });
  } catch (error) {
    io.err(`pgraft run: cannot start: ${(error as Error).message}\n`);
    return 1;
  }
  const stopped = new Promise<number>((resolve) => {
    const onSignal = () => {
      agent.stop({ handOver: true }).finally(() => resolve(0));
    };
    Deno.addSignalListener("SIGTERM", onSignal);
    Deno.addSignalListener("SIGINT", onSignal);
  });
  const failed = agent.failed.then((error) => {
    io.err(`pgraft run: ${error.message}${error.cause ? `: ${error.cause}` : ""}\n`);
    return 1;
  });
  return await Promise.race([stopped, failed]);
}
