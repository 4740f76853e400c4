/**
 * Every way a peer can fail to authenticate to a node, against a real node process:
 * another cluster's CA, a revoked certificate, an auth message signed for another node,
 * a replayed auth message, no auth message at all.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildAuthMessage, decodeAuthReply } from "../../lib/auth.ts";
import { frame } from "../../lib/binary.ts";
import { importPrivateKeyPem, parseCertificate } from "../../lib/pki.ts";
import { CloseCode } from "../../lib/protocol.ts";
import { connectNode } from "../../lib/quic_client.ts";
import { StreamBuffer } from "../../lib/stream_buffer.ts";
import { agentFlags, buildFixture, dialUnauthenticated } from "./fixture.ts";

/** Tries to reach the restarted n1 before the revoked step gives up: each costs at most one
 * 2.5 s connect deadline, and the step failed 2 of 3 runs at load ~25 with one try. */
const REVOKED_ATTEMPTS = 4;
import { florctlOk, serviceAddArgs, socksConnect, startFlor } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

/** Connects to a node like an agent would, but sends the auth message the test made. */
async function presentAuth(port: number, caPem: string, message: Uint8Array) {
  const conn = await dialUnauthenticated(port, caPem);
  const stream = await conn.createBidirectionalStream();
  const w = stream.writable.getWriter();
  await w.write(frame(message));
  await w.close();
  let reply;
  try {
    reply = decodeAuthReply(await new StreamBuffer(stream.readable).readFrame(512));
  } catch {
    reply = undefined;
  }
  const closed = await Promise.race([
    conn.closed,
    new Promise<undefined>((r) => setTimeout(() => r(undefined), 2000)),
  ]);
  if (!closed) conn.close();
  return { reply, closed };
}

async function userCredentials(bundle: string, user: string) {
  const cert = parseCertificate(await Deno.readTextFile(join(bundle, "certs", `user-${user}.crt`)));
  const key = await importPrivateKeyPem(
    await Deno.readTextFile(join(bundle, "keys", `user-${user}.key`)),
  );
  return { cert, key };
}

Deno.test("e2e: nodes refuse peers that do not authenticate", e2e, async (t) => {
  const fx = await buildFixture();
  const caPem = await Deno.readTextFile(join(fx.dir, "pki", "ca.crt"));
  const agents = [];
  try {
    let n1 = await startFlor(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
    agents.push(n1);

    await t.step("an auth message signed for n2, presented to n1, is refused", async () => {
      const alice = await userCredentials(fx.bundles.alice, "alice");
      const msg = await buildAuthMessage({
        ...alice,
        serverId: "spiffe://acme/node/n2",
        now: Date.now(),
      });
      const r = await presentAuth(fx.ports.n1, caPem, msg);
      assert.equal(r.reply?.ok, false);
      assert.equal(r.closed?.closeCode, CloseCode.AUTH_DENIED);
      await n1.waitFor("auth.denied", (e) => e.reason === "wrong_server");
    });

    await t.step("a replayed auth message is refused the second time", async () => {
      const alice = await userCredentials(fx.bundles.alice, "alice");
      const msg = await buildAuthMessage({
        ...alice,
        serverId: "spiffe://acme/node/n1",
        now: Date.now(),
      });
      const first = await presentAuth(fx.ports.n1, caPem, msg);
      assert.equal(first.reply?.ok, true);
      const second = await presentAuth(fx.ports.n1, caPem, msg);
      assert.equal(second.reply?.ok, false);
      assert.equal(second.closed?.closeCode, CloseCode.AUTH_DENIED);
      await n1.waitFor("auth.denied", (e) => e.reason === "replay");
    });

    await t.step("garbage instead of an auth message is refused", async () => {
      const r = await presentAuth(fx.ports.n1, caPem, new TextEncoder().encode("hello?"));
      assert.equal(r.reply?.ok, false);
      assert.equal(r.closed?.closeCode, CloseCode.AUTH_DENIED);
    });

    await t.step(
      "an authenticated peer's stream without a header is reset after 10 s",
      async () => {
        const alice = await userCredentials(fx.bundles.alice, "alice");
        const conn = await connectNode({
          cluster: "acme",
          node: "n1",
          endpoint: { host: "127.0.0.1", port: fx.ports.n1 },
          caPem,
          ...alice,
          as: "user:alice",
        });
        try {
          const stream = await conn.createBidirectionalStream();
          const w = stream.writable.getWriter();
          await w.write(new Uint8Array([0])); // half a frame length, then nothing
          const started = Date.now();
          const reader = stream.readable.getReader();
          const end = await reader.read().then((r) => r.done, () => true);
          const waited = Date.now() - started;
          assert.ok(end, "the stream stayed open");
          assert.ok(waited >= 9000 && waited < 13000, `reset after ${waited} ms`);
          await n1.waitFor("tunnel.bad_header", (e) => e.principal === "user:alice");
        } finally {
          conn.close();
        }
      },
    );

    await t.step("a connection that never authenticates is closed after 5 s", async () => {
      const conn = await dialUnauthenticated(fx.ports.n1, caPem);
      const started = Date.now();
      const info = await conn.closed;
      const waited = Date.now() - started;
      assert.equal(info.closeCode, CloseCode.AUTH_TIMEOUT);
      assert.ok(waited >= 4500 && waited < 8000, `closed after ${waited} ms`);
      await n1.waitFor("auth.denied", (e) => e.reason === "timeout");
    });

    await t.step("a bundle from another cluster's CA is refused", async () => {
      // Same cluster name and user name, different CA: only the CA tells them apart.
      const evil = join(fx.root, "evil");
      await florctlOk(["init", "acme", "--dir", evil]);
      await florctlOk([
        "node",
        "add",
        "n1",
        "--endpoint",
        `127.0.0.1:${fx.ports.n1}`,
        "--dir",
        evil,
      ]);
      await florctlOk(["user", "add", "alice", "--group", "devs", "--dir", evil]);
      await florctlOk([
        ...serviceAddArgs("web", "n1", `127.0.0.1:${fx.ports.web}`, "group:devs"),
        "--dir",
        evil,
      ]);
      const bundle = join(fx.root, "b-evil-alice");
      await florctlOk(["bundle", "user", "alice", "--out", bundle, "--dir", evil]);

      // As issued, the foreign agent does not even trust n1: TLS fails, 0x03.
      const own = agentFlags();
      const foreign = await startFlor(join(bundle, "flor.yaml"), own.flags);
      agents.push(foreign);
      const s1 = await socksConnect(own.socks, "web.flor", fx.ports.web);
      s1.conn.close();
      assert.equal(s1.reply, 0x03);
      await foreign.stop();

      // Given acme's real CA so it trusts n1, its own certificate is still refused by n1.
      await Deno.copyFile(join(fx.dir, "pki", "ca.crt"), join(bundle, "ca.crt"));
      const alice = await userCredentials(bundle, "alice");
      const r = await presentAuth(
        fx.ports.n1,
        caPem,
        await buildAuthMessage({ ...alice, serverId: "spiffe://acme/node/n1", now: Date.now() }),
      );
      assert.equal(r.reply?.ok, false);
      assert.equal(r.closed?.closeCode, CloseCode.AUTH_DENIED);
      await n1.waitFor("auth.denied", (e) => e.reason === "not_signed_by_ca");
    });

    await t.step("a revoked certificate is refused after n1 is re-bundled", async () => {
      const aliceFlags = agentFlags();
      const alice = await startFlor(join(fx.bundles.alice, "flor.yaml"), aliceFlags.flags);
      agents.push(alice);
      const before = await socksConnect(aliceFlags.socks, "web.flor", fx.ports.web);
      before.conn.close();
      assert.equal(before.reply, 0);

      const cert = parseCertificate(
        await Deno.readTextFile(join(fx.bundles.alice, "certs", "user-alice.crt")),
      );
      const file = join(fx.dir, "cluster.yaml");
      const text = await Deno.readTextFile(file);
      await Deno.writeTextFile(
        file,
        text.replace(
          /revoked: \[\]\n?/,
          `revoked:\n  - serial: "${cert.serialNumber}"\n    principal: user:alice\n    reason: laptop lost\n`,
        ),
      );
      await florctlOk(["check", "--dir", fx.dir]);
      await florctlOk(["bundle", "node", "n1", "--out", fx.bundles.n1, "--dir", fx.dir]);
      await n1.stop();
      n1 = await startFlor(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
      agents.push(n1);

      // Alice's agent must first reach the restarted n1: on a loaded machine its 2.5 s connect
      // deadline can pass first, and that answer (0x03, node unreachable) is not what this
      // step is about. The property: once n1 answers, the revoked certificate gets 0x02, and
      // no attempt ever gets a tunnel.
      const replies: number[] = [];
      for (let i = 0; i < REVOKED_ATTEMPTS; i++) {
        const after = await socksConnect(aliceFlags.socks, "web.flor", fx.ports.web);
        after.conn.close();
        replies.push(after.reply ?? -1);
        if (after.reply !== 0x03) break;
      }
      assert.equal(replies.at(-1), 0x02, `replies: ${replies.join(", ")}`);
      await n1.waitFor("auth.denied", (e) => e.reason === "revoked");
    });
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await fx.cleanup();
  }
});
