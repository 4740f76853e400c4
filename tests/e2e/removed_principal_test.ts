/**
 * A principal deleted from cluster.yaml (not revoked) keeps a valid certificate; a real node
 * must refuse it at auth and cut its live connection at reload (issue 11 item 7).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import YAML from "yaml";
import { buildAuthMessage, decodeAuthReply } from "../../lib/auth.ts";
import { frame } from "../../lib/binary.ts";
import { importPrivateKeyPem, parseCertificate } from "../../lib/pki.ts";
import { CloseCode } from "../../lib/protocol.ts";
import { connectNode } from "../../lib/quic_client.ts";
import { StreamBuffer } from "../../lib/stream_buffer.ts";
import { agentFlags, dialUnauthenticated, withFixture } from "./fixture.ts";
import { florctlOk } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "e2e: a user removed from cluster.yaml is refused at auth",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const caPem = await Deno.readTextFile(join(fx.dir, "pki", "ca.crt"));
      await florctlOk(["user", "add", "carol", "--dir", fx.dir]);
      const carolBundle = join(fx.root, "b-carol");
      await florctlOk(["bundle", "user", "carol", "--out", carolBundle, "--dir", fx.dir]);
      await florctlOk(["bundle", "node", "n1", "--out", fx.bundles.n1, "--dir", fx.dir]);
      const carol = {
        cert: parseCertificate(
          await Deno.readTextFile(join(carolBundle, "certs", "user-carol.crt")),
        ),
        key: await importPrivateKeyPem(
          await Deno.readTextFile(join(carolBundle, "keys", "user-carol.key")),
        ),
      };
      const n1 = await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
      const live = await connectNode({
        cluster: "acme",
        node: "n1",
        endpoint: { host: "127.0.0.1", port: fx.ports.n1 },
        caPem,
        ...carol,
        as: "user:carol",
      });

      // carol leaves cluster.yaml; n1 gets the new map and reloads.
      const map = join(fx.bundles.n1, "cluster.yaml");
      const doc = YAML.parseDocument(await Deno.readTextFile(map));
      assert.ok(doc.deleteIn(["users", "carol"]));
      await Deno.writeTextFile(map, doc.toString());
      n1.child.kill("SIGHUP");
      await n1.waitFor("config.reloaded");
      const cut = await live.closed;
      assert.equal(cut.closeCode, CloseCode.REVOKED, "the live connection is cut");
      await n1.waitFor("peer.removed", (e) => e.principal === "user:carol");

      // A new connection with the same, still valid, certificate is refused at auth.
      const conn = await dialUnauthenticated(fx.ports.n1, caPem);
      const stream = await conn.createBidirectionalStream();
      const w = stream.writable.getWriter();
      await w.write(frame(
        await buildAuthMessage({ ...carol, serverId: "spiffe://acme/node/n1", now: Date.now() }),
      ));
      const reply = decodeAuthReply(await new StreamBuffer(stream.readable).readFrame(512));
      assert.equal(reply.ok, false);
      assert.match(reply.reason, /user:carol is not in cluster 'acme'/);
      assert.equal((await conn.closed).closeCode, CloseCode.AUTH_DENIED);
      await n1.waitFor("auth.denied", (e) => e.reason === "unknown_principal");
    }),
);
