/**
 * A minimal client of the agents' key-value API for the benchmarks: PUT of a
 * value to one node (no redirect following: a 307 is an answer, not a write),
 * keep-alive connections through one Deno HTTP client, a deadline per request.
 *
 * @module
 */

/** What one PUT got: the HTTP status, or 0 with the error when there was no answer. */
export interface PutOutcome {
  status: number;
  /** the Location of a 307 */
  location?: string;
  error?: string;
}

/** PUTs to the agents of a cluster, by port. */
export class KvClient {
  readonly http: Deno.HttpClient;

  constructor() {
    this.http = Deno.createHttpClient({});
  }

  /** PUT `value` at `key` on the agent listening on `port`; never throws. */
  async put(port: number, key: string, value: string, timeoutMs = 2_000): Promise<PutOutcome> {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1/kv/${encodeURIComponent(key)}`, {
        method: "PUT",
        body: value,
        client: this.http,
        redirect: "manual",
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.arrayBuffer();
      const location = res.headers.get("location") ?? undefined;
      return location ? { status: res.status, location } : { status: res.status };
    } catch (error) {
      return { status: 0, error: (error as Error).name + ": " + (error as Error).message };
    }
  }

  close(): void {
    this.http.close();
  }
}

/** A 100-byte value (ASCII). */
export const VALUE_100B = "v".repeat(100);
