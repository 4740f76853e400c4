/**
 * Tunnels over a lossy link: a user namespace and a node namespace joined by veth, with
 * nftables dropping 5% of the user's packets. QUIC recovers the losses and the bytes arrive
 * intact.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  echoFileInNamespace,
  florctlOk,
  randomBytes,
  serviceAddArgs,
  sha256Hex,
  startAgentProcess,
} from "./harness.ts";
import { createTestbed, namespaceTestOptions } from "./netns.ts";

const e2e = await namespaceTestOptions();

Deno.test("e2e: a transfer survives 5% packet loss intact", e2e, async () => {
  const tb = await createTestbed({
    namespaces: ["user", "node"],
    links: [{ a: "user", b: "node", aAddr: "10.201.45.1", bAddr: "10.201.45.2", prefix: 24 }],
  });
  const root = await Deno.makeTempDir({ prefix: "florete-loss-" });
  const dir = join(root, "cluster");
  const c = (...args: string[]) => florctlOk([...args, "--dir", dir]);
  const agents = [];
  try {
    // An echo target inside the node's namespace.
    tb.spawn("node", [
      Deno.execPath(),
      "eval",
      `const l = Deno.listen({ hostname: "127.0.0.1", port: 9000 });
       for await (const c of l) (async () => {
         const b = new Uint8Array(65536);
         for (;;) { const n = await c.read(b); if (n === null) break;
           for (let o = 0; o < n;) o += await c.write(b.subarray(o, n)); }
         await c.closeWrite(); c.close();
       })().catch(() => {});`,
    ]);
    await c("init", "acme");
    await c("node", "add", "n1", "--endpoint", "10.201.45.2:7101");
    await c("user", "add", "alice", "--group", "devs");
    await c(...serviceAddArgs("echo", "n1", "127.0.0.1:9000", "group:devs"));
    await c("bundle", "node", "n1", "--out", join(root, "b-n1"), "--metrics", "off");
    await c("bundle", "user", "alice", "--out", join(root, "b-alice"), "--metrics", "off");
    agents.push(
      await startAgentProcess({
        config: join(root, "b-n1", "flor.yaml"),
        wrap: ["ip", "netns", "exec", tb.ns.node],
      }),
    );
    const alice = await startAgentProcess({
      config: join(root, "b-alice", "flor.yaml"),
      flags: ["--socks", "127.0.0.1:1080"],
      wrap: ["ip", "netns", "exec", tb.ns.user],
    });
    agents.push(alice);

    await tb.setLoss("user", 0.05);
    // The SOCKS client runs in the user's namespace too: a small Deno program that sends
    // 4 MiB through the tunnel and prints the sha256 of what came back.
    const data = randomBytes(4 * 1024 * 1024);
    const file = join(root, "payload.bin");
    await Deno.writeFile(file, data);
    const back = await echoFileInNamespace(tb, "user", file);
    assert.equal(back.length, data.length);
    assert.equal(back.sha256, await sha256Hex(data));
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await tb.destroy();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});
