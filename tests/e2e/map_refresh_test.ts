/**
 * A service the operator adds reaches users without a new bundle: the user's agent takes the
 * CA-signed map from a node; a map a node altered without the operator's signature is not.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentFlags, extendAgentConfig, withFixture } from "./fixture.ts";
import { MISS_REFRESHES_PER_S } from "../../agent/map_refresh.ts";
import { echoRoundTrip, florctlOk, serviceAddArgs, socksConnect, startEcho } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "e2e: users pick up a newly deployed service from the nodes' signed map",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const late = startEcho();
      try {
        const n1Config = join(fx.bundles.n1, "flor.yaml");
        const n1 = await start(n1Config, agentFlags().flags);
        const aliceConfig = await extendAgentConfig(fx.bundles.alice, "map_refresh_s: 1\n");
        const user = agentFlags();
        const alice = await start(aliceConfig, user.flags);
        const first = await socksConnect(user.socks, "echo.flor", fx.ports.echo); // connects to n1
        first.conn.close();
        assert.equal(first.reply, 0);

        // The operator adds a service and gives n1 the new map (what deploy does).
        await florctlOk([
          ...serviceAddArgs("late", "n1", `127.0.0.1:${late.port}`, "group:devs"),
          "--dir",
          fx.dir,
        ]);
        const before = await socksConnect(user.socks, "late.flor", late.port);
        before.conn.close();
        assert.equal(before.reply, 0x04, "alice's old map already knew the new service");
        await florctlOk(["bundle", "node", "n1", "--out", fx.bundles.n1, "--dir", fx.dir]);
        n1.child.kill("SIGHUP");
        await n1.waitFor("config.reloaded");
        await alice.waitFor("map.updated", (e) => e.from === "n1", 10_000);

        const s = await socksConnect(user.socks, "late.flor", late.port);
        assert.equal(s.reply, 0);
        const back = await echoRoundTrip(s.conn, new TextEncoder().encode("no new bundle"));
        s.conn.close();
        assert.equal(new TextDecoder().decode(back), "no new bundle");

        // A node that alters the map without the CA's signature convinces nobody.
        const map = join(fx.bundles.n1, "cluster.yaml");
        const sigFile = `${map}.sig`;
        const sig = JSON.parse(await Deno.readTextFile(sigFile));
        await Deno.writeTextFile(map, (await Deno.readTextFile(map)) + "# altered by the node\n");
        await Deno.writeTextFile(
          sigFile,
          JSON.stringify({ ...sig, issued_at: sig.issued_at + 60_000 }),
        );
        n1.child.kill("SIGHUP");
        await n1.waitFor(
          "config.reloaded",
          (e) => e !== n1.events.find((x) => x.message === "config.reloaded"),
        );
        await alice.waitFor(
          "map.refresh_failed",
          (e) => /does not match|not signed/.test(String(e.error)),
          10_000,
        );
      } finally {
        late.close();
      }
    }),
);

Deno.test(
  "e2e: a name the map does not know asks the nodes at once, the next node when one is down",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const late = startEcho();
      const later = startEcho();
      try {
        const n1 = await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
        const n2 = await start(join(fx.bundles.n2, "flor.yaml"), agentFlags().flags);
        const user = agentFlags(); // map_refresh_s stays at its default: a minute
        const alice = await start(join(fx.bundles.alice, "flor.yaml"), user.flags);
        const first = await socksConnect(user.socks, "echo.flor", fx.ports.echo); // n1
        first.conn.close();
        assert.equal(first.reply, 0);

        const add = (name: string, node: string, port: number) =>
          florctlOk([
            ...serviceAddArgs(name, node, `127.0.0.1:${port}`, "group:devs"),
            "--dir",
            fx.dir,
          ]);
        const deploy = async (node: "n1" | "n2", agent: typeof n1) => {
          const before = agent.events.filter((e) => e.message === "config.reloaded").length;
          await florctlOk(["bundle", "node", node, "--out", fx.bundles[node], "--dir", fx.dir]);
          agent.child.kill("SIGHUP");
          await agent.waitFor(
            "config.reloaded",
            () => agent.events.filter((e) => e.message === "config.reloaded").length > before,
          );
        };

        // Deployed to n1: the first request for it already succeeds.
        await add("late", "n1", late.port);
        await deploy("n1", n1);
        const firstMiss = Date.now();
        const s = await socksConnect(user.socks, "late.flor", late.port);
        assert.equal(s.reply, 0, "the unknown name did not refresh the map");
        const back = await echoRoundTrip(s.conn, new TextEncoder().encode("at once"));
        s.conn.close();
        assert.equal(new TextDecoder().decode(back), "at once");
        await alice.waitFor("map.updated", (e) => e.from === "n1");

        // n1 is gone; n2 has the next map: the refresh gets past n1 to n2.
        await n1.stop("SIGKILL");
        await alice.waitFor("peer.down", (e) => e.node === "n1", 6000);
        await add("later", "n2", later.port);
        await deploy("n2", n2);
        // Refreshes for unknown names are rate-limited: the next one is due 5 s after the first.
        const due = firstMiss + 1000 / MISS_REFRESHES_PER_S - Date.now();
        if (due > 0) await new Promise((r) => setTimeout(r, due));
        const ask = await socksConnect(user.socks, "later.flor", later.port);
        ask.conn.close();
        await alice.waitFor("map.refresh_failed", (e) => e.from === "n1", 10_000);
        await alice.waitFor("map.updated", (e) => e.from === "n2", 10_000);
        const t = await socksConnect(user.socks, "later.flor", later.port);
        assert.equal(t.reply, 0);
        const back2 = await echoRoundTrip(t.conn, new TextEncoder().encode("via n2"));
        t.conn.close();
        assert.equal(new TextDecoder().decode(back2), "via n2");
      } finally {
        late.close();
        later.close();
      }
    }),
);
