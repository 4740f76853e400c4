import assert from "node:assert/strict";
import { NO_TRACE, phaseTrace, traceFields } from "../../lib/phase_trace.ts";

Deno.test("phase_trace: stamps each phase once, in order, on the clock given", () => {
  let now = 1000;
  const t = phaseTrace(() => now);
  t.mark("accepted");
  now = 1000.25;
  t.mark("greeted");
  now = 1003;
  t.mark("accepted"); // a second stamp of a phase does not move the first
  t.mark("replied");
  assert.equal(t.enabled, true);
  assert.deepEqual(t.stamps(), [["accepted", 1000], ["greeted", 1000.25], ["replied", 1003]]);
  assert.deepEqual(traceFields("client", t), {
    side: "client",
    t0: 1000,
    phases: { accepted: 0, greeted: 0.25, replied: 3 },
  });
});

Deno.test("phase_trace: offsets are rounded to microseconds", () => {
  const times = [5, 5.0001234, 5.0123456];
  const t = phaseTrace(() => times.shift()!);
  for (const p of ["a", "b", "c"]) t.mark(p);
  assert.deepEqual(traceFields("server", t).phases, { a: 0, b: 0, c: 0.012 });
});

Deno.test("phase_trace: the shared off trace records nothing", () => {
  NO_TRACE.mark("accepted");
  assert.equal(NO_TRACE.enabled, false);
  assert.deepEqual(NO_TRACE.stamps(), []);
  assert.deepEqual(traceFields("client", NO_TRACE), { side: "client", t0: 0, phases: {} });
});
