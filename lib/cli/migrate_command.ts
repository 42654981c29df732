/**
 * `pgraft migrate --config FILE`: apply the control schema migrations to the
 * PostgreSQL server that FILE configures.
 *
 * @module
 */

import { openPostgres } from "../postgres/connection.ts";
import { migrate } from "../postgres/migrations.ts";
import { configAndConnection, type Flags, type Output } from "./output.ts";

/** Run the command. */
export async function migrateCommand(flags: Flags, io: Output): Promise<number> {
  const loaded = await configAndConnection(flags, io, "migrate");
  if (!loaded) return 1;
  const { connection } = loaded;
  const sql = openPostgres({ ...connection, max: 1, connect_timeout: 10 });
  try {
    const result = await migrate(sql);
    for (const m of result.applied) {
      io.out(`applied ${String(m.version).padStart(3, "0")}_${m.name}\n`);
    }
    io.out(
      result.applied.length === 0
        ? `pgraft migrate: up to date (${result.alreadyApplied} migrations)\n`
        : `pgraft migrate: applied ${result.applied.length} migration(s)\n`,
    );
    return 0;
  } catch (error) {
    const where = `${connection.user}@${connection.host}:${connection.port}/${connection.database}`;
    io.err(`pgraft migrate: cannot migrate ${where}: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await sql.end({ timeout: 5 });
  }
}
