/**
 * What the supervisor observed of this node's server (lib/postgres), in the
 * HA controller's terms (lib/ha): a {@link ServerObservation} with WAL
 * positions as byte offsets and the upstream as a member's node id. Pure.
 *
 * @module
 */

import type { HealthServer } from "../api/mod.ts";
import type { Lsn as HaLsn, ServerObservation, WalState } from "../ha/mod.ts";
import { type NodeId, NONE } from "../raft/mod.ts";
import { type Lsn, parseLsn } from "../postgres/replication.ts";
import type { Observation } from "../postgres/supervisor.ts";

/** A member's PostgreSQL address, as the replicated state records it. */
export interface MemberServer {
  nodeId: NodeId;
  host: string;
  port: number;
}

/**
 * A `pg_lsn` as a byte offset (exact below 2^53: 8 PiB of WAL).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(lsnBytes("1/0"), 4294967296);
 * ```
 */
export function lsnBytes(lsn: Lsn): HaLsn {
  return Number(parseLsn(lsn));
}

/**
 * The member whose server is at `host:port`: NONE when it is none of them
 * (a `primary_conninfo` pgraft did not write).
 */
export function memberAt(
  members: readonly MemberServer[],
  target: { host: string; port: number },
): NodeId {
  return members.find((m) => m.host === target.host && m.port === target.port)?.nodeId ?? NONE;
}

/**
 * The controller's view of an observation.
 *
 * - empty data directory → `empty`; another system's → `refused`;
 * - not running → `stopped`, with its end of WAL only after a clean shutdown;
 * - starting, stopping, or not answering → `starting` (nothing is known yet);
 * - in recovery → `standby` streaming from the member `primary_conninfo`
 *   names (null when it names none: frozen), or `diverged` when its history
 *   forked from the primary's;
 * - otherwise `primary`.
 *
 * @param members the members' PostgreSQL addresses, to name the upstream
 */
export function serverObservation(
  seen: Observation,
  members: readonly MemberServer[],
): ServerObservation {
  const dir = seen.dataDirectory;
  if (dir.kind === "foreign" && seen.role !== "primary" && seen.role !== "standby") {
    return { state: "refused", detail: dir.reason };
  }
  switch (seen.role) {
    case "stopped":
      if (dir.kind === "empty") return { state: "empty" };
      return {
        state: "stopped",
        clean: seen.cleanShutdown === true,
        rewindFailed: seen.rewindFailed,
        wal: seen.cleanShutdown === true ? stoppedWal(seen) : null,
      };
    case "starting":
    case "stopping":
    case "unknown":
      return { state: "starting" };
    case "primary":
      if (dir.kind === "foreign") return { state: "refused", detail: dir.reason };
      return { state: "primary", wal: runningWal(seen) };
    case "standby":
    case "diverged": {
      if (dir.kind === "foreign") return { state: "refused", detail: dir.reason };
      const upstream = seen.upstream === null ? null : memberAt(members, seen.upstream);
      const wal = runningWal(seen);
      if (seen.role === "diverged") return { state: "diverged", upstream: upstream ?? NONE, wal };
      return { state: "standby", upstream, wal };
    }
  }
}

/** The WAL state of a running server; a position it does not report counts as 0. */
function runningWal(seen: Observation): WalState {
  const bytes = (lsn: Lsn | null) => (lsn === null ? 0 : lsnBytes(lsn));
  if (seen.role === "primary") {
    const flushed = bytes(seen.flushLsn);
    const inserted = Math.max(bytes(seen.lsn), flushed);
    return {
      timeline: seen.timeline ?? 0,
      receivedLsn: inserted,
      replayedLsn: flushed,
      flushedLsn: flushed,
    };
  }
  const received = bytes(seen.receiveLsn);
  const replayed = bytes(seen.replayLsn);
  return {
    timeline: seen.timeline ?? 0,
    receivedLsn: received,
    replayedLsn: replayed,
    // The WAL on disk: what the receiver flushed, or what replay reached (a
    // standby restarted from its own pg_wal has replayed more than it received since).
    flushedLsn: Math.max(received, replayed),
  };
}

/** The end of WAL of a cleanly stopped server: its shutdown checkpoint. */
function stoppedWal(seen: Observation): WalState | null {
  if (seen.flushLsn === null || seen.timeline === null) return null;
  const at = lsnBytes(seen.flushLsn);
  return { timeline: seen.timeline, receivedLsn: at, replayedLsn: at, flushedLsn: at };
}

/** DESIGN.md `pg_role` of an observation. */
export function pgRole(seen: Observation | null, local: ServerObservation | null): string {
  if (seen === null || local === null) return "unknown";
  switch (local.state) {
    case "primary":
    case "standby":
    case "diverged":
    case "starting":
      return local.state === "starting" && seen.role === "unknown" ? "unknown" : local.state;
    case "stopped":
    case "empty":
      return "stopped";
    case "refused":
      return "unknown";
  }
}

/**
 * The server as the load balancers' health checks see it (lib/api
 * health.ts): `unknown` without a (fresh) observation; a standby's lag is how
 * far its replay is behind its primary's end of WAL as the sender reported it.
 */
export function healthServer(seen: Observation | null): HealthServer {
  if (seen === null) {
    return {
      role: "unknown",
      streaming: false,
      timeline: null,
      lsn: null,
      receiveLsn: null,
      replayLsn: null,
      lagBytes: null,
    };
  }
  const lag = seen.senderLsn !== null && seen.replayLsn !== null
    ? Math.max(0, lsnBytes(seen.senderLsn) - lsnBytes(seen.replayLsn))
    : null;
  return {
    role: seen.role,
    streaming: seen.streaming,
    timeline: seen.timeline,
    lsn: seen.lsn,
    receiveLsn: seen.receiveLsn,
    replayLsn: seen.replayLsn,
    lagBytes: seen.role === "standby" ? lag : null,
  };
}
