/**
 * How the agent reaches its own PostgreSQL: from postgresql.conf (`port`, the
 * first of `unix_socket_directories`, else `listen_addresses`), overridden by
 * the `PG*` environment variables, overridden by `--pg-url`.
 *
 * @module
 */

import postgres from "postgres";
import type { LocalServerSettings } from "../config/mod.ts";

/** Connection parameters for postgres.js. */
export interface PgConnectionOptions {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
}

/** Options for {@link resolveConnection}. */
export interface ResolveConnectionOptions {
  /** `--pg-url`: wins over everything */
  pgUrl?: string;
  /** environment to read `PG*` from. @default Deno.env */
  env?: Record<string, string | undefined>;
  /** OS user name, the default role name as libpq has it */
  osUser?: string;
}

function firstListenAddress(listen: string | null): string | null {
  if (!listen) return null;
  const first = listen.split(",").map((s) => s.trim()).find((s) => s.length > 0);
  if (!first) return null;
  if (first === "*" || first === "0.0.0.0") return "127.0.0.1";
  if (first === "::") return "::1";
  return first;
}

/**
 * Resolve the connection to this node's own PostgreSQL.
 *
 * @param server what postgresql.conf says
 * @param database `pgraft.database`
 * @example
 * ```ts
 * const c = resolveConnection({ port: 5433, unixSocketDirectory: "/tmp", listenAddress: null }, "postgres", { env: {} });
 * // c.host === "/tmp", c.port === 5433
 * ```
 */
export function resolveConnection(
  server: Pick<LocalServerSettings, "port" | "unixSocketDirectory" | "listenAddress">,
  database: string,
  options: ResolveConnectionOptions = {},
): PgConnectionOptions {
  const env = options.env ?? Deno.env.toObject();
  const osUser = options.osUser ?? env.USER ?? "postgres";
  const fromFile: PgConnectionOptions = {
    host: server.unixSocketDirectory ?? firstListenAddress(server.listenAddress) ?? "localhost",
    port: server.port ?? 5432,
    database,
    // As root the server's superuser is conventionally `postgres`.
    user: osUser === "root" ? "postgres" : osUser,
  };
  const result: PgConnectionOptions = {
    host: env.PGHOST || fromFile.host,
    port: env.PGPORT ? parsePort(env.PGPORT, "PGPORT") : fromFile.port,
    database: env.PGDATABASE || fromFile.database,
    user: env.PGUSER || fromFile.user,
  };
  if (env.PGPASSWORD) result.password = env.PGPASSWORD;
  if (options.pgUrl) return { ...result, ...parsePgUrl(options.pgUrl) };
  return result;
}

function parsePort(text: string, what: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`invalid ${what}: "${text}" (expected a port number 1..65535)`);
  }
  return port;
}

/** Parse `postgres://user:pass@host:port/db?host=/socket/dir`. */
export function parsePgUrl(url: string): Partial<PgConnectionOptions> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`invalid --pg-url: "${url}" (expected postgres://user@host:port/database)`);
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new TypeError(
      `invalid --pg-url: "${url}" (the scheme must be postgres:// or postgresql://)`,
    );
  }
  const out: Partial<PgConnectionOptions> = {};
  const socketHost = parsed.searchParams.get("host");
  if (socketHost) out.host = socketHost;
  else if (parsed.hostname) out.host = parsed.hostname.replace(/^\[|\]$/g, "");
  if (parsed.port) out.port = parsePort(parsed.port, "port in --pg-url");
  if (parsed.username) out.user = decodeURIComponent(parsed.username);
  if (parsed.password) out.password = decodeURIComponent(parsed.password);
  const db = parsed.pathname.replace(/^\//, "");
  if (db) out.database = decodeURIComponent(db);
  return out;
}

/**
 * A postgres.js client with the options every session of ours needs; every
 * client in the agent, the CLI and the tests is made here.
 *
 * - `fetch_types: false`: otherwise postgres.js looks up array types right
 *   after authentication in a promise nobody awaits, so a server that dies at
 *   that moment (a failover, a fence) rejects it unhandled and ends the
 *   whole process. We read no array columns.
 * - `onnotice`: notices are not ours to print.
 */
export function openPostgres(
  options: postgres.Options<Record<string, never>>,
): postgres.Sql {
  return postgres({ onnotice: () => {}, ...options, fetch_types: false });
}
