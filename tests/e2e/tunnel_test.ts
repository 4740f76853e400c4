/**
 * The operator workflow end to end: florctl builds the cluster, real flor processes run
 * it, curl and a raw SOCKS5 client go through the tunnels.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentFlags, buildFixture } from "./fixture.ts";
import {
  curlVia,
  echoRoundTrip,
  freeTcpPort,
  randomBytes,
  sha256Hex,
  socksConnect,
  startFlor,
} from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

Deno.test("e2e: operator workflow, tunnels and SOCKS replies", e2e, async (t) => {
  const fx = await buildFixture();
  const n1Socks = agentFlags();
  const aliceA = agentFlags();
  const bobA = agentFlags();
  const agents = [];
  try {
    const n1 = await startFlor(join(fx.bundles.n1, "flor.yaml"), n1Socks.flags);
    agents.push(n1);
    const n2 = await startFlor(join(fx.bundles.n2, "flor.yaml"), agentFlags().flags);
    agents.push(n2);
    const alice = await startFlor(join(fx.bundles.alice, "flor.yaml"), aliceA.flags);
    agents.push(alice);
    const bob = await startFlor(join(fx.bundles.bob, "flor.yaml"), bobA.flags);
    agents.push(bob);

    await t.step("curl reaches web.flor through alice's agent", async () => {
      const r = await curlVia(aliceA.socks, `http://web.flor:${fx.ports.web}/`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "hello from web\n");
      await n1.waitFor("tunnel.open", (e) => e.principal === "user:alice" && e.service === "web");
    });

    await t.step("cluster-qualified name web.acme.flor works too", async () => {
      const r = await curlVia(aliceA.socks, `http://web.acme.flor:${fx.ports.web}/`);
      assert.equal(r.code, 0, r.stderr);
    });

    await t.step("10 MiB of random bytes through echo arrive intact", async () => {
      const s = await socksConnect(aliceA.socks, "echo.flor", fx.ports.echo);
      assert.equal(s.reply, 0);
      const data = randomBytes(10 * 1024 * 1024);
      const back = await echoRoundTrip(s.conn, data);
      s.conn.close();
      assert.equal(back.length, data.length);
      assert.equal(await sha256Hex(back), await sha256Hex(data));
    });

    await t.step("bob to web is not allowed: 0x02", async () => {
      const s = await socksConnect(bobA.socks, "web.flor", fx.ports.web);
      s.conn.close();
      assert.equal(s.reply, 0x02);
    });

    await t.step("unknown service: 0x04", async () => {
      const s = await socksConnect(aliceA.socks, "nope.flor", 80);
      s.conn.close();
      assert.equal(s.reply, 0x04);
    });

    await t.step("wrong port for a known service: 0x02", async () => {
      const s = await socksConnect(aliceA.socks, "web.flor", fx.ports.web + 1);
      s.conn.close();
      assert.equal(s.reply, 0x02);
    });

    await t.step("a target that refuses the TCP connection: 0x05", async () => {
      const s = await socksConnect(bobA.socks, "dead.flor", fx.ports.dead);
      s.conn.close();
      assert.equal(s.reply, 0x05);
      await n2.waitFor("tunnel.target_failed", (e) => e.service === "dead");
    });

    await t.step("bob reaches ci, which allows user:bob", async () => {
      const s = await socksConnect(bobA.socks, "ci.flor", fx.ports.ci);
      assert.equal(s.reply, 0);
      const back = await echoRoundTrip(s.conn, new TextEncoder().encode("ping"));
      s.conn.close();
      assert.equal(new TextDecoder().decode(back), "ping");
    });

    await t.step("the node re-checks policy: a tampered client map gains nothing", async () => {
      // bob edits his own copy of the cluster map to allow himself on web.
      const map = join(fx.bundles.bob, "cluster.yaml");
      const original = await Deno.readTextFile(map);
      await Deno.writeTextFile(
        map,
        original.replace("- group:devs", "- group:devs\n      - user:bob"),
      );
      const tampered = agentFlags();
      const bob2 = await startFlor(join(fx.bundles.bob, "flor.yaml"), tampered.flags);
      agents.push(bob2);
      await Deno.writeTextFile(map, original);
      const s = await socksConnect(tampered.socks, "web.flor", fx.ports.web);
      s.conn.close();
      assert.equal(s.reply, 0x02);
      await n1.waitFor("access.denied", (e) => e.principal === "user:bob" && e.service === "web");
    });

    await t.step("a service principal opens tunnels via its node with RFC 1929", async () => {
      const password = (await Deno.readTextFile(
        join(fx.bundles.n1, "secrets", "service-web.password"),
      )).trim();
      const ok = await socksConnect(n1Socks.socks, "ci.flor", fx.ports.ci, {
        user: "web",
        pass: password,
      });
      assert.equal(ok.authStatus, 0);
      assert.equal(ok.reply, 0);
      const back = await echoRoundTrip(ok.conn, new TextEncoder().encode("as service:web"));
      ok.conn.close();
      assert.equal(new TextDecoder().decode(back), "as service:web");
      await n2.waitFor("tunnel.open", (e) => e.principal === "service:web");

      const bad = await socksConnect(n1Socks.socks, "ci.flor", fx.ports.ci, {
        user: "web",
        pass: "wrong",
      });
      bad.conn.close();
      assert.equal(bad.authStatus, 1);
      // service:web may use ci but not web (only group:devs may).
      const denied = await socksConnect(n1Socks.socks, "web.flor", fx.ports.web, {
        user: "web",
        pass: password,
      });
      denied.conn.close();
      assert.equal(denied.reply, 0x02);
    });

    await t.step("a node's SOCKS without credentials offers no identity", async () => {
      const s = await socksConnect(n1Socks.socks, "ci.flor", fx.ports.ci);
      s.conn.close();
      assert.equal(s.method, 0xff);
    });

    await t.step("raw IP destinations are refused with 0x02", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: aliceA.socks });
      await conn.write(Uint8Array.from([5, 1, 0]));
      const buf = new Uint8Array(64);
      await readAtLeast(conn, buf, 2);
      await conn.write(Uint8Array.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 80]));
      const n = await readAtLeast(conn, buf, 2);
      conn.close();
      assert.ok(n >= 2);
      assert.equal(buf[1], 0x02);
    });

    await t.step("50 malformed SOCKS clients in a row leave the agent serving", async () => {
      const garbage = [
        [4, 1, 0, 80, 127, 0, 0, 1, 0], // SOCKS4
        [...new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n")],
        [5, 0],
        [5, 1, 0, 5, 9, 0, 3, 0, 0, 80], // bad command after a good greeting
        [5, 1, 0, 5, 1, 0, 9], // bad address type
        [5, 200, 1, 2], // truncated method list, then close
        [5, 1, 0, 5, 1, 0, 3, 0, 0, 80], // empty domain
      ];
      for (let i = 0; i < 50; i++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: aliceA.socks });
        await conn.write(Uint8Array.from(garbage[i % garbage.length])).catch(() => {});
        await conn.closeWrite().catch(() => {});
        await readAtLeast(conn, new Uint8Array(64), 1).catch(() => 0);
        conn.close();
      }
      const r = await curlVia(aliceA.socks, `http://web.flor:${fx.ports.web}/`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "hello from web\n");
      // An info event: written within LOG_FLUSH_MS (lib/log.ts), not at once.
      await alice.waitFor("socks.malformed");
    });

    await t.step("a reload with a broken cluster map keeps the old one serving", async () => {
      const map = join(fx.bundles.n1, "cluster.yaml");
      const good = await Deno.readTextFile(map);
      await Deno.writeTextFile(map, good.replace("node: n1", "node: [oops"));
      n1.child.kill("SIGHUP");
      await n1.waitFor("config.reload_failed");
      const s = await socksConnect(aliceA.socks, "echo.flor", fx.ports.echo);
      assert.equal(s.reply, 0);
      const back = await echoRoundTrip(s.conn, new TextEncoder().encode("still serving"));
      s.conn.close();
      assert.equal(new TextDecoder().decode(back), "still serving");
      await Deno.writeTextFile(map, good);
      n1.child.kill("SIGHUP");
      await n1.waitFor("config.reloaded");
    });

    await t.step("half-close is carried: the target sees EOF and still answers", async () => {
      const s = await socksConnect(aliceA.socks, "echo.flor", fx.ports.echo);
      assert.equal(s.reply, 0);
      const back = await echoRoundTrip(s.conn, new TextEncoder().encode("request then EOF"));
      s.conn.close();
      assert.equal(new TextDecoder().decode(back), "request then EOF");
    });
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await fx.cleanup();
  }
});

async function readAtLeast(conn: Deno.TcpConn, buf: Uint8Array, n: number): Promise<number> {
  let got = 0;
  while (got < n) {
    const r = await conn.read(buf.subarray(got));
    if (r === null) break;
    got += r;
  }
  return got;
}

Deno.test("e2e: a user agent refuses to lend its identity beyond loopback", e2e, async () => {
  const fx = await buildFixture();
  try {
    const err = await startFlor(join(fx.bundles.alice, "flor.yaml"), [
      "--socks",
      `0.0.0.0:${freeTcpPort()}`,
      "--metrics",
      "off",
    ]).then(() => undefined, (e: Error) => e);
    assert.ok(err, "flor started with a non-loopback SOCKS listener");
    assert.match(err.message, /not loopback/);
  } finally {
    await fx.cleanup();
  }
});
