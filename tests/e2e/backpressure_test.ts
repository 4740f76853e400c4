/**
 * Backpressure end to end: a target that stops reading must stall the SOCKS client's writes
 * (through the node agent, QUIC flow control and the user agent) instead of piling the data
 * up in an agent's memory; when it reads again, every byte arrives intact.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentFlags, buildFixture } from "./fixture.ts";
import { randomBytes, readToEnd, sha256Hex, socksConnect, startFlor } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };
const TOTAL = 96 * 1024 * 1024;

/** Accepts one connection, reads nothing until `resume()`, then reads to EOF. */
function startSlowTarget() {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let resume!: () => void;
  const resumed = new Promise<void>((r) => (resume = r));
  const received = (async () => {
    const c = await l.accept();
    await resumed;
    const all = await readToEnd(c);
    c.close();
    return all;
  })();
  return { port: (l.addr as Deno.NetAddr).port, resume, received, close: () => l.close() };
}

function rssBytes(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

Deno.test(
  "e2e: a target that stops reading stalls the sender, memory stays bounded",
  e2e,
  async () => {
    const slow = startSlowTarget();
    const fx = await buildFixture([{
      name: "slow",
      node: "n1",
      port: slow.port,
      allow: "group:devs",
    }]);
    const agents = [];
    try {
      const n1 = await startFlor(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
      agents.push(n1);
      const user = agentFlags();
      const alice = await startFlor(join(fx.bundles.alice, "flor.yaml"), user.flags);
      agents.push(alice);
      const rssBefore = rssBytes(n1.child.pid) + rssBytes(alice.child.pid);

      const s = await socksConnect(user.socks, "slow.flor", slow.port);
      assert.equal(s.reply, 0);
      const data = randomBytes(TOTAL);
      let written = 0;
      const writing = (async () => {
        while (written < TOTAL) {
          written += await s.conn.write(
            data.subarray(written, written + 65536),
          );
        }
        await s.conn.closeWrite();
      })();
      writing.catch(() => {}); // awaited below; a failed step must not leave it unhandled
      // Let the pipeline fill up, then check that the writer is stuck well short of the total.
      let last = -1;
      for (let i = 0; i < 40 && written !== last; i++) {
        last = written;
        await new Promise((r) => setTimeout(r, 250));
      }
      const stalledAt = written;
      assert.equal(stalledAt, last, "writes never stalled");
      assert.ok(written < TOTAL / 2, `${written} of ${TOTAL} bytes accepted with nobody reading`);
      const rssStalled = rssBytes(n1.child.pid) + rssBytes(alice.child.pid);
      const growth = rssStalled - rssBefore;
      assert.ok(growth < stalledAt + 32 * 1024 * 1024, `agents grew by ${growth} bytes`);

      // The sender has data but the tunnel takes none: the network path, not the client, is
      // the limit, so the user's agent reports the flow as slow.
      const event = await alice.waitFor("flow.slow", (e) => e.service === "slow", 12_000);
      assert.equal(event.side, "client");
      assert.ok(Number(event.blocked_pct) >= 50);
      slow.resume();
      await writing;
      const got = await slow.received;
      s.conn.close();
      assert.equal(got.length, TOTAL);
      assert.equal(await sha256Hex(got), await sha256Hex(data));
      console.log(
        `stalled after ${(stalledAt / 1048576).toFixed(1)} MiB in flight; agents' RSS grew ${
          (growth / 1048576).toFixed(1)
        } MiB`,
      );
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      slow.close();
      await fx.cleanup();
    }
  },
);
