/**
 * Dialling a node (lib/quic_client.ts connectNode) arms a running-time deadline for the
 * handshake and one for the auth reply (lib/stall_watch.ts). The agent dials per peer and
 * florctl per command: once the dial has ended, neither may stay armed to fire later.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { connectNode } from "../../lib/quic_client.ts";
import { watchTimers } from "../lib/armed_timers.ts";
import { agentFlags, aliceToN1, withFixture } from "./fixture.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

Deno.test("e2e: a finished dial leaves no deadline armed", e2e, async () => {
  await withFixture(async (fx, start) => {
    await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
    const dial = await aliceToN1(fx);
    const timers = watchTimers();
    try {
      const conn = await connectNode(dial);
      conn.close();
      assert.equal(timers.armed("stall_watch.ts"), 0, "a deadline of the dial is still armed");
      // A dial that fails (no node on the port) ends its deadlines too.
      await assert.rejects(connectNode({ ...dial, endpoint: { host: "127.0.0.1", port: 9 } }));
      assert.equal(timers.armed("stall_watch.ts"), 0, "a failed dial left its deadline armed");
    } finally {
      timers.restore();
    }
  });
});
