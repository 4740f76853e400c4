/**
 * A service the operator adds reaches users without a new bundle: the user's agent takes the
 * CA-signed map from a node; a map a node altered without the operator's signature is not.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentFlags, withFixture } from "./fixture.ts";
import { echoRoundTrip, florctlOk, socksConnect, startEcho } from "./harness.ts";

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
        const aliceConfig = join(fx.bundles.alice, "flor.yaml");
        await Deno.writeTextFile(
          aliceConfig,
          (await Deno.readTextFile(aliceConfig)) + "map_refresh_s: 1\n",
        );
        const user = agentFlags();
        const alice = await start(aliceConfig, user.flags);
        const first = await socksConnect(user.socks, "echo.flor", fx.ports.echo); // connects to n1
        first.conn.close();
        assert.equal(first.reply, 0);

        // The operator adds a service and gives n1 the new map (what deploy does).
        await florctlOk([
          "service",
          "add",
          "late",
          "--node",
          "n1",
          "--target",
          `127.0.0.1:${late.port}`,
          "--allow",
          "group:devs",
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
