/**
 * tests/bench/connect_phases.ts in the suite, so the breakdown cannot rot: with a few samples
 * every path must answer and every phase the agents stamp must show up in the steps. Asserts
 * that numbers exist, never how fast anything is.
 */
import assert from "node:assert/strict";
import { measurePhases, PHASES } from "./connect_phases.ts";

Deno.test({
  name: "connect_phases: direct, floor and Florete answer, CPU is counted, every phase is stamped",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const r = await measurePhases(3, 1);
    for (const path of ["direct", "floor", "flor"] as const) {
      assert.equal(r.samples[path].length, 3, path);
      assert.ok(r.samples[path].every((ms) => ms > 0 && Number.isFinite(ms)), path);
    }
    for (const path of ["floor", "flor"]) {
      const b = r.bulk[path];
      assert.ok(b.socks > 0 && b.node > 0 && b.seconds.length === 1, `${path} bulk CPU`);
      // 3 CONNECTs may stay under /proc's 10 ms clock tick: present, not necessarily > 0.
      assert.ok(Number.isFinite(r.cpuMs[path].socks), `${path} CPU per CONNECT`);
    }
    const stamped = new Set(r.steps.flatMap((s) => [s.from, s.to]));
    assert.deepEqual(PHASES.filter((p) => !stamped.has(p)), []);
    assert.ok(r.steps.every((s) => s.n === 3 && Number.isFinite(s.medianMs)));
  },
});
