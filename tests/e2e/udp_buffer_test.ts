/**
 * UDP buffers of the agents' QUIC sockets (issue 10): the node raises its receive buffer to
 * transport.udp_buffer_bytes (read back through the metric and the `udp.buffer` event); a user
 * agent's outgoing endpoint does too; without CAP_NET_ADMIN the kernel caps it at
 * net.core.rmem_max and the agent says once which sysctl to run.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentFlags, extendAgentConfig, withFixture } from "./fixture.ts";
import { echoRoundTrip, socksConnect, startAgentProcess } from "./harness.ts";
import { DEFAULT_UDP_BUFFER_BYTES } from "../../lib/udp_buffer.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false, ignore: Deno.build.os !== "linux" };

/** What the agent can get here: the target as root (FORCE), else up to net.core.rmem_max. */
function reachable(target: number): number {
  if (Deno.uid() === 0) return target;
  const max = Number(Deno.readTextFileSync("/proc/sys/net/core/rmem_max").trim());
  return Math.min(target, max);
}

async function metric(port: number, sample: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(sample + " "));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

Deno.test(
  "e2e: the node's QUIC receive buffer is raised to the target",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const node = agentFlags({ metrics: true });
      const n1 = await start(join(fx.bundles.n1, "flor.yaml"), node.flags);
      const ev = await n1.waitFor("udp.buffer", (e) => e.side === "server");
      assert.equal(ev.port, fx.ports.n1);
      // As root (FORCE) the full target; otherwise as much as net.core.rmem_max allows.
      const want = reachable(DEFAULT_UDP_BUFFER_BYTES);
      assert.ok(Number(ev.receive_bytes) >= want, JSON.stringify(ev));
      assert.ok(Number(ev.receive_bytes) > 212_992, "above the kernel default");
      assert.ok(Number(ev.send_bytes) >= want, JSON.stringify(ev));
      const got = await metric(node.metrics!, 'flor_udp_receive_buffer_bytes{side="server"}');
      assert.ok(got !== undefined && got >= want, `metric says ${got}`);
      assert.ok((await metric(node.metrics!, "flor_udp_receive_errors_total"))! >= 0);
      if (want === DEFAULT_UDP_BUFFER_BYTES) {
        assert.equal(n1.events.filter((e) => e.message === "udp.buffer_small").length, 0);
      }

      // The user agent's outgoing endpoint, opened with its first tunnel.
      const user = agentFlags({ metrics: true });
      const alice = await start(join(fx.bundles.alice, "flor.yaml"), user.flags);
      const s = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
      assert.equal(s.reply, 0);
      await echoRoundTrip(s.conn, Uint8Array.of(7));
      s.conn.close();
      const client = await alice.waitFor("udp.buffer", (e) => e.side === "client");
      assert.ok(Number(client.receive_bytes) >= want, JSON.stringify(client));
      const clientMetric = await metric(
        user.metrics!,
        'flor_udp_receive_buffer_bytes{side="client"}',
      );
      assert.ok(clientMetric !== undefined && clientMetric >= want);
    }),
);

Deno.test(
  "e2e: without CAP_NET_ADMIN the buffer stops at rmem_max and one warning names the sysctl",
  e2e,
  () =>
    withFixture(async (fx) => {
      const rmemMax = Number(Deno.readTextFileSync("/proc/sys/net/core/rmem_max").trim());
      // A target above what the sysctl allows, whatever this host's sysctl says.
      const target = rmemMax * 2;
      const config = await extendAgentConfig(
        fx.bundles.n1,
        `transport:\n  udp_buffer_bytes: ${target}\n`,
      );
      const n1 = await startAgentProcess({
        config,
        flags: agentFlags().flags,
        wrap: ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"],
      });
      try {
        const ev = await n1.waitFor("udp.buffer", (e) => e.side === "server");
        assert.equal(ev.method, "capped");
        assert.equal(ev.receive_bytes, rmemMax);
        const warn = await n1.waitFor("udp.buffer_small");
        assert.equal(warn.fix, `sysctl -w net.core.rmem_max=${target} net.core.wmem_max=${target}`);
        assert.match(String(warn.detail), /below transport\.udp_buffer_bytes/);
      } finally {
        await n1.stop();
      }
    }),
);

Deno.test(
  "e2e: an agent that cannot call libc keeps serving with the default buffer and says why",
  e2e,
  () =>
    withFixture(async (fx) => {
      // --deny-ffi after `run`: what a build without --allow-ffi, or macOS/Windows, comes to.
      const denyFfi = ["sh", "-c", 'cmd=$0; sub=$1; shift; exec "$cmd" "$sub" --deny-ffi "$@"'];
      const n1 = await startAgentProcess({
        config: join(fx.bundles.n1, "flor.yaml"),
        flags: agentFlags().flags,
        wrap: denyFfi,
      });
      try {
        const ev = await n1.waitFor("udp.buffer_unset", (e) => e.side === "server");
        assert.equal(ev.reason, "no_libc", JSON.stringify(ev));
        assert.match(String(ev.detail), /kernel's default UDP buffer stays/);
        assert.equal(n1.events.filter((e) => e.message === "udp.buffer").length, 0);
        assert.ok(n1.events.some((e) => e.message === "agent.started"), "it started anyway");
      } finally {
        await n1.stop();
      }
    }),
);
