/**
 * DNS rebinding against a real agent with real curl (issue 11 item 8): every route of the
 * local HTTP endpoint answers only its own address, localhost, or a name from flor.yaml.
 */
import assert from "node:assert/strict";
import { agentFlags, extendAgentConfig, withFixture } from "./fixture.ts";
import { curl } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

/** The HTTP status curl got for `path` with this Host header. */
async function statusWithHost(port: number, path: string, host: string, method = "GET") {
  const r = await curl([
    "-s",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    "-X",
    method,
    "-H",
    `Host: ${host}`,
    `http://127.0.0.1:${port}${path}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return Number(r.stdout);
}

Deno.test(
  "e2e: the local HTTP endpoint refuses other Host names",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const config = await extendAgentConfig(
        fx.bundles.n1,
        "metrics:\n  allowed_hosts: [prom.example.com]\n",
      );
      const a = agentFlags({ metrics: true });
      await start(config, a.flags);
      const port = a.metrics!;
      for (const path of ["/status", "/metrics", "/healthz", "/readyz", "/nope"]) {
        assert.equal(await statusWithHost(port, path, `attacker.example:${port}`), 421, path);
      }
      assert.equal(
        await statusWithHost(port, "/control/reload", `attacker.example:${port}`, "POST"),
        421,
      );
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `prom.example.com:${port}`]) {
        assert.equal(await statusWithHost(port, "/status", host), 200, host);
        assert.equal(await statusWithHost(port, "/metrics", host), 200, host);
      }
      // The refusal says what to do.
      const r = await curl([
        "-s",
        "-H",
        "Host: attacker.example",
        `http://127.0.0.1:${port}/status`,
      ]);
      assert.match(r.stdout, /add it to metrics\.allowed_hosts in flor\.yaml/);
    }),
);
