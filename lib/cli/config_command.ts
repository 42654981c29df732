/**
 * `pgraft config --config FILE [--json]`: the effective pgraft settings with
 * where each came from.
 *
 * @module
 */

import { ConfigError, loadConfig, type SettingEntry } from "../config/mod.ts";
import type { Flags, Output } from "./mod.ts";

/** Render entries as an aligned table like psql's. */
export function formatSettingsTable(entries: readonly SettingEntry[]): string {
  const header = ["name", "setting", "unit", "source", "sourcefile", "sourceline"];
  const rows = entries.map((e) => [
    e.name,
    e.setting,
    e.unit ?? "",
    e.source,
    e.sourcefile ?? "",
    e.sourceline === null ? "" : String(e.sourceline),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("-+-"), ...rows.map(line)]
    .join("\n") + "\n";
}

/** Run the command. */
export async function configCommand(flags: Flags, io: Output): Promise<number> {
  try {
    const loaded = await loadConfig(flags.config as string);
    for (const warning of loaded.warnings) io.err(`warning: ${warning}\n`);
    if (flags.json) io.out(JSON.stringify(loaded.entries, null, 2) + "\n");
    else io.out(formatSettingsTable(loaded.entries));
    return 0;
  } catch (error) {
    if (error instanceof ConfigError || error instanceof Deno.errors.NotFound) {
      io.err(`pgraft config: ${(error as Error).message}\n`);
      return 1;
    }
    throw error;
  }
}
