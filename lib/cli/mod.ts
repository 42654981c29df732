/**
 * The command line: parses arguments with node:util parseArgs and dispatches
 * to one function per subcommand (each in its own file). Every function
 * returns the exit code; tests call {@link main} with their own output streams.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { COMMAND_USAGE, MAIN_USAGE } from "./usage.ts";
import { configCommand } from "./config_command.ts";
import { migrateCommand } from "./migrate_command.ts";
import { runCommand } from "./run_command.ts";
import { devCommand } from "./dev_command.ts";
import { statusCommand } from "./status_command.ts";
import { VERSION } from "../version.ts";
import { type Command, type Flags, type Output, STDIO } from "./output.ts";

export type { Command, Flags, Output };

type Options = NonNullable<ParseArgsConfig["options"]>;

const COMMON: Options = { help: { type: "boolean", short: "h" } };

const OPTIONS: Record<string, Options> = {
  run: {
    ...COMMON,
    config: { type: "string", short: "c" },
    "pg-url": { type: "string" },
    "log-format": { type: "string" },
  },
  dev: {
    ...COMMON,
    nodes: { type: "string", short: "n" },
    dir: { type: "string" },
    ha: { type: "boolean" },
  },
  config: { ...COMMON, config: { type: "string", short: "c" }, json: { type: "boolean" } },
  migrate: { ...COMMON, config: { type: "string", short: "c" }, "pg-url": { type: "string" } },
  status: {
    ...COMMON,
    config: { type: "string", short: "c" },
    "pg-url": { type: "string" },
    json: { type: "boolean" },
  },
  version: { ...COMMON },
};

const COMMANDS: Record<string, Command> = {
  run: runCommand,
  dev: devCommand,
  config: configCommand,
  migrate: migrateCommand,
  status: statusCommand,
  version: (_flags, io) => {
    io.out(`pgraft ${VERSION} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})\n`);
    return Promise.resolve(0);
  },
};

/** Commands that cannot work without `--config FILE`. */
const NEEDS_CONFIG = new Set(["run", "config", "migrate", "status"]);

/**
 * Run the CLI.
 *
 * @param args the arguments after the program name
 * @param io where to write. @default STDIO
 * @returns the exit code: 0 success, 1 failure, 2 usage error
 */
export async function main(args: string[], io: Output = STDIO): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    (name === undefined ? io.err : io.out)(MAIN_USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  const options = OPTIONS[name];
  if (!command || !options) {
    io.err(`pgraft: unknown command "${name}"\n\n${MAIN_USAGE}`);
    return 2;
  }
  let flags: Flags;
  try {
    flags = parseArgs({ args: rest, options, strict: true, allowPositionals: false })
      .values as Flags;
  } catch (error) {
    io.err(`pgraft ${name}: ${(error as Error).message}\n\n${COMMAND_USAGE[name]}`);
    return 2;
  }
  if (flags.help) {
    io.out(COMMAND_USAGE[name]!);
    return 0;
  }
  if (NEEDS_CONFIG.has(name) && typeof flags.config !== "string") {
    io.err(`pgraft ${name}: --config FILE is required\n\n${COMMAND_USAGE[name]}`);
    return 2;
  }
  return await command(flags, io);
}
