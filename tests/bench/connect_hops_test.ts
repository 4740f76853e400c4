/**
 * tests/bench/connect_hops.ts in the suite, so the per-hop breakdown cannot rot: with a few
 * samples every piece must be measured (both floors answer) and the floor's CPU counted.
 * Asserts that numbers exist, never how fast anything is.
 */
import assert from "node:assert/strict";
import { formatHops, measureHops } from "./connect_hops.ts";

Deno.test({
  name: "connect_hops: every piece and every floor variant answer, the floor's CPU is counted",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const r = await measureHops(3, 1);
    assert.deepEqual(Object.keys(r.samples).sort(), [
      "floor CONNECT → echo",
      "floor, BBR",
      "floor, CONNECTs 5 ms apart",
      "floor, agents' V8 flags",
      "floor, lean",
      "floor, spare stream",
      "quic arrival, busy after write",
      "quic arrival, idle after write",
      "quic arrival, setImmediate, busy",
      "quic echo",
      "quic echo, busy after write",
      "quic echo, setImmediate, busy",
      "quic echo, setTimeout 0, busy",
      "quic new stream echo",
      "quic open",
      "tcp connect",
      "tcp connect+accept echo",
      "tcp echo",
      "tcp echo, busy after write",
    ]);
    for (const [piece, v] of Object.entries(r.samples)) {
      assert.equal(v.length, 3, piece);
      assert.ok(v.every((ms) => ms > 0 && Number.isFinite(ms)), piece);
    }
    // 3 CONNECTs may stay under /proc's 10 ms clock tick: present, not necessarily > 0.
    for (const side of [r.floorCpu.socks, r.floorCpu.node]) {
      assert.ok(Number.isFinite(side.user) && Number.isFinite(side.sys));
    }
    assert.match(formatHops(r), /one QUIC one-way hop \d+\.\d{3} ms/);
  },
});
