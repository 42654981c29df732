/**
 * The floor under every other figure on this machine: one durable PostgreSQL
 * commit (a single-row insert, synchronous_commit = on) and one loopback HTTP
 * round trip (Deno.serve + keep-alive fetch). Nothing built on them can be
 * faster.
 *
 * @module
 */

import type postgres from "postgres";
import { latencySummary, timedLoop } from "./stats.ts";

/** Commit latency of single-row inserts on `sql` (its own table, dropped afterwards). */
export async function pgCommitLatency(
  sql: postgres.Sql,
  count: number,
): Promise<Record<string, unknown>> {
  await sql`create table if not exists bench_floor (id bigserial primary key, v bytea not null)`;
  try {
    const [settings] = await sql`
      select current_setting('fsync') as fsync,
             current_setting('synchronous_commit') as synchronous_commit,
             current_setting('wal_sync_method') as wal_sync_method,
             current_setting('server_version') as server_version`;
    const value = new Uint8Array(100).fill(120);
    // Warm up the connection and the prepared statement.
    for (let i = 0; i < 20; i++) {
      await sql`insert into bench_floor (v) values (${value})`;
    }
    const samples = await timedLoop(
      count,
      20_000,
      () => sql`insert into bench_floor (v) values (${value})`,
    );
    return {
      what: "single-row insert, autocommit, synchronous_commit=on",
      ...latencySummary(samples),
      server: settings,
    };
  } finally {
    await sql`drop table if exists bench_floor`;
  }
}

/** Round trip of a keep-alive fetch to a Deno.serve on 127.0.0.1 (100-byte body each way). */
export async function httpRoundTrip(count: number): Promise<Record<string, unknown>> {
  const body = "x".repeat(100);
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    async (req) => new Response(await req.text()),
  );
  const client = Deno.createHttpClient({});
  try {
    const url = `http://127.0.0.1:${server.addr.port}/echo`;
    const once = async () => {
      const res = await fetch(url, { method: "PUT", body, client });
      await res.arrayBuffer();
    };
    for (let i = 0; i < 50; i++) await once();
    const samples = await timedLoop(count, 20_000, once);
    return {
      what: "Deno.serve + keep-alive fetch on 127.0.0.1, PUT 100 B",
      ...latencySummary(samples),
    };
  } finally {
    client.close();
    ac.abort();
    await server.finished;
  }
}
