/**
 * A request right after its node died is refused within 2 s, with margin, not at the QUIC
 * idle timeout (3 s): the agent asks the node whether it is alive instead of waiting.
 */
import assert from "node:assert/strict";
import { startNodeAndAlice, withFixture } from "./fixture.ts";
import { socksConnect } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "e2e: a SOCKS request right after its node is killed gets 0x03 within 2 s",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const { n1, alice, user } = await startNodeAndAlice(fx, start);
      const first = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
      first.conn.close();
      assert.equal(first.reply, 0);
      await alice.waitFor("peer.up", (e) => e.node === "n1");

      await n1.stop("SIGKILL");
      const t0 = performance.now();
      const failed = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
      const ms = performance.now() - t0;
      failed.conn.close();
      console.log(`reply 0x${failed.reply?.toString(16)} ${Math.round(ms)} ms after kill -9`);
      assert.equal(failed.reply, 0x03);
      assert.ok(ms <= 2000, `SOCKS reply for a node killed just before took ${Math.round(ms)} ms`);
      const refused = await alice.waitFor("socks.refused");
      assert.equal(refused.reason, "node_down");
      // The node is reported down by the missed ping, before the idle timeout would say so.
      const down = await alice.waitFor("peer.down", (e) => e.node === "n1");
      assert.match(String(down.reason), /no answer to a ping/);
    }),
);
