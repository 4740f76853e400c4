import assert from "node:assert/strict";
import { createAgentMetrics } from "../../agent/agent_metrics.ts";
import { LimitsSchema } from "../../agent/config.ts";
import { lagSummary, SAMPLE_INTERVAL_MS, startResourceMonitor } from "../../agent/resources.ts";

Deno.test("resources: flor_resource_high follows resource.high and resource.normal", async () => {
  const metrics = createAgentMetrics();
  const events: [string, Record<string, unknown>][] = [];
  const record = (event: string, fields: Record<string, unknown> = {}) =>
    events.push([event, fields]);
  const log = { debug: record, info: record, warn: record, error: record };
  // This process's RSS is far over 1 MB and far under 1 TB.
  let limits = LimitsSchema.parse({ rss_mb_warn: 1 });
  const monitor = startResourceMonitor(() => limits, log, metrics);
  try {
    await new Promise((r) => setTimeout(r, SAMPLE_INTERVAL_MS + 500));
    assert.equal(metrics.resourceHigh.get({ resource: "rss_mb" }), 1);
    assert.equal(metrics.resourceHigh.get({ resource: "event_loop_lag_ms" }), 0);
    assert.deepEqual(events.map(([e, f]) => [e, f.resource]), [["resource.high", "rss_mb"]]);

    limits = LimitsSchema.parse({ rss_mb_warn: 1_000_000 });
    await new Promise((r) => setTimeout(r, SAMPLE_INTERVAL_MS));
    assert.equal(metrics.resourceHigh.get({ resource: "rss_mb" }), 0);
    assert.deepEqual(events.at(-1)?.[0], "resource.normal");
  } finally {
    monitor.stop();
  }
});

Deno.test("resources: lag summary is median, p99 and max of the window", () => {
  const samples = Array.from({ length: 250 }, (_, i) => (i === 100 ? 400 : i % 10));
  samples.push(120, 130, 140); // a few slow turns
  const s = lagSummary(samples);
  assert.equal(s.max, 400);
  assert.equal(s.p50, 5);
  assert.ok(s.p99 >= 9 && s.p99 <= 140, `p99 ${s.p99}`);
  assert.deepEqual(lagSummary([]), { p50: 0, p99: 0, max: 0 });
  assert.deepEqual(lagSummary([7]), { p50: 7, p99: 7, max: 7 });
});

Deno.test("resources: one blocked turn in a quiet window shows in p99 and max", () => {
  const samples = [...Array(50).fill(0.5), 300];
  const s = lagSummary(samples);
  assert.equal(s.p99, 300);
  assert.equal(s.p50, 0.5);
});
