/**
 * A small TCP proxy for network partitions without root. One proxy stands in
 * front of each node's agent port. All traffic is loopback, so the peer that
 * opened a connection is told by the first HTTP request on it: peer requests
 * carry `X-Pgraft-From: <node id>` (a keep-alive connection only ever carries
 * one sender's requests). Connections without it (clients) pass through.
 *
 * `cut(from, to)` drops the link's open connections and refuses new ones
 * (closed as soon as their first request is read); `heal()` lets everything
 * through again.
 *
 * @module
 */

/** Where a proxy listens and where it forwards to. */
export interface ProxyTarget {
  /** the node behind this proxy */
  nodeId: number;
  listen: { hostname: string; port: number };
  target: { hostname: string; port: number };
}

interface Tracked {
  from: number | null;
  conns: Deno.Conn[];
}

const HEADER_END = new TextEncoder().encode("\r\n\r\n");
/** The answer to a client when the node behind the proxy refuses connections. */
export const NOT_DELIVERED = new TextEncoder().encode(
  "HTTP/1.1 502 Bad Gateway\r\nx-tcp-proxy: not-delivered\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
);
/** Bytes read at most while looking for the end of the first request's headers. */
const HEAD_BYTES_MAX = 64 * 1024;

/** Where `needle` first occurs in `haystack`, or -1. */
export function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** The sender's node id from an HTTP request head, or null (a client). */
export function senderOf(head: string): number | null {
  const match = /\r\nx-pgraft-from:[ \t]*(\d+)[ \t]*\r\n/i.exec(head);
  return match ? Number(match[1]) : null;
}

/** A proxy in front of one node. */
export class TcpProxy {
  readonly nodeId: number;
  readonly listen: { hostname: string; port: number };
  readonly target: { hostname: string; port: number };
  #listener: Deno.Listener;
  #open = new Set<Tracked>();
  #blocked = new Set<number>();
  #tasks = new Set<Promise<void>>();
  #closed = false;
  #accepting: Promise<void>;
  /**
   * `X-Request-Id` of the first request of each client connection, with the
   * number of connections it came on: more than one means the client sent the
   * request again by itself (fetch retries a request whose pooled connection
   * broke, which a test must know: the first copy may have been applied).
   */
  readonly requestIds = new Map<string, number>();
  /** connections refused or dropped because of a cut, by sender */
  readonly dropped = new Map<number, number>();

  constructor(options: ProxyTarget) {
    this.nodeId = options.nodeId;
    this.listen = options.listen;
    this.target = options.target;
    this.#listener = Deno.listen({
      hostname: options.listen.hostname,
      port: options.listen.port,
      transport: "tcp",
    });
    this.#accepting = this.#acceptLoop();
  }

  /** Refuse connections from node `from` (and drop its open ones). */
  block(from: number): void {
    this.#blocked.add(from);
    for (const t of this.#open) {
      if (t.from === from) this.#drop(t);
    }
  }

  unblock(from: number): void {
    this.#blocked.delete(from);
  }

  unblockAll(): void {
    this.#blocked.clear();
  }

  #drop(t: Tracked): void {
    if (t.from !== null) this.dropped.set(t.from, (this.dropped.get(t.from) ?? 0) + 1);
    for (const c of t.conns) closeQuietly(c);
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      if (this.#closed) {
        closeQuietly(conn);
        return;
      }
      this.#track(this.#handle(conn));
    }
  }

  async #handle(inbound: Deno.Conn): Promise<void> {
    const t: Tracked = { from: null, conns: [inbound] };
    this.#open.add(t);
    try {
      // Read until the first request's head is complete (or give up: pass it on).
      let head: Uint8Array<ArrayBuffer> = new Uint8Array(0);
      const buf = new Uint8Array(16 * 1024);
      while (indexOf(head, HEADER_END) < 0 && head.length < HEAD_BYTES_MAX) {
        const n = await inbound.read(buf);
        if (n === null) return;
        const grown = new Uint8Array(head.length + n);
        grown.set(head);
        grown.set(buf.subarray(0, n), head.length);
        head = grown;
      }
      const end = indexOf(head, HEADER_END);
      const text = new TextDecoder().decode(end < 0 ? head : head.subarray(0, end + 2));
      t.from = senderOf(text);
      if (t.from === null) {
        const id = /\r\nx-request-id:[ \t]*([^\r\n]+?)[ \t]*\r\n/i.exec(text)?.[1];
        if (id !== undefined) this.requestIds.set(id, (this.requestIds.get(id) ?? 0) + 1);
      }
      if (t.from !== null && this.#blocked.has(t.from)) {
        this.dropped.set(t.from, (this.dropped.get(t.from) ?? 0) + 1);
        return;
      }
      if (this.#closed) return;
      let outbound: Deno.Conn;
      try {
        outbound = await Deno.connect({
          hostname: this.target.hostname,
          port: this.target.port,
          transport: "tcp",
        });
      } catch {
        // The node is down. A peer sees its connection closed; a client gets a
        // 502 marked as the proxy's own, so it knows nothing was delivered.
        if (t.from === null) await writeAll(inbound, NOT_DELIVERED).catch(() => {});
        return;
      }
      t.conns.push(outbound);
      if (this.#closed || (t.from !== null && this.#blocked.has(t.from))) return;
      await writeAll(outbound, head);
      await Promise.all([pipe(inbound, outbound), pipe(outbound, inbound)]);
    } catch {
      // reset, closed by a cut: the connection is over
    } finally {
      this.#open.delete(t);
      for (const c of t.conns) closeQuietly(c);
    }
  }

  /** Stop listening, drop every connection and wait for their tasks. */
  async close(): Promise<void> {
    this.#closed = true;
    try {
      this.#listener.close();
    } catch { /* closed */ }
    await this.#accepting;
    for (const t of this.#open) for (const c of t.conns) closeQuietly(c);
    await Promise.allSettled([...this.#tasks]);
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Copy from `src` to `dst` until EOF; then half-close `dst` for writing. */
async function pipe(src: Deno.Conn, dst: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await src.read(buf);
      if (n === null) break;
      await writeAll(dst, buf.subarray(0, n));
    }
    await dst.closeWrite().catch(() => {});
  } catch {
    // either side closed or reset: close both so the other direction ends too
    closeQuietly(src);
    closeQuietly(dst);
  }
}

/** The proxies of a cluster, with link-level partitions. */
export class Partitioner {
  readonly proxies = new Map<number, TcpProxy>();

  constructor(targets: ProxyTarget[]) {
    for (const t of targets) this.proxies.set(t.nodeId, new TcpProxy(t));
  }

  /** Cut the link from node `from` to node `to` (requests `from` sends to `to`). */
  cut(from: number, to: number): void {
    this.proxies.get(to)?.block(from);
  }

  /** Cut both directions between `a` and `b`. */
  cutBoth(a: number, b: number): void {
    this.cut(a, b);
    this.cut(b, a);
  }

  /** Cut node `id` from every other node, both ways (clients still reach it). */
  isolate(id: number): void {
    for (const other of this.proxies.keys()) if (other !== id) this.cutBoth(id, other);
  }

  /** Request ids that arrived on more than one client connection (across all proxies). */
  resent(): string[] {
    const seen = new Map<string, number>();
    for (const p of this.proxies.values()) {
      for (const [id, n] of p.requestIds) seen.set(id, (seen.get(id) ?? 0) + n);
    }
    return [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  }

  heal(): void {
    for (const p of this.proxies.values()) p.unblockAll();
  }

  async close(): Promise<void> {
    await Promise.all([...this.proxies.values()].map((p) => p.close()));
  }
}
