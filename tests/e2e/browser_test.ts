/**
 * Browsers and shells in one step, with the real programs: headless Chromium given only the
 * agent's PAC URL loads a `.flor` page through the mesh and another page directly; curl reaches
 * a service with nothing but the variables `flor env` printed, evaluated by a real sh.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentFlags, startNodeAndAlice, withFixture } from "./fixture.ts";
import { flor, runToEnd } from "./harness.ts";

/** One page load in a fresh headless Chromium; returns the DOM it rendered. */
async function chromiumDump(url: string, pacUrl: string, resolverRules: string) {
  const profile = await Deno.makeTempDir({ prefix: "florete-chromium-" });
  try {
    const r = await runToEnd("chromium", [
      "--headless",
      "--no-sandbox", // tests run as root
      "--disable-gpu",
      "--no-first-run",
      `--user-data-dir=${profile}`,
      `--proxy-pac-url=${pacUrl}`,
      // Chromium never sends plain loopback addresses through a PAC, so the page outside
      // the cluster gets a name of its own that resolves to loopback.
      `--host-resolver-rules=${resolverRules}`,
      "--dump-dom",
      url,
    ]);
    return r;
  } finally {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

Deno.test("browser: headless Chromium with the agent's PAC URL loads .flor through the mesh and the rest directly", async () => {
  const outside = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response("<!doctype html><p id=o>outside the cluster</p>", {
        headers: { "content-type": "text/html" },
      }),
  );
  try {
    await withFixture(async (fx, start) => {
      const { alice, user: a } = await startNodeAndAlice(fx, start, { metrics: true });
      const pacUrl = `http://127.0.0.1:${a.metrics}/proxy.pac`;
      const pac = await fetch(pacUrl);
      assert.equal(pac.headers.get("content-type"), "application/x-ns-proxy-autoconfig");
      assert.match(await pac.text(), new RegExp(`SOCKS5 127\\.0\\.0\\.1:${a.socks}`));

      const rules = "MAP outside.test 127.0.0.1";
      const inside = await chromiumDump(`http://web.flor:${fx.ports.web}/`, pacUrl, rules);
      assert.match(inside.stdout, /hello from web/, inside.stderr);
      const open = await alice.waitFor("tunnel.open", (e) => e.service === "web");
      assert.equal(open.principal, "user:alice");

      const direct = await chromiumDump(
        `http://outside.test:${outside.addr.port}/`,
        pacUrl,
        rules,
      );
      assert.match(direct.stdout, /outside the cluster/, direct.stderr);
      // It went directly: through SOCKS it would have been refused (not a service), and
      // every tunnel alice's agent opened was for web (the page and its favicon).
      assert.ok(!alice.events.some((e) => e.message === "socks.refused"));
      const services = alice.events.filter((e) => e.message === "tunnel.open").map((e) =>
        e.service
      );
      assert.deepEqual([...new Set(services)], ["web"]);
    });
  } finally {
    await outside.shutdown();
  }
});

Deno.test("browser: agents whose SOCKS5 needs a login serve no PAC file, and say why", async () => {
  await withFixture(async (fx, start) => {
    const n = agentFlags({ metrics: true });
    await start(join(fx.bundles.n1, "flor.yaml"), n.flags);
    const res = await fetch(`http://127.0.0.1:${n.metrics}/proxy.pac`);
    assert.equal(res.status, 404);
    assert.match(await res.text(), /needs a login/);
  });
});

Deno.test("shell: curl reaches a service with only what `flor env` printed, in a real sh", async () => {
  await withFixture(async (fx, start) => {
    await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
    const config = join(fx.bundles.alice, "flor.yaml");
    const a = agentFlags({ metrics: true });
    await start(config, a.flags);
    // flor env reads the addresses from flor.yaml: give it the ones this agent runs on.
    const text = await Deno.readTextFile(config);
    await Deno.writeTextFile(
      config,
      text.replace(/socks: \S+/, `socks: 127.0.0.1:${a.socks}`)
        .replace(/metrics: \S+/, `metrics: 127.0.0.1:${a.metrics}`),
    );
    const env = await flor(["env", "--shell", "sh", "--config", config]);
    assert.equal(env.code, 0, env.stderr);
    assert.ok(env.stdout.includes(`http://127.0.0.1:${a.metrics}/proxy.pac`), env.stdout);
    const r = await runToEnd("sh", [
      "-c",
      `eval "$FLOR_ENV" && curl -sS --max-time 20 http://web.flor:${fx.ports.web}/`,
    ], { env: { FLOR_ENV: env.stdout, PATH: Deno.env.get("PATH") ?? "" } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hello from web\n");

    const bad = await flor(["env", "--shell", "tcsh", "--config", config]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /choose one of sh, fish, powershell/);
    const node = await flor(["env", "--config", join(fx.bundles.n1, "flor.yaml")]);
    assert.equal(node.code, 1);
    assert.match(node.stderr, /flor env is for a user's agent/);
  });
});
