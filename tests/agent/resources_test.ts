import assert from "node:assert/strict";
import { lagSummary } from "../../agent/resources.ts";

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
