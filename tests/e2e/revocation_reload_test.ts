/**
 * Revocation on reload against a real node (issue 11 item 6): a map that revokes a user and
 * a service the node itself hosts is applied, not dropped; a reload that fails is visible
 * on /readyz and in flor_reload_failures_total.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseCertificate } from "../../lib/pki.ts";
import { agentFlags, withFixture } from "./fixture.ts";
import { florctl, socksConnect } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

async function serialOf(file: string): Promise<string> {
  return parseCertificate(await Deno.readTextFile(file)).serialNumber.toLowerCase();
}

async function readyz(port: number): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${port}/readyz`);
  await r.body?.cancel();
  return r.status;
}

async function reloadFailures(port: number): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  const m = /^flor_reload_failures_total (\d+)$/m.exec(await r.text());
  return m ? Number(m[1]) : NaN;
}

Deno.test(
  "e2e: a reload revoking a user and one of the node's own services applies both",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const n1Flags = agentFlags({ metrics: true });
      const n1 = await start(join(fx.bundles.n1, "flor.yaml"), n1Flags.flags);
      const aliceFlags = agentFlags();
      await start(join(fx.bundles.alice, "flor.yaml"), aliceFlags.flags);
      const before = await socksConnect(aliceFlags.socks, "web.flor", fx.ports.web);
      before.conn.close();
      assert.equal(before.reply, 0);

      // The user's serial padded with a zero, as tools that print whole bytes would write it.
      const alice = await serialOf(join(fx.bundles.alice, "certs", "user-alice.crt"));
      const web = await serialOf(join(fx.bundles.n1, "certs", "service-web.crt"));
      const file = join(fx.dir, "cluster.yaml");
      const text = (await Deno.readTextFile(file)).replace(
        /revoked: \[\]\n?/,
        `revoked:\n  - serial: "0${alice}"\n    principal: user:alice\n` +
          `  - serial: "${web}"\n    principal: service:web\n`,
      );
      await Deno.writeTextFile(file, text);

      // check flags the service n1 still runs with that certificate.
      const checked = await florctl(["check", "--dir", fx.dir]);
      assert.equal(checked.code, 1, checked.stdout + checked.stderr);
      assert.match(checked.stderr, /service:web is revoked but node n1 still runs with/);

      // The map alone reaches n1 (as a deploy of an unchanged bundle would), then a reload.
      const map = join(fx.bundles.n1, "cluster.yaml");
      await Deno.writeTextFile(map, text);
      n1.child.kill("SIGHUP");
      const reloaded = await n1.waitFor("config.reloaded");
      // Who applied it, in order: the QUIC server cuts what the new map no longer allows.
      assert.deepEqual(reloaded.applied_by, ["quic_server", "socks_server"]);
      await n1.waitFor("identity.revoked", (e) => e.identity === "service:web");
      await n1.waitFor("peer.revoked", (e) => e.principal === "user:alice");
      const after = await socksConnect(aliceFlags.socks, "web.flor", fx.ports.web);
      after.conn.close();
      assert.equal(after.reply, 0x02, "the revoked user is refused");
      await n1.waitFor("auth.denied", (e) => e.reason === "revoked");
      assert.equal(await readyz(n1Flags.metrics!), 200);
      assert.equal(await reloadFailures(n1Flags.metrics!), 0);

      // A reload that fails: not ready, counted; the next good one clears it.
      await Deno.writeTextFile(map, "cluster: [broken\n");
      n1.child.kill("SIGHUP");
      await n1.waitFor("config.reload_failed");
      assert.equal(await readyz(n1Flags.metrics!), 503);
      assert.equal(await reloadFailures(n1Flags.metrics!), 1);
      await Deno.writeTextFile(map, text);
      const reloads = n1.events.filter((e) => e.message === "config.reloaded").length;
      n1.child.kill("SIGHUP");
      await n1.waitFor(
        "config.reloaded",
        () => n1.events.filter((e) => e.message === "config.reloaded").length > reloads,
      );
      assert.equal(await readyz(n1Flags.metrics!), 200);
      assert.equal(await reloadFailures(n1Flags.metrics!), 1);
    }),
);
