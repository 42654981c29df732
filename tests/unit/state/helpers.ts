/**
 * Builders of log entries and seeded random workloads for the state machine tests.
 *
 * @module
 */

import type { ConfChange, Entry } from "../../../lib/raft/types.ts";
import { encodeConfChange } from "../../../lib/raft/conf_change.ts";
import { type Command, encodeCommand, StateMachine } from "../../../lib/state/mod.ts";
import type { Rng } from "../../sim/rng.ts";

/** A `normal` entry carrying `command`. */
export function normal(index: number, command: Command): Entry {
  return { index, term: 1, type: "normal", data: encodeCommand(command) };
}

/** A `conf_change` entry. */
export function conf(index: number, change: ConfChange): Entry {
  return { index, term: 1, type: "conf_change", data: encodeConfChange(change) };
}

/** The context of a conf change adding a member at `address:port`. */
export function ctx(address: string, port: number): string {
  return JSON.stringify({ address, port });
}

/** Bytes of a UTF-8 string. */
export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/**
 * A state machine fed the given commands at indexes 1, 2, … (conf changes as
 * `conf_change` entries).
 */
export function machineWith(
  items: (Command | ConfChange)[],
  sm: StateMachine = new StateMachine(),
): StateMachine {
  for (const item of items) {
    const index = sm.lastApplied + 1;
    sm.apply("kind" in item ? conf(index, item) : normal(index, item));
  }
  return sm;
}

/**
 * Characters chosen to stress code point order: ASCII, Latin-1, BMP above the
 * surrogates (U+E000, U+FF5E, U+FFFD), CJK, and astral ones (surrogate pairs).
 */
export const KEY_ALPHABET = [
  "a",
  "b",
  "z",
  "/",
  "0",
  "~",
  "é",
  "ÿ",
  "中",
  "\ue000",
  "\uff5e",
  "\ufffd",
  "\u{1f600}",
  "\u{10000}",
  "\u{10ffff}",
];

/** A random key of 1..maxChars characters from {@link KEY_ALPHABET}. */
export function randomKey(rng: Rng, maxChars = 4): string {
  let key = "";
  const n = rng.range(1, maxChars);
  for (let i = 0; i < n; i++) key += rng.pick(KEY_ALPHABET);
  return key;
}

/** A random value of 0..maxBytes bytes. */
export function randomValue(rng: Rng, maxBytes = 64): Uint8Array {
  const value = new Uint8Array(rng.int(maxBytes + 1));
  for (let i = 0; i < value.length; i++) value[i] = rng.int(256);
  return value;
}

/**
 * `count` random entries starting at `first`: kv puts and deletes (most of
 * them), settings (including kv_quota), membership changes, PostgreSQL
 * addresses, primary records, identity and no-ops.
 */
export function randomEntries(rng: Rng, first: number, count: number): Entry[] {
  const entries: Entry[] = [];
  for (let index = first; index < first + count; index++) {
    const roll = rng.int(100);
    const nodeId = rng.range(1, 5);
    if (roll < 55) {
      entries.push(
        normal(index, { op: "kv_put", key: randomKey(rng), value: randomValue(rng) }),
      );
    } else if (roll < 75) {
      entries.push(normal(index, { op: "kv_delete", key: randomKey(rng) }));
    } else if (roll < 80) {
      const name = rng.pick(["heartbeat_interval", "kv_quota", "failover_enabled"]);
      const value = name === "kv_quota" ? String(rng.range(200, 3000)) : String(rng.int(10));
      entries.push(normal(index, { op: "set_config", name, value }));
    } else if (roll < 88) {
      const kind = rng.pick(["add_learner", "add_voter", "remove_node"] as const);
      const context = rng.chance(0.5) ? ctx(`10.0.0.${nodeId}`, 7000 + rng.int(10)) : "";
      entries.push(conf(index, { kind, nodeId, context }));
    } else if (roll < 92) {
      const host = `pg${rng.int(3)}.example`;
      entries.push(normal(index, { op: "member_postgres", nodeId, host, port: 5432 }));
    } else if (roll < 95) {
      entries.push(
        normal(index, { op: "set_primary", nodeId: rng.int(6), timeline: rng.range(1, 9) }),
      );
    } else if (roll < 97) {
      const clusterId = rng.pick(["c-1", "c-2"]);
      entries.push(normal(index, { op: "init_cluster", clusterId, clusterName: "main" }));
    } else if (roll < 99) {
      entries.push({ index, term: 1, type: "normal", data: new Uint8Array() });
    } else {
      entries.push(normal(index, { op: "noop" }));
    }
  }
  return entries;
}
