/**
 * Our postgres.js clients survive a server that goes away right after a
 * session starts — what a failover or a fence does to every open client.
 *
 * @module
 */

import assert from "node:assert/strict";
import { openPostgres } from "../../lib/postgres/connection.ts";
import { withPgServer } from "../helpers/pg.ts";
import { indexOf } from "../helpers/tcp_proxy.ts";

/** ReadyForQuery ('Z', length 5): the end of a session's start-up. */
const READY_FOR_QUERY = new Uint8Array([0x5a, 0, 0, 0, 5]);

/** Where the first ReadyForQuery in `bytes` ends (with its status byte), or -1. */
function readyEnd(bytes: Uint8Array): number {
  const at = indexOf(bytes, READY_FOR_QUERY);
  if (at < 0 || at + READY_FOR_QUERY.length >= bytes.length) return -1;
  return at + READY_FOR_QUERY.length + 1; // + the transaction status byte
}

/**
 * A proxy in front of `target` that passes each session's start-up through
 * and closes both ends right after the server's first ReadyForQuery.
 */
function dropAfterStartup(target: { hostname: string; port: number }) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const close = (conn: Deno.Conn) => {
    try {
      conn.close();
    } catch { /* closed */ }
  };
  const accepting = (async () => {
    for await (const client of listener) {
      const server = await Deno.connect(target);
      conns.push(client, server);
      client.readable.pipeTo(server.writable).catch(() => {});
      (async () => {
        const buffer = new Uint8Array(64 * 1024);
        let seen = new Uint8Array(0);
        for (;;) {
          const n = await server.read(buffer).catch(() => null);
          if (n === null) break;
          const joined = new Uint8Array(seen.length + n);
          joined.set(seen);
          joined.set(buffer.subarray(0, n), seen.length);
          seen = joined;
          const end = readyEnd(seen);
          if (end >= 0) {
            await client.write(seen.subarray(0, end)).catch(() => {});
            break;
          }
        }
        close(server);
        close(client);
      })();
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async stop() {
      listener.close();
      conns.forEach(close);
      await accepting;
    },
  };
}

Deno.test("a server that closes the session right after start-up fails the query, not the process", async () => {
  await withPgServer(async (server) => {
    const proxy = dropAfterStartup({ hostname: server.host, port: server.port });
    const sql = openPostgres({ ...server.connection, host: "127.0.0.1", port: proxy.port, max: 1 });
    try {
      for (let round = 0; round < 3; round++) {
        await assert.rejects(sql`select 1`);
      }
      // Give an unobserved rejection the time to surface (it fails the test).
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await sql.end({ timeout: 0 });
      await proxy.stop();
    }
  });
});
