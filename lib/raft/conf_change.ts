/**
 * Membership changes, one server at a time (thesis §4.1): their encoding in
 * log entries and how each one transforms a {@link Membership}.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { type ConfChange, type Membership, NODE_ID_MAX, type NodeId } from "./types.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const KINDS: ReadonlySet<string> = new Set(["add_learner", "add_voter", "remove_node"]);

/** Encode a change as the data of a `conf_change` entry (JSON text). */
export function encodeConfChange(change: ConfChange): Uint8Array {
  return encoder.encode(
    JSON.stringify({ kind: change.kind, nodeId: change.nodeId, context: change.context }),
  );
}

/**
 * Decode the data of a `conf_change` entry.
 * @throws TypeError when the bytes are not a valid change
 */
export function decodeConfChange(data: Uint8Array): ConfChange {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(data));
  } catch (error) {
    throw new TypeError(`conf change: not JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null) {
    throw new TypeError("conf change: not an object");
  }
  const { kind, nodeId, context } = value as Record<string, unknown>;
  if (typeof kind !== "string" || !KINDS.has(kind)) {
    throw new TypeError(`conf change: unknown kind ${JSON.stringify(kind)}`);
  }
  if (!isNodeId(nodeId)) throw new TypeError(`conf change: bad nodeId ${JSON.stringify(nodeId)}`);
  if (typeof context !== "string") throw new TypeError("conf change: context must be a string");
  return { kind: kind as ConfChange["kind"], nodeId, context };
}

/** A valid node id: an integer in 1..NODE_ID_MAX. */
export function isNodeId(value: unknown): value is NodeId {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 &&
    value <= NODE_ID_MAX;
}

/** Whether `id` is a voter or a learner of `m`. */
export function isMember(m: Membership, id: NodeId): boolean {
  return m.voters.includes(id) || m.learners.includes(id);
}

/**
 * Why `change` cannot be applied to `m`, or null when it can. The leader checks
 * this (with the stricter "proposal" policy) before proposing, so every change
 * in a log is valid where it stands.
 */
export function confChangeProblem(
  m: Membership,
  change: ConfChange,
  policy: "log" | "proposal" = "log",
): string | null {
  const id = change.nodeId;
  if (!isNodeId(id)) return `invalid node id ${id}`;
  switch (change.kind) {
    case "add_learner":
      if (isMember(m, id)) return `node ${id} is already a member`;
      return null;
    case "add_voter":
      if (m.voters.includes(id)) return `node ${id} is already a voter`;
      // Bootstrap adds founding voters directly; afterwards a node joins as a learner first.
      if (policy === "proposal" && !m.learners.includes(id)) {
        return `node ${id} must join as a learner before it can become a voter`;
      }
      return null;
    case "remove_node":
      if (!isMember(m, id)) return `node ${id} is not a member`;
      if (m.voters.length === 1 && m.voters[0] === id) {
        return `node ${id} is the last voter and cannot be removed`;
      }
      return null;
  }
}

/** The membership after `change` (which must be valid for `m`). Pure: `m` is not modified. */
export function applyConfChange(m: Membership, change: ConfChange): Membership {
  const problem = confChangeProblem(m, change);
  assert(problem === null, `invalid conf change in the log: ${problem}`);
  const id = change.nodeId;
  const voters = m.voters.filter((v) => v !== id);
  const learners = m.learners.filter((l) => l !== id);
  if (change.kind === "add_learner") learners.push(id);
  if (change.kind === "add_voter") voters.push(id);
  voters.sort((a, b) => a - b);
  learners.sort((a, b) => a - b);
  return { voters, learners };
}

/** A copy of `m`. */
export function cloneMembership(m: Membership): Membership {
  return { voters: [...m.voters], learners: [...m.learners] };
}
