/**
 * The messages the agents exchange for high availability (RPC `ha`, JSON),
 * and their strict parsing: a peer's request is input from outside, so
 * anything malformed is refused with a message that says what is wrong.
 *
 * - `report_request`: the leader asks a member for its server's position
 *   (with `freeze`: stop streaming first) — HA action `collect_lsns`;
 * - `report`: the member's answer — HA action `report_lsn`;
 * - `status`: what each member tells the leader of its server every little
 *   while, for the status (`pg_role`, `pg_lsn`) and its PostgreSQL address,
 *   with the events it recorded meanwhile: a standby cannot write them to its
 *   read-only server, the primary's agent writes them for it.
 *
 * @module
 */

import type { ServerObservation, WalState } from "../ha/mod.ts";
import { isNodeId } from "../raft/conf_change.ts";
import type { NodeId } from "../raft/mod.ts";

/** What a member says of its server for the status. */
export interface ServerSummary {
  /** `primary`, `standby`, `starting`, `stopped`, `diverged`, `unknown` (DESIGN.md pg_role) */
  role: string;
  /** its WAL position (`pg_lsn` text), null when unknown */
  lsn: string | null;
  timeline: number | null;
  /** where the other members reach its server */
  host: string;
  port: number;
}

/** An HA message. */
export type HaMessage =
  | { kind: "report_request"; leader: NodeId; term: number; freeze: boolean }
  | { kind: "report"; nodeId: NodeId; term: number; server: ServerObservation; frozen: boolean }
  | {
    kind: "status";
    nodeId: NodeId;
    term: number;
    server: ServerSummary;
    events: ForwardedEvent[];
  };

/** An event a member recorded, forwarded to the leader (pgraft.events). */
export interface ForwardedEvent {
  /** ISO timestamp */
  at: string;
  type: string;
  term: number | null;
  nodeId: NodeId | null;
  detail: string;
}

/** Events in one status message at most. */
export const FORWARDED_EVENTS_MAX = 100;

/** A message that is not an HA message: the RPC answers 400 with this text. */
export class HaMessageError extends TypeError {
  override name = "HaMessageError";
}

function fail(message: string): never {
  throw new HaMessageError(`bad HA message: ${message}`);
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(`${what} must be an object`);
  }
  return value as Record<string, unknown>;
}

function nodeId(value: unknown, what: string): NodeId {
  if (!isNodeId(value)) fail(`${what} must be a node id, got ${JSON.stringify(value)}`);
  return value;
}

function count(value: unknown, what: string, min = 0): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    fail(`${what} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function bool(value: unknown, what: string): boolean {
  if (typeof value !== "boolean") fail(`${what} must be a boolean`);
  return value;
}

function text(value: unknown, what: string, maxChars = 1024): string {
  if (typeof value !== "string" || value.length > maxChars) {
    fail(`${what} must be a string of at most ${maxChars} characters`);
  }
  return value;
}

function wal(value: unknown, what: string): WalState {
  const w = record(value, what);
  return {
    timeline: count(w.timeline, `${what}.timeline`),
    receivedLsn: count(w.receivedLsn, `${what}.receivedLsn`),
    replayedLsn: count(w.replayedLsn, `${what}.replayedLsn`),
    flushedLsn: count(w.flushedLsn, `${what}.flushedLsn`),
  };
}

/** Parse a {@link ServerObservation} from JSON. */
export function parseServerObservation(value: unknown): ServerObservation {
  const s = record(value, "server");
  switch (s.state) {
    case "empty":
      return { state: "empty" };
    case "refused":
      return { state: "refused", detail: text(s.detail, "server.detail") };
    case "stopped":
      return {
        state: "stopped",
        clean: bool(s.clean, "server.clean"),
        rewindFailed: bool(s.rewindFailed, "server.rewindFailed"),
        wal: s.wal === null ? null : wal(s.wal, "server.wal"),
      };
    case "starting":
      return { state: "starting" };
    case "standby":
      return {
        state: "standby",
        upstream: s.upstream === null ? null : count(s.upstream, "server.upstream"),
        wal: wal(s.wal, "server.wal"),
      };
    case "diverged":
      return {
        state: "diverged",
        upstream: count(s.upstream, "server.upstream"),
        wal: wal(s.wal, "server.wal"),
      };
    case "primary":
      return { state: "primary", wal: wal(s.wal, "server.wal") };
    default:
      fail(`unknown server state ${JSON.stringify(s.state)}`);
  }
}

function events(value: unknown): ForwardedEvent[] {
  if (!Array.isArray(value) || value.length > FORWARDED_EVENTS_MAX) {
    fail(`events must be an array of at most ${FORWARDED_EVENTS_MAX}`);
  }
  return value.map((item, i) => {
    const e = record(item, `events[${i}]`);
    const at = text(e.at, `events[${i}].at`, 40);
    if (Number.isNaN(Date.parse(at))) fail(`events[${i}].at is not a timestamp`);
    return {
      at,
      type: text(e.type, `events[${i}].type`, 64),
      term: e.term === null ? null : count(e.term, `events[${i}].term`),
      nodeId: e.nodeId === null ? null : nodeId(e.nodeId, `events[${i}].nodeId`),
      detail: text(e.detail, `events[${i}].detail`, 4096),
    };
  });
}

const PG_ROLES: ReadonlySet<string> = new Set([
  "primary",
  "standby",
  "starting",
  "stopped",
  "diverged",
  "unknown",
]);

/**
 * Parse an HA message.
 *
 * @throws HaMessageError naming what is wrong
 */
export function parseHaMessage(body: unknown): HaMessage {
  const m = record(body, "the body");
  switch (m.kind) {
    case "report_request":
      return {
        kind: "report_request",
        leader: nodeId(m.leader, "leader"),
        term: count(m.term, "term", 1),
        freeze: bool(m.freeze, "freeze"),
      };
    case "report":
      return {
        kind: "report",
        nodeId: nodeId(m.nodeId, "nodeId"),
        term: count(m.term, "term"),
        server: parseServerObservation(m.server),
        frozen: bool(m.frozen, "frozen"),
      };
    case "status": {
      const s = record(m.server, "server");
      const role = text(s.role, "server.role", 16);
      if (!PG_ROLES.has(role)) fail(`unknown server role ${JSON.stringify(role)}`);
      return {
        kind: "status",
        nodeId: nodeId(m.nodeId, "nodeId"),
        term: count(m.term, "term"),
        server: {
          role,
          lsn: s.lsn === null ? null : text(s.lsn, "server.lsn", 32),
          timeline: s.timeline === null ? null : count(s.timeline, "server.timeline"),
          host: text(s.host, "server.host", 255),
          port: count(s.port, "server.port", 1),
        },
        events: events(m.events),
      };
    }
    default:
      fail(`unknown kind ${JSON.stringify(m.kind)}`);
  }
}
