/**
 * What every subcommand shares: where it writes ({@link Output}), the flags
 * it was given ({@link Flags}), the configuration file and connection it
 * names, and the aligned tables it prints.
 *
 * @module
 */

import { ConfigError, loadConfig, type LoadedConfig } from "../config/mod.ts";
import { type PgConnectionOptions, resolveConnection } from "../postgres/connection.ts";

/** Where a command writes; tests pass collectors. */
export interface Output {
  out: (text: string) => void;
  err: (text: string) => void;
}

const encoder = new TextEncoder();

/** The process's stdout and stderr. */
export const STDIO: Output = {
  out: (text) => Deno.stdout.writeSync(encoder.encode(text)),
  err: (text) => Deno.stderr.writeSync(encoder.encode(text)),
};

/** Parsed flags of one command. */
export type Flags = Record<string, string | boolean | undefined>;

/** A command's implementation: returns the exit code. */
export type Command = (flags: Flags, io: Output) => Promise<number>;

/**
 * Rows as an aligned table like psql's (columns from the first row's keys;
 * null and undefined print empty).
 *
 * @example
 * ```ts
 * formatTable([{ a: 1, b: null }]); // "a | b\n--+--\n1 |\n"
 * ```
 */
export function formatTable(rows: readonly Record<string, unknown>[]): string {
  if (rows.length === 0) return "(no rows)\n";
  const header = Object.keys(rows[0]!);
  const cells = rows.map((r) =>
    header.map((h) => r[h] === null || r[h] === undefined ? "" : String(r[h]))
  );
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i]!)).join(" | ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("-+-"), ...cells.map(line)]
    .join("\n") + "\n";
}

/**
 * The configuration file a command names (`--config`) and the connection to
 * its PostgreSQL (`--pg-url` and the `PG*` variables override the file), or
 * null when the file cannot be used — the reason is already written to `io`,
 * as `pgraft <command>: …`.
 */
export async function configAndConnection(
  flags: Flags,
  io: Output,
  command: string,
): Promise<{ config: LoadedConfig; connection: PgConnectionOptions } | null> {
  try {
    const config = await loadConfig(flags.config as string);
    const connection = resolveConnection(config.connection, config.settings.database, {
      pgUrl: flags["pg-url"] as string | undefined,
    });
    return { config, connection };
  } catch (error) {
    if (error instanceof ConfigError || error instanceof TypeError || error instanceof RangeError) {
      io.err(`pgraft ${command}: ${error.message}\n`);
      return null;
    }
    throw error;
  }
}
