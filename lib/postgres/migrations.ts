/**
 * Migrations: `sql/NNN_name.sql`, embedded in the executable through text
 * imports, applied in order under an advisory lock and recorded in
 * `pgraft.schema_migrations`. Running them again is a no-op, and two processes
 * migrating at once apply each file once (the second waits for the lock, then
 * finds everything recorded).
 *
 * @module
 */

import type postgres from "postgres";
import m001 from "../../sql/001_schema.sql" with { type: "text" };
import m002 from "../../sql/002_status.sql" with { type: "text" };
import m003 from "../../sql/003_published.sql" with { type: "text" };
import m004 from "../../sql/004_commands.sql" with { type: "text" };
import m010 from "../../sql/010_internal.sql" with { type: "text" };
import m011 from "../../sql/011_agent_writes.sql" with { type: "text" };
import m012 from "../../sql/012_read_functions.sql" with { type: "text" };
import m013 from "../../sql/013_command_functions.sql" with { type: "text" };
import m014 from "../../sql/014_kv_functions.sql" with { type: "text" };
import m015 from "../../sql/015_privileges.sql" with { type: "text" };

/** One numbered migration file. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

function migration(file: string, sql: string): Migration {
  const match = /^(\d{3})_([a-z0-9_]+)\.sql$/.exec(file);
  if (!match) throw new TypeError(`bad migration file name: ${file}`);
  return { version: Number(match[1]), name: match[2]!, sql };
}

/** Every migration, in order. Add a file in sql/ and a line here. */
export const MIGRATIONS: readonly Migration[] = [
  migration("001_schema.sql", m001),
  migration("002_status.sql", m002),
  migration("003_published.sql", m003),
  migration("004_commands.sql", m004),
  migration("010_internal.sql", m010),
  migration("011_agent_writes.sql", m011),
  migration("012_read_functions.sql", m012),
  migration("013_command_functions.sql", m013),
  migration("014_kv_functions.sql", m014),
  migration("015_privileges.sql", m015),
];

/** Key of the advisory lock that serializes migrators (any fixed 64-bit number). */
export const MIGRATION_LOCK_KEY = 7_236_841_172_050_239n;

/** What one run did. */
export interface MigrationResult {
  applied: Migration[];
  alreadyApplied: number;
}

/**
 * Apply every migration not yet recorded, in one transaction under
 * `pg_advisory_xact_lock`.
 *
 * @param sql a postgres.js pool on the node's own database
 * @param migrations the migrations to apply. @default MIGRATIONS
 */
export async function migrate(
  sql: postgres.Sql,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<MigrationResult> {
  checkOrder(migrations);
  return await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    await tx`set local client_min_messages = warning`;
    await tx`create schema if not exists pgraft`;
    await tx`create table if not exists pgraft.schema_migrations (
               version int primary key,
               name text not null,
               applied_at timestamptz not null default now())`;
    const rows = await tx<{ version: number }[]>`select version from pgraft.schema_migrations`;
    const done = new Set(rows.map((r) => r.version));
    const applied: Migration[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await tx.unsafe(m.sql);
      await tx`insert into pgraft.schema_migrations (version, name) values (${m.version}, ${m.name})`;
      applied.push(m);
    }
    return { applied, alreadyApplied: done.size };
  });
}

function checkOrder(migrations: readonly Migration[]): void {
  let previous = 0;
  for (const m of migrations) {
    if (m.version <= previous) {
      throw new RangeError(`migration ${m.version}_${m.name} is out of order`);
    }
    previous = m.version;
  }
}
