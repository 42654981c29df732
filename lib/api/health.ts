/**
 * Load-balancer health checks on the agent's port, answered as Patroni's REST
 * API answers them, so that an HAProxy configuration written for Patroni
 * works unchanged (`pgraft.manage_postgres = on`). A Hono sub-app, mounted by
 * the agent at the root of its app: `app.route("/", healthApi(source))`.
 *
 * | path                                                  | 200 when                                                            |
 * | ----------------------------------------------------- | ------------------------------------------------------------------- |
 * | `/primary` (and `/master`, `/leader`, `/read-write`)  | this server is the primary and its agent leads with a valid lease  |
 * | `/replica`                                            | this server is a standby streaming from the primary                |
 * | `/replica?lag=16MB`                                   | … and at most that far behind (lag known)                          |
 * | `/read-only` (`?lag=` as for `/replica`)              | either of the above                                                 |
 *
 * Anything else is a 503 (a malformed `lag` is a 400). `GET` and `HEAD` are
 * answered alike; `HEAD` with no body (Hono dispatches a `HEAD` as the `GET`
 * route and drops the body). `lag` is a size as PostgreSQL writes one: a
 * number of bytes, or a number with a unit `B`, `kB`, `MB`, `GB`, `TB`
 * (case-sensitive; 1kB = 1024 bytes), as lib/config/units.ts parses it.
 *
 * Choices: a primary whose agent does not hold the lease is being fenced (it
 * stops accepting writes before another node can be elected), so it is 503
 * on `/read-only` too, not only on `/primary` (Patroni answers 200 on any
 * running primary there). A standby whose lag is unknown is 503 when `?lag=`
 * is given. A node that runs no PostgreSQL (`manage_postgres = off`) answers
 * 503 everywhere, and so does a node that fails to report its server.
 *
 * These paths are not authenticated: HAProxy does not present the cluster's
 * secret. They change nothing, and their bodies carry no secret — only the
 * fields below, with no connection string and no error text from the node.
 *
 * The body (`GET`), a small subset of Patroni's:
 *
 * ```json
 * {
 *   "state": "running",
 *   "role": "replica",
 *   "pg_role": "standby",
 *   "timeline": 2,
 *   "xlog": { "received_location": "0/3000148", "replayed_location": "0/3000110" },
 *   "lag_bytes": 56,
 *   "entitled_primary": false,
 *   "node_id": 2
 * }
 * ```
 *
 * - `state`: `running` (primary or standby), `starting`, `stopping`,
 *   `stopped`, `diverged` (its WAL forked from the primary's: it needs
 *   pg_rewind), `unknown` (the agent cannot tell);
 * - `role`: Patroni's words, `primary` or `replica` (a standby, diverged or
 *   not); `unknown` while the server runs as neither;
 * - `pg_role`: the server's role as `pgraft_get_nodes()` shows it;
 * - `xlog`: WAL positions as `pg_lsn` text — a primary's `location`, a
 *   standby's `received_location` and `replayed_location`; null otherwise;
 * - `lag_bytes`: how far this standby is behind the primary, null when unknown;
 * - `entitled_primary`: this node's agent leads with a valid lease.
 *
 * Without PostgreSQL: `{ "state": "unmanaged", "error": "…", "node_id": n }`.
 *
 * HAProxy, for three nodes whose servers listen on 5433–5435 and agents on
 * 7001–7003 (clients connect to 5000 for the primary, 5001 for the standbys):
 *
 * ```
 * defaults
 *     mode tcp
 *     timeout connect 4s
 *     timeout client 30m
 *     timeout server 30m
 *     timeout check 5s
 *
 * listen primary
 *     bind *:5000
 *     option httpchk GET /primary
 *     http-check expect status 200
 *     default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
 *     server node1 127.0.0.1:5433 maxconn 100 check port 7001
 *     server node2 127.0.0.1:5434 maxconn 100 check port 7002
 *     server node3 127.0.0.1:5435 maxconn 100 check port 7003
 *
 * listen replicas
 *     bind *:5001
 *     balance roundrobin
 *     option httpchk GET /replica?lag=16MB
 *     http-check expect status 200
 *     default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
 *     server node1 127.0.0.1:5433 maxconn 100 check port 7001
 *     server node2 127.0.0.1:5434 maxconn 100 check port 7002
 *     server node3 127.0.0.1:5435 maxconn 100 check port 7003
 * ```
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { parseBytes } from "../config/units.ts";
import type { NodeId } from "../raft/mod.ts";

/**
 * The server's role, the supervisor's words (lib/postgres `ServerRole`): an
 * observation's `role` fits as it is.
 */
export type HealthRole =
  | "primary"
  | "standby"
  | "starting"
  | "stopping"
  | "stopped"
  /** its WAL forked from the primary's: it needs pg_rewind */
  | "diverged"
  /** running but not answering, or the agent has no recent observation */
  | "unknown";

/**
 * This node's server as last observed. The supervisor's observation has every
 * field but `lagBytes` under the same name and type:
 * `{ ...observation, lagBytes }`.
 */
export interface HealthServer {
  role: HealthRole;
  /** a standby's WAL receiver is streaming from the primary */
  streaming: boolean;
  /** its timeline, null when unknown */
  timeline: number | null;
  /** a primary's current WAL position (`pg_lsn` text) */
  lsn: string | null;
  /** a standby's `pg_last_wal_receive_lsn()` */
  receiveLsn: string | null;
  /** a standby's `pg_last_wal_replay_lsn()` */
  replayLsn: string | null;
  /** how many bytes of WAL this standby is behind the primary; null when unknown or not a standby */
  lagBytes: number | null;
}

/**
 * The node, as the health checks see it; declared here by its user and
 * implemented by the agent (imports run agent → api). Read on every request:
 * keep both methods cheap (answer from the latest observation, and report
 * role `unknown` when that observation is stale).
 */
export interface HealthSource {
  /** this node's id */
  readonly nodeId: NodeId;
  /** this node's server as last observed; null when the agent runs no PostgreSQL (manage_postgres off) */
  server(): HealthServer | null;
  /**
   * Whether this node's server may be the writable primary now: its agent is
   * the Raft leader and holds a valid lease.
   */
  entitledPrimary(): boolean;
}

/** The paths Patroni answers for the writable primary, all served alike. */
export const PRIMARY_PATHS: readonly string[] = ["/primary", "/master", "/leader", "/read-write"];

/** Patroni's word for a role. */
function patroniRole(role: HealthRole): "primary" | "replica" | "unknown" {
  if (role === "primary") return "primary";
  if (role === "standby" || role === "diverged") return "replica";
  return "unknown";
}

/** Patroni's word for the server's state. */
function patroniState(role: HealthRole): string {
  return role === "primary" || role === "standby" ? "running" : role;
}

function xlog(s: HealthServer): Record<string, string | null> | null {
  if (s.role === "primary") return { location: s.lsn };
  if (s.role === "standby" || s.role === "diverged") {
    return { received_location: s.receiveLsn, replayed_location: s.replayLsn };
  }
  return null;
}

/** The body of every answer about a server. */
function body(source: HealthSource, s: HealthServer, entitled: boolean) {
  return {
    state: patroniState(s.role),
    role: patroniRole(s.role),
    pg_role: s.role,
    timeline: s.timeline,
    xlog: xlog(s),
    lag_bytes: s.lagBytes,
    entitled_primary: entitled,
    node_id: source.nodeId,
  };
}

/**
 * The `lag` query parameter in bytes, or null when absent.
 *
 * @throws HTTPException 400 when it is not a size
 */
function maxLagOf(c: Context): number | null {
  const raw = c.req.query("lag");
  if (raw === undefined) return null;
  let bytes: number;
  try {
    bytes = parseBytes(raw);
  } catch (error) {
    throw new HTTPException(400, {
      message: `lag must be a size in bytes, optionally with a unit B, kB, MB, GB or TB ` +
        `(e.g. 16MB): ${(error as Error).message}`,
    });
  }
  if (bytes < 0) throw new HTTPException(400, { message: `lag must not be negative: "${raw}"` });
  return bytes;
}

/** A streaming standby, within `maxLag` when one is given. */
function isHealthyStandby(s: HealthServer, maxLag: number | null): boolean {
  if (s.role !== "standby" || !s.streaming) return false;
  if (maxLag === null) return true;
  return s.lagBytes !== null && s.lagBytes <= maxLag;
}

/** The writable primary: its server runs as primary and its agent holds the lease. */
function isEntitledPrimary(s: HealthServer, entitled: boolean): boolean {
  return s.role === "primary" && entitled;
}

type Check = (s: HealthServer, entitled: boolean, maxLag: number | null) => boolean;

/**
 * The health checks as a Hono app; mount it with `app.route("/", healthApi(source))`.
 *
 * @param source the node
 */
export function healthApi(source: HealthSource): Hono {
  const app = new Hono();
  app.onError((error, c) => {
    if (error instanceof HTTPException) return c.json({ error: error.message }, error.status);
    // The node failed to report: not healthy. Its message stays out of the body.
    return c.json({ state: "unknown", error: "the node could not report its server" }, 503);
  });

  const serve = (check: Check, acceptsLag: boolean) => (c: Context) => {
    const maxLag = acceptsLag ? maxLagOf(c) : null;
    const server = source.server();
    if (server === null) {
      return c.json({
        state: "unmanaged",
        error: "this agent does not run PostgreSQL (pgraft.manage_postgres = off)",
        node_id: source.nodeId,
      }, 503);
    }
    const entitled = source.entitledPrimary();
    return c.json(body(source, server, entitled), check(server, entitled, maxLag) ? 200 : 503);
  };

  const primary = serve((s, entitled) => isEntitledPrimary(s, entitled), false);
  for (const path of PRIMARY_PATHS) app.get(path, primary);
  app.get("/replica", serve((s, _entitled, maxLag) => isHealthyStandby(s, maxLag), true));
  app.get(
    "/read-only",
    serve(
      (s, entitled, maxLag) => isEntitledPrimary(s, entitled) || isHealthyStandby(s, maxLag),
      true,
    ),
  );
  return app;
}
