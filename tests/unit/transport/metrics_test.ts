import assert from "node:assert/strict";
import { Metrics } from "../../../lib/transport/mod.ts";
import { AssertionError } from "../../../lib/assert.ts";

Deno.test("metrics render counters and gauges with HELP, TYPE, prefix and sorted labels", () => {
  const m = new Metrics();
  m.describe("requests_total", "Requests handled.", "counter");
  m.inc("requests_total", { peer: "2", reason: "ok" });
  m.inc("requests_total", { reason: "ok", peer: "2" }, 4);
  m.inc("pgraft_requests_total", { peer: "3", reason: "ok" });
  m.set("queue_messages", 17);
  m.set("queue_messages", 12);
  assert.equal(
    m.render(),
    [
      "# HELP pgraft_queue_messages pgraft queue messages",
      "# TYPE pgraft_queue_messages gauge",
      "pgraft_queue_messages 12",
      "# HELP pgraft_requests_total Requests handled.",
      "# TYPE pgraft_requests_total counter",
      'pgraft_requests_total{peer="2",reason="ok"} 5',
      'pgraft_requests_total{peer="3",reason="ok"} 1',
      "",
    ].join("\n"),
  );
  assert.equal(m.value("requests_total", { peer: "2", reason: "ok" }), 5);
});

Deno.test("metrics render histograms with cumulative buckets, +Inf, sum and count", () => {
  const m = new Metrics({ bucketsSeconds: [0.01, 0.1, 1] });
  m.observe("latency_seconds", 0.005, { peer: "2" });
  m.observe("latency_seconds", 0.05, { peer: "2" });
  m.observe("latency_seconds", 5, { peer: "2" });
  assert.equal(
    m.render(),
    [
      "# HELP pgraft_latency_seconds pgraft latency seconds",
      "# TYPE pgraft_latency_seconds histogram",
      'pgraft_latency_seconds_bucket{peer="2",le="0.01"} 1',
      'pgraft_latency_seconds_bucket{peer="2",le="0.1"} 2',
      'pgraft_latency_seconds_bucket{peer="2",le="1"} 2',
      'pgraft_latency_seconds_bucket{peer="2",le="+Inf"} 3',
      'pgraft_latency_seconds_sum{peer="2"} 5.055',
      'pgraft_latency_seconds_count{peer="2"} 3',
      "",
    ].join("\n"),
  );
  assert.equal(m.histogramCount("latency_seconds", { peer: "2" }), 3);
});

Deno.test("metrics escape label values and help text", () => {
  const m = new Metrics();
  m.describe("odd_total", "line one\nback\\slash", "counter");
  m.inc("odd_total", { v: 'a"b\\c\nd' });
  const text = m.render();
  assert.ok(text.includes("# HELP pgraft_odd_total line one\\nback\\\\slash\n"));
  assert.ok(text.includes('pgraft_odd_total{v="a\\"b\\\\c\\nd"} 1\n'));
});

Deno.test("metrics refuse one name used as two kinds and invalid names", () => {
  const m = new Metrics();
  m.inc("things_total");
  assert.throws(() => m.set("things_total", 1), AssertionError);
  assert.throws(() => m.inc("bad-name"), AssertionError);
  assert.throws(() => m.inc("ok_total", { "bad-label": "x" }), AssertionError);
  assert.throws(() => m.inc("ok_total", undefined, -1), AssertionError);
});

Deno.test("an empty registry renders nothing", () => {
  assert.equal(new Metrics().render(), "");
});
