/**
 * `pgraft run --config FILE`: the agent, until SIGTERM or SIGINT. On either
 * signal a leader first hands leadership over, then the agent stops cleanly.
 * An agent that cannot go on (its Raft log cannot be written, or its
 * PostgreSQL belongs to another cluster) says why and exits 1.
 *
 * @module
 */

import { ConfigError, loadConfig } from "../config/mod.ts";
import { resolveConnection } from "../postgres/connection.ts";
import { Agent } from "../agent/mod.ts";
import type { LogFormat } from "../agent/log.ts";
import type { Flags, Output } from "./output.ts";

/** Run the command. */
export async function runCommand(flags: Flags, io: Output): Promise<number> {
  const logFormat = (flags["log-format"] ?? "json") as string;
  if (logFormat !== "json" && logFormat !== "text") {
    io.err(`pgraft run: invalid --log-format "${logFormat}" (expected json or text)\n`);
    return 2;
  }
  let agent: Agent;
  try {
    const config = await loadConfig(flags.config as string);
    for (const warning of config.warnings) io.err(`warning: ${warning}\n`);
    const connection = resolveConnection(config.connection, config.settings.database, {
      pgUrl: flags["pg-url"] as string | undefined,
    });
    agent = await Agent.start({ config, connection, logFormat: logFormat as LogFormat });
  } catch (error) {
    if (error instanceof ConfigError || error instanceof TypeError || error instanceof RangeError) {
      io.err(`pgraft run: ${(error as Error).message}\n`);
      return 1;
    }
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
