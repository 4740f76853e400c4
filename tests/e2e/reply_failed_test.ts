/**
 * A tunnel whose client stopped listening before the node's OK reply: the node has dialled the
 * target, the reply cannot be sent, and the node must close the target's connection instead of
 * keeping it (and its descriptor) for the agent's life.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { frame } from "../../lib/binary.ts";
import { connectNode } from "../../lib/quic_client.ts";
import { encodeTunnelRequest } from "../../lib/tunnel_header.ts";
import { agentFlags, aliceToN1, withFixture } from "./fixture.ts";
import { freeTcpPort } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

/** How long the node may take to close the target's connection: it dials, fails to reply
 * and closes at once (milliseconds on loopback); seconds of margin for a loaded machine. */
const CLOSE_WITHIN_MS = 5_000;

Deno.test(
  "e2e: a tunnel whose OK reply cannot be sent closes the target's connection",
  e2e,
  async () => {
    const port = freeTcpPort();
    const target = Deno.listen({ hostname: "127.0.0.1", port });
    const accepted = target.accept();
    try {
      await withFixture(async (fx, start) => {
        await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
        const conn = await connectNode(await aliceToN1(fx));
        try {
          const stream = await conn.createBidirectionalStream();
          // STOP_SENDING before the request: the node's reply write fails after its dial.
          await stream.readable.cancel();
          const w = stream.writable.getWriter();
          await w.write(frame(encodeTunnelRequest({ service: "sink", port })));
          const c = await accepted;
          const ended = await Promise.race([
            c.read(new Uint8Array(1)).then(() => "closed", () => "closed"),
            new Promise((r) => setTimeout(() => r("open"), CLOSE_WITHIN_MS)),
          ]);
          c.close();
          assert.equal(ended, "closed", "the node kept the target's connection open");
        } finally {
          conn.close();
        }
      }, [{ name: "sink", node: "n1", port, allow: "group:devs" }]);
    } finally {
      target.close();
    }
  },
);
