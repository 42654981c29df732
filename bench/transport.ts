/**
 * Transport benchmark (issue 5):
 * - the wire format: encode + decode time and size of a 512-entry append of
 *   100-byte entries, JSON text form (base64 bytes) vs the binary framing;
 * - the cost of signing and verifying that body;
 * - two full transports (app + server + client on each side) on 127.0.0.1,
 *   without and with a shared secret (so every request is signed and
 *   checked): heartbeat messages/s in a burst, pipelined append entries/s, and
 *   the round trip of a 512-entry append (node 1 sends it, node 2's
 *   onMessages answers with an append_response that node 1 receives), p50/p99.
 *
 * Bounded to a few seconds in all. `transportBench()` has no side effects
 * beyond the time it takes; run this file alone to print its JSON.
 */

import type { Entry, Message } from "../lib/raft/types.ts";
import {
  createPeerApp,
  decodeMessages,
  encodeMessages,
  encodeMessagesJson,
  type Envelope,
  Metrics,
  PeerClient,
  PeerServer,
  signRequest,
  verifyRequest,
} from "../lib/transport/mod.ts";
import { percentile } from "./stats.ts";

const ENTRIES = 512;
const ENTRY_BYTES = 100;

function appendRequest(first: number, entries = ENTRIES, entryBytes = ENTRY_BYTES): Message {
  const list: Entry[] = [];
  for (let i = 0; i < entries; i++) {
    const data = new Uint8Array(entryBytes);
    for (let j = 0; j < entryBytes; j++) data[j] = (first + i + j * 7) & 0xff;
    list.push({ index: first + i, term: 3, type: "normal", data });
  }
  return {
    type: "append_request",
    term: 3,
    from: 1,
    to: 2,
    prevLogIndex: first - 1,
    prevLogTerm: first > 1 ? 3 : 0,
    commit: first - 1,
    entries: list,
  };
}

function heartbeat(commit: number): Message {
  return { type: "heartbeat_request", term: 3, from: 1, to: 2, commit, readContext: "" };
}

const round = (x: number, digits = 1) => Number(x.toFixed(digits));

/** Mean µs per call of `fn`, run for about `ms` after a warm-up of about `ms / 2`. */
async function timeIt(fn: () => unknown | Promise<unknown>, ms: number): Promise<number> {
  const warm = performance.now();
  while (performance.now() - warm < ms / 2) await fn();
  let n = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    for (let i = 0; i < 10; i++) await fn();
    n += 10;
    elapsed = performance.now() - start;
  }
  return (elapsed * 1000) / n;
}

async function codecFigures(): Promise<Record<string, unknown>> {
  const envelope: Envelope = {
    clusterId: "c0ffee00-0000-4000-8000-000000000001",
    from: 1,
    sender: { address: "127.0.0.1", port: 7001 },
    messages: [appendRequest(1)],
  };
  const binary = encodeMessages(envelope) as Uint8Array;
  const json = encodeMessagesJson(envelope);
  const jsonBytes = new TextEncoder().encode(json).length;
  const figures = {
    binary: {
      bytes: binary.length,
      encodeUs: round(await timeIt(() => encodeMessages(envelope), 250)),
      decodeUs: round(await timeIt(() => decodeMessages(binary, 2), 250)),
    },
    json: {
      bytes: jsonBytes,
      encodeUs: round(await timeIt(() => encodeMessagesJson(envelope), 250)),
      decodeUs: round(await timeIt(() => decodeMessages(json, 2), 250)),
    },
  };
  const parts = {
    method: "POST",
    path: "/raft/messages",
    timestamp: String(Date.now()),
    from: "1",
    body: binary,
    headers: [["X-Pgraft-Cluster", envelope.clusterId!]] as [string, string][],
  };
  const signature = await signRequest("bench-secret", parts);
  return {
    entries: ENTRIES,
    entryBytes: ENTRY_BYTES,
    binary: {
      ...figures.binary,
      roundTripUs: round(figures.binary.encodeUs + figures.binary.decodeUs),
    },
    json: { ...figures.json, roundTripUs: round(figures.json.encodeUs + figures.json.decodeUs) },
    jsonToBinarySizeRatio: round(jsonBytes / binary.length, 2),
    jsonToBinaryTimeRatio: round(
      (figures.json.encodeUs + figures.json.decodeUs) /
        (figures.binary.encodeUs + figures.binary.decodeUs),
      2,
    ),
    signUs: round(await timeIt(() => signRequest("bench-secret", parts), 200)),
    verifyUs: round(await timeIt(() => verifyRequest("bench-secret", parts, signature), 200)),
  };
}

interface Side {
  server: PeerServer;
  client: PeerClient;
}

/** Two transports, node 1 and node 2, each with a server and a client to the other. */
async function loopbackFigures(authSecret: string | null): Promise<Record<string, unknown>> {
  let heartbeatsDelivered = 0;
  let entriesDelivered = 0;
  let waiter: { done: () => boolean; resolve: () => void } | null = null;
  const responses = new Map<number, () => void>();
  const wake = () => {
    if (waiter?.done()) {
      const w = waiter;
      waiter = null;
      w.resolve();
    }
  };
  const waitUntil = (done: () => boolean, what: string): Promise<void> => {
    if (done()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`bench: timed out waiting for ${what}`)),
        10_000,
      );
      waiter = {
        done,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
    });
  };
  let answerAppends = false;
  const sides: Side[] = [];
  const failures: string[] = [];
  const side = async (nodeId: number, peerId: number, onMessages: (m: Message[]) => void) => {
    const app = createPeerApp({
      nodeId,
      clusterId: () => null,
      authSecret,
      metrics: new Metrics(),
      onMessages: (_c, messages) => onMessages(messages),
      status: () => ({}),
      health: () => ({ ok: true }),
    });
    const server = new PeerServer(app, { hostname: "127.0.0.1", port: 0 });
    await server.start();
    return { app, server, nodeId, peerId };
  };
  const node1 = await side(1, 2, (messages) => {
    for (const m of messages) {
      if (m.type === "append_response") responses.get(m.matchIndex)?.();
    }
  });
  const node2 = await side(2, 1, (messages) => {
    for (const m of messages) {
      if (m.type === "heartbeat_request") heartbeatsDelivered++;
      if (m.type === "append_request") {
        entriesDelivered += m.entries.length;
        if (answerAppends) {
          sides[1]!.client.send([{
            type: "append_response",
            term: m.term,
            from: 2,
            to: 1,
            success: true,
            matchIndex: m.prevLogIndex + m.entries.length,
            hint: null,
          }]);
        }
      }
    }
    wake();
  });
  for (const [self, peer] of [[node1, node2], [node2, node1]] as const) {
    sides.push({
      server: self.server,
      client: new PeerClient({
        nodeId: self.nodeId,
        peerId: peer.nodeId,
        baseUrl: `http://127.0.0.1:${peer.server.port}`,
        clusterId: () => null,
        authSecret,
        metrics: new Metrics(),
        maxQueuedMessages: 100_000,
        onUnreachable: (p) => failures.push(`node ${self.nodeId} -> ${p} unreachable`),
        onSnapshotResult: () => {},
      }),
    });
  }
  const to2 = sides[0]!.client;
  try {
    // warm-up: connections both ways
    to2.send([heartbeat(0)]);
    await waitUntil(() => heartbeatsDelivered >= 1, "warm-up");

    // 1. heartbeat messages/s, sent in one burst (the client batches them)
    const burst = 50_000;
    let start = performance.now();
    for (let i = 1; i <= burst; i++) to2.send([heartbeat(i)]);
    await waitUntil(() => heartbeatsDelivered >= burst + 1, "the heartbeat burst");
    const heartbeatsPerSecond = burst / ((performance.now() - start) / 1000);

    // 2. one-at-a-time heartbeats: requests/s with one in flight
    let sequential = 0;
    start = performance.now();
    while (performance.now() - start < 400) {
      const target = heartbeatsDelivered + 1;
      to2.send([heartbeat(sequential)]);
      await waitUntil(() => heartbeatsDelivered >= target, "a sequential heartbeat");
      sequential++;
    }
    const sequentialPerSecond = sequential / ((performance.now() - start) / 1000);

    // 3. append round trips: 512 x 100 B, answered by node 2, one at a time
    // (the first 50 warm up and are not counted)
    answerAppends = true;
    let index = 1;
    const rtts: number[] = [];
    start = performance.now();
    for (let i = 0; rtts.length < 400 && performance.now() - start < 1_500; i++) {
      const m = appendRequest(index);
      index += ENTRIES;
      const matchIndex = index - 1;
      const t0 = performance.now();
      const answered = new Promise<void>((resolve) => responses.set(matchIndex, resolve));
      to2.send([m]);
      await answered;
      responses.delete(matchIndex);
      if (i >= 50) rtts.push(performance.now() - t0);
    }
    rtts.sort((a, b) => a - b);
    answerAppends = false;

    // 4. pipelined appends: entries/s (one request in flight, batched)
    const appends = 200;
    const pre = Array.from({ length: appends }, (_, i) => appendRequest(index + i * ENTRIES));
    index += appends * ENTRIES;
    const target = entriesDelivered + appends * ENTRIES;
    start = performance.now();
    for (const m of pre) to2.send([m]);
    await waitUntil(() => entriesDelivered >= target, "the pipelined appends");
    const appendSeconds = (performance.now() - start) / 1000;

    if (failures.length > 0) throw new Error(`bench: ${failures.join("; ")}`);
    return {
      signed: authSecret !== null,
      heartbeatBurstMessagesPerSecond: Math.round(heartbeatsPerSecond),
      sequentialRequestsPerSecond: Math.round(sequentialPerSecond),
      appendRoundTrip: {
        samples: rtts.length,
        p50Ms: round(percentile(rtts, 0.5), 3),
        p99Ms: round(percentile(rtts, 0.99), 3),
      },
      pipelinedAppendEntriesPerSecond: Math.round((appends * ENTRIES) / appendSeconds),
      pipelinedAppendMBPerSecond: round((appends * ENTRIES * ENTRY_BYTES) / appendSeconds / 1e6),
    };
  } finally {
    for (const s of sides) await s.client.close();
    await node1.server.stop();
    await node2.server.stop();
  }
}

/**
 * Run the transport benchmark (a few seconds).
 *
 * @returns the figures: `codec` (JSON vs binary, signing cost), `loopback`
 *   (unsigned) and `loopbackSigned`, and the signing overhead on the append
 *   round trip
 */
export async function transportBench(): Promise<Record<string, unknown>> {
  const started = performance.now();
  const codec = await codecFigures();
  const loopback = await loopbackFigures(null);
  const loopbackSigned = await loopbackFigures("bench-secret");
  const rtt = (f: Record<string, unknown>) => (f.appendRoundTrip as { p50Ms: number }).p50Ms;
  return {
    codec,
    loopback,
    loopbackSigned,
    signingOverhead: {
      appendRoundTripP50Ms: round(rtt(loopbackSigned) - rtt(loopback), 3),
      heartbeatBurstThroughputRatio: round(
        (loopbackSigned.heartbeatBurstMessagesPerSecond as number) /
          (loopback.heartbeatBurstMessagesPerSecond as number),
        2,
      ),
    },
    durationMs: Math.round(performance.now() - started),
  };
}

if (import.meta.main) console.log(JSON.stringify(await transportBench()));
