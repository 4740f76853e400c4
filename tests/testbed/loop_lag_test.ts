import assert from "node:assert/strict";
import { parseLoadAvg, parseLoopLag, splitPages } from "./loop_lag.ts";

const PAGE = [
  "# HELP flor_event_loop_lag_seconds How late a 20 ms timer fired, over the last 5 s",
  "# TYPE flor_event_loop_lag_seconds gauge",
  'flor_event_loop_lag_seconds{quantile="0.5"} 0.001',
  'flor_event_loop_lag_seconds{quantile="0.99"} 0.0234',
  'flor_event_loop_lag_seconds{quantile="1"} 2.3456',
  "flor_open_fds 40",
].join("\n");

Deno.test("loop_lag: p99 and max of the window, in ms", () => {
  assert.deepEqual(parseLoopLag(PAGE), { p99_ms: 23.4, max_ms: 2345.6 });
});

Deno.test("loop_lag: a page without the series (an agent that did not answer) is undefined", () => {
  assert.equal(parseLoopLag(""), undefined);
  assert.equal(parseLoopLag(PAGE.replace(/quantile="1"/, 'quantile="0.9"')), undefined);
});

Deno.test("loop_lag: curl's pages split in URL order, a failed URL an empty page", () => {
  const end = "\n#flor-testbed-page-end\n";
  const pages = splitPages(`${PAGE}${end}${end}${PAGE}${end}`);
  assert.equal(pages.length, 3);
  assert.deepEqual(pages.map((p) => parseLoopLag(p)?.max_ms), [2345.6, undefined, 2345.6]);
});

Deno.test("loop_lag: the 1-minute load average from /proc/loadavg", () => {
  assert.equal(parseLoadAvg("10.52 8.10 6.00 3/512 12345\n"), 10.52);
});
