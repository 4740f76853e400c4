import assert from "node:assert/strict";
import { assessFlow } from "../../agent/flow_watch.ts";

Deno.test("flow_watch: slow only when held back by the tunnel and under the threshold", () => {
  const t0 = { bytes: 0, sinkWaitMs: 0, at: 0 };
  // 5 s, 1 MB moved (0.2 MB/s), 4 s spent waiting on the tunnel: network-bound and slow.
  assert.deepEqual(assessFlow(t0, { bytes: 1e6, sinkWaitMs: 4000, at: 5000 }, 1), {
    slow: true,
    mbps: 0.2,
    blockedShare: 0.8,
  });
  // The same rate with the sender idle most of the time: not the network's fault.
  assert.equal(assessFlow(t0, { bytes: 1e6, sinkWaitMs: 500, at: 5000 }, 1).slow, false);
  // Network-bound but fast enough.
  assert.equal(assessFlow(t0, { bytes: 50e6, sinkWaitMs: 4900, at: 5000 }, 1).slow, false);
  // No time passed: no verdict.
  assert.equal(assessFlow(t0, t0, 1).slow, false);
});
