/**
 * A small Prometheus registry: counters, gauges and histograms with labels,
 * rendered in the text exposition format 0.0.4. Every name gets the `pgraft_`
 * prefix (added when missing).
 *
 * Using one name as two kinds, or an invalid metric or label name, is a bug in
 * pgraft, not bad input: it fails an assertion.
 *
 * @module
 */

import { assert } from "../assert.ts";

/** The kinds of metric the registry keeps. */
export type MetricType = "counter" | "gauge" | "histogram";

/** Histogram bucket upper bounds in seconds, from 0.5 ms to 10 s. */
export const DEFAULT_BUCKETS_SECONDS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** Most label combinations one metric may hold; beyond it new ones are dropped. */
export const SERIES_PER_METRIC_MAX = 1000;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface Family {
  type: MetricType;
  help: string;
  /** key = rendered label set (`a="1",b="2"`) */
  series: Map<string, number | HistogramSeries>;
}

interface HistogramSeries {
  counts: number[];
  sum: number;
  count: number;
}

/**
 * A registry of metrics.
 *
 * @example
 * ```ts
 * const m = new Metrics();
 * m.inc("requests_total", { peer: "2" });
 * assert(m.render().includes('pgraft_requests_total{peer="2"} 1'));
 * ```
 */
export class Metrics {
  #families = new Map<string, Family>();
  /** the same families by the name callers use (with or without the prefix) */
  #byGivenName = new Map<string, Family>();
  #buckets: readonly number[];

  /**
   * @param options.bucketsSeconds histogram bucket bounds, ascending
   * @default DEFAULT_BUCKETS_SECONDS
   */
  constructor(options: { bucketsSeconds?: readonly number[] } = {}) {
    this.#buckets = options.bucketsSeconds ?? DEFAULT_BUCKETS_SECONDS;
    for (let i = 1; i < this.#buckets.length; i++) {
      assert(this.#buckets[i - 1]! < this.#buckets[i]!, "histogram buckets must ascend");
    }
  }

  /**
   * Set the help text and kind of a metric before (or after) first use.
   *
   * @param name metric name, with or without the `pgraft_` prefix
   * @param help one line for `# HELP`
   * @param type the kind; must match every use
   */
  describe(name: string, help: string, type: MetricType): void {
    const family = this.#family(name, type);
    family.help = help;
  }

  /**
   * Add to a counter.
   *
   * @param name counter name (conventionally ending in `_total`)
   * @param labels label values
   * @param by amount, >= 0
   * @default by 1
   */
  inc(name: string, labels?: Record<string, string>, by = 1): void {
    assert(Number.isFinite(by) && by >= 0, `counter ${name} incremented by ${by}`);
    const family = this.#family(name, "counter");
    const key = labelKey(labels);
    const current = family.series.get(key);
    if (current === undefined && family.series.size >= SERIES_PER_METRIC_MAX) return;
    family.series.set(key, ((current as number | undefined) ?? 0) + by);
  }

  /**
   * Set a gauge.
   *
   * @param name gauge name
   * @param value the current value
   * @param labels label values
   */
  set(name: string, value: number, labels?: Record<string, string>): void {
    const family = this.#family(name, "gauge");
    const key = labelKey(labels);
    if (!family.series.has(key) && family.series.size >= SERIES_PER_METRIC_MAX) return;
    family.series.set(key, value);
  }

  /**
   * Record one observation in a histogram.
   *
   * @param name histogram name (conventionally ending in `_seconds`)
   * @param valueSeconds the observed value
   * @param labels label values
   */
  observe(name: string, valueSeconds: number, labels?: Record<string, string>): void {
    const family = this.#family(name, "histogram");
    const key = labelKey(labels);
    let series = family.series.get(key) as HistogramSeries | undefined;
    if (series === undefined) {
      if (family.series.size >= SERIES_PER_METRIC_MAX) return;
      series = { counts: this.#buckets.map(() => 0), sum: 0, count: 0 };
      family.series.set(key, series);
    }
    for (let i = 0; i < this.#buckets.length; i++) {
      if (valueSeconds <= this.#buckets[i]!) series.counts[i]!++;
    }
    series.sum += valueSeconds;
    series.count++;
  }

  /**
   * The current value of a counter or gauge series (for tests and status).
   *
   * @returns the value, or undefined when never set
   */
  value(name: string, labels?: Record<string, string>): number | undefined {
    const family = this.#families.get(prefixed(name));
    if (!family || family.type === "histogram") return undefined;
    return family.series.get(labelKey(labels)) as number | undefined;
  }

  /**
   * The sum of a counter over all its series (every label combination).
   *
   * @returns the total, 0 when never incremented
   */
  total(name: string): number {
    const family = this.#families.get(prefixed(name));
    if (!family || family.type !== "counter") return 0;
    let sum = 0;
    for (const value of family.series.values()) sum += value as number;
    return sum;
  }

  /**
   * The number of observations of a histogram series.
   *
   * @returns the count, 0 when never observed
   */
  histogramCount(name: string, labels?: Record<string, string>): number {
    const family = this.#families.get(prefixed(name));
    if (!family || family.type !== "histogram") return 0;
    return (family.series.get(labelKey(labels)) as HistogramSeries | undefined)?.count ?? 0;
  }

  /**
   * Render every metric in the Prometheus text format 0.0.4
   * (content type `text/plain; version=0.0.4`).
   *
   * @returns the exposition text, ending with a newline
   */
  render(): string {
    const lines: string[] = [];
    const names = [...this.#families.keys()].sort();
    for (const name of names) {
      const family = this.#families.get(name)!;
      lines.push(`# HELP ${name} ${escapeHelp(family.help)}`);
      lines.push(`# TYPE ${name} ${family.type}`);
      const keys = [...family.series.keys()].sort();
      for (const key of keys) {
        const value = family.series.get(key)!;
        if (typeof value === "number") {
          lines.push(`${name}${key ? `{${key}}` : ""} ${formatNumber(value)}`);
          continue;
        }
        for (let i = 0; i < this.#buckets.length; i++) {
          const le = `le="${formatNumber(this.#buckets[i]!)}"`;
          lines.push(`${name}_bucket{${key ? `${key},` : ""}${le}} ${value.counts[i]}`);
        }
        lines.push(`${name}_bucket{${key ? `${key},` : ""}le="+Inf"} ${value.count}`);
        lines.push(`${name}_sum${key ? `{${key}}` : ""} ${formatNumber(value.sum)}`);
        lines.push(`${name}_count${key ? `{${key}}` : ""} ${value.count}`);
      }
    }
    return lines.length === 0 ? "" : lines.join("\n") + "\n";
  }

  #family(name: string, type: MetricType): Family {
    // Hot: every message counts. Families are found by the name as given first.
    const known = this.#byGivenName.get(name);
    if (known !== undefined && known.type === type) return known;
    const full = prefixed(name);
    let family = this.#families.get(full);
    if (family === undefined) {
      assert(NAME.test(full), `invalid metric name ${JSON.stringify(full)}`);
      family = { type, help: full.replaceAll("_", " "), series: new Map() };
      this.#families.set(full, family);
    }
    assert(family.type === type, `metric ${full} is a ${family.type}, used as a ${type}`);
    this.#byGivenName.set(name, family);
    return family;
  }
}

function prefixed(name: string): string {
  return name.startsWith("pgraft_") ? name : `pgraft_${name}`;
}

function labelKey(labels: Record<string, string> | undefined): string {
  if (labels === undefined) return "";
  const names = Object.keys(labels).sort();
  return names.map((n) => {
    assert(LABEL.test(n) && n !== "le", `invalid label name ${JSON.stringify(n)}`);
    return `${n}="${escapeLabel(String(labels[n]))}"`;
  }).join(",");
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

function escapeHelp(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** Names of the metrics the transport records (the `pgraft_` prefix is added). */
export const TRANSPORT_METRICS = {
  messagesSent: "transport_messages_sent_total",
  messagesReceived: "transport_messages_received_total",
  messagesDropped: "transport_messages_dropped_total",
  bytesSent: "transport_bytes_sent_total",
  bytesReceived: "transport_bytes_received_total",
  requests: "transport_requests_total",
  requestErrors: "transport_request_errors_total",
  requestDuration: "transport_request_duration_seconds",
  queueMessages: "transport_queue_messages",
  rejected: "transport_requests_rejected_total",
  serverErrors: "transport_server_errors_total",
  rpcHandled: "transport_rpc_handled_total",
  rpcCalls: "transport_rpc_calls_total",
  snapshotChunksSent: "transport_snapshot_chunks_sent_total",
  snapshotChunksReceived: "transport_snapshot_chunks_received_total",
  snapshotTransfersDropped: "transport_snapshot_transfers_dropped_total",
} as const;

const HELP: Record<keyof typeof TRANSPORT_METRICS, [string, MetricType]> = {
  messagesSent: ["Raft messages sent to peers, by message type.", "counter"],
  messagesReceived: ["Raft messages accepted from peers, by message type.", "counter"],
  messagesDropped: [
    "Raft messages dropped before delivery (queue full, failed request), by peer and reason.",
    "counter",
  ],
  bytesSent: ["Request body bytes sent to peers.", "counter"],
  bytesReceived: ["Request body bytes accepted from peers.", "counter"],
  requests: ["Peer message requests sent, by peer.", "counter"],
  requestErrors: [
    "Peer requests that failed, by peer and reason (network, timeout, status).",
    "counter",
  ],
  requestDuration: ["Duration of peer message requests in seconds, by peer.", "histogram"],
  queueMessages: ["Messages waiting in the send queue, by peer.", "gauge"],
  rejected: [
    "Incoming peer requests rejected, by endpoint and reason (unauthorized, stale, replay, " +
    "forbidden, bad_request, cluster_mismatch, too_large, snapshot_out_of_order).",
    "counter",
  ],
  serverErrors: ["Incoming peer requests that failed with an internal error.", "counter"],
  rpcHandled: ["RPCs handled by this node, by name and outcome.", "counter"],
  rpcCalls: ["RPCs this node called on peers, by name and outcome.", "counter"],
  snapshotChunksSent: ["Snapshot chunks sent to peers, by peer.", "counter"],
  snapshotChunksReceived: ["Snapshot chunks accepted from peers.", "counter"],
  snapshotTransfersDropped: [
    "Incomplete incoming snapshot transfers dropped, by reason (timeout, superseded, evicted).",
    "counter",
  ],
};

/**
 * Give the transport's metrics their help text and kind (idempotent).
 *
 * @param metrics the registry to describe them in
 */
export function describeTransportMetrics(metrics: Metrics): void {
  for (const key of Object.keys(TRANSPORT_METRICS) as (keyof typeof TRANSPORT_METRICS)[]) {
    const [help, type] = HELP[key];
    metrics.describe(TRANSPORT_METRICS[key], help, type);
  }
}
