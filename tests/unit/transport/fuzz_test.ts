/**
 * Fuzzing the server with random and mutated bodies (seeded, so a failure
 * reproduces): never a 5xx, never a throw, and onMessages is called exactly
 * for the bodies that decode validly.
 */
import assert from "node:assert/strict";
import {
  CodecError,
  decodeMessages,
  encodeMessages,
  encodeMessagesJson,
  type Envelope,
  HEADER_SNAPSHOT_ID,
  HEADER_SNAPSHOT_OFFSET,
  HEADER_SNAPSHOT_TOTAL,
} from "../../../lib/transport/mod.ts";
import type { Message } from "../../../lib/raft/types.ts";
import {
  append,
  CLUSTER,
  heartbeat,
  LOOPBACK,
  makeApp,
  peerHeaders,
  prng,
  signed,
  snapshotRequest,
} from "./helpers.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 20240605);
const RAFT_BODIES = 10_000;
const SNAPSHOT_BODIES = 1_000;
const SIGNED_BODIES = 500;

const encoder = new TextEncoder();

function seedMessages(): Message[][] {
  return [
    [heartbeat(1)],
    [heartbeat(7), heartbeat(8)],
    [append(3, 10)],
    [append(2, 0, 5)],
    [{
      type: "vote_request",
      term: 4,
      from: 1,
      to: 2,
      preVote: true,
      transfer: false,
      lastLogIndex: 9,
      lastLogTerm: 3,
    }],
    [{ type: "vote_response", term: 4, from: 1, to: 2, preVote: false, granted: true }],
    [{
      type: "append_response",
      term: 3,
      from: 1,
      to: 2,
      success: false,
      matchIndex: 0,
      hint: { rejectedIndex: 5, lastIndex: 3, conflictTerm: 2, conflictIndex: 2 },
    }],
    [{ type: "heartbeat_response", term: 3, from: 1, to: 2, readContext: "ctx" }],
    [{ type: "timeout_now", term: 3, from: 1, to: 2 }],
    [snapshotRequest(40)],
    [],
  ];
}

function envelope(messages: Message[], clusterId: string | null = CLUSTER): Envelope {
  return { clusterId, from: 1, sender: { address: "127.0.0.1", port: 7001 }, messages };
}

function seeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const messages of seedMessages()) {
    out.push(encodeMessages(envelope(messages)) as Uint8Array);
    out.push(encoder.encode(encodeMessagesJson(envelope(messages))));
    out.push(encodeMessages(envelope(messages, null)) as Uint8Array);
  }
  return out;
}

const KEYS = [
  "v",
  "clusterId",
  "from",
  "to",
  "sender",
  "messages",
  "type",
  "term",
  "entries",
  "index",
  "data",
  "commit",
  "prevLogIndex",
  "prevLogTerm",
  "snapshot",
  "meta",
  "membership",
  "voters",
  "learners",
  "readContext",
  "hint",
];

function randomJson(rand: () => number, depth = 0): unknown {
  const r = rand();
  if (depth > 4 || r < 0.35) {
    const pick = Math.floor(rand() * 12);
    return [
      null,
      true,
      false,
      0,
      1,
      2,
      -1,
      1.5,
      2 ** 53,
      "heartbeat_request",
      "",
      "x".repeat(Math.floor(rand() * 300)),
    ][pick];
  }
  if (r < 0.6) {
    return Array.from({ length: Math.floor(rand() * 4) }, () => randomJson(rand, depth + 1));
  }
  const o: Record<string, unknown> = {};
  const n = Math.floor(rand() * 6);
  for (let i = 0; i < n; i++) {
    o[KEYS[Math.floor(rand() * KEYS.length)]!] = randomJson(rand, depth + 1);
  }
  if (rand() < 0.5) o.v = 1;
  return o;
}

/** Replace one random value somewhere in a parsed JSON tree. */
function mutateTree(rand: () => number, value: unknown): unknown {
  if (typeof value !== "object" || value === null) return randomJson(rand, 3);
  const entries = Array.isArray(value)
    ? value.map((v, i) => [i, v] as const)
    : Object.entries(value);
  if (entries.length === 0 || rand() < 0.2) return randomJson(rand, 2);
  const [key, child] = entries[Math.floor(rand() * entries.length)]!;
  const copy = (Array.isArray(value) ? [...value] : { ...value }) as Record<
    string | number,
    unknown
  >;
  if (rand() < 0.1) delete copy[key];
  else copy[key] = mutateTree(rand, child);
  return copy;
}

function mutate(rand: () => number, pool: Uint8Array[]): Uint8Array {
  const pick = () => pool[Math.floor(rand() * pool.length)]!;
  const base = pick();
  switch (Math.floor(rand() * 7)) {
    case 0: { // flip bytes
      const out = base.slice();
      const flips = 1 + Math.floor(rand() * 8);
      for (let i = 0; i < flips && out.length > 0; i++) {
        const at = Math.floor(rand() * out.length);
        out[at] = out[at]! ^ (1 << Math.floor(rand() * 8));
      }
      return out;
    }
    case 1: // truncate
      return base.slice(0, Math.floor(rand() * base.length));
    case 2: { // splice two bodies
      const other = pick();
      const a = Math.floor(rand() * base.length);
      const b = Math.floor(rand() * other.length);
      const out = new Uint8Array(a + other.length - b);
      out.set(base.subarray(0, a));
      out.set(other.subarray(b), a);
      return out;
    }
    case 3: { // insert random bytes
      const at = Math.floor(rand() * base.length);
      const junk = Uint8Array.from({ length: 1 + Math.floor(rand() * 16) }, () => rand() * 256);
      const out = new Uint8Array(base.length + junk.length);
      out.set(base.subarray(0, at));
      out.set(junk, at);
      out.set(base.subarray(at), at + junk.length);
      return out;
    }
    case 4: // random JSON
      return encoder.encode(JSON.stringify(randomJson(rand)));
    case 5: { // change one field of a valid JSON-form body
      const text = new TextDecoder().decode(base);
      if (!text.startsWith("{")) return base;
      return encoder.encode(JSON.stringify(mutateTree(rand, JSON.parse(text))));
    }
    default: // random bytes
      return Uint8Array.from({ length: Math.floor(rand() * 200) }, () => rand() * 256);
  }
}

/** What the server must do with `body`: deliver it (the decoded messages) or refuse it. */
function expected(body: Uint8Array, snapshot: boolean): Message[] | null {
  let env: Envelope;
  try {
    env = decodeMessages(body, 2);
  } catch (error) {
    assert.ok(error instanceof CodecError, `the codec threw ${error}`);
    return null;
  }
  if (env.from !== 1) return null;
  if (env.clusterId !== null && env.clusterId !== CLUSTER) return null;
  if (snapshot && (env.messages.length !== 1 || env.messages[0]!.type !== "snapshot_request")) {
    return null;
  }
  return env.messages;
}

Deno.test(`fuzz: ${RAFT_BODIES + SNAPSHOT_BODIES + SIGNED_BODIES} random and mutated bodies never get a 5xx and deliver only valid ones (seed ${SEED})`, async () => {
  const rand = prng(SEED);
  const pool = seeds();
  const noSecret = makeApp({ authSecret: null });
  const withSecret = makeApp();
  const statuses = new Map<number, number>();
  let valid = 0;
  const started = performance.now();

  const check = async (
    t: ReturnType<typeof makeApp>,
    i: number,
    path: string,
    data: Uint8Array,
    init: RequestInit,
    snapshot: boolean,
  ) => {
    const want = expected(data, snapshot);
    const before = t.received.length;
    let res: Response;
    try {
      res = await t.app.request(path, init, LOOPBACK);
    } catch (error) {
      throw new Error(`body ${i} (seed ${SEED}) threw: ${error}`);
    }
    await res.body?.cancel();
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    const context = `body ${i} (seed ${SEED}, ${path}): status ${res.status}, ` +
      `${JSON.stringify(new TextDecoder().decode(data.subarray(0, 120)))}`;
    assert.ok(res.status < 500, context);
    if (want === null) {
      assert.ok(res.status >= 400, context);
      assert.equal(t.received.length, before, context);
    } else {
      valid++;
      assert.equal(res.status, 204, context);
      assert.equal(t.received.length, before + 1, context);
      assert.deepEqual(t.received.at(-1)!.messages, want, context);
    }
  };

  for (let i = 0; i < RAFT_BODIES; i++) {
    const data = rand() < 0.05 ? pool[Math.floor(rand() * pool.length)]! : mutate(rand, pool);
    const init = { method: "POST", headers: peerHeaders(), body: data as BodyInit };
    await check(noSecret, i, "/raft/messages", data, init, false);
  }
  for (let i = 0; i < SNAPSHOT_BODIES; i++) {
    const data = mutate(rand, pool);
    const headers = peerHeaders({
      [HEADER_SNAPSHOT_ID]: `s${i}`,
      [HEADER_SNAPSHOT_OFFSET]: "0",
      [HEADER_SNAPSHOT_TOTAL]: String(Math.max(1, data.length)),
    });
    await check(noSecret, i, "/raft/snapshot", data, {
      method: "POST",
      headers,
      body: data as BodyInit,
    }, true);
  }
  for (let i = 0; i < SIGNED_BODIES; i++) {
    const data = mutate(rand, pool);
    await check(withSecret, i, "/raft/messages", data, await signed("/raft/messages", data), false);
  }

  const elapsed = performance.now() - started;
  console.log(
    `fuzz: ${RAFT_BODIES + SNAPSHOT_BODIES + SIGNED_BODIES} bodies in ${elapsed.toFixed(0)} ms, ` +
      `${valid} valid; statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
  );
  assert.ok(valid > 100, `the mutations keep some bodies valid (${valid})`);
  assert.ok((statuses.get(400) ?? 0) > 5000, "most mutated bodies are refused");
  for (const t of [noSecret, withSecret]) {
    assert.equal(
      t.metrics.value("transport_server_errors_total", { path: "/raft/messages" }),
      undefined,
    );
  }
});
