/**
 * Memory of idle tunnels: opens IDLE_TUNNELS (default 200) tunnels through a user agent and
 * a node agent to the echo service, makes one round trip on each, leaves them open and idle,
 * and prints each agent's resident memory (VmRSS now, VmHWM peak) before and after.
 *
 *   deno run --allow-all tests/bench/idle_tunnels.ts
 *
 * Linux only (reads /proc/<pid>/status).
 */
import { join } from "node:path";
import { agentFlags, buildFixture } from "../e2e/fixture.ts";
import { echoRoundTrip, socksConnect, startFlor } from "../e2e/harness.ts";

const TUNNELS = Number(Deno.env.get("IDLE_TUNNELS") ?? 200);
/** Time for the agents to settle (GC, lazily freed buffers) before reading RSS. */
const SETTLE_MS = 3_000;

function memory(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)![1]) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

const mb = (n: number) => (n / 1e6).toFixed(1);

const fx = await buildFixture();
const agents = [];
const conns: Deno.TcpConn[] = [];
try {
  const node = await startFlor(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
  agents.push(node);
  const user = agentFlags();
  const alice = await startFlor(join(fx.bundles.alice, "flor.yaml"), user.flags);
  agents.push(alice);
  // Warm: one tunnel so the QUIC connection exists before the "before" reading.
  const warm = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
  await echoRoundTrip(warm.conn, Uint8Array.of(1));
  warm.conn.close();
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const before = { node: memory(node.child.pid), user: memory(alice.child.pid) };
  for (let i = 0; i < TUNNELS; i++) {
    const c = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
    if (c.reply !== 0) throw new Error(`SOCKS reply ${c.reply} on tunnel ${i}`);
    await echoRoundTrip(c.conn, Uint8Array.of(i & 0xff));
    conns.push(c.conn);
  }
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const after = { node: memory(node.child.pid), user: memory(alice.child.pid) };
  console.log(`${TUNNELS} idle tunnels (MB, VmRSS; peak VmHWM):`);
  for (const who of ["node", "user"] as const) {
    console.log(
      `  ${who}: before ${mb(before[who].rss)}, with tunnels ${mb(after[who].rss)} ` +
        `(+${mb(after[who].rss - before[who].rss)}), peak ${mb(after[who].peak)}`,
    );
  }
} finally {
  for (const c of conns) c.close();
  await Promise.all(agents.map((a) => a.stop()));
  await fx.cleanup();
}
