/**
 * `pgraft config --config FILE [--json]`: the effective pgraft settings with
 * where each came from.
 *
 * @module
 */

import { ConfigError, loadConfig, type SettingEntry } from "../config/mod.ts";
import { type Flags, formatTable, type Output } from "./output.ts";

/** Render entries as an aligned table like psql's. */
export function formatSettingsTable(entries: readonly SettingEntry[]): string {
  return formatTable(entries.map((e) => ({
    name: e.name,
    setting: e.setting,
    unit: e.unit ?? "",
    source: e.source,
    sourcefile: e.sourcefile ?? "",
    sourceline: e.sourceline,
  })));
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
