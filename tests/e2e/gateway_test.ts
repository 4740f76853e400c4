/**
 * flor-gw on a real (namespaced) network: a LAN with a client and the gateway, a node, and
 * a LAN server that only the node can reach.
 *
 *   lan (10.201.1.0/24 clients, gw on 10.201.1.1) ── 10.201.12.0/24 ── node ── 10.201.23.0/24 ── srv
 *
 * The client reaches the LAN server as service `files` through the gateway and the node;
 * wrong password and a service not in the client's list are each refused with the right
 * SOCKS reply and event, a source outside the allowed network is closed unread; the LAN server is not
 * reachable from the LAN directly.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { flor, florctl, florctlOk, serviceAddArgs, startAgentProcess } from "./harness.ts";
import { createTestbed, namespaceTestOptions } from "./netns.ts";

const e2e = await namespaceTestOptions();

Deno.test(
  "e2e: flor-gw serves LAN devices through a node, and refuses the rest",
  e2e,
  async (t) => {
    const tb = await createTestbed({
      namespaces: ["lan", "node", "srv"],
      links: [
        { a: "lan", b: "node", aAddr: "10.201.12.1", bAddr: "10.201.12.2", prefix: 24 },
        { a: "node", b: "srv", aAddr: "10.201.23.1", bAddr: "10.201.23.2", prefix: 24 },
      ],
    });
    const root = await Deno.makeTempDir({ prefix: "florete-gw-" });
    const dir = join(root, "cluster");
    const c = (...args: string[]) => florctlOk([...args, "--dir", dir]);
    const agents = [];
    try {
      await tb.addAddress("lan", "10.201.1.1/24"); // the gateway's LAN address
      await tb.addAddress("lan", "10.201.1.5/24"); // a device on the allowed network
      await tb.addAddress("lan", "10.201.9.5/24"); // a device on another network

      // The LAN server, reachable only from the node's namespace.
      const server = tb.spawn("srv", [
        Deno.execPath(),
        "eval",
        `Deno.serve({ hostname: "10.201.23.2", port: 8080, onListen() {} }, () => new Response("lan files\\n"));`,
      ]);
      assert.ok(server.pid > 0);

      await c("init", "acme");
      await c("node", "add", "n1", "--endpoint", "10.201.12.2:7101");
      await c(
        "gateway",
        "add",
        "office",
        "--listen",
        "10.201.1.1:1080",
        "--allow-cidr",
        "10.201.1.0/24",
      );
      await c(...serviceAddArgs("files", "n1", "10.201.23.2:8080", "gateway:office"));
      await c(...serviceAddArgs("wiki", "n1", "10.201.23.2:8081", "gateway:office"));
      const added = await c("gateway", "client", "add", "office", "printer", "--services", "files");
      const password = /password \(shown once[^)]*\): (\S+)/.exec(added)![1];
      assert.ok(password.length >= 24);
      const hashes = await Deno.readTextFile(join(dir, "pki", "gateway", "office.clients.yaml"));
      assert.ok(!hashes.includes(password), "the password itself was stored");
      assert.match(hashes, /printer: pbkdf2-sha256\$/);
      await c("bundle", "node", "n1", "--out", join(root, "b-n1"), "--metrics", "off");
      await c("bundle", "gateway", "office", "--out", join(root, "b-gw"), "--metrics", "off");

      const node = await startAgentProcess({
        config: join(root, "b-n1", "flor.yaml"),
        wrap: ["ip", "netns", "exec", tb.ns.node],
      });
      agents.push(node);
      const gw = await startAgentProcess({
        program: "flor-gw",
        config: join(root, "b-gw", "flor-gw.yaml"),
        wrap: ["ip", "netns", "exec", tb.ns.lan],
      });
      agents.push(gw);

      const curl = (source: string, user: string, pass: string, url: string) =>
        tb.run("lan", [
          "curl",
          "-sS",
          "-m",
          "10",
          "--interface",
          source,
          "--socks5-hostname",
          `${user}:${pass}@10.201.1.1:1080`,
          url,
        ]);

      await t.step("a LAN device reaches the LAN-only server as a service", async () => {
        const r = await curl("10.201.1.5", "printer", password, "http://files.flor:8080/");
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, "lan files\n");
        await node.waitFor("tunnel.open", (e) => e.principal === "gateway:office");
        await gw.waitFor("tunnel.open", (e) => e.lan_client === "printer");
      });

      await t.step("the LAN server is not reachable from the LAN directly", async () => {
        const r = await tb.run("lan", ["curl", "-sS", "-m", "3", "http://10.201.23.2:8080/"]);
        assert.notEqual(r.code, 0, "the LAN reached the server without the mesh");
      });

      await t.step("a wrong password is refused (RFC 1929 failure)", async () => {
        const r = await curl(
          "10.201.1.5",
          "printer",
          "not-the-password",
          "http://files.flor:8080/",
        );
        assert.equal(r.code, 97, r.stderr);
        assert.match(r.stderr, /rejected by the SOCKS5 server/);
        await gw.waitFor("socks.auth_failed", (e) => e.username === "printer");
      });

      await t.step("a source outside the allowed network is closed before it is read", async () => {
        const r = await curl("10.201.9.5", "printer", password, "http://files.flor:8080/");
        assert.equal(r.code, 97, r.stderr);
        assert.match(r.stderr, /connection to proxy closed|Unable to receive initial SOCKS5/i);
        await gw.waitFor("gateway.source_denied", (e) => e.source === "10.201.9.5");
      });

      await t.step("a service not in the client's list is refused with 0x02", async () => {
        const r = await curl("10.201.1.5", "printer", password, "http://wiki.flor:8081/");
        assert.equal(r.code, 97, r.stderr);
        assert.match(r.stderr, /\(2\)/);
        await gw.waitFor(
          "access.denied",
          (e) => e.lan_client === "printer" && e.service === "wiki",
        );
      });
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await tb.destroy();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
);

Deno.test("e2e: flor-gw never listens on a public address unless told to", {
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const root = await Deno.makeTempDir({ prefix: "florete-gwpub-" });
  const dir = join(root, "cluster");
  try {
    await florctlOk(["init", "acme", "--dir", dir]);
    const refused = await florctl([
      "gateway",
      "add",
      "office",
      "--listen",
      "203.0.113.7:1080",
      "--allow-cidr",
      "192.168.1.0/24",
      "--dir",
      dir,
    ]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /gateways\.office\.listen: 203\.0\.113\.7:1080 is not a private/);
    await florctlOk([
      "gateway",
      "add",
      "office",
      "--listen",
      "127.0.0.1:1080",
      "--allow-cidr",
      "127.0.0.0/8",
      "--dir",
      dir,
    ]);
    await florctlOk(["bundle", "gateway", "office", "--out", join(root, "gw"), "--dir", dir]);
    // An override on the command line is held to the same rule, before anything is bound.
    const err = await startAgentProcess({
      program: "flor-gw",
      config: join(root, "gw", "flor-gw.yaml"),
      flags: ["--socks", "203.0.113.7:1080", "--metrics", "off"],
    }).then(() => undefined, (e: Error) => e);
    assert.ok(err, "flor-gw started on a public address");
    assert.match(err.message, /not a LAN \(private\) address/);
    // And flor refuses to run a gateway's configuration (and flor-gw a node's).
    const wrong = await flor(["run", "--config", join(root, "gw", "flor-gw.yaml")]);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /run it with flor-gw/);
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});
