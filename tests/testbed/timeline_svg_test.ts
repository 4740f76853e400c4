import assert from "node:assert/strict";
import { parse } from "./_xml_check.ts";
import type { FaultOutcome, RequestRecord } from "./model.ts";
import { timelineSvg } from "./timeline_svg.ts";

const req = (end_s: number, ok: boolean): RequestRecord => ({
  start_s: end_s - 0.5,
  end_s,
  principal: "user:u1",
  service: "web1",
  node: "n1",
  kind: "short",
  ok,
  latency_ms: 500,
});

const fault: FaultOutcome = {
  kind: "partition",
  target: "site A <n1>",
  started_s: 30,
  detected_s: 32,
  recovered_s: 52,
  detect_bound_s: 3,
  bound_s: 3,
  recover_from_s: 50,
  ok: false,
  notes: ["peer.up & more"],
  excuses: [],
};

Deno.test("timeline: one bar per second with requests, failures in red, faults shaded", () => {
  const svg = timelineSvg([req(1.2, true), req(1.7, true), req(31, false), req(31.5, true)], [
    fault,
  ], 60);
  assert.ok(parse(svg), "well-formed XML");
  assert.equal((svg.match(/class="failed"/g) ?? []).length, 1);
  assert.equal((svg.match(/class="fault"/g) ?? []).length, 1);
  assert.match(svg, /<text[^>]*>2\/s<\/text>/, "the peak (2 requests in second 1) labels the axis");
  assert.match(svg, /site A &lt;n1&gt;: peer.up &amp; more/, "text is escaped");
  assert.match(svg, /fill="#f7b2b2"/, "a failed fault is shaded red");
});

Deno.test("timeline: an empty run is still a valid picture", () => {
  const svg = timelineSvg([], [], 0);
  assert.ok(parse(svg));
  assert.doesNotMatch(svg, /NaN|Infinity/);
});

Deno.test("timeline: a fault that never recovered is shaded to the end of the run", () => {
  const svg = timelineSvg([req(5, true)], [{ ...fault, recovered_s: null }], 100);
  const rect = /<rect class="fault" x="([\d.]+)"[^>]*width="([\d.]+)"/.exec(svg)!;
  assert.ok(Number(rect[1]) + Number(rect[2]) >= 989, `${rect[1]} + ${rect[2]}`);
});
