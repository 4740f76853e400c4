import assert from "node:assert/strict";
import { eventLoopLagMs } from "./loop_lag.ts";

Deno.test("loop lag: the p99 quantile where exported", () => {
  const text = [
    "# TYPE flor_event_loop_lag_seconds summary",
    'flor_event_loop_lag_seconds{quantile="0.5"} 0.002',
    'flor_event_loop_lag_seconds{quantile="0.99"} 0.0375',
    'flor_event_loop_lag_seconds{quantile="1"} 0.12',
  ].join("\n");
  assert.equal(eventLoopLagMs(text), 37.5);
});

Deno.test("loop lag: the plain gauge otherwise; nothing when absent", () => {
  assert.equal(eventLoopLagMs("flor_event_loop_lag_seconds 0.25\nflor_open_fds 12\n"), 250);
  assert.equal(eventLoopLagMs("flor_open_fds 12\n"), undefined);
  assert.equal(eventLoopLagMs("flor_event_loop_lag_seconds NaN\n"), undefined);
});
