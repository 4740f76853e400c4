/**
 * lib/log.ts gathers info events (tunnel.open, tunnel.close) for up to LOG_FLUSH_MS before
 * writing them: an agent stopped by a signal right after a tunnel opened must still have
 * written its events, and `agent.stopped`, logged just before it exits.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentFlags, withFixture } from "./fixture.ts";
import { type AgentProcess, ExactReader, socksConnect } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "e2e: agents stopped by SIGTERM right after a tunnel have written all its events",
  e2e,
  async () => {
    await withFixture(async (fx, start) => {
      const n1 = await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
      const aliceFlags = agentFlags();
      const alice = await start(join(fx.bundles.alice, "flor.yaml"), aliceFlags.flags);
      const s = await socksConnect(aliceFlags.socks, "echo.flor", fx.ports.echo);
      assert.equal(s.reply, 0);
      await s.conn.write(Uint8Array.of(42));
      assert.deepEqual(await new ExactReader(s.conn).read(1), Uint8Array.of(42));
      // The tunnel is carried, so both agents logged tunnel.open less than a millisecond ago:
      // still gathered, not written. The signal comes now.
      await Promise.all([alice.stop("SIGTERM"), n1.stop("SIGTERM")]);
      s.conn.close();
      for (const [agent, side] of [[alice, "client"], [n1, "server"]] as const) {
        const names = events(agent);
        assert.ok(
          agent.events.some((e) => e.message === "tunnel.open" && e.side === side),
          `${side}: no tunnel.open in ${names}`,
        );
        // Logged just before Deno.exit: only the write at exit puts it out.
        assert.ok(names.includes("agent.stopped"), `${side}: ${names}`);
      }
    });
  },
);

function events(a: AgentProcess): string[] {
  return a.events.map((e) => String(e.message));
}
