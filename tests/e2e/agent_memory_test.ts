/**
 * An agent's resident memory with 200 tunnels held open, and its peak with 200 tunnels busy at
 * once, through a user agent and a node agent started as every launcher starts them
 * (lib/memory.ts AGENT_V8_FLAGS). Linux only (/proc/PID/status). RSS is not timing: it does not
 * depend on how loaded the machine is.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentFlags, startNodeAndAlice, withFixture } from "./fixture.ts";
import { ExactReader, freeTcpPort, socksConnect } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

const TUNNELS = 200;

/** Measured per agent with 200 held tunnels (this test and tests/bench/agent_memory.ts,
 * 2026-12-02): 124-133 MB before issue 10's memory work, 111-120 MB with AGENT_V8_FLAGS,
 * 101-105 MB once a tunnel's leftover bytes stopped pinning a 64 KiB chunk (stream_buffer.ts),
 * 94-98 MB with 4 KiB first reads (relay.ts READ_MIN_BYTES). */
const HELD_RSS_BOUND_MB = 110;

/** Time for the agents to settle after the last tunnel opened (lib/memory.ts's debounced
 * collection), so the reading is what 200 held tunnels keep, not a passing peak. */
const SETTLE_MS = 3_000;

/** Measured peak per agent while 200 tunnels each send 1 MiB at once (this test and
 * tests/bench/agent_memory.ts, 2026-12-02, load 5-10): main (fresh read buffers) user agent
 * 198-207 MB, node 150-220 MB; with pooled relay buffers and the agent's read budget
 * (lib/buffer_pool.ts, relay.ts READ_BUDGET_BYTES) user 147-164 MB, node 126-154 MB; with
 * dropped buffers freed, 4 KiB header reads (stream_buffer.ts) and the malloc trimmer, user
 * 138-153 MB, node 131-140 MB (load 1-8); with a 2 MiB pool (POOL_IDLE_MAX_BYTES) user
 * 131-142 MB, node 127-131 MB (load 0.4-1). Most of what is left is Deno's own (quinn's
 * buffers, V8): a bare Deno relay through the same hops peaks at 104-120 MB
 * (docs/bench_results.md). The bound leaves ~18 MB for a loaded machine, where quinn buffers
 * more while the agents wait for the CPU. */
const BUSY_PEAK_BOUND_MB = 160;

/** Measured per agent 3 s after the burst ended (this test and tests/bench/agent_memory.ts,
 * 2026-12-02, load 1-8): 136-163 MB before the malloc trimmer (glibc kept 20-47 MB of freed
 * memory resident), 105-120 MB with it (lib/malloc_trim.ts); the node agent, whose V8 heap
 * grows to 35-49 MB under the burst, once 136 MB under load 7. */
const AFTER_BURST_RSS_BOUND_MB = 140;

const MIB = 1024 * 1024;

async function statusMb(pid: number, key: "VmRSS" | "VmHWM"): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)![1]) * 1024 / 1e6;
}

const rssMb = (pid: number) => statusMb(pid, "VmRSS");

/** A TCP sink counting what it read; closes each connection at EOF. */
function startSink() {
  const port = freeTcpPort();
  const l = Deno.listen({ hostname: "127.0.0.1", port });
  const sink = { port, bytes: 0, close: () => l.close() };
  (async () => {
    for await (const c of l) {
      (async () => {
        const buf = new Uint8Array(64 * 1024);
        try {
          for (let n; (n = await c.read(buf)) !== null;) sink.bytes += n;
        } finally {
          c.close();
        }
      })().catch(() => {});
    }
  })().catch(() => {});
  return sink;
}

Deno.test({
  name: "e2e: 200 held tunnels keep each agent's RSS under 110 MB",
  ignore: Deno.build.os !== "linux",
  ...e2e,
  fn: () =>
    withFixture(async (fx, start) => {
      const { n1: node, alice, user } = await startNodeAndAlice(fx, start);
      const held: Deno.TcpConn[] = [];
      try {
        for (let i = 0; i < TUNNELS; i++) {
          const s = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
          assert.equal(s.reply, 0, `tunnel ${i}: SOCKS reply ${s.reply}`);
          // One byte each way proves the tunnel; it stays open (no EOF) while the RSS is read.
          await s.conn.write(Uint8Array.of(i & 0xff));
          assert.equal((await new ExactReader(s.conn).read(1))[0], i & 0xff);
          held.push(s.conn);
        }
        await new Promise((r) => setTimeout(r, SETTLE_MS));
        const rss = { node: await rssMb(node.child.pid), user: await rssMb(alice.child.pid) };
        console.log(`RSS with ${TUNNELS} held tunnels: ${JSON.stringify(rss)}`);
        for (const [who, mb] of Object.entries(rss)) {
          assert.ok(
            mb <= HELD_RSS_BOUND_MB,
            `${who} agent: ${mb.toFixed(1)} MB resident with ${TUNNELS} held tunnels ` +
              `(bound ${HELD_RSS_BOUND_MB} MB)`,
          );
        }
      } finally {
        for (const c of held) c.close();
      }
    }),
});

Deno.test({
  name: "e2e: 200 tunnels sending 1 MiB at once peak each agent under 160 MB, then 140 MB",
  ignore: Deno.build.os !== "linux",
  ...e2e,
  async fn() {
    const sink = startSink();
    try {
      await withFixture(async (fx, start) => {
        // Fresh agents: VmHWM (the peak since start) is the burst's peak.
        const node = await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
        const user = agentFlags();
        const alice = await start(join(fx.bundles.alice, "flor.yaml"), user.flags);
        await Promise.all(Array.from({ length: TUNNELS }, async (_, i) => {
          const s = await socksConnect(user.socks, "sink.flor", sink.port);
          assert.equal(s.reply, 0, `tunnel ${i}: SOCKS reply ${s.reply}`);
          const chunk = new Uint8Array(64 * 1024).fill(i & 0xff);
          for (let sent = 0; sent < MIB;) sent += await s.conn.write(chunk);
          await s.conn.closeWrite();
          // The sink closes at EOF: the tunnel carried everything by then.
          while ((await s.conn.read(new Uint8Array(16))) !== null) { /* until closed */ }
          s.conn.close();
        }));
        assert.equal(sink.bytes, TUNNELS * MIB);
        const peak = {
          node: await statusMb(node.child.pid, "VmHWM"),
          user: await statusMb(alice.child.pid, "VmHWM"),
        };
        await new Promise((r) => setTimeout(r, SETTLE_MS));
        const after = { node: await rssMb(node.child.pid), user: await rssMb(alice.child.pid) };
        console.log(
          `RSS with ${TUNNELS} × 1 MiB at once: peak ${JSON.stringify(peak)}, ` +
            `${SETTLE_MS} ms after ${JSON.stringify(after)}`,
        );
        for (const [who, mb] of Object.entries(peak)) {
          assert.ok(
            mb <= BUSY_PEAK_BOUND_MB,
            `${who} agent: peak ${mb.toFixed(1)} MB resident with ${TUNNELS} tunnels sending ` +
              `1 MiB at once (bound ${BUSY_PEAK_BOUND_MB} MB)`,
          );
        }
        for (const [who, mb] of Object.entries(after)) {
          assert.ok(
            mb <= AFTER_BURST_RSS_BOUND_MB,
            `${who} agent: ${mb.toFixed(1)} MB resident ${SETTLE_MS} ms after the burst ` +
              `(bound ${AFTER_BURST_RSS_BOUND_MB} MB): freed memory was not given back`,
          );
        }
      }, [{ name: "sink", node: "n1", port: sink.port, allow: "group:devs" }]);
    } finally {
      sink.close();
    }
  },
});
