import assert from "node:assert/strict";
import { congestionControlOption } from "../../lib/congestion.ts";

Deno.test("congestion: bbr is Deno's low-latency controller, cubic its throughput one", () => {
  assert.equal(congestionControlOption("bbr"), "low-latency");
  assert.equal(congestionControlOption("cubic"), "throughput");
});
