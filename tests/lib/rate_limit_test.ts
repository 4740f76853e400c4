import assert from "node:assert/strict";
import { RateLimiter } from "../../lib/rate_limit.ts";

Deno.test("rate limit: a refunded token can be taken again, never above the burst", () => {
  const l = new RateLimiter({ ratePerSecond: 1, burst: 2 });
  assert.ok(l.take("a", 0));
  assert.ok(l.take("a", 0));
  assert.ok(!l.take("a", 0));
  l.refund("a", 0);
  assert.ok(l.take("a", 0));
  assert.ok(!l.take("a", 0));
  l.refund("b", 0); // a full bucket stays at the burst
  assert.ok(l.take("b", 0));
  assert.ok(l.take("b", 0));
  assert.ok(!l.take("b", 0));
});
